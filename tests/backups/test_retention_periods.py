"""Retention by period, as borgmatic and restic count it: the last N plus the newest of each
hour, day, week and month, replayed over runs at simulated times the way a run prunes (after each
new snapshot, on everything the target holds)."""

from datetime import UTC, datetime, timedelta

from deployments.backups.models import BackupSchedule
from deployments.backups.retention import keep


def name(at):
    return at.strftime("%Y%m%dT%H%M%SZ")


def replay(times, tz="UTC", **policy):
    """What the target holds after a run at each of ``times``, each run pruning as run.py does."""
    defaults = {f.name: f.default for f in BackupSchedule._meta.fields if f.name.startswith("keep_")}
    rules = {k.removeprefix("keep_"): v for k, v in {**defaults, **policy}.items()}
    held = []
    for at in times:
        held.append(name(at))
        kept = keep(
            held, rules["daily"], rules["weekly"], rules["monthly"], tz, last=rules["last"], hourly=rules["hourly"]
        )
        held = sorted(kept)
    return held


def test_three_runs_in_one_day_are_all_kept_under_the_default_policy():
    day = datetime(2026, 11, 23, 1, tzinfo=UTC)
    times = [day, day + timedelta(hours=9), day + timedelta(hours=17)]

    assert replay(times) == [name(t) for t in times]


def test_the_default_policy_of_an_hourly_schedule_keeps_a_day_of_hours_then_one_a_day():
    start = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in range(24 * 10)]  # ten days, every hour

    held = replay(times)

    last = times[-1]
    hours = {name(t) for t in times if last - t < timedelta(hours=24)}
    assert hours <= set(held)  # every run of the last 24 hours
    older = sorted(set(held) - hours)
    # Before them, the day's newest (23:30) of the six other days the 7 daily slots reach, and the
    # newest of ISO week 44 (Sunday 1 November) for the weekly slots.
    days = [name(datetime(2026, 11, d, 23, 30, tzinfo=UTC)) for d in (1, 4, 5, 6, 7, 8, 9)]
    assert older == days


def test_keep_last_keeps_the_newest_runs_whatever_their_time():
    at = datetime(2026, 11, 23, 10, tzinfo=UTC)
    times = [at + timedelta(minutes=m) for m in range(0, 50, 5)]  # ten runs within one hour

    held = replay(times, keep_last=3, keep_hourly=0, keep_daily=1, keep_weekly=0, keep_monthly=0)

    assert held == [name(t) for t in times[-3:]]


def test_hourly_keeps_the_newest_of_each_of_the_last_hours_that_have_one():
    at = datetime(2026, 11, 23, 8, tzinfo=UTC)
    times = [at + timedelta(minutes=20 * k) for k in range(9)]  # 08:00 … 10:40, three an hour

    held = replay(times, keep_last=0, keep_hourly=2, keep_daily=0, keep_weekly=0, keep_monthly=0)

    assert held == [name(at + timedelta(hours=1, minutes=40)), name(at + timedelta(hours=2, minutes=40))]


def test_the_repeated_hour_of_the_autumn_clock_change_counts_as_two_hours():
    # 2026-10-25 in Brussels: 02:00-03:00 runs twice (00:xx UTC at +02:00, then 01:xx UTC at +01:00).
    times = [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]

    held = replay(times, tz="Europe/Brussels", keep_last=0, keep_hourly=2, keep_daily=0, keep_weekly=0, keep_monthly=0)

    assert held == [name(t) for t in times]


def test_a_year_of_nightly_runs_under_the_default_policy_keeps_days_weeks_and_months():
    start = datetime(2026, 1, 1, 2, tzinfo=UTC)
    times = [start + timedelta(days=d) for d in range(365)]

    held = replay(times)

    months = {n[:6] for n in held}
    assert len(months) == 6  # the newest of each of the last six months
    assert name(times[-1]) in held and name(times[-10]) in held  # the last ten nights
    assert len(held) <= 10 + 24 + 7 + 4 + 6
