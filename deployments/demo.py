"""The local demo deployment of ``make run``: an Orthanc from the Debian package, configured
by the portal, with every file under var/ (no system paths, nothing owned by root needed)."""

import secrets
from pathlib import Path

from django.conf import settings
from django.db import transaction

from .models import Deployment, Modality
from .ports import free_port, free_ports
from .push import revision_create, write_files
from .render import render_for

DEMO_SLUG = "demo"


def write_config(deployment):
    """Write the configuration rendered from the database, without the push's checks and reload
    (for an Orthanc that is started afterwards: the benchmarks')."""
    folder = Path(deployment.config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_files(folder, render_for(deployment))


def local_deployment(base, *, name, slug, dicom_aet="ORTHANC", http_port=None, dicom_port=None, **fields):
    """An unsaved deployment whose Orthanc runs locally with every folder under ``base``
    (the demo of ``make run``, the tests' Orthancs, the benchmarks')."""
    base = Path(base).resolve()
    spare_http, spare_dicom = free_ports(2)
    http_port = http_port or (spare_http if dicom_port != spare_http else spare_dicom)
    dicom_port = dicom_port or (spare_dicom if http_port != spare_dicom else spare_http)
    return Deployment(
        name=name,
        slug=slug,
        orthanc_url=f"http://127.0.0.1:{http_port}",
        http_port=http_port,
        service_username="portal",
        service_password=secrets.token_urlsafe(24),
        config_dir=str(base / "config"),
        storage_dir=str(base / "storage"),
        worklists_dir=str(base / "worklists"),
        dicom_aet=dicom_aet,
        dicom_port=dicom_port,
        service_kind=Deployment.ServiceKind.LOCAL,
        **fields,
    )


def make_folders(deployment):
    for folder in (deployment.config_dir, deployment.storage_dir, deployment.worklist_folder):
        Path(folder).mkdir(parents=True, exist_ok=True)


@transaction.atomic
def ensure_demo_deployment(base=None):
    deployment = Deployment.objects.filter(slug=DEMO_SLUG).first()
    if deployment is None:
        deployment = local_deployment(
            base or Path(settings.VAR_DIR) / "demo",
            name="Demo clinic",
            slug=DEMO_SLUG,
            dicom_aet="DEMO",
            http_port=free_port(8042),
            dicom_port=free_port(4242),
        )
        deployment.save()
        # One ultrasound machine, so the front desk can schedule at once; `findscu -aet US_DEMO`
        # from this machine reads its worklist.
        Modality.objects.create(
            deployment=deployment,
            name="US_DEMO",
            aet="US_DEMO",
            host="127.0.0.1",
            port=104,
            charset=Modality.Charset.UTF8,
            station_name="ROOM1",
        )
    make_folders(deployment)
    write_config(deployment)
    if not deployment.revisions.exists():
        # Recorded like any other push (the worker applies it once Orthanc runs): the history
        # and the preview then start from it.
        revision_create(deployment, reason="initial configuration of the demo")
    return deployment


def ensure_demo_backup(deployment, base=None):
    """The demo's backups: a local-disk target under var/ (an encrypted Borg repository), hourly,
    so a newcomer sees a first backup and a drill within minutes of ``make run``."""
    from .backups.borg import setup_local_target
    from .backups.models import BackupSchedule

    folder = (base or Path(settings.VAR_DIR) / "demo") / "backup-disk"
    schedule, _ = BackupSchedule.objects.get_or_create(
        deployment=deployment,
        name="Demo: local disk under var/",
        defaults={
            "kind": BackupSchedule.Kind.LOCAL,
            "remote_folder": str(folder),
            "preset": BackupSchedule.Preset.HOURLY,
            **dict(zip(("minute", "hour", "day_of_week", "day_of_month", "month_of_year"),
                       BackupSchedule.PRESET_CRON[BackupSchedule.Preset.HOURLY], strict=True)),
        },
    )  # fmt: skip
    setup_local_target(schedule)  # var/ is no mount point: the marker tells that the folder is the target
    return schedule


def demo_first_backup(schedule_id):
    """The first backup of the demo and its restore drill (run by runportal in the background)."""
    from django.db import connection

    from .backups.drill import backup_verify
    from .backups.models import BackupRun
    from .backups.run import backup_run, backup_start

    try:
        run = backup_start(schedule_id, BackupRun.Trigger.MANUAL)
        run = run and backup_run(run.pk)
        if run and run.state == BackupRun.State.SUCCEEDED:
            backup_verify(run.pk)
    finally:
        connection.close()
