"""Crontab arithmetic and the django-celery-beat rows of the backup schedules.

Beat rows are updated in place by name (never deleted and recreated, so beat keeps its
last-run bookkeeping); only a deleted schedule takes its rows with it.
"""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

DRILL_CRON = ("0", "5", "*", "*", "*")  # every day at 05:00: the rotating drill and the sample check
OVERDUE_TASK_NAME = "Check backups are on time"
OVERDUE_EVERY = 600  # seconds


def expand(cron) -> dict:
    """The crontab fields as sets (celery's parser: raises ValueError on a bad field)."""
    minute, hour, dow, dom, moy = cron
    c = crontab(minute=minute, hour=hour, day_of_week=dow, day_of_month=dom, month_of_year=moy)
    return {"minute": c.minute, "hour": c.hour, "dow": c.day_of_week, "dom": c.day_of_month, "moy": c.month_of_year}


def next_fires(cron, after, count=1, tz=None) -> list[datetime]:
    """The next ``count`` times strictly after ``after`` at which ``cron`` fires."""
    tz = ZoneInfo(tz or settings.TIME_ZONE)
    sets = expand(cron)
    minutes, hours = sorted(sets["minute"]), sorted(sets["hour"])
    local = after.astimezone(tz)
    day = local.date()
    found = []
    for _ in range(366 * 5):
        if day.month in sets["moy"] and day.day in sets["dom"] and (day.isoweekday() % 7) in sets["dow"]:
            for h in hours:
                for m in minutes:
                    at = datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                    if at > local:
                        found.append(at)
                        if len(found) == count:
                            return found
        day += timedelta(days=1)
    return found


def period(cron, now=None) -> timedelta:
    """The interval between two runs (the next two fires; a day if the crontab never fires)."""
    fires = next_fires(cron, now or timezone.now(), count=2)
    return fires[1] - fires[0] if len(fires) == 2 else timedelta(days=1)


def describe(cron) -> str:
    try:
        from cron_descriptor import get_description

        minute, hour, dow, dom, moy = cron
        return get_description(f"{minute} {hour} {dom} {moy} {dow}")
    except Exception:  # only a label: the crontab itself is validated elsewhere
        return " ".join(cron)


def _crontab_row(cron):
    minute, hour, dow, dom, moy = cron
    row, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_week=dow, day_of_month=dom, month_of_year=moy, timezone=settings.TIME_ZONE
    )
    return row


def sync_schedule(schedule):
    """Make the beat rows of one schedule match it: the backup and its daily verification."""
    queue = schedule.deployment.queue
    kwargs = json.dumps({"schedule_id": schedule.pk})
    PeriodicTask.objects.update_or_create(
        name=schedule.periodic_task_name,
        defaults={
            "task": "backups.scheduled_run",
            "crontab": _crontab_row(schedule.cron),
            "interval": None,
            "kwargs": kwargs,
            "queue": queue,
            "enabled": schedule.enabled,
            "description": f"Backup of {schedule.deployment} to {schedule.target_label}",
        },
    )
    PeriodicTask.objects.update_or_create(
        name=schedule.drill_task_name,
        defaults={
            "task": "backups.scheduled_drill",
            "crontab": _crontab_row(DRILL_CRON),
            "interval": None,
            "kwargs": kwargs,
            "queue": queue,
            "enabled": schedule.enabled and schedule.drill_weekly,
            "description": f"Rotating restore drill and sample check of the snapshots of {schedule}",
        },
    )
    every, _ = IntervalSchedule.objects.get_or_create(every=OVERDUE_EVERY, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name=OVERDUE_TASK_NAME,
        defaults={"task": "backups.check_overdue", "interval": every, "crontab": None, "kwargs": "{}", "enabled": True},
    )


def unschedule(schedule):
    PeriodicTask.objects.filter(name__in=[schedule.periodic_task_name, schedule.drill_task_name]).delete()


def next_run(schedule, now=None):
    if not schedule.enabled:
        return None
    fires = next_fires(schedule.cron, now or timezone.now())
    return fires[0] if fires else None
