"""Push a deployment's configuration into its Orthanc: validate → write → reset → verify →
(on failure) restore the previous files and make Orthanc run again.

``revision_create`` records the intent (a pending ConfigRevision) in the caller's transaction and
queues the push; ``deployment_push`` runs on the deployment's own queue, one at a time per
configuration folder (a file lock), and always applies the newest pending revision: older ones
are superseded.
"""

import hashlib
import json
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from portal import jobs
from portal.files import atomic_write, file_lock, fsync_dir

from .importer.parse import ConfigImportError, parse_text
from .models import ConfigRevision, Deployment
from .orthanc import OrthancAuthFailed, OrthancClient, OrthancError, OrthancHTTPError
from .render import OWNED_FILES, file_mode, probe_of, render_for
from .service import ServiceError, service_for
from .state import model_state

PUSH_TASK = "deployments.deployment_push"


class PushError(Exception):
    pass


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


def validate_files(files, folder=None):
    """Refuse what would stop Orthanc from starting, before anything is written."""
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
    if folder is not None:
        for path in sorted(Path(folder).glob("*.json")):
            if path.name in OWNED_FILES:
                continue
            try:
                foreign, _ = parse_text(path.read_text(errors="replace"), path.name)
            except ConfigImportError as exc:
                raise PushError(f"{exc}: Orthanc would not start") from None
            for key in foreign if isinstance(foreign, dict) else ():
                if key in keys:
                    raise PushError(f"the key {key} is in {path.name} too (not written by the portal): remove it there")


# ------------------------------------------------------------------ the push itself


def deployment_push(deployment_id) -> str:
    deployment = Deployment.objects.get(pk=deployment_id)
    folder = Path(deployment.config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # One push at a time per configuration folder, across worker processes on this host.
    with file_lock(folder / ".portal-push.lock"):
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
        try:
            apply_revision(deployment, revision, folder)
        except PushError as exc:
            _finish(revision, ConfigRevision.State.FAILED, error=str(exc), log_tail=getattr(exc, "log_tail", ""))
            raise
        _finish(revision, ConfigRevision.State.APPLIED)
        return f"revision {revision.number} applied"


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


def access_from(deployment, files) -> tuple[str, tuple[str, str]]:
    """The URL and service credentials under which Orthanc answers when it runs ``files``."""
    url = deployment.orthanc_url
    if not files:
        return url, (deployment.service_username, deployment.service_password)
    main = json.loads(files["orthanc.json"])
    users = json.loads(files["credentials.json"]).get("RegisteredUsers", {})
    parts = urlsplit(url)
    if parts.port and parts.port == deployment.http_port and main.get("HttpPort"):
        url = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{main['HttpPort']}"))
    name = deployment.service_username
    return url, (name, users.get(name, deployment.service_password))


def apply_revision(deployment, revision, folder):
    new = revision.files
    validate_files(new, folder)
    previous = read_current(folder)
    old_url, old_auth = access_from(deployment, previous)
    new_url, new_auth = deployment.orthanc_url, (deployment.service_username, deployment.service_password)
    service = service_for(deployment)
    write_files(folder, new)
    try:
        reload(old_url, old_auth, service)
        wait_for_config(new_url, new_auth, probe_of(new), service, settings.PUSH_VERIFY_TIMEOUT)
    except PushError as exc:
        tail = service.log_tail() if service is not None else ""
        if not previous:
            # A first push: there is nothing older to go back to, so the new files stay.
            error = PushError(f"{exc}. There was no earlier configuration to restore; the new files stay in place.")
            error.log_tail = tail
            raise error from exc
        write_files(folder, previous)
        try:
            recover(old_url, old_auth, new_auth, probe_of(previous), service)
        except PushError as again:
            error = PushError(f"{exc} — and the previous configuration did not come back: {again}")
            error.log_tail = tail
            raise error from exc
        error = PushError(f"{exc}. The previous configuration was restored and Orthanc runs it again.")
        error.log_tail = tail
        raise error from exc


def reload(url, auth, service):
    """Make Orthanc re-read its configuration: /tools/reset if it runs, else start it."""
    try:
        OrthancClient(url, *auth, timeout=10).post_json("/tools/reset")
        return
    except OrthancAuthFailed as exc:
        raise PushError(f"Orthanc refused the portal's credentials for /tools/reset: {exc}") from exc
    except OrthancHTTPError as exc:
        raise PushError(f"Orthanc refused /tools/reset: {exc}") from exc
    except OrthancError:
        pass  # not running: start it below
    if service is None:
        return  # nobody here can start it: wait for whoever runs it (e.g. a container waiting for its files)
    try:
        service.start(wait=0)
    except ServiceError as exc:
        raise PushError(f"Orthanc did not start: {exc}") from exc


def wait_for_config(url, auth, probe, service, timeout):
    """Poll until Orthanc answers with the configuration whose Lua filter knows ``probe``."""
    client = OrthancClient(url, *auth, timeout=2)
    deadline = time.monotonic() + timeout
    last = "no answer"
    time.sleep(0.2)  # /tools/reset answers before Orthanc goes down to re-read its files
    while time.monotonic() < deadline:
        if service is not None and hasattr(service, "pid") and not service.is_running():
            raise PushError("Orthanc exited while loading the new configuration")
        try:
            client.request("GET", "/system", headers={"X-Portal-Probe": probe})
            return
        except OrthancAuthFailed as exc:
            last = str(exc)  # 403: still the old filter; 401: old credentials
        except OrthancError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise PushError(f"Orthanc did not answer with the new configuration within {timeout:.0f} s ({last})")


def recover(old_url, old_auth, new_auth, old_probe, service):
    """After restoring the previous files: make Orthanc run them, whatever state it is in."""
    for auth in (new_auth, old_auth):
        try:
            OrthancClient(old_url, *auth, timeout=5).post_json("/tools/reset")
            break
        except OrthancError:
            continue
    else:
        if service is None:
            raise PushError("Orthanc is down and this deployment has no service control to start it")
        try:
            if not service.is_running():
                service.start(wait=0)
        except ServiceError as exc:
            raise PushError(str(exc)) from exc
    wait_for_config(old_url, old_auth, old_probe, service, settings.PUSH_VERIFY_TIMEOUT)
