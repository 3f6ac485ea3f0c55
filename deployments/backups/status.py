"""How safe is a schedule: its status light, last success, next run, last drill, disk forecast."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .alerts import recipients_of
from .models import BackupRun
from .periodic import next_run, period

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"


def grace(per: timedelta) -> timedelta:
    return max(per / 4, timedelta(minutes=15))


def schedule_status(schedule, now=None, runs=None) -> dict:
    """``runs``: the schedule's runs newest first, if the caller has them already."""
    now = now or timezone.now()
    runs = list(runs if runs is not None else schedule.runs.all()[:200])
    finished = [r for r in runs if r.state in (BackupRun.State.SUCCEEDED, BackupRun.State.FAILED)]
    last = finished[0] if finished else None
    last_success = next((r for r in finished if r.state == BackupRun.State.SUCCEEDED), None)
    last_drill = next((r for r in runs if r.drill_at and r.drill_state != BackupRun.Drill.RUNNING), None)
    per = period(schedule.cron, now)
    allowed = per + grace(per)
    age = now - last_success.finished_at if last_success else None
    if not schedule.enabled:
        light, reason = GREY, "disabled"
    elif last and last.state == BackupRun.State.FAILED:
        light, reason = RED, f"the last run failed: {last.error[:150]}"
    elif last_success is None:
        if now - schedule.created_at > allowed:
            light, reason = RED, "overdue: no backup has succeeded yet"
        else:
            light, reason = AMBER, "no backup yet"
    elif age <= allowed:
        light, reason = GREEN, "on time"
    elif age <= per + allowed:
        light, reason = AMBER, "late: the last scheduled run has not succeeded"
    else:
        light, reason = RED, "overdue: more than two periods without a successful backup"
    if light != RED and last_drill and last_drill.drill_state == BackupRun.Drill.FAILED:
        light, reason = (
            AMBER if light == GREEN else light,
            f"the last restore drill failed: {last_drill.drill_message[:150]}",
        )
    return {
        "schedule": schedule,
        "light": light,
        "reason": reason,
        "last": last,
        "last_success": last_success,
        "age": age,
        "next_run": next_run(schedule, now),
        "last_drill": last_drill,
        "active": next((r for r in runs if r.state in BackupRun.ACTIVE), None),
        "period": per,
        "told": told(schedule, per),
    }


def told(schedule, per=None) -> dict:
    """Who hears of a failure or of silence; ``nobody`` when no one would."""
    emails = recipients_of(schedule)
    per = per or period(schedule.cron)
    return {
        "emails": emails,
        "ping": bool(schedule.ping_url),
        "nobody": not emails and not schedule.ping_url,
        # What to set at the outside monitor (the pings carry the same values).
        "cron": " ".join((schedule.minute, schedule.hour, schedule.day_of_month, schedule.month_of_year,
                          schedule.day_of_week)),
        "tz": settings.TIME_ZONE,
        "period": per,
        "grace": grace(per),
    }  # fmt: skip


def growth(runs, days=30, now=None) -> dict:
    """Snapshot size growth per day (least squares over the last ``days``) and the days until
    the target's disk is full at that pace."""
    now = now or timezone.now()
    points = [
        ((r.finished_at - now).total_seconds() / 86400, r.snapshot_size)
        for r in runs
        if r.state == BackupRun.State.SUCCEEDED
        and r.snapshot_size is not None
        and r.finished_at
        and r.finished_at >= now - timedelta(days=days)
    ]
    free = next((r.target_free_bytes for r in runs if r.target_free_bytes is not None), None)
    result = {"per_day": None, "days_left": None, "free": free}
    if len(points) < 2 or max(x for x, _ in points) - min(x for x, _ in points) < 1 / 24:
        return result  # a pace needs snapshots spread over more than an hour
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return result
    slope = sum((x - mx) * (y - my) for x, y in points) / var
    result["per_day"] = slope
    # Unchanged files are hard links: the target grows by what the storage grows.
    if slope > 0 and free is not None:
        result["days_left"] = free / slope
    return result
