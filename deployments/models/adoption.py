from django.conf import settings
from django.db import models
from django.utils import timezone

from .deployment import Deployment


class Adoption(models.Model):
    """Taking over a running Orthanc: its imported configuration, reviewed, then the first push,
    verified. The import's report is kept for the review; no password is in it."""

    class Step(models.TextChoices):
        REVIEW = "review", "Imported: review, then push"
        PUSHING = "pushing", "First push under way"
        FAILED = "failed", "First push failed: the previous configuration runs"
        VERIFIED = "verified", "Adopted and verified"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="adoptions")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=300, blank=True, help_text="The files that were imported.")
    report = models.JSONField(default=list, blank=True)  # [[level, text], …] of the import
    moved_to = models.CharField(max_length=300, blank=True)  # where the first push put the foreign files
    moved_files = models.JSONField(default=list, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification = models.JSONField(default=list, blank=True)  # sentences: what was checked after the push

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"adoption of {self.deployment} ({self.created_at:%Y-%m-%d %H:%M})"

    def first_push(self):
        """The newest revision made since the import: the push that adopts (or tried to)."""
        return self.deployment.revisions.filter(created_at__gte=self.created_at).exclude(state="superseded").first()

    def step(self, revision=None):
        if self.verified_at:
            return self.Step.VERIFIED
        revision = revision or self.first_push()
        if revision is None:
            return self.Step.REVIEW
        if revision.state == "failed":
            return self.Step.FAILED
        return self.Step.PUSHING


class PushLogin(models.Model):
    """An existing admin account of an Orthanc that does not know the portal's account yet, typed
    once for the first push. Fernet-encrypted with its time (``token``): it is worthless after
    ``LIFETIME`` even if it were never deleted, and the push deletes it as it starts."""

    LIFETIME = 600  # seconds

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="push_logins")
    token = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"one-push login for {self.deployment}"
