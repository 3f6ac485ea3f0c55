from django.conf import settings
from django.db import models
from django.utils import timezone

from .deployment import Deployment


class SecurityAudit(models.Model):
    """One run of the security audit of a deployment, live checks included, and its findings.

    The live checks try logins against Orthanc, so they run in a task (on demand or on schedule),
    never when the security page is viewed; the page shows the latest stored result. Findings
    never hold a password (see ``deployments.security.runs``).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for the worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        WEB = "web", "Requested in the portal"
        SCHEDULE = "schedule", "Scheduled"
        COMMAND = "command", "manage.py audit_deployment"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="security_audits")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING, db_index=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEB)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    live = models.BooleanField(default=True, help_text="Whether the checks against the running Orthanc were made.")
    findings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"security audit of {self.deployment} at {self.created_at:%Y-%m-%d %H:%M}"
