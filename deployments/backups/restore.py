"""Restore a deployment from a snapshot: fetch, stop Orthanc, move the current data aside (never
delete it), put the snapshot in place, start, verify against the manifest.

The snapshot is fetched next to the storage folder before Orthanc stops (same filesystem: the
swap is a rename), so Orthanc is down only for the renames and its restart. If Orthanc does not
come up on the restored data, the previous data is moved back and started.
"""

import json
import logging
import shutil
from pathlib import Path

from django.utils import timezone

from deployments.orthanc import OrthancClient
from portal import audit
from portal.models import AuditEntry

from . import pgrestore
from .control import ensure_running, service_of
from .drill import fetch_snapshot
from .manifest import compare, damaged_files, is_index_file, live_counts, md5_of, storage_paths, study_uids
from .models import BackupRun

log = logging.getLogger(__name__)


class RestoreError(Exception):
    pass


def backup_restore(run_id, who=None, source="system", accept_losses=()) -> str:
    """``accept_losses``: storage files the admin, told they are damaged, accepts to restore as they are."""
    run = BackupRun.objects.select_related("schedule__deployment").get(pk=run_id)
    if not run.restorable:
        raise RestoreError(f"run {run.pk} has no snapshot to restore ({run.get_state_display()})")
    deployment = run.deployment
    service = service_of(deployment)
    storage, index = storage_paths(deployment)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    staging = storage.parent / f".restore-{run.snapshot}-{stamp}"
    staging.mkdir(mode=0o700)
    try:
        fetch_snapshot(run, staging)
        manifest = json.loads((staging / "manifest.json").read_text())
        if not manifest["includes"].get("index") or not manifest["includes"].get("storage"):
            raise RestoreError("this snapshot lacks the index or the storage: it cannot restore a deployment alone")
        losses = check_attachments(run, manifest, staging / "storage", accept_losses)
        if deployment.index_backend == deployment.IndexBackend.POSTGRESQL:
            aside = pgrestore.swap(service, deployment, storage, staging, stamp)
        else:
            aside = _swap(service, storage, index, staging, stamp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    client = OrthancClient.for_deployment(deployment, timeout=120)
    problems = compare(manifest, live_counts(client), study_uids(client))
    summary = (
        f"restored snapshot {run.snapshot}: {manifest['counts']['studies']} studies; previous data kept in "
        + ", ".join(str(p) for p in aside)
        + (f"; damaged files accepted as lost: {', '.join(losses)}" if losses else "")
    )
    audit.record(who, AuditEntry.Action.ACTION, run, summary=summary[:200], source=None if who else source)
    if problems:
        raise RestoreError(f"{summary}; but the verification found: {'; '.join(problems)}")
    return summary


def check_attachments(run, manifest, storage: Path, accept_losses=()) -> list[str]:
    """Every storage file of the fetched snapshot against Orthanc's MD5 in the manifest, before
    anything changes. Refuses a damaged snapshot unless each damaged (or missing) file is accepted
    by name; records what it found on the run and returns the accepted losses."""
    checksums = manifest.get("checksums") or {}
    sums = {rel: md5_of(storage / rel) for rel in checksums if (storage / rel).is_file()}
    damaged = damaged_files(checksums, sums)
    # Kept on the run: the restore page names them and offers to accept exactly these.
    BackupRun.objects.filter(pk=run.pk).update(restore_damaged=damaged)
    refused = [rel for rel in damaged if rel not in set(accept_losses)]
    if refused:
        raise RestoreError(
            f"snapshot {run.snapshot} is damaged: {len(refused)} storage files differ from the MD5 Orthanc "
            f"recorded or are missing: {', '.join(refused)}. Nothing was changed. Restore another snapshot, or "
            "accept these losses by name (on the restore page, or restore_backup --accept-loss FILE …)"
        )
    return damaged


def _swap(service, storage: Path, index: Path, staging: Path, stamp) -> list[Path]:
    """Stop, move the live folders aside, move the snapshot in, start. Rolls back on failure."""
    moves = []  # (from, to) done so far, undone in reverse on failure

    def move(src, dst):
        src.rename(dst)
        moves.append((src, dst))

    aside = []
    service.stop()
    try:
        storage_aside = storage.with_name(f"{storage.name}.before-restore-{stamp}")
        if storage.exists():
            move(storage, storage_aside)
            aside.append(storage_aside)
        move(staging / "storage", storage)
        if index == storage:
            for item in sorted((staging / "index").iterdir()):
                move(item, storage / item.name)
        else:
            index_aside = index.with_name(f"{index.name}.before-restore-{stamp}")
            if index.exists():
                move(index, index_aside)
                aside.append(index_aside)
            move(staging / "index", index)
        if not any(is_index_file(p.name) for p in index.iterdir()):
            raise RestoreError("the snapshot holds no index file")
        ensure_running(service, attempts=1, timeout=60)
    except Exception:
        log.exception("restore failed: moving the previous data back")
        service.stop()
        for src, dst in reversed(moves):
            if src.exists():  # a restored folder in the way: keep it aside too, never delete
                src.rename(src.with_name(f"{src.name}.failed-restore-{stamp}"))
            dst.rename(src)
        ensure_running(service)
        raise
    return aside
