from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse

from portal.crypto import EncryptedTextField

aet_validator = RegexValidator(
    r"^(?! *$)[\x20-\x5b\x5d-\x7e]{1,16}$",
    "An AE title is 1 to 16 characters, printable ASCII without backslash, and not only spaces.",
)


class Deployment(models.Model):
    """One Orthanc server that the portal manages."""

    class ServiceKind(models.TextChoices):
        LOCAL = "local", "Local process started by the portal (pid file under its folder)"
        NONE = "none", "None: the portal cannot start or stop this Orthanc"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(
        max_length=50, unique=True, help_text="Short name for URLs and the task queue (deployment.<slug>)."
    )
    orthanc_url = models.URLField(
        "Orthanc REST URL", help_text="How the portal reaches Orthanc's REST API, e.g. http://127.0.0.1:8042."
    )
    service_username = models.CharField(
        max_length=64, default="portal", help_text="The portal's own admin account on this Orthanc."
    )
    service_password = EncryptedTextField(blank=True, help_text="Stored encrypted; never shown again.")
    config_dir = models.CharField(
        "configuration folder", max_length=255, help_text="Folder of Orthanc's *.json files, on the Orthanc host."
    )
    storage_dir = models.CharField("storage folder", max_length=255, blank=True)
    dicom_aet = models.CharField("DICOM AE title", max_length=16, default="ORTHANC", validators=[aet_validator])
    dicom_port = models.PositiveIntegerField(
        "DICOM port", default=4242, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    service_kind = models.CharField(max_length=16, choices=ServiceKind.choices, default=ServiceKind.NONE)

    # What the last look at the live server saw (the dashboard and the status task write these).
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_version = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("deployments:detail", args=[self.slug])

    @property
    def queue(self):
        from portal.celery import deployment_queue

        return deployment_queue(self.slug)
