"""backup_run: one snapshot of a deployment on its schedule's target, recorded first.

Layout on the target: <remote folder>/<slug>/<UTC timestamp>/{storage,index,config,manifest.json}.
The key is confined to <remote folder>/<slug> by rrsync, so every step is an rsync with paths
relative to that folder: there is no rename. A snapshot is written under its final name and its
manifest.json last, as the mark of completion: a folder without one is unfinished, never taken for
a snapshot, and removed (by the run itself, its guardian, or the next run). Unchanged storage files
are hard links to the previous snapshot (rsync --link-dest): they cost no transfer and no space.
"""

import bisect
import json
import logging
import math
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.orthanc import OrthancClient
from deployments.render import SECRET_FILES

from . import alerts, pings, retention
from .control import WindowError, run_stopped, service_of
from .guardian import Guard
from .manifest import (
    applied_revision,
    attachment_checksums,
    damaged_files,
    index_inside_storage,
    is_index_file,
    orthanc_facts,
    storage_files,
    storage_paths,
)
from .manifest import last_change as _last_change
from .models import BackupRun, BackupSchedule
from .pgdump import pg_dump
from .ssh import Session, SshError
from .validators import is_snapshot_name

log = logging.getLogger(__name__)
# Left by runs of portal versions that renamed a finished snapshot: removed like any unfinished one.
PARTIAL = ".partial"
VERIFY_STREAMS = 2  # rsync --checksum processes reading a snapshot back on the target at once
# Each run checks the files it sent and reads back, in turn, enough of the hard-linked ones that
# every one is read again within this many runs (besides the daily sample and drills of rotation.py).
VERIFY_CYCLE_RUNS = 28
# rsync's --log-file line of each item: its change code, the whole-file checksum of what it sent
# (MD5 with --checksum-choice=md5; 32 spaces when it sent no data) and its name.
SENT_FORMAT = "sent %i %C %n"
SENT_RE = re.compile(r"\] sent ([<>]f\S{9}) ([0-9a-f]{32}| {32}) (.+)$")


def verify_sample():
    """The fewest hard-linked files a run reads back (when it sent fewer than all)."""
    return getattr(settings, "BACKUP_VERIFY_SAMPLE", 64)


def stop_window_seconds():
    return getattr(settings, "BACKUP_STOP_WINDOW", 60)


def backup_start(schedule_id, trigger=BackupRun.Trigger.MANUAL, task_id=None):
    """Record a pending run; None when the schedule already has one queued or running (or this
    broker delivery already made its run)."""
    try:
        with transaction.atomic():
            return BackupRun.objects.create(schedule_id=schedule_id, trigger=trigger, task_id=task_id)
    except IntegrityError:
        return None


def backup_run(run_id):
    """Claim the run, make the snapshot, record the outcome. Returns the run, or None when the row
    was already claimed (a redelivered message)."""
    now = timezone.now()
    if not BackupRun.objects.filter(pk=run_id, state=BackupRun.State.PENDING).update(
        state=BackupRun.State.RUNNING, started_at=now
    ):
        log.info("backup run %s already claimed or finished: delivery ignored", run_id)
        return None
    run = BackupRun.objects.select_related("schedule__deployment").get(pk=run_id)
    pings.run_started(run)
    if run.schedule.is_borg:
        from .borg_run import BorgSnapshotter as job_class  # the target kind picks the snapshotter
    else:
        job_class = Snapshotter
    job = job_class(run)
    try:
        job.execute()
    except Exception as exc:
        log.exception("backup run %s failed", run_id)
        job.fail(exc)
        alerts.run_failed(run)
    else:
        job.succeed()
    pings.run_finished(run)
    return run


class Snapshotter:
    def __init__(self, run):
        self.run = run
        self.schedule: BackupSchedule = run.schedule
        self.deployment = self.schedule.deployment
        self.t0 = time.monotonic()
        self.lines = []
        self.service = None
        self.wire = 0
        self.index_files = {}
        self.checksums = {}  # storage path → MD5 as Orthanc's index records it
        self.verified = False  # every storage file of the new snapshot checked and matching
        self.index_mtimes = {}  # index file → its mtime (ns), as rsync -a gave it to the target's copy
        self.sent = set()  # storage paths whose data this run's rsync sent (its --log-file)
        self.sent_md5 = {}  # storage path → MD5 of the data rsync sent, which the target checked on writing
        self.sent_known = True  # False when that list did not account for every file rsync sent
        self.verify_record = {}  # what the run read back, kept in the manifest: the next run goes on from it
        self.previous_manifest = None
        self.guard = None

    def note(self, message):
        self.lines.append(f"{time.monotonic() - self.t0:7.2f}s {message}")
        log.info("backup %s: %s", self.run.pk, message)
        if self.guard is not None:  # should this process die, its guardian reports the log tail
            self.guard.log(self.lines[-1])

    # ------------------------------------------------------------------ outcome

    def fail(self, exc):
        run = self.run
        run.state = BackupRun.State.FAILED
        run.error = str(exc) or type(exc).__name__
        run.downtime = getattr(exc, "downtime", run.downtime)
        tail = "\n".join(self.lines[-40:])
        if self.service is not None:
            tail += "\n--- Orthanc log ---\n" + self.service.log_tail(20)
        run.log_tail = tail
        self._finish()

    def succeed(self):
        self.run.state = BackupRun.State.SUCCEEDED
        self._finish()

    def _finish(self):
        run = self.run
        run.finished_at = timezone.now()
        run.duration = time.monotonic() - self.t0
        run.bytes_transferred = self.wire
        if run.state == BackupRun.State.SUCCEEDED:
            run.log_tail = "\n".join(self.lines[-40:])
        run.save()

    # ------------------------------------------------------------------ the work

    def execute(self):
        s, d = self.schedule, self.deployment
        sqlite = s.include_index and d.index_backend == d.IndexBackend.SQLITE
        if sqlite:
            self.service = service_of(d)  # before anything is copied: no stop control, no run
        guess = (
            BackupRun.objects.filter(schedule=s, state=BackupRun.State.SUCCEEDED, pruned_at__isnull=True)
            .exclude(snapshot="")
            .values_list("snapshot", flat=True)
            .first()
        )
        with (
            Session(s) as ssh,
            tempfile.TemporaryDirectory(prefix="portal-stage-") as tmp,
            self._guardian(ssh, tmp),
        ):
            self.note(f"connected to {s.target_label}")
            stage = self._stage(Path(tmp))
            name = None
            try:
                if guess:
                    # The database names the previous snapshot: the bulk copy links to it while the
                    # target is listed (and that snapshot's manifest read) in a second, parallel call.
                    name = new_snapshot_name(guess)
                    self.guard.partial(name)
                    with ThreadPoolExecutor(1) as pool:
                        looking = pool.submit(self._look, ssh, guess, name)
                        bulk = self._bulk(ssh, stage, guess, name)
                        snapshots, previous = looking.result()
                    if name <= previous:
                        raise SshError(f"the target holds a snapshot {previous} newer than this one: check the clocks")
                else:
                    snapshots, previous = self._look(ssh, None)
                    name = new_snapshot_name(previous)
                    self.guard.partial(name)
                    bulk = self._bulk(ssh, stage, previous, name)
                self.run.previous, self.run.snapshot = previous, ""
                doomed = self._doomed([*snapshots, name])
                manifest = self._copy(ssh, stage, previous, name, sqlite, bulk)
                manifest["damaged_before"] = self._verify(ssh, stage, name, previous)
                manifest["verified"], manifest["verify"] = self.verified, self.verify_record
                manifest["index_mtimes"] = self.index_mtimes
                doomed = self._keep_verified(doomed, previous)
                self._write_manifest(ssh, name, manifest)
            except BaseException:
                if name:
                    self._remove_unfinished(ssh, name)
                raise
            self.note(f"snapshot {name} complete")
            self.run.snapshot = name
            # rrsync runs no df: the free space is unknown here; a full disk fails rsync ("No space left").
            self.run.target_free_bytes = None
            self.run.save()
            error = None
            if doomed:
                try:
                    ssh.delete(doomed)
                except SshError as exc:
                    error = exc
            self._pruned(doomed, error)

    def _guardian(self, ssh, stage):
        """A detached process that restarts Orthanc and cleans up if this run's process dies."""
        self.guard = Guard(self.run, ssh_dir=ssh.dir, master_pid=ssh.master.pid, temp_dirs=[stage])
        return self.guard

    def _look(self, ssh, guess, ours=None):
        """List the snapshots on the target (a folder counts once its manifest.json is there),
        remove the unfinished ones other runs left, and read the manifest of the newest if the
        database took it for the newest too."""
        finished, unfinished = ssh.snapshot_folders()
        stale = sorted(
            n
            for n in unfinished
            if n != ours and (is_snapshot_name(n) or (n.endswith(PARTIAL) and is_snapshot_name(n[: -len(PARTIAL)])))
        )
        if stale:
            self.note(f"removing {', '.join(stale)} left unfinished by an interrupted run")
            ssh.delete(stale, timeout=600)
        snapshots = sorted(n for n in finished if is_snapshot_name(n))
        previous = snapshots[-1] if snapshots else ""
        if previous and previous == guess:
            try:
                self.previous_manifest = json.loads(ssh.read(f"{previous}/manifest.json") or b"")
            except ValueError:
                self.previous_manifest = None
        return snapshots, previous

    def _remove_unfinished(self, ssh, name):
        try:
            if ssh.remove_unfinished([name]):
                self.note(f"removed the unfinished {name}")
        except Exception as exc:  # the target may be gone: the next run removes it
            self.note(f"could not remove the unfinished {name} ({exc}); the next run will")

    def _write_manifest(self, ssh, name, manifest):
        """The manifest last: its arrival (rsync renames it into place whole) marks the snapshot finished."""
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        with tempfile.TemporaryDirectory(prefix="portal-manifest-") as tmp:
            path = Path(tmp) / "manifest.json"
            path.write_bytes(data)
            stats = ssh.rsync([str(path)], ssh.remote(f"{name}/"), timeout=900)
        self.wire += stats["wire_bytes"]

    def _rsync_stage(self, ssh, stage, previous, name, excludes, extra=(), timeout=None):
        """One rsync of the staged tree (symlinks to the live folders, followed with -L) into the
        snapshot's folder, unchanged files hard-linked to the previous snapshot (a leading / is the
        confined folder for rrsync)."""
        link = [f"--link-dest=/{previous}"] if previous else []
        with sent_log(stage) as (logged, read):
            stats = ssh.rsync(
                [f"{stage}/"], ssh.remote(f"{name}/"), ["-L", *excludes, *link, *extra, *logged], timeout=timeout
            )
            self._record_sent(read(), stats)
        return stats

    def _record_sent(self, sent, stats):
        """Which storage files an rsync sent, with the MD5 of what it sent: what the run must check."""
        if len(sent) != stats["transferred_files"]:
            self.sent_known = False
            self.note(
                f"rsync listed {len(sent)} files sent but counted {stats['transferred_files']}: "
                "every storage file will be read back"
            )
        for name, md5 in sent:  # in order: a later send of a file (the stopped copy's) is what the target holds
            if name.startswith("storage/"):
                rel = name.removeprefix("storage/")
                self.sent.add(rel)
                self.sent_md5[rel] = md5

    def _to_verify(self):
        """The storage files this run checks: each one it sent, and a rotating sample of those
        hard-linked to the previous snapshot (checked by the run that sent them), going on where the
        previous snapshot's sample stopped. All of them when which files were sent is not known."""
        everything = sorted(self.checksums)
        if not self.sent_known:
            self.verify_record = {"all": len(everything)}
            return everything, f"all {len(everything)}"
        sent = [rel for rel in everything if rel in self.sent]
        linked = [rel for rel in everything if rel not in self.sent]
        count = min(len(linked), max(verify_sample(), math.ceil(len(linked) / VERIFY_CYCLE_RUNS)))
        after = ((self.previous_manifest or {}).get("verify") or {}).get("next_after") or ""
        start = bisect.bisect_right(linked, after)
        sample = [linked[(start + i) % len(linked)] for i in range(count)]
        self.verify_record = {
            "sent": len(sent),
            "linked": len(linked),
            "sampled": sample,
            "next_after": sample[-1] if sample else after,
        }
        return sent + sample, f"the {len(sent)} sent and {len(sample)} of the {len(linked)} hard-linked in turn"

    def _stage(self, stage: Path) -> Path:
        """Symlinks to the live folders: one rsync (-L follows them) copies them all."""
        s, d = self.schedule, self.deployment
        if s.include_config:
            (stage / "config").symlink_to(Path(d.config_dir).resolve(), target_is_directory=True)
        if s.include_storage:
            (stage / "storage").symlink_to(storage_paths(d)[0], target_is_directory=True)
        return stage

    def _excludes(self):
        inside = index_inside_storage(self.deployment)
        # The files holding passwords stay off the plain-file target: the portal keeps them encrypted
        # and renders them again (push_config), so a snapshot never holds a password in clear.
        secrets = [f"--exclude=/config/{name}" for name in sorted(SECRET_FILES)]
        return [*secrets, *(["--exclude=/storage/index", "--exclude=/storage/index-*"] if inside else [])]

    def _bulk(self, ssh, stage, previous, name):
        """The copy while Orthanc runs: everything but the index, unchanged files hard-linked."""
        bulk = self._rsync_stage(ssh, stage, previous, name, self._excludes())
        self.wire += bulk["wire_bytes"]
        self.note(f"bulk copy: {bulk['transferred_files']} files sent, {bulk['wire_bytes']} bytes on the wire")
        return bulk

    def _copy(self, ssh, stage, previous, name, sqlite, bulk):
        s, d = self.schedule, self.deployment
        storage, index = storage_paths(d)
        skip_index = index_inside_storage(d)
        excludes = self._excludes()
        files, facts = self._unchanged_index(ssh, previous, name, storage, skip_index, bulk) if sqlite else (None, {})
        if not facts and (s.include_index or s.include_storage):
            # Right before the stop (or the dump): the counts and study UIDs of that moment.
            facts = orthanc_facts(d)
            self.note("manifest facts read from Orthanc")
        if sqlite and files is None:

            def window(deadline):
                return self._stopped_copy(ssh, stage, previous, name, storage, index, excludes, deadline)

            self.note("stopping Orthanc for the index copy")
            try:
                files, self.run.downtime = run_stopped(self.service, window, stop_window_seconds(), guard=self.guard)
            except WindowError as exc:
                self.run.downtime = exc.downtime
                raise
            self.note(f"Orthanc answers again after {self.run.downtime:.2f} s of downtime")
        elif not sqlite:
            self._count(bulk)
            if s.include_index:
                self._pg_dump(ssh, name)
            files = storage_files(storage, skip_index) if s.include_storage else {}
        self.run.patients = facts.get("counts", {}).get("patients")
        self.run.studies = facts.get("counts", {}).get("studies")
        self.run.instances = facts.get("counts", {}).get("instances")
        self.run.orthanc_version = facts.get("orthanc_version", "")
        self.run.config_revision = facts.get("config_revision")
        return {
            **facts,
            "snapshot_started": self.run.started_at.isoformat(),
            "index_backend": d.index_backend,
            "includes": {"index": s.include_index, "storage": s.include_storage, "config": s.include_config},
            "storage": files,
            "index_files": self.index_files,
            "checksums": self.checksums,
        }

    def _unchanged_index(self, ssh, previous, name, storage, skip_index, bulk):
        """Nothing changed since the previous snapshot (same last change in Orthanc before and after
        listing the same storage files): that snapshot's index, copied while Orthanc was stopped,
        is still exact. Hard-link it rather than stop Orthanc again. Returns (storage files, facts),
        or (None, {}) when Orthanc must be stopped."""
        before = self.previous_manifest or {}
        if not (
            self.schedule.include_storage
            and before.get("includes", {}).get("index")
            and before.get("index_backend") == self.deployment.index_backend
            and before.get("index_files")
            and before.get("last_change") is not None
            and set(before.get("index_mtimes") or {}) == set(before["index_files"])
        ):
            return None, {}
        seq = last_change_of(self.deployment)
        if seq != before["last_change"]:
            return None, {}
        files = storage_files(storage, skip_index)
        if files != before.get("storage") or last_change_of(self.deployment) != seq:
            return None, {}
        if not self._link_index(ssh, previous, name, before):
            return None, {}
        self.index_files = before["index_files"]
        self.index_mtimes = before["index_mtimes"]
        self.checksums = before.get("checksums", {})  # the same index: the same attachments
        self.run.downtime = 0.0
        self._count(bulk)
        self.run.files += len(self.index_files)
        self.run.snapshot_size += sum(self.index_files.values())
        self.note(f"no change in Orthanc since {previous} (change {seq}): index linked, no stop")
        facts = {k: before[k] for k in ("deployment", "orthanc_version", "counts", "study_uids") if k in before}
        return files, {**facts, "last_change": seq, "config_revision": applied_revision(self.deployment)}

    def _link_index(self, ssh, previous, name, before):
        """Hard-link the previous snapshot's index files into this one. rsync copies nothing from
        one folder of the target to another, but --link-dest links a file whose size and time match:
        so empty stand-ins of that size and time are "sent", and the target links the real files
        instead. A stand-in actually sent (no such file there any more) would be an index of zeros:
        that index is removed at once and Orthanc is stopped for a fresh one. Returns whether every
        file was linked."""
        with tempfile.TemporaryDirectory(prefix="portal-index-") as tmp:
            folder = Path(tmp) / "index"
            folder.mkdir()
            for n, size in before["index_files"].items():
                with open(folder / n, "wb") as f:
                    f.truncate(size)
                os.utime(folder / n, ns=(before["index_mtimes"][n], before["index_mtimes"][n]))
            # Size and time only: modes, owners and groups of the stand-ins are not the originals'.
            stats = ssh.rsync(
                [f"{tmp}/"],
                ssh.remote(f"{name}/"),
                ["--no-perms", "--no-owner", "--no-group", f"--link-dest=/{previous}"],
            )
        self.wire += stats["wire_bytes"]
        if stats["transferred_files"]:
            ssh.delete(["index"], under=name)
            self.note(f"the index of {previous} could not be linked ({stats['transferred_files']} files differ)")
            return False
        return True

    def _stopped_copy(self, ssh, stage, previous, name, storage, index, excludes, deadline):
        """Inside the stop window: one rsync of the final storage delta and the index files."""
        names = sorted(n for n in os.listdir(index) if is_index_file(n))
        if not names:
            raise RuntimeError(f"no SQLite index file in {index}")
        (stage / "index").mkdir()
        for n in names:
            (stage / "index" / n).symlink_to(index / n)
        found = {n: (index / n).stat() for n in names}
        self.index_files = {n: st.st_size for n, st in found.items()}
        self.index_mtimes = {n: st.st_mtime_ns for n, st in found.items()}  # rsync -a gives the copies these
        self.checksums = attachment_checksums(index / "index")  # Orthanc is stopped: the index is still
        stats = self._rsync_stage(
            ssh, stage, previous, name, excludes, ["--delete"], timeout=max(deadline - time.monotonic(), 1)
        )
        self.wire += stats["wire_bytes"]
        self._count(stats)
        self.note(f"final delta and index: {stats['transferred_files']} files sent, {stats['wire_bytes']} bytes")
        return storage_files(storage, index == storage) if self.schedule.include_storage else {}

    def _verify(self, ssh, stage, name, previous):
        """Check against Orthanc's MD5 the storage files this run sent and a rotating sample of the
        hard-linked ones, read back on the target (_to_verify).
        A file sent with another MD5 was read so from Orthanc's storage: the run fails, naming it.
        A mismatch read back is a file hard-linked from a damaged older snapshot (or a bad write):
        it is sent again (a new file, the old one left as it is) and named. Returns the names;
        raises if the second reading still differs."""
        if not self.checksums or not self.schedule.include_storage:
            return []
        names, scope = self._to_verify()
        # A file this run sent needs no reading back: rsync's MD5 of the data it read and sent (%C,
        # SENT_FORMAT) is checked by the target's rsync against the data it wrote, before the file
        # takes its name (a mismatch is sent again, then fails the copy). That sum equal to Orthanc's
        # proves the file in the snapshot holds Orthanc's bytes, as a read-back would: one made right
        # after the write reads the target's page cache, not its disk. Later damage on the disk is
        # what the rotating sample below, the daily sample and the drills read back for. Should
        # rsync's list not account for every file it sent, all of them are read back instead.
        sent_md5 = self.sent_md5 if self.sent_known else {}
        sums = {rel: sent_md5[rel] for rel in names if sent_md5.get(rel)}
        read = [rel for rel in names if rel not in sums]
        sums.update(self._remote_md5(ssh, name, read) if read else {})
        damaged = damaged_files({rel: self.checksums[rel] for rel in names}, sums)
        scope += f"; {len(read)} read back on the target, the others by rsync's MD5 of what it sent"
        at_source = [rel for rel in damaged if rel not in read]
        if at_source:  # sending them again would send the same bytes
            raise RuntimeError(
                "storage files in Orthanc's own storage differ from the MD5 Orthanc recorded for them "
                f"(rsync read and sent other bytes): {', '.join(at_source)}"
            )
        if not damaged:
            self.note(f"verified {len(names)} storage files against Orthanc's MD5 ({scope})")
            self.verified = True
            return []
        where = f"snapshot {previous}" if previous else "the target"
        self.note(f"DAMAGED on the target in {where}, sent again: {', '.join(damaged)}")
        with tempfile.NamedTemporaryFile("w", prefix="portal-damaged-") as listing:
            listing.write("".join(f"{rel}\n" for rel in damaged))
            listing.flush()
            # -I: same size and time as the damaged copy, so rsync must not trust its quick check.
            stats = ssh.rsync(
                [f"{stage}/storage/"], ssh.remote(f"{name}/storage/"), ["-L", "-I", f"--files-from={listing.name}"]
            )
        self.wire += stats["wire_bytes"]
        still = damaged_files({r: self.checksums[r] for r in damaged}, self._remote_md5(ssh, name, damaged))
        if still:
            raise SshError(
                f"storage files still differ from Orthanc's MD5 after sending them again: {', '.join(still)}"
            )
        self.note(f"verified {len(names)} storage files against Orthanc's MD5 ({scope}) after the repair")
        self.verified = True
        alerts.send(
            f"Backup found DAMAGED files on the target: {self.schedule}",
            f"These storage files of {where} no longer match the MD5 Orthanc recorded for them; the new snapshot "
            f"holds them again, intact:\n\n"
            + "\n".join(damaged)
            + "\n\nOlder snapshots still hold the damaged copies.",
            self.schedule,
        )
        return damaged

    def _remote_md5(self, ssh, name, names):
        """Orthanc's storage files in the new snapshot, read back on the target in parallel streams
        (rsync --checksum computes each file's MD5 there and sends only the sums)."""
        names = sorted(names)
        parts = [names[i::VERIFY_STREAMS] for i in range(VERIFY_STREAMS)]

        def sums(part):
            # A missing file is simply not in the sums: damaged_files names it.
            return ssh.md5s(f"{name}/storage", part)

        with ThreadPoolExecutor(VERIFY_STREAMS) as pool:
            return {k: v for found in pool.map(sums, [p for p in parts if p]) for k, v in found.items()}

    def _count(self, stats):
        self.run.files = (self.run.files or 0) + stats["files"]
        self.run.snapshot_size = (self.run.snapshot_size or 0) + stats["size"]

    def _pg_dump(self, ssh, name):
        with tempfile.TemporaryDirectory(prefix="portal-pgdump-") as tmp:
            stats = ssh.rsync([pg_dump(self.deployment, Path(tmp))], ssh.remote(f"{name}/"))
        self.wire += stats["wire_bytes"]
        self._count(stats)

    def _doomed(self, snapshots):
        s = self.schedule
        keep = retention.keep(
            snapshots, s.keep_daily, s.keep_weekly, s.keep_monthly, last=s.keep_last, hourly=s.keep_hourly
        )
        return [n for n in snapshots if n not in keep and is_snapshot_name(n)]

    def _keep_verified(self, doomed, previous):
        """Retention never deletes the newest verified snapshot: while this one is not verified (no
        storage, or no checksums to verify against), the previous one stays if it was."""
        if self.verified or not (self.previous_manifest or {}).get("verified"):
            return doomed
        if previous in doomed:
            self.note(f"keeping {previous}, the newest verified snapshot, whatever retention says")
        return [n for n in doomed if n != previous]

    def _pruned(self, doomed, error):
        if error is not None:  # the new snapshot is safe; the next run tries the pruning again
            self.note(f"retention could not remove {', '.join(doomed)}: {error}")
            return
        if doomed:
            self.note(f"retention removed {', '.join(doomed)}")
            BackupRun.objects.filter(schedule=self.schedule, snapshot__in=doomed, pruned_at__isnull=True).update(
                pruned_at=timezone.now()
            )
        self.run.pruned = doomed


@contextmanager
def sent_log(stage):
    """rsync options that make it list, in a local file, each item it sends with the MD5 of the
    data sent; yields them and a function that reads the regular files it sent (paths relative to
    the copy's root, with that MD5). The file is in the stage (which the guardian removes should the
    run die), left out of the copy."""
    with tempfile.NamedTemporaryFile("r", dir=stage, prefix=".portal-sent-", suffix=".log") as log_file:
        yield (
            [
                # MD5 as the transfer's own whole-file checksum: Orthanc's hash, so %C can be compared with it.
                "--checksum-choice=md5",
                f"--exclude=/{Path(log_file.name).name}",
                f"--log-file={log_file.name}",
                f"--log-file-format={SENT_FORMAT}",
            ],
            lambda: parse_sent(Path(log_file.name).read_text(errors="replace")),
        )


def parse_sent(text) -> list[tuple[str, str]]:
    """(name, MD5) of each regular file a --log-file (SENT_FORMAT) says rsync sent, in order: change
    code '<f' (sent; a local copy writes '>f'), the other lines (links, directories, summaries) left
    out. The MD5 is "" when rsync printed none."""
    sent = []
    for line in text.splitlines():
        if match := SENT_RE.search(line):
            sent.append((match[3], match[2].strip()))
    return sent


def last_change_of(deployment):
    client = OrthancClient.for_deployment(deployment)
    try:
        return _last_change(client)
    finally:
        client.session.close()


def new_snapshot_name(previous=""):
    now = datetime.now(UTC).replace(microsecond=0)
    if previous:
        last = datetime.strptime(previous, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        now = max(now, last + timedelta(seconds=1))  # names stay unique and ordered
    return now.strftime("%Y%m%dT%H%M%SZ")
