"""Which snapshots retention keeps (pure): the newest of each of the last N days, M weeks, K months."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.conf import settings

from .validators import is_snapshot_name


def parse(name):
    return datetime.strptime(name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def keep(names, daily, weekly, monthly, tz=None) -> set[str]:
    tz = ZoneInfo(tz or settings.TIME_ZONE)
    dated = sorted(((parse(n).astimezone(tz), n) for n in names if is_snapshot_name(n)), reverse=True)
    if not dated:
        return set()
    kept = {dated[0][1]}  # the newest always stays
    buckets = (
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
