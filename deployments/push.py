"""Push a deployment's configuration into its Orthanc: validate → write → reset → verify →
(on failure) restore the previous files and make Orthanc run again.

``revision_create`` records the intent (a pending ConfigRevision) in the caller's transaction and
queues the push; ``deployment_push`` runs on the deployment's own queue, one at a time per
configuration folder (a file lock), and always applies the newest pending revision: older ones
are superseded.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from portal import jobs
from portal.files import atomic_write, file_lock, fsync_dir

from .adoption import adoption_verify, login_take, pending_adoption
from .importer.parse import ConfigImportError, parse_text
from .models import ConfigRevision, Deployment
from .orthanc_log import failure_reason
from .reload import NotLetIn, PluginNotLoaded, PushError, check_plugins, recover, reload, wait_for_config
from .render import OWNED_FILES, file_mode, probe_of, render_for
from .service import service_for
from .state import model_state

log = logging.getLogger(__name__)
PUSH_TASK = "deployments.deployment_push"


# ------------------------------------------------------------------ recording the intent


def revision_create(deployment, user=None, reason="", files=None, rollback_of=None) -> ConfigRevision:
    """Record a pending revision of the deployment's current models and queue its push."""
    files = files if files is not None else render_for(deployment)
    validate_files(files)
    for _ in range(5):
        number = (deployment.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            with transaction.atomic():
                revision = ConfigRevision(
                    deployment=deployment,
                    number=number,
                    created_by=user if user is not None and user.is_authenticated else None,
                    reason=reason[:200],
                    fingerprint=fingerprint(files),
                    state_json=json.dumps(model_state(deployment)),
                    rollback_of=rollback_of,
                )
                revision.files = files
                revision.save()
            break
        except IntegrityError:  # two saves took the same number at once: take the next
            continue
    else:
        raise PushError("could not number the new revision")
    jobs.enqueue(PUSH_TASK, deployment.pk, queue=deployment.queue, user=user)
    return revision


def fingerprint(files) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()


def validate_files(files, folder=None, adopting=False) -> list[str]:
    """Refuse what would stop Orthanc from starting, before anything is written.

    Returns the names of the folder's other ``*.json`` files that an adoption moves aside: those
    whose every key the portal's files now define (the import read them into the portal)."""
    keys = {}
    for name, data in sorted(files.items()):
        if name not in OWNED_FILES:
            raise PushError(f"{name} is not a file the portal writes")
        if not name.endswith(".json"):
            continue
        try:
            content = json.loads(data)
        except ValueError as exc:
            raise PushError(f"{name} is not valid JSON: {exc}") from exc
        if not isinstance(content, dict):
            raise PushError(f"{name} must hold a JSON object")
        for key in content:
            if key in keys:
                raise PushError(f"the key {key} is in both {keys[key]} and {name}: Orthanc would not start")
            keys[key] = name
    main = json.loads(files["orthanc.json"])
    if main.get("HttpPort") == main.get("DicomPort"):
        raise PushError("the HTTP port and the DICOM port are the same: Orthanc would not start")
    aside = []
    for path in sorted(Path(folder).glob("*.json")) if folder is not None else ():
        if path.name in OWNED_FILES:
            continue
        try:
            foreign, _ = parse_text(path.read_text(errors="replace"), path.name)
        except ConfigImportError as exc:
            raise PushError(f"{exc}: Orthanc would not start") from None
        shared = [key for key in foreign if key in keys]
        if not shared:
            continue
        if adopting and len(shared) == len(foreign):
            aside.append(path.name)
        elif adopting:
            rest = ", ".join(sorted(set(foreign) - set(shared)))
            raise PushError(
                f"{path.name} holds {', '.join(shared)}, which the portal now writes, and {rest}, which it does "
                f"not: import {path.name} too, or move it out of {folder}"
            )
        else:
            raise PushError(f"the key {shared[0]} is in {path.name} too (not written by the portal): remove it there")
    return aside


# ------------------------------------------------------------------ the push itself


def deployment_push(deployment_id, login=None) -> str:
    """Apply the newest pending revision. ``login``: an existing admin account of the running
    Orthanc for a first push (the command's); otherwise one typed on the adoption page is taken."""
    deployment = Deployment.objects.get(pk=deployment_id)
    folder = Path(deployment.config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # One push at a time per configuration folder, across worker processes on this host.
    with file_lock(folder / ".portal-push.lock"):
        # Taken (and deleted) first, whoever pushes: a typed password serves this push or none.
        typed = login_take(deployment)
        login = login or typed
        # Holding the lock, no other push runs here: a revision still "applying" lost its worker.
        # Apply it again unless a newer save came since (pushing is idempotent).
        orphans = deployment.revisions.filter(state=ConfigRevision.State.APPLYING)
        orphans.update(state=ConfigRevision.State.PENDING, error="the worker stopped during an earlier push")
        pending = list(deployment.revisions.filter(state=ConfigRevision.State.PENDING).order_by("-number"))
        if not pending:
            return "nothing to push: no pending revision"
        revision, older = pending[0], pending[1:]
        ConfigRevision.objects.filter(pk__in=[r.pk for r in older]).update(
            state=ConfigRevision.State.SUPERSEDED, finished_at=timezone.now()
        )
        claimed = ConfigRevision.objects.filter(pk=revision.pk, state=ConfigRevision.State.PENDING).update(
            state=ConfigRevision.State.APPLYING, started_at=timezone.now()
        )
        if not claimed:
            return "revision already taken by another push"
        adoption = pending_adoption(deployment)
        try:
            outcome = apply_revision(deployment, revision, folder, login=login, adopting=adoption is not None)
        except PushError as exc:
            _finish(revision, ConfigRevision.State.FAILED, error=str(exc), log_tail=getattr(exc, "log_tail", ""))
            raise
        except Exception as exc:
            # Whatever went wrong, the revision is not left "applying" and the admin gets a sentence.
            log.exception("push of %s revision %s failed", deployment.slug, revision.number)
            error = PushError(f"the push stopped on an unexpected error ({type(exc).__name__}: {exc})")
            _finish(revision, ConfigRevision.State.FAILED, error=str(error))
            raise error from exc
        _finish(revision, ConfigRevision.State.APPLIED)
        message = f"revision {revision.number} applied"
        if adoption is not None:
            lines = adoption_verify(deployment, adoption, outcome.moved_to, outcome.moved)
            message += ". Adopted: " + "; ".join(lines)
        return message


def _finish(revision, state, error="", log_tail=""):
    ConfigRevision.objects.filter(pk=revision.pk).update(
        state=state, finished_at=timezone.now(), error=error[:5000], log_tail=log_tail[-5000:]
    )


def read_current(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OWNED_FILES if (folder / name).exists()}


def write_files(folder: Path, files: dict[str, bytes]):
    for name, data in sorted(files.items()):
        atomic_write(folder / name, data, mode=file_mode(name))
    for name in OWNED_FILES - files.keys():
        (folder / name).unlink(missing_ok=True)
    fsync_dir(folder)


def _parsed(files, name) -> dict:
    """A file of the folder as Orthanc reads it (comments allowed); {} if absent or unreadable."""
    try:
        return parse_text(files[name].decode("utf-8", errors="replace"), name)[0]
    except (KeyError, ConfigImportError):
        return {}


def access_from(deployment, files) -> tuple[str, tuple[str, str]]:
    """The URL and service credentials under which Orthanc answers when it runs ``files``
    (the portal's own, or an adopted folder's, comments and all)."""
    url = deployment.orthanc_url
    if not files:
        return url, (deployment.service_username, deployment.service_password)
    port = _parsed(files, "orthanc.json").get("HttpPort")
    users = _parsed(files, "credentials.json").get("RegisteredUsers")
    users = users if isinstance(users, dict) else {}
    parts = urlsplit(url)
    if parts.port and parts.port == deployment.http_port and isinstance(port, int) and not isinstance(port, bool):
        url = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))
    name = deployment.service_username
    password = users.get(name)
    return url, (name, password if isinstance(password, str) else deployment.service_password)


@dataclass
class Outcome:
    moved_to: str = ""
    moved: list = field(default_factory=list)


def apply_revision(deployment, revision, folder, login=None, adopting=False) -> Outcome:
    new = revision.files
    aside = validate_files(new, folder, adopting=adopting)
    previous = read_current(folder)
    old_url, old_auth = access_from(deployment, previous)
    # Who may ask the running Orthanc to re-read its files: the account typed for this push
    # first, then the portal's account as the files on disk know it.
    logins = [tuple(login)] if login else []
    logins += [old_auth] if old_auth not in logins else []
    new_url, new_auth = deployment.orthanc_url, (deployment.service_username, deployment.service_password)
    service = service_for(deployment)
    mark = service.log_mark() if service is not None else None
    outcome = Outcome()
    write_files(folder, new)
    if aside:
        outcome.moved_to, outcome.moved = str(move_aside(folder, aside, revision.number)), aside
    try:
        reload(old_url, logins, service)
        wait_for_config(new_url, new_auth, probe_of(new), service, settings.PUSH_VERIFY_TIMEOUT)
        check_plugins(new_url, new_auth, _parsed(new, "orthanc.json").get("Plugins") or [])
    except PushError as exc:
        tail = service.log_tail() if service is not None else ""
        reason = failure_reason(service.log_since(mark)) if service is not None else ""
        if isinstance(exc, PluginNotLoaded) and reason:
            failure = reason  # Orthanc's own words name the file; they say it better
        else:
            failure = f"{exc}: {reason}" if reason and reason not in str(exc) else str(exc)
        if not previous and not aside:
            # A first push: there is nothing older to go back to, so the new files stay.
            raise _error(
                f"{failure}. There was no earlier configuration to restore; the new files stay in place.", tail
            ) from exc
        write_files(folder, previous)
        if aside:
            move_back(folder, Path(outcome.moved_to), aside)
        if isinstance(exc, NotLetIn):
            # Orthanc never read the new files: putting the old ones back is all it takes.
            raise _error(
                f"{failure}. Nothing changed: the previous files are back and Orthanc still runs them.", tail
            ) from exc
        try:
            recover(old_url, list(dict.fromkeys([*logins, new_auth])), old_auth, previous, service)
        except PushError as again:
            raise _error(f"{failure} — and the previous configuration did not come back: {again}", tail) from exc
        raise _error(f"{failure}. The previous configuration was restored and Orthanc runs it again.", tail) from exc
    return outcome


def _error(message, tail):
    error = PushError(message)
    error.log_tail = tail
    return error


def move_aside(folder: Path, names, number) -> Path:
    """Out of Orthanc's sight (it reads only the folder's own *.json), kept for a rollback by hand."""
    target = folder / f"before-portal-{number}"
    target.mkdir(mode=0o700, exist_ok=True)
    for name in names:
        os.replace(folder / name, target / name)
    fsync_dir(target)
    fsync_dir(folder)
    return target


def move_back(folder: Path, target: Path, names):
    for name in names:
        os.replace(target / name, folder / name)
    fsync_dir(folder)
    target.rmdir()
