"""E-mail alerts through Django's mail backend, to settings.ADMINS_EMAILS (env ALERT_EMAILS)."""

import logging

from django.conf import settings
from django.core.mail import send_mail

log = logging.getLogger(__name__)


def send(subject, body) -> int:
    recipients = list(getattr(settings, "ADMINS_EMAILS", []))
    if not recipients:
        log.warning("backup alert not mailed (ALERT_EMAILS is empty): %s", subject)
        return 0
    try:
        return send_mail(f"[Orthanc portal] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # a broken mail server must not turn a recorded outcome into a crash
        log.exception("backup alert could not be mailed: %s", subject)
        return 0


def run_failed(run):
    schedule = run.schedule
    return send(
        f"Backup FAILED: {schedule}",
        f"The backup of {schedule.deployment} to {schedule.target_label} failed.\n\n"
        f"Error: {run.error}\n\nStarted: {run.started_at}\nDowntime: {run.downtime or 0:.1f} s\n\n"
        f"Log tail:\n{run.log_tail}\n",
    )


def drill_failed(run):
    return send(
        f"Restore drill FAILED: {run.schedule} snapshot {run.snapshot}",
        f"The restore drill of snapshot {run.snapshot} ({run.schedule.target_label}) failed:\n\n{run.drill_message}\n",
    )


def overdue(schedule, status):
    return send(
        f"Backup OVERDUE: {schedule}",
        f"{schedule} has no recent successful backup: {status['reason']}.\n"
        f"Last success: {status['last_success'].finished_at if status['last_success'] else 'never'}\n",
    )
