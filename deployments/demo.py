"""The local demo deployment of ``make run``: an Orthanc from the Debian package, configured
by the portal, with every file under var/ (no system paths, nothing owned by root needed)."""

import secrets
import socket
from pathlib import Path

from django.conf import settings
from django.db import transaction

from portal.files import atomic_write

from .models import Deployment
from .render import file_mode, render_for

DEMO_SLUG = "demo"


def free_port(preferred=None, host="127.0.0.1"):
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def write_config(deployment):
    """Write the rendered configuration (the configuration issue adds the safe push)."""
    folder = Path(deployment.config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in render_for(deployment).items():
        atomic_write(folder / name, data, mode=file_mode(name))


@transaction.atomic
def ensure_demo_deployment(base=None):
    base = Path(base or Path(settings.VAR_DIR) / "demo").resolve()
    deployment = Deployment.objects.filter(slug=DEMO_SLUG).first()
    if deployment is None:
        http_port, dicom_port = free_port(8042), free_port(4242)
        deployment = Deployment.objects.create(
            name="Demo clinic",
            slug=DEMO_SLUG,
            orthanc_url=f"http://127.0.0.1:{http_port}",
            http_port=http_port,
            service_username="portal",
            service_password=secrets.token_urlsafe(24),
            config_dir=str(base / "config"),
            storage_dir=str(base / "storage"),
            worklists_dir=str(base / "worklists"),
            dicom_aet="DEMO",
            dicom_port=dicom_port,
            service_kind=Deployment.ServiceKind.LOCAL,
        )
    Path(deployment.storage_dir).mkdir(parents=True, exist_ok=True)
    Path(deployment.worklist_folder).mkdir(parents=True, exist_ok=True)
    write_config(deployment)
    return deployment
