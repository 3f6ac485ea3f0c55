"""Pings to an outside monitor (healthchecks.io or a compatible server) around each backup run.

The monitor raises the alarm when a ping does not come in time, so it notices what the portal
cannot tell anyone: that the portal, its worker, beat or Redis is down and no backup runs at all.
Per the healthchecks pinging API: ``<url>/start`` when a run starts, ``<url>`` on success,
``<url>/fail`` on failure, each a POST whose body the monitor keeps (here: the log tail), with the
same ``rid`` so the monitor pairs start and end and measures the duration. Pings go only to the
URL the clinic entered, never follow a redirect, and never change a run's outcome.
"""

import logging
import uuid
from urllib.parse import urlsplit, urlunsplit

import requests

from . import status

log = logging.getLogger(__name__)
TIMEOUT = 10  # seconds per try; a monitor that does not answer must not hold a backup worker
TRIES = 2  # a lost ping is a false alarm at the monitor: try once more
BODY_MAX = 100_000  # healthchecks keeps the first 100 kB of a ping's body


def monitor_settings(schedule) -> dict:
    """What the outside check must be set to: the schedule's crontab and time zone, or its period,
    and a grace time. The same values are shown to the admin and carried in every ping."""
    told = status.told(schedule)
    return {
        "schedule": told["cron"],
        "tz": told["tz"],
        "period_seconds": int(told["period"].total_seconds()),
        "grace_seconds": int(told["grace"].total_seconds()),
    }


def run_id(run) -> str:
    # Stable for a run, different for every run (the primary key alone repeats across databases).
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orthanc-portal:backup-run:{run.pk}:{run.created_at.isoformat()}"))


def ping_url(url, kind) -> str:
    """``kind`` is "start", "success" or "fail": the suffix goes at the end of the URL's path."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[kind]
    return urlunsplit(parts._replace(path=path or "/"))


def body_of(run, kind) -> str:
    schedule = run.schedule
    facts = {
        "backup": str(schedule),
        "run": run.pk,
        **monitor_settings(schedule),
    }
    if kind == "start":
        facts["started_at"] = run.started_at.isoformat() if run.started_at else ""
    else:
        facts.update(
            finished_at=run.finished_at.isoformat() if run.finished_at else "",
            snapshot=run.snapshot,
            duration_seconds=f"{run.duration or 0:.1f}",
            bytes_transferred=run.bytes_transferred or 0,
        )
        if kind == "fail":
            facts["error"] = " ".join((run.error or "").split())[:500]
    lines = [f"{key}={value}" for key, value in facts.items()]
    if kind != "start" and run.log_tail:
        lines += ["", "--- log tail ---", run.log_tail]
    text = "\n".join(lines) + "\n"
    encoded = text.encode()
    # Keep the end: the log tail's last lines say how the run ended.
    return encoded[-BODY_MAX:].decode(errors="ignore") if len(encoded) > BODY_MAX else text


def ping(run, kind) -> bool:
    """Send one ping for ``run``; True when the monitor answered 2xx. Never raises."""
    url = run.schedule.ping_url
    if not url:
        return False
    target = ping_url(url, kind)
    for attempt in range(1, TRIES + 1):
        try:
            answer = requests.post(
                target,
                params={"rid": run_id(run)},
                data=body_of(run, kind).encode(),
                headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "orthanc-portal"},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except (requests.RequestException, ValueError) as exc:
            log.warning("backup %s: %s ping to %s failed (try %s): %s", run.pk, kind, target, attempt, exc)
            continue
        if 200 <= answer.status_code < 300:
            return True
        log.warning("backup %s: %s ping to %s answered %s", run.pk, kind, target, answer.status_code)
    return False


def run_started(run):
    return ping(run, "start")


def run_finished(run):
    return ping(run, "success" if run.state == run.State.SUCCEEDED else "fail")
