"""Reconcile a deployment's worklist folder with the database.

The folder holds exactly the listed entries (active status, no image of their study received yet,
inside the active window), one ``portal-<uuid>.wl`` file each, written atomically. Other ``.wl``
files belong to someone else: they are reported, never touched. The work is incremental: each save
bumps the entry's ``revision``, the sync records the revision it wrote, so one changed entry among
10,000 costs one rendered file and a handful of queries. A file of ours that vanished while the
database says it is in the folder was removed by Orthanc (newer worklist plugins delete an entry
when its study arrives): that entry is done, not to be written again.
"""

import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from deployments.models import Deployment
from portal import audit
from portal.files import atomic_write_many, file_lock, fsync_dir
from portal.models import AuditEntry

from .dicom import content_hash, entry_bytes
from .models import WorklistEntry, WorklistState

log = logging.getLogger(__name__)
PREFIX, SUFFIX = "portal-", ".wl"
OUR_FILE = re.compile(r"^portal-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wl$")
# atomic_write_many's temporary names for our files: ".portal-<uuid>.wl.<random>.tmp".
OUR_TEMP = re.compile(r"^\.portal-[0-9a-f-]{36}\.wl\..*\.tmp$")
LOCK_NAME = ".portal-sync.lock"
BATCH = 500
RECORD_SQL = (
    "UPDATE {table} SET synced_revision = %s, needs_sync = (revision <> %s), in_folder = %s, file_hash = %s, "
    "sync_state = %s, sync_error = %s, synced_at = %s WHERE id = %s"
)
Status = WorklistEntry.Status
SyncState = WorklistEntry.SyncState


class SyncError(Exception):
    pass


@dataclass
class SyncResult:
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    done_by_orthanc: int = 0
    orphans_removed: int = 0
    temp_removed: int = 0
    files: int = 0
    foreign: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.files} files in the folder", f"{self.written} written", f"{self.removed} removed"]
        if self.done_by_orthanc:
            parts.append(f"{self.done_by_orthanc} removed by Orthanc (done)")
        if self.orphans_removed:
            parts.append(f"{self.orphans_removed} orphans removed")
        if self.foreign:
            parts.append(f"{len(self.foreign)} foreign .wl files left alone")
        if self.errors:
            parts.append(f"{len(self.errors)} errors")
        return ", ".join(parts) + f" in {self.seconds * 1000:.0f} ms"


def active_window(today=None):
    today = today or timezone.localdate()
    before = getattr(settings, "WORKLISTS_WINDOW_DAYS_BEFORE", 1)
    after = getattr(settings, "WORKLISTS_WINDOW_DAYS_AFTER", 30)
    return today - timedelta(days=before), today + timedelta(days=after)


def active_filter(today=None) -> Q:
    return WorklistEntry.LISTED & Q(scheduled_date__range=active_window(today))


def scan_folder(folder: Path):
    """(our files by uuid string, foreign .wl names, our leftover temporary names)."""
    ours, foreign, temps = {}, [], []
    # listdir, not scandir: no per-name object, and the folder may hold thousands of our files.
    for name in os.listdir(folder):
        # The shape only: the full pattern is checked before a file is taken as an orphan.
        if len(name) == 46 and name.startswith(PREFIX) and name.endswith(SUFFIX):
            ours[name[7:43]] = name
        elif name.startswith(".portal-") and OUR_TEMP.match(name):
            temps.append(name)
        elif name.lower().endswith(SUFFIX) and (folder / name).is_file():
            foreign.append(name)
    return ours, sorted(foreign), temps


def worklist_sync(deployment_id, today=None, full=False) -> SyncResult:
    """Reconcile the folder. ``full`` compares every file with the database (the periodic
    safety net); otherwise that comparison runs only when the counts disagree."""
    deployment = Deployment.objects.get(pk=deployment_id)
    folder = Path(deployment.worklist_folder)
    state = WorklistState.of(deployment)
    if not folder.is_dir():
        message = f"The worklist folder {folder} does not exist: create it on the Orthanc host (owned by Orthanc)."
        WorklistState.objects.filter(pk=state.pk).update(last_sync_error=message[:300], last_sync_at=timezone.now())
        raise SyncError(message)
    started = time.perf_counter()
    # One sync at a time per folder, across processes: it also makes our leftover temporary
    # files safe to delete (no writer of ours is running).
    try:
        with file_lock(folder / LOCK_NAME, mode=0o644):
            result = _reconcile(deployment, folder, today, full)
    except OSError as exc:  # a read-only folder: not even the lock can be taken
        message = f"Cannot write in the worklist folder {folder}: {exc.strerror or exc}."
        WorklistState.objects.filter(pk=state.pk).update(last_sync_error=message[:300], last_sync_at=timezone.now())
        raise SyncError(message) from exc
    result.seconds = time.perf_counter() - started
    WorklistState.objects.filter(pk=state.pk).update(
        last_sync_at=timezone.now(),
        last_sync_error="; ".join(result.errors)[:300],
        last_sync_summary=result.summary()[:200],
        folder_files=result.files,
        foreign_files=result.foreign,
    )
    return result


def _reconcile(deployment, folder, today, full) -> SyncResult:
    result = SyncResult()
    entries = WorklistEntry.objects.filter(deployment=deployment)
    ours, result.foreign, temps = scan_folder(folder)

    for name in temps:  # left by a worker killed in the middle of a write
        (folder / name).unlink(missing_ok=True)
        result.temp_removed += 1

    # Each question in an index-friendly shape. Booleans are compared with __in: SQLite cannot
    # use an index for Django's bare "col" / "NOT col" rendering of a boolean filter.
    start, end = active_window(today)
    in_window = WorklistEntry.LISTED & Q(scheduled_date__range=(start, end))
    # The dirty entries by their own index, the window checked here: given the window in the
    # query, SQLite prefers the date index and reads every active row.
    dirty = list(entries.filter(needs_sync__in=[True]).select_related("patient").order_by())
    to_write = {e.pk: e for e in dirty if e.is_listed and start <= e.scheduled_date <= end}
    idle = [e.pk for e in dirty if e.pk not in to_write and not e.in_folder]
    missing = entries.filter(in_folder__in=[False]).filter(in_window)
    to_write.update((e.pk, e) for e in missing.exclude(pk__in=list(to_write)).select_related("patient").order_by())
    to_write = list(to_write.values())
    writing = {str(e.uuid) for e in to_write}
    in_folder = entries.filter(in_folder__in=[True])
    finished = in_folder.exclude(WorklistEntry.LISTED)  # closed, or its study has arrived
    out_of_window = in_folder.filter(WorklistEntry.LISTED).filter(
        Q(scheduled_date__lt=start) | Q(scheduled_date__gt=end)
    )
    to_remove = [
        *finished.order_by().values_list("id", "uuid", "revision"),
        *out_of_window.order_by().values_list("id", "uuid", "revision"),
    ]
    removing = {str(u) for _, u, _ in to_remove}
    if full or in_folder.count() != len(ours):
        expected = {str(u) for u in in_folder.values_list("uuid", flat=True)}
    else:
        # As many files as the database expects: taken as the same ones (a vanished file and
        # an orphan at the same moment wait for the next full sync, at most a minute).
        expected = set(ours)

    # In the database as in the folder, not written now, but gone: Orthanc removed it.
    vanished = expected - set(ours) - writing - removing
    if vanished:
        result.done_by_orthanc = _mark_done_by_orthanc(entries, vanished)

    _write(folder, to_write, ours, result)
    _remove(folder, entries, to_remove, ours, result)
    # Changes to entries that are neither in the folder nor due there need no file: forget
    # them, so the dirty set stays small. (Evaluated at UPDATE time: an entry saved into the
    # window meanwhile keeps its flag; one that enters the window later is found as missing.)
    if idle:
        for start_at in range(0, len(idle), BATCH):
            entries.filter(pk__in=idle[start_at : start_at + BATCH], in_folder__in=[False]).exclude(in_window).update(
                needs_sync=False
            )

    orphans = set(ours) - expected - writing  # ours, but no entry says it should be there
    lookalikes = {u for u in orphans if not OUR_FILE.match(ours[u])}
    for uuid_str in lookalikes:  # shaped like ours but not a UUID: someone else's, left alone
        result.foreign.append(ours[uuid_str])
    orphans -= lookalikes
    for uuid_str in orphans:
        (folder / ours[uuid_str]).unlink(missing_ok=True)
        result.orphans_removed += 1
    if result.removed or result.orphans_removed or result.temp_removed:
        fsync_dir(folder)
    written = {str(e.uuid) for e in to_write if e.in_folder}
    result.files = len((set(ours) - removing - orphans - lookalikes) | written) + len(result.foreign)
    return result


def _render(entry):
    try:
        data = entry_bytes(entry)
    except Exception as exc:  # a value the encoder refuses must not stop the other entries
        return entry, None, f"cannot render: {exc}"
    return entry, data, None


def _write(folder, to_write, ours, result):
    now = timezone.now()
    rendered = [_render(e) for e in to_write]
    pending = []
    for entry, data, error in rendered:
        if error:
            entry._outcome = (entry.file_hash, error[:300])
            continue
        digest = content_hash(data)
        # Same bytes already on disk (e.g. only the internal notes changed): nothing to write.
        if digest == entry.file_hash and str(entry.uuid) in ours:
            result.unchanged += 1
            entry._outcome = (digest, "")
        else:
            pending.append((entry, data, digest))

    def fail(entry, exc):
        entry._outcome = (entry.file_hash, f"cannot write the file: {exc.strerror or exc}"[:300])

    # One flush of the filesystem for the whole batch instead of an fsync per file: the flush
    # is what a write costs (ext4 here: about 0.6 ms a file with one fsync each).
    try:
        failed = atomic_write_many(folder, {entry.file_name: data for entry, data, _ in pending})
    except OSError as exc:
        failed = {entry.file_name: exc for entry, _, _ in pending}
    for entry, _data, digest in pending:
        if entry.file_name in failed:
            fail(entry, failed[entry.file_name])
        else:
            entry._outcome = (digest, "")
    result.written += sum(1 for e, _, _ in pending if not e._outcome[1])

    pause = float(getattr(settings, "WORKLISTS_SYNC_PAUSE_AFTER_WRITE", 0) or 0)
    if pause and pending:
        time.sleep(pause)  # fault injection for the "worker killed after writing" test only

    changed = []
    for entry, _data, _ in rendered:
        digest, error = entry._outcome
        if error:
            result.errors.append(f"{entry.accession_number}: {error}")
            entry.sync_state, entry.sync_error = SyncState.ERROR, error
        else:
            entry.sync_state, entry.sync_error = SyncState.IN_LIST, ""
            entry.in_folder, entry.file_hash = True, digest
            # The revision this file shows; a save since then keeps the entry pending.
            entry.synced_revision = entry.revision
        changed.append(entry)
    _record(changed, now)


def _record(changed, now):
    """One UPDATE per entry through executemany: Django's bulk_update builds CASE expressions
    that cost seconds for thousands of rows."""
    # The table name is our model's own; every value is a parameter.
    sql = RECORD_SQL.format(table=WorklistEntry._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    rows = [
        (e.synced_revision, e.synced_revision, e.in_folder, e.file_hash, e.sync_state, e.sync_error, at, e.pk)
        for e in changed
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            cursor.executemany(sql, rows[start : start + BATCH])


def _remove(folder, entries, to_remove, ours, result):
    now = timezone.now()
    for _id, uuid, _rev in to_remove:
        name = ours.get(str(uuid))
        if name:
            (folder / name).unlink(missing_ok=True)
            result.removed += 1
    with transaction.atomic():
        for _id, _uuid, revision in to_remove:
            entries.filter(pk=_id).update(
                in_folder=False,
                synced_revision=revision,
                needs_sync=~Q(revision=revision),
                sync_state=SyncState.REMOVED,
                sync_error="",
                synced_at=now,
            )


def _mark_done_by_orthanc(entries, vanished) -> int:
    done = 0
    with transaction.atomic():
        for entry in entries.filter(uuid__in=vanished).select_related("patient"):
            before = audit.snapshot(entry)
            if entry.status in WorklistEntry.ACTIVE:
                entry.status = Status.COMPLETED
            WorklistEntry.objects.filter(pk=entry.pk).update(
                status=entry.status,
                in_folder=False,
                synced_revision=F("revision"),
                needs_sync=False,
                sync_state=SyncState.REMOVED,
                sync_error="",
                synced_at=timezone.now(),
            )
            audit.record(
                None,
                AuditEntry.Action.ACTION,
                entry,
                before,
                audit.snapshot(entry),
                summary="Orthanc removed the worklist file: taken as done",
            )
            done += 1
    return done
