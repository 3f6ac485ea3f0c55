"""The safety nets of the backups, run every 10 minutes by beat: runs whose worker was lost are
closed (and their Orthanc started if it was left stopped on this host), and an overdue schedule
sends one alert per late episode."""

import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from deployments.service import ServiceError

from . import alerts, pings
from .control import ensure_running, service_of
from .models import BackupRun, BackupSchedule
from .status import RED, schedule_status

log = logging.getLogger(__name__)


def backups_reap_lost(now=None) -> int:
    """A run pending or running longer than any task may live lost its worker: mark it failed, so
    the schedule can run again, and make sure that Orthanc was not left stopped."""
    now = now or timezone.now()
    lost = BackupRun.objects.filter(state__in=BackupRun.ACTIVE, created_at__lt=now - settings.JOB_LOST_AFTER)
    reaped = 0
    for run in lost.select_related("schedule__deployment"):
        if not BackupRun.objects.filter(pk=run.pk, state__in=BackupRun.ACTIVE).update(
            state=BackupRun.State.FAILED,
            finished_at=now,
            error="the worker running this backup was lost (killed or restarted); the next run removes its unfinished snapshot folder",
        ):
            continue
        reaped += 1
        run.refresh_from_db()
        deployment = run.schedule.deployment
        if Path(deployment.config_dir).is_dir():  # its Orthanc runs on this host: start it if the run stopped it
            try:
                ensure_running(service_of(deployment))
            except ServiceError as exc:
                log.error("Orthanc of %s could not be started after a lost backup run: %s", deployment, exc)
        alerts.run_failed(run)
        pings.run_finished(run)  # the monitor saw its /start: tell it now, not after its grace time
    return reaped


def backups_check_overdue(now=None) -> int:
    now = now or timezone.now()
    backups_reap_lost(now)
    sent = 0
    for schedule in BackupSchedule.objects.filter(enabled=True).select_related("deployment"):
        status = schedule_status(schedule, now)
        if status["light"] != RED or not status["reason"].startswith("overdue"):
            continue
        since = status["last_success"].finished_at if status["last_success"] else schedule.created_at
        if schedule.overdue_alerted_at and schedule.overdue_alerted_at >= since:
            continue  # already told about this episode
        alerts.overdue(schedule, status)
        BackupSchedule.objects.filter(pk=schedule.pk).update(overdue_alerted_at=now)
        sent += 1
    return sent
