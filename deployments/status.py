"""A live look at a deployment's Orthanc: up/down, version, counts, free disk."""

import shutil

from django.utils import timezone

from .models import Deployment
from .orthanc import OrthancAuthFailed, OrthancClient, OrthancError


def free_disk(folder):
    if not folder:
        return None
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None  # the folder lives on another host: only its worker could tell
    return {"free": usage.free, "total": usage.total, "used_percent": round(100 * usage.used / usage.total, 1)}


def deployment_status(deployment, timeout=None) -> dict:
    """Ask Orthanc for /system and /statistics and remember the outcome on the deployment."""
    now = timezone.now()
    status = {"deployment": deployment, "checked_at": now, "state": "up", "error": ""}
    try:
        client = OrthancClient.for_deployment(deployment, timeout=timeout)
        status["system"] = client.system()
        status["statistics"] = client.statistics()
    except OrthancAuthFailed as exc:
        status.update(state="auth", error=str(exc))
    except OrthancError as exc:
        status.update(state="down", error=str(exc))
    except ValueError as exc:  # undecryptable password, or a non-JSON answer
        status.update(state="down", error=str(exc))
    status["disk"] = free_disk(deployment.storage_dir)
    fields = {"last_checked_at": now, "last_error": status["error"][:300]}
    if status["state"] == "up":
        fields.update(last_ok_at=now, last_version=status["system"].get("Version", "")[:32])
    Deployment.objects.filter(pk=deployment.pk).update(**fields)
    status["last_ok_at"] = fields.get("last_ok_at", deployment.last_ok_at)
    return status
