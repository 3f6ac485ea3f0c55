"""E-mail alerts through Django's mail backend, to settings.ADMINS_EMAILS (env ALERT_EMAILS) and
the schedule's own recipients."""

import logging

from django.conf import settings
from django.core.mail import send_mail

from .validators import email_list

log = logging.getLogger(__name__)


def recipients_of(schedule) -> list[str]:
    everyone = [*getattr(settings, "ADMINS_EMAILS", []), *email_list(schedule.alert_emails if schedule else "")]
    return list(dict.fromkeys(everyone))  # once each, in order


def send(subject, body, schedule=None) -> int:
    recipients = recipients_of(schedule)
    if not recipients:
        log.warning("backup alert not mailed (no recipient: ALERT_EMAILS and the schedule's are empty): %s", subject)
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
        schedule,
    )


def drill_failed(run):
    return send(
        f"Restore drill FAILED: {run.schedule} snapshot {run.snapshot}",
        f"The restore drill of snapshot {run.snapshot} ({run.schedule.target_label}) failed:\n\n{run.drill_message}\n",
        run.schedule,
    )


def overdue(schedule, status):
    return send(
        f"Backup OVERDUE: {schedule}",
        f"{schedule} has no recent successful backup: {status['reason']}.\n"
        f"Last success: {status['last_success'].finished_at if status['last_success'] else 'never'}\n",
        schedule,
    )
