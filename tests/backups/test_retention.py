"""Which snapshots retention keeps (pure): the newest of each of the last N days, weeks and months
that have a snapshot, counted in the clinic's time zone, and always the newest of all."""

from deployments.backups.retention import keep, parse


def snapshots(*stamps):
    return [f"{s}Z" for s in stamps]


def test_a_snapshot_name_is_a_utc_time_stamp():
    at = parse("20261122T023015Z")
    assert (at.year, at.month, at.day, at.hour, at.minute, at.second) == (2026, 11, 22, 2, 30, 15)
    assert at.utcoffset().total_seconds() == 0


def test_nothing_to_keep_among_no_snapshots_or_names_that_are_not_snapshots():
    assert keep([], 3, 2, 1, tz="UTC") == set()
    assert keep(["latest", "20261122T0200Z", "notes.txt", "20261122T020000Z.partial"], 3, 2, 1, tz="UTC") == set()


def test_the_newest_always_stays_even_when_every_count_is_zero():
    names = snapshots("20261120T020000", "20261122T020000", "20261121T020000")
    assert keep(names, 0, 0, 0, tz="UTC") == {"20261122T020000Z"}
    assert keep([*names, "junk"], 0, 0, 0, tz="UTC") == {"20261122T020000Z"}


def test_daily_keeps_the_newest_of_each_of_exactly_the_last_n_days_that_have_one():
    names = snapshots(
        "20261122T180000", "20261122T020000",  # Sunday 22
        "20261121T020000",  # 21
        "20261119T230000", "20261119T020000",  # 19 (none on the 20th: days with a snapshot count)
        "20261118T020000",
    )  # fmt: skip
    assert keep(names, daily=1, weekly=0, monthly=0, tz="UTC") == {"20261122T180000Z"}
    assert keep(names, daily=3, weekly=0, monthly=0, tz="UTC") == {
        "20261122T180000Z",
        "20261121T020000Z",
        "20261119T230000Z",
    }
    assert len(keep(names, daily=4, weekly=0, monthly=0, tz="UTC")) == 4
    assert keep(names, daily=9, weekly=0, monthly=0, tz="UTC") == {
        "20261122T180000Z",
        "20261121T020000Z",
        "20261119T230000Z",
        "20261118T020000Z",
    }


def test_the_day_of_a_snapshot_is_the_clinic_s_day_not_utc_s():
    names = snapshots("20261121T233000", "20261121T020000")  # 00:30 and 03:00 in Brussels (UTC+1)
    assert keep(names, daily=2, weekly=0, monthly=0, tz="UTC") == {"20261121T233000Z"}
    assert keep(names, daily=2, weekly=0, monthly=0, tz="Europe/Brussels") == set(names)


def test_the_clinic_s_time_zone_comes_from_the_settings_by_default(settings):
    names = snapshots("20261121T233000", "20261121T020000")
    settings.TIME_ZONE = "Europe/Brussels"
    assert keep(names, daily=2, weekly=0, monthly=0) == set(names)
    settings.TIME_ZONE = "UTC"
    assert keep(names, daily=2, weekly=0, monthly=0) == {"20261121T233000Z"}


def test_weekly_keeps_the_newest_of_each_iso_week():
    names = snapshots(
        "20261122T020000",  # Sunday: week 47
        "20261116T020000",  # Monday: week 47
        "20261115T020000",  # Sunday: week 46
        "20261109T020000",  # Monday: week 46
        "20261108T020000",  # week 45
        "20261101T020000",  # week 44
    )
    assert keep(names, daily=0, weekly=2, monthly=0, tz="UTC") == {"20261122T020000Z", "20261115T020000Z"}
    assert keep(names, daily=0, weekly=3, monthly=0, tz="UTC") == {
        "20261122T020000Z",
        "20261115T020000Z",
        "20261108T020000Z",
    }
    # ISO weeks cross the new year: 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are one week.
    new_year = snapshots("20270103T020000", "20261231T020000", "20261227T020000")
    assert keep(new_year, daily=0, weekly=2, monthly=0, tz="UTC") == {"20270103T020000Z", "20261227T020000Z"}


def test_monthly_keeps_the_newest_of_each_month_and_years_are_months_apart():
    names = snapshots(
        "20261122T020000", "20261101T020000",  # November
        "20261015T020000",  # October
        "20251115T020000",  # November a year before: another month
        "20251101T020000",
    )  # fmt: skip
    assert keep(names, daily=0, weekly=0, monthly=2, tz="UTC") == {"20261122T020000Z", "20261015T020000Z"}
    assert keep(names, daily=0, weekly=0, monthly=3, tz="UTC") == {
        "20261122T020000Z",
        "20261015T020000Z",
        "20251115T020000Z",
    }


def test_the_rules_add_up():
    names = snapshots(
        "20261122T020000", "20261121T020000", "20261120T020000",
        "20261115T020000", "20261031T020000", "20260930T020000",
    )  # fmt: skip
    assert keep(names, daily=2, weekly=2, monthly=3, tz="UTC") == {
        "20261122T020000Z",  # day 1, week 47, November
        "20261121T020000Z",  # day 2
        "20261115T020000Z",  # week 46
        "20261031T020000Z",  # October
        "20260930T020000Z",  # September
    }


def test_the_last_n_snapshots_stay_whatever_their_day():
    names = snapshots("20261122T020000", "20261122T010000", "20261122T000000", "20261121T230000")
    assert keep(names, 0, 0, 0, tz="UTC", last=2) == {"20261122T020000Z", "20261122T010000Z"}
    assert keep(names, 0, 0, 0, tz="UTC", last=9) == set(names)
    assert keep(names, 0, 0, 0, tz="UTC") == {"20261122T020000Z"}  # none by default beyond the newest


def test_hourly_keeps_the_newest_of_each_of_the_last_n_hours_that_have_one():
    names = snapshots("20261122T025900", "20261122T020000", "20261122T011500", "20261121T230000")
    assert keep(names, 0, 0, 0, tz="UTC", hourly=2) == {"20261122T025900Z", "20261122T011500Z"}
    assert keep(names, 0, 0, 0, tz="UTC", hourly=3) == {"20261122T025900Z", "20261122T011500Z", "20261121T230000Z"}
    assert keep(names, 0, 0, 0, tz="UTC") == {"20261122T025900Z"}  # no hourly rule by default


def test_the_hour_repeated_by_the_autumn_clock_change_counts_as_two_hours():
    # 25 October 2026 in Brussels: 02:30 summer time (00:30Z), then 02:30 winter time (01:30Z).
    names = snapshots("20261025T013000", "20261025T003000")
    assert keep(names, 0, 0, 0, tz="Europe/Brussels", hourly=2) == set(names)
    assert keep(names, 2, 0, 0, tz="Europe/Brussels") == {"20261025T013000Z"}
