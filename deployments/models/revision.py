import json

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField

from .deployment import Deployment


class ConfigRevision(models.Model):
    """One rendering of a deployment's configuration and what became of it.

    Recorded before it is pushed; the files are kept (encrypted: they hold passwords) so that
    any applied revision can be rolled back to exactly.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be pushed"
        SUPERSEDED = "superseded", "Superseded by a newer save"
        APPLYING = "applying", "Being pushed"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed, previous configuration restored"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="Why it was made: a save, a rollback, an import.")
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    files_json = EncryptedTextField(blank=True)
    # The models the files were rendered from (settings, users, modalities), so that a rollback
    # restores them too and the next save does not undo it. Encrypted: it holds passwords.
    state_json = EncryptedTextField(blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["deployment", "number"], name="revision_unique_number")]

    def __str__(self):
        return f"{self.deployment} revision {self.number}"

    @property
    def model_state(self) -> dict:
        return json.loads(self.state_json or "{}")

    @property
    def files(self) -> dict[str, bytes]:
        return {name: text.encode("utf-8") for name, text in json.loads(self.files_json or "{}").items()}

    @files.setter
    def files(self, value: dict[str, bytes]):
        self.files_json = json.dumps({n: b.decode("utf-8") for n, b in sorted(value.items())})
