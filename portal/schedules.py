"""The periodic safety nets, kept in django-celery-beat's tables (updated in place by name)."""

import json

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

# name → (task, every seconds, kwargs)
PERIODIC = {
    "Re-send queued jobs that never ran": ("portal.jobs_reconcile", 60, {}),
    "Check every Orthanc": ("deployments.check_all", 60, {}),
    "Ask each site's worker whether it is there": ("deployments.agent_heartbeats", settings.AGENT_HEARTBEAT_EVERY, {}),
    "Remove expired Orthanc accounts": ("deployments.expire_users", 3600, {}),
    "Forget Orthanc logins typed for a first push that never ran": ("deployments.forget_push_logins", 60, {}),
    "Sync every worklist folder": ("worklists.sync_all", 60, {}),
    "Close worklist entries from Orthanc's changes": ("worklists.completion_all", 30, {}),
    "Send waiting HL7 order status messages": ("hl7.status_sweep", 60, {}),
    # Tries logins against each Orthanc: daily, and on demand from the security page.
    "Audit every Orthanc's security (live)": ("deployments.security_audit_all", 24 * 3600, {}),
}


def ensure_periodic_tasks(extra=None):
    for name, (task, seconds, kwargs) in {**PERIODIC, **(extra or {})}.items():
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": every, "kwargs": json.dumps(kwargs), "enabled": True}
        )
