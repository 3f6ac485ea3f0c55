"""Thin Celery tasks: ids in, one domain function called."""

import logging

from celery import shared_task

from portal.jobs import job_task

from .drill import backup_verify
from .models import BackupRun, BackupSchedule
from .restore import backup_restore
from .run import backup_run, backup_start

log = logging.getLogger(__name__)


def run_job(run_id):
    run = backup_run(run_id)
    if run is None:
        return "already claimed by another delivery"
    if run.state == BackupRun.State.FAILED:
        raise RuntimeError(run.error)
    return f"snapshot {run.snapshot}: {run.files} files, {run.bytes_transferred} bytes transferred"


def verify_job(run_id):
    run = backup_verify(run_id)
    if run.drill_state == BackupRun.Drill.FAILED:
        raise RuntimeError(run.drill_message)
    return run.drill_message


def restore_job(run_id):
    # The web restore accepts losses on the run's row: a job carries nothing but the run's id.
    accepted = BackupRun.objects.values_list("restore_accepted", flat=True).get(pk=run_id)
    return backup_restore(run_id, accept_losses=accepted or ())


backup_run_task = job_task("backups.backup_run")(run_job)
backup_verify_task = job_task("backups.backup_verify")(verify_job)
backup_restore_task = job_task("backups.backup_restore")(restore_job)


@shared_task(name="backups.scheduled_run", bind=True)
def scheduled_run_task(self, schedule_id):
    schedule = BackupSchedule.objects.filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return "schedule gone or disabled"
    # The delivery id names the run: a message redelivered by the broker finds its run and stops.
    run = backup_start(schedule_id, BackupRun.Trigger.SCHEDULE, task_id=self.request.id)
    if run is None:
        log.info("schedule %s: a run is already queued or running, or this delivery made one", schedule_id)
        return "skipped"
    return run_job(run.pk)


@shared_task(name="backups.scheduled_drill")
def scheduled_drill_task(schedule_id):
    from .rotation import backup_verify_history

    schedule = BackupSchedule.objects.filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return "schedule gone or disabled"
    return backup_verify_history(schedule)


@shared_task(name="backups.check_overdue")
def check_overdue_task():
    from .overdue import backups_check_overdue

    return backups_check_overdue()
