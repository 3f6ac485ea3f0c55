"""Which snapshots retention keeps (pure), as borgmatic and restic do: the last N snapshots, plus
the newest of each of the last hours, days, weeks and months that have one, counted in the clinic's
time zone, and always the newest of all."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.conf import settings

from .validators import is_snapshot_name


def parse(name):
    return datetime.strptime(name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def keep(names, daily, weekly, monthly, tz=None, *, last=0, hourly=0) -> set[str]:
    tz = ZoneInfo(tz or settings.TIME_ZONE)
    dated = sorted(((parse(n).astimezone(tz), n) for n in names if is_snapshot_name(n)), reverse=True)
    if not dated:
        return set()
    kept = {dated[0][1]}  # the newest always stays
    kept.update(name for _, name in dated[:last])
    buckets = (
        # The local hour with its offset: the repeated hour of the autumn clock change is two hours.
        (hourly, lambda t: (t.date(), t.hour, t.utcoffset())),
        (daily, lambda t: t.date()),
        (weekly, lambda t: t.isocalendar()[:2]),
        (monthly, lambda t: (t.year, t.month)),
    )
    for count, bucket in buckets:
        seen = set()
        for at, name in dated:
            key = bucket(at)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(key)
            kept.add(name)
    return kept
