"""Verification across history, once a day per schedule (beat, 05:00):

- a rotating restore drill: the least recently drilled snapshots (never drilled first), as many a
  day as keep every snapshot drilled at least once every DRILL_CYCLE_DAYS;
- a sample of attachments of every kept snapshot re-read on the target (rsync --checksum computes
  their MD5 there, through rrsync) and compared with the MD5 Orthanc recorded (the manifest's
  ``checksums``): damage in an old snapshot is found the day after, not on the day it is needed.

Each snapshot's result is kept on its run (drill_*, sample_*) and shown on the dashboard.
"""

import json
import logging
import math
import random

from django.conf import settings
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import alerts
from .drill import backup_verify
from .manifest import damaged_files
from .models import BackupRun
from .ssh import Session, SshError

log = logging.getLogger(__name__)
DRILL_CYCLE_DAYS = 28  # every snapshot drilled within four weeks: "at least once a month"


def sample_size():
    return getattr(settings, "BACKUP_SAMPLE_FILES", 64)


def kept(schedule):
    return (
        BackupRun.objects.filter(schedule=schedule, state=BackupRun.State.SUCCEEDED, pruned_at__isnull=True)
        .exclude(snapshot="")
        .exclude(drill_state=BackupRun.Drill.RUNNING)
    )


def drills_due(schedule) -> list[BackupRun]:
    """Today's drills: the snapshots verified least recently, enough of them that every snapshot
    kept is drilled within DRILL_CYCLE_DAYS. A snapshot never drilled counts from its run, which
    checked against Orthanc's MD5 every file it sent (and read back a sample of those it linked); so an hourly snapshot pruned within a day is
    not drilled, and one kept a month is."""
    runs = list(kept(schedule).order_by(Coalesce("drill_at", "created_at"), "created_at", "id"))
    if not runs:
        return []
    # A day less than the cycle: a drill due on the 28th day is never put off to the 29th.
    return runs[: math.ceil(len(runs) / (DRILL_CYCLE_DAYS - 1))]


def sample_check(schedule, size=None, rng=None) -> dict[int, list[str]]:
    """Re-read a sample of each kept snapshot's attachments on the target; records the result on
    each run and returns {run id: damaged files}. Snapshots whose manifest has no checksums (a
    PostgreSQL index, or made before checksums) are passed over and say so."""
    runs = list(kept(schedule).order_by("created_at", "id"))
    if not runs or getattr(schedule, "is_borg", False):  # a Borg archive is checked by its drill
        return {}
    rng = rng or random.SystemRandom()
    per_snapshot = max(1, (size or sample_size()) // len(runs))
    found = {}
    with Session(schedule) as ssh:
        for run in runs:
            now = timezone.now()
            try:
                raw = ssh.read(f"{run.snapshot}/manifest.json")
                if raw is None:
                    raise SshError(f"{run.snapshot}/manifest.json is not on the target")
                manifest = json.loads(raw)
                checksums = manifest.get("checksums") or {}
                if not checksums:
                    state, message, damaged = BackupRun.Drill.NONE, "no checksums in this snapshot's manifest", []
                else:
                    names = sorted(checksums)
                    picked = sorted(rng.sample(names, min(per_snapshot, len(names))))
                    # A missing file is absent from the sums: named below as damaged.
                    sums = ssh.md5s(f"{run.snapshot}/storage", picked)
                    damaged = damaged_files({r: checksums[r] for r in picked}, sums)
                    if damaged:
                        state = BackupRun.Drill.FAILED
                        message = f"{len(damaged)} of {len(picked)} sampled files DAMAGED: {', '.join(damaged)}"[:2000]
                    else:
                        state, message = BackupRun.Drill.PASSED, f"{len(picked)} sampled files match their MD5"
            except Exception as exc:  # the target unreachable: said on every run, the next day tries again
                log.warning("sample check of %s failed: %s", run, exc)
                state, message, damaged = BackupRun.Drill.FAILED, f"the sample check could not run: {exc}", []
            BackupRun.objects.filter(pk=run.pk).update(sample_state=state, sample_at=now, sample_message=message)
            found[run.pk] = damaged
    bad = {pk: names for pk, names in found.items() if names}
    if bad:
        snapshots = dict(BackupRun.objects.filter(pk__in=bad).values_list("pk", "snapshot"))
        alerts.send(
            f"Backup sample check found DAMAGED files: {schedule}",
            "These stored files no longer match the MD5 Orthanc recorded for them:\n\n"
            + "\n".join(f"snapshot {snapshots[pk]}: {', '.join(names)}" for pk, names in bad.items()),
            schedule,
        )
    return found


def backup_verify_history(schedule) -> str:
    """The daily verification of one schedule: the sample check, then today's drills."""
    damaged = sample_check(schedule)
    drilled = [backup_verify(run.pk) for run in drills_due(schedule)]
    failed = [r.snapshot for r in drilled if r.drill_state == BackupRun.Drill.FAILED]
    return (
        f"sampled {len(damaged)} snapshots ({sum(1 for d in damaged.values() if d)} with damage); "
        f"drilled {', '.join(r.snapshot for r in drilled) or 'none'}"
        + (f"; drill FAILED: {', '.join(failed)}" if failed else "")
    )
