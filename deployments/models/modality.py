import ipaddress
import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models

from portal.text import single_line

from .deployment import Deployment, aet_validator, port_validators

_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def validate_host(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME.fullmatch(value):
            raise ValidationError("Give an IP address or a host name (letters, digits, '-' and dots).") from None


class Modality(models.Model):
    """A DICOM device Orthanc knows: an ultrasound machine, a workstation, a peer PACS."""

    class Manufacturer(models.TextChoices):
        GENERIC = "Generic", "Generic"
        NO_WILDCARD_DATES = "GenericNoWildcardInDates", "Generic, no wildcard in dates"
        NO_UNIVERSAL_WILDCARD = "GenericNoUniversalWildcard", "Generic, no universal wildcard"
        VITREA = "Vitrea", "Vitrea"
        GE = "GE", "GE"

    class Charset(models.TextChoices):
        UTF8 = "ISO_IR 192", "UTF-8 (any letter)"
        LATIN1 = "ISO_IR 100", "Latin-1 (western European letters only)"
        ASCII = "ISO_IR 6", "ASCII (no accented letters)"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="modalities")
    name = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Use letters, digits, '-' and '_' only.")],
        help_text="Orthanc's identifier for this device (letters, digits, - and _).",
    )
    aet = models.CharField("AE title", max_length=16, validators=[aet_validator])
    host = models.CharField(
        max_length=253,
        validators=[validate_host],
        help_text="IP address (required when Orthanc checks modality hosts).",
    )
    port = models.PositiveIntegerField(default=104, validators=port_validators)
    manufacturer = models.CharField(max_length=32, choices=Manufacturer.choices, default=Manufacturer.GENERIC)
    allow_echo = models.BooleanField("C-ECHO", default=True)
    allow_find = models.BooleanField("C-FIND (archive)", default=False)
    allow_find_worklist = models.BooleanField(
        "C-FIND worklist", default=True, help_text="Needed since Orthanc 1.10 for a machine to read its worklist."
    )
    allow_get = models.BooleanField("C-GET", default=False)
    allow_move = models.BooleanField("C-MOVE", default=False)
    allow_store = models.BooleanField("C-STORE", default=True, help_text="May send images to Orthanc.")
    allow_storage_commitment = models.BooleanField("storage commitment", default=False)
    local_aet = models.CharField(
        "local AE title",
        max_length=16,
        blank=True,
        validators=[aet_validator],
        help_text="The AE title Orthanc uses when it calls this device. Empty: Orthanc's own.",
    )
    timeout = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(3600)], help_text="Seconds; 0 uses Orthanc's default."
    )
    charset = models.CharField(
        "character set",
        max_length=16,
        choices=Charset.choices,
        default=Charset.LATIN1,
        help_text="What the device can display. A patient name it cannot show is refused when scheduled.",
    )
    station_name = models.CharField(
        max_length=16, blank=True, validators=[single_line], help_text="Scheduled station name in the worklist."
    )

    class Meta:
        ordering = ["deployment", "name"]
        verbose_name_plural = "modalities"
        constraints = [
            models.UniqueConstraint(fields=["deployment", "name"], name="modality_unique_name"),
            models.UniqueConstraint(fields=["deployment", "aet", "host", "port"], name="modality_unique_address"),
        ]

    def __str__(self):
        return f"{self.name} ({self.aet}@{self.host}:{self.port})"
