"""Adopting a running Orthanc: import → review → first push → verified.

The first push into an Orthanc that does not know the portal's account yet needs a way in: an
existing admin account of that Orthanc, typed once for that push, or the deployment's service
control (a restart reads the new files without asking anyone's password).

How the typed account reaches the push: the worker of a deployment runs on its Orthanc host and is
the only process that can write its files, so the web process cannot do that push itself. The
account goes to the worker through the database as a ``PushLogin``: one Fernet token (the key of
FIELD_ENCRYPTION_KEY) holding the name and password with the time it was made. The push deletes
every login of the deployment as it starts and refuses a token older than ten minutes, so an
unused one is worthless even before the periodic clean-up deletes it. The Celery message carries
only the job's id; no log line, job message, revision or audit entry holds the password. The
command (``adopt_orthanc``, ``push_config --admin-user``) pushes in its own process and keeps the
account in memory only.
"""

import json
import logging
from datetime import timedelta

from django.utils import timezone

from portal import crypto

from .models import Adoption, PushLogin
from .orthanc import OrthancClient, OrthancError

log = logging.getLogger(__name__)
MAX_USERS_CHECKED = 50


def adoption_record(deployment, result, who=None, source="") -> Adoption:
    """Keep an import's report as the start of an adoption (in the import's transaction)."""
    user = getattr(who, "user", who)
    return Adoption.objects.create(
        deployment=deployment,
        created_by=user if user is not None and getattr(user, "is_authenticated", False) else None,
        source=source[:300],
        report=[[line.level, line.text] for line in result.lines],
    )


def pending_adoption(deployment) -> Adoption | None:
    """The deployment's latest adoption, while its first push has not been verified."""
    latest = deployment.adoptions.first()
    return latest if latest is not None and latest.verified_at is None else None


# ---------------------------------------------------------------- the typed login


def login_store(deployment, username: str, password: str) -> None:
    """Hand an admin account of the deployment's Orthanc to its next push (call in the
    transaction that queues the push)."""
    PushLogin.objects.filter(deployment=deployment).delete()
    PushLogin.objects.create(deployment=deployment, token=crypto.encrypt(json.dumps([username, password])))


def login_forget(deployment) -> None:
    PushLogin.objects.filter(deployment=deployment).delete()


def login_take(deployment) -> tuple[str, str] | None:
    """The login typed for this push, deleted as it is read; None if none or expired."""
    rows = list(PushLogin.objects.filter(deployment=deployment))
    PushLogin.objects.filter(pk__in=[row.pk for row in rows]).delete()
    for row in rows:  # newest first
        try:
            username, password = json.loads(crypto.decrypt(row.token, ttl=PushLogin.LIFETIME))
        except ValueError:
            log.warning("an expired or unreadable one-push login of %s was discarded", deployment.slug)
            continue
        return username, password
    return None


def logins_forget_expired() -> int:
    """The safety net (from beat): logins no push took in time are deleted."""
    cutoff = timezone.now() - timedelta(seconds=PushLogin.LIFETIME)
    deleted, _ = PushLogin.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# ---------------------------------------------------------------- after the first push


def adoption_verify(deployment, adoption, moved_to="", moved=()) -> list[str]:
    """Record what the first push left in place: the portal's account answered with the new
    configuration (the push checked it), and each imported account still logs in."""
    lines = ["the portal's account answers with the new configuration"]
    if moved:
        lines.append(f"{', '.join(moved)} moved to {moved_to}: the portal's files now hold their keys")
    users = [u for u in deployment.orthanc_users.all() if u.is_effective()][:MAX_USERS_CHECKED]
    refused = []
    for user in users:
        try:
            OrthancClient(deployment.orthanc_url, user.username, user.password, timeout=5).system()
        except OrthancError as exc:
            # 403 is the role filter saying no to a role without /system: the password passed.
            if getattr(exc, "status", None) != 403:
                refused.append(user.username)
    if users:
        good = len(users) - len(refused)
        lines.append(f"{good} of {len(users)} imported account(s) log in with their old passwords")
    if refused:
        lines.append(f"these accounts do not log in: {', '.join(refused)}: check them on the Orthanc users page")
    adoption.verified_at = timezone.now()
    adoption.verification = lines
    adoption.moved_to, adoption.moved_files = moved_to, list(moved)
    adoption.save(update_fields=["verified_at", "verification", "moved_to", "moved_files"])
    return lines
