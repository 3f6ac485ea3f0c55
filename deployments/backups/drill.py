"""Restore drill: prove a snapshot restorable in a throwaway Orthanc on free loopback ports.

The snapshot is copied back into a scratch folder; the storage files are checked against the
manifest's sizes; a throwaway Orthanc (configured by the portal's own renderer, never with the
snapshot's configuration, which names the production folders) opens the restored index, and its
counts, study UIDs and the MD5 of the stored files are compared with the manifest.
"""

import json
import logging
import secrets
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from deployments.models import Deployment
from deployments.orthanc import OrthancClient, OrthancError
from deployments.ports import free_ports
from deployments.push import write_files
from deployments.render import render_deployment
from deployments.service import LocalService

from . import alerts
from .manifest import compare, compare_files, live_counts, study_uids
from .models import BackupRun
from .ssh import Session

log = logging.getLogger(__name__)


def md5_limit():
    return getattr(settings, "BACKUP_DRILL_MD5_LIMIT", 2000)


def fetch_snapshot(run, into: Path, exclude=("/config/",)):
    """Copy a snapshot from the target into a local folder; returns rsync's statistics."""
    if run.schedule.is_borg:
        from .borg_run import fetch_archive

        return fetch_archive(run, into, config="/config/" not in exclude)
    with Session(run.schedule) as ssh:
        return ssh.rsync([ssh.remote(f"{run.snapshot}/")], f"{into}/", [f"--exclude={pattern}" for pattern in exclude])


class ThrowawayOrthanc:
    """An Orthanc over a restored storage + index folder, on free loopback ports, nothing else."""

    def __init__(self, scratch: Path, like: Deployment, pg_database=None):
        """``pg_database``: a throwaway database on ``like``'s PostgreSQL server holding the index;
        without it, the index is the SQLite file in ``scratch/index``."""
        http, dicom = free_ports(2)
        self.deployment = Deployment(
            name=f"Restore drill of {like.slug}",
            slug=f"drill-{like.slug}",
            orthanc_url=f"http://127.0.0.1:{http}",
            http_port=http,
            service_username="drill",
            service_password=secrets.token_urlsafe(24),
            config_dir=str(scratch / "drill-config"),
            storage_dir=str(scratch / "storage"),
            index_dir=str(scratch / "index"),
            dicom_port=dicom,
            dicom_server_enabled=False,
            worklists_enabled=False,
            dicomweb_enabled=False,
            storage_compression=like.storage_compression,
            index_backend=Deployment.IndexBackend.SQLITE,
            service_kind=Deployment.ServiceKind.LOCAL,
        )
        if pg_database:
            for field in ("pg_host", "pg_port", "pg_user", "pg_password", "pg_tls"):
                setattr(self.deployment, field, getattr(like, field))
            self.deployment.pg_database = pg_database
            self.deployment.index_backend = Deployment.IndexBackend.POSTGRESQL
        self.service = LocalService.for_deployment(self.deployment)

    def __enter__(self):
        folder = Path(self.deployment.config_dir)
        folder.mkdir(parents=True)
        write_files(folder, render_deployment(self.deployment, plugins_dir=settings.ORTHANC_PLUGINS_DIR))
        self.service.start(wait=60)
        return OrthancClient.for_deployment(self.deployment, timeout=120)

    def __exit__(self, *exc):
        self.service.stop()


def opens_in_orthanc(manifest):
    return manifest["includes"].get("index") and manifest.get("index_backend") in Deployment.IndexBackend.values


def check_restored(scratch: Path, manifest: dict, like: Deployment) -> list[str]:
    problems = compare_files(manifest, scratch / "storage")
    if opens_in_orthanc(manifest) and manifest["index_backend"] == Deployment.IndexBackend.POSTGRESQL:
        from .pgrestore import check_restored_postgresql

        return problems + check_restored_postgresql(scratch, manifest, like)
    if not opens_in_orthanc(manifest):
        return problems  # no SQLite index to open: the storage files were checked against the manifest
    with ThrowawayOrthanc(scratch, like) as client:
        problems += compare(manifest, live_counts(client), study_uids(client))
        problems += verify_md5(client)
    return problems


def verify_md5(client) -> list[str]:
    """Orthanc re-reads each stored file and checks it against the MD5 kept in its index."""
    bad = []
    for instance in client.get_json("/instances")[: md5_limit()]:
        try:
            client.post_json(f"/instances/{instance}/attachments/dicom/verify-md5")
        except OrthancError as exc:
            bad.append(f"instance {instance}: its stored file fails Orthanc's MD5 check ({exc})")
    if len(bad) > 3:
        bad = [*bad[:3], f"… and {len(bad) - 3} more instances fail their MD5 check"]
    return bad


def backup_verify(run_id) -> BackupRun:
    run = BackupRun.objects.select_related("schedule__deployment").get(pk=run_id)
    if not run.restorable:
        raise ValueError(f"run {run.pk} has no snapshot to verify ({run.get_state_display()})")
    # Claim the drill: a second delivery of the same request finds it running and stops.
    if (
        not BackupRun.objects.filter(pk=run.pk)
        .exclude(drill_state=BackupRun.Drill.RUNNING)
        .update(drill_state=BackupRun.Drill.RUNNING, drill_at=timezone.now())
    ):
        log.info("drill of run %s already running: delivery ignored", run.pk)
        return run
    scratch = Path(tempfile.mkdtemp(prefix="portal-drill-"))
    try:
        stats = fetch_snapshot(run, scratch)
        manifest = json.loads((scratch / "manifest.json").read_text())
        problems = check_restored(scratch, manifest, run.deployment)
        if problems:
            message = "; ".join(problems)
        elif opens_in_orthanc(manifest):
            message = (
                f"restorable: {manifest['counts']['studies']} studies and {manifest['counts']['instances']} "
                f"instances match the manifest ({stats['files']} files, {stats['size']} bytes checked)"
            )
        else:
            message = (
                f"storage files match the manifest ({stats['files']} files, {stats['size']} bytes); the snapshot "
                "holds no index to open"
            )
        state = BackupRun.Drill.FAILED if problems else BackupRun.Drill.PASSED
    except Exception as exc:
        log.exception("drill of run %s failed", run.pk)
        state, message = BackupRun.Drill.FAILED, f"the drill could not run: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.drill_state, run.drill_message, run.drill_at = state, message, timezone.now()
    run.save(update_fields=["drill_state", "drill_message", "drill_at"])
    if state == BackupRun.Drill.FAILED:
        alerts.drill_failed(run)
    return run
