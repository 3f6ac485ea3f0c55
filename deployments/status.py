"""A deployment's Orthanc status: up/down, version, counts, free disk.

``deployment_status`` asks Orthanc and records the outcome on the deployment; only tasks call it
(the periodic check, and "check now"). Pages show ``recorded_status``: asking every Orthanc from a
page made it wait for each timeout in turn (seven silent servers took 23 s) while other requests
waited for the database.
"""

import shutil
from datetime import timedelta

from django.utils import timezone

from .models import Deployment
from .orthanc import OrthancAuthFailed, OrthancClient, OrthancError

State = Deployment.CheckState
# The periodic check runs every minute (portal/schedules.py): older than this, it has stopped.
STALE_AFTER = timedelta(minutes=3)
STATISTICS = ("CountPatients", "CountStudies", "CountInstances", "TotalDiskSizeMB")


def free_disk(folder):
    if not folder:
        return None
    try:
        usage = shutil.disk_usage(folder)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None  # the folder lives on another host: only its worker could tell
    return {"free": usage.free, "total": usage.total, "used_percent": round(100 * usage.used / usage.total, 1)}


def deployment_status(deployment, timeout=None) -> dict:
    """Ask Orthanc for /system and /statistics and record the outcome on the deployment."""
    now = timezone.now()
    status = {"deployment": deployment, "checked_at": now, "state": State.UP, "error": ""}
    try:
        client = OrthancClient.for_deployment(deployment, timeout=timeout)
        status["system"] = client.system()
        status["statistics"] = client.statistics()
        if not (isinstance(status["system"], dict) and isinstance(status["statistics"], dict)):
            raise ValueError(f"{deployment.orthanc_url} does not answer like Orthanc")
    except OrthancAuthFailed as exc:
        status.update(state=State.AUTH, error=str(exc))
    except OrthancError as exc:
        status.update(state=State.DOWN, error=str(exc))
    except ValueError as exc:  # undecryptable password, or a non-JSON answer
        status.update(state=State.DOWN, error=str(exc))
    status["disk"] = free_disk(deployment.storage_dir)
    fields = {"last_checked_at": now, "last_state": status["state"], "last_error": status["error"][:300]}
    if status["state"] == State.UP:
        fields.update(
            last_ok_at=now,
            last_version=str(status["system"].get("Version", ""))[:32],
            last_statistics={name: status["statistics"].get(name) for name in STATISTICS},
        )
    # One short UPDATE after the network calls: no transaction is held while Orthanc is asked.
    Deployment.objects.filter(pk=deployment.pk).update(**fields)
    status["last_ok_at"] = fields.get("last_ok_at", deployment.last_ok_at)
    return status


def recorded_status(deployment, now=None) -> dict:
    """What the last check recorded, and how old it is; asks nobody."""
    now = now or timezone.now()
    checked_at = deployment.last_checked_at
    return {
        "deployment": deployment,
        "state": deployment.last_state or "unknown",
        "version": deployment.last_version,
        "statistics": deployment.last_statistics,
        "error": deployment.last_error,
        "checked_at": checked_at,
        "last_ok_at": deployment.last_ok_at,
        "stale": checked_at is None or now - checked_at > STALE_AFTER,
        "disk": free_disk(deployment.storage_dir),
    }
