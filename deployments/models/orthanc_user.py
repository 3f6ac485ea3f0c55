from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField
from portal.text import single_line

from .deployment import Deployment


def validate_orthanc_username(value):
    bad = sorted({c for c in value if c == ":" or c.isspace() or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValidationError(f"A username cannot contain {shown} (no ':', spaces or control characters).")


class OrthancUser(models.Model):
    """An account of Orthanc's REST API (HTTP Basic), rendered into credentials.json and the
    Lua filter that limits what its role may do."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin: everything"
        OPERATOR = "operator", "Operator: everything except DELETE"
        VIEWER = "viewer", "Viewer: GET only"
        UPLOADER = "uploader", "Uploader: may only POST /instances"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="orthanc_users")
    username = models.CharField(max_length=64, validators=[validate_orthanc_username])
    password = EncryptedTextField(validators=[single_line])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    is_active = models.BooleanField("active", default=True)
    expires_on = models.DateField(
        null=True, blank=True, help_text="Optional: the account stops working after this day."
    )
    password_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["deployment", "username"]
        constraints = [models.UniqueConstraint(fields=["deployment", "username"], name="orthanc_user_unique")]

    def __str__(self):
        return f"{self.username} ({self.role})"

    def is_effective(self, today=None):
        today = today or timezone.localdate()
        return self.is_active and (self.expires_on is None or self.expires_on >= today)
