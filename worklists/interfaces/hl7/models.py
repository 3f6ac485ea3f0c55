"""The HL7 conversation: where each sender's orders go, the orders it placed, every message in."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from deployments.models import Deployment, Modality
from worklists.models import WorklistEntry

# A field of the order: segment-field or segment-field.component (PID-3, OBR-4.2).
FIELD_REF = re.compile(r"^(ORC|OBR|TQ1|IPC|PV1|PV2|ZDS)-([1-9][0-9]{0,2})(?:\.([1-9][0-9]?))?$")
field_ref = RegexValidator(
    FIELD_REF,
    "A field of the order as SEGMENT-FIELD or SEGMENT-FIELD.COMPONENT, e.g. OBR-18 or OBR-4.1 "
    "(segments ORC, OBR, TQ1, IPC, PV1, PV2, ZDS).",
)
HD_MAX = 180  # HD's first component, the namespace ID (HL7 2.5: IS, but senders write up to 180)
STATION_CODES_MAX = 4000
STATUS_MESSAGE_TYPES = [("ORM^O01", "ORM^O01 (HL7 2.3–2.5)"), ("OMG^O19", "OMG^O19 (HL7 2.5+)")]
STATION_CODE_LINE = re.compile(r"^\s*([^=\s][^=]{0,63}?)\s*=\s*(\S.{0,15}?)\s*$")


def parse_station_codes(text: str) -> dict:
    """{code: AE title} from lines 'CODE = AET'; ValidationError naming the line otherwise."""
    codes = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = STATION_CODE_LINE.match(line)
        if not match:
            raise ValidationError(
                f"Line {number}: write one code per line as CODE = AE TITLE (code at most 64, AE title at most 16 "
                "characters).",
                code="station_codes",
            )
        code, aet = match.groups()
        if code in codes:
            raise ValidationError(
                f"Line {number}: the code {code} is already on an earlier line.", code="station_codes"
            )
        codes[code] = aet
    return codes


class Hl7Mapping(models.Model):
    """One sending application at one facility (MSH-3, MSH-4): which deployment its orders go to,
    and where in its messages the portal finds what the machines need."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="hl7_mappings")
    sending_application = models.CharField(
        "sending application (MSH-3)", max_length=HD_MAX, help_text="Its first component, e.g. PRAXIS."
    )
    sending_facility = models.CharField(
        "sending facility (MSH-4)", max_length=HD_MAX, blank=True, help_text="Empty: any facility of that application."
    )
    enabled = models.BooleanField(default=True, help_text="Off: its messages are refused (AR) and nothing is done.")
    accession_field = models.CharField(
        "accession number from",
        max_length=12,
        blank=True,
        default="OBR-18",
        validators=[field_ref],
        help_text="Empty, or empty in a message: the portal numbers the entry itself.",
    )
    procedure_field = models.CharField(
        "requested procedure from",
        max_length=12,
        default="OBR-4",
        validators=[field_ref],
        help_text="code^text: the code becomes the requested procedure ID, the text its description (e.g. OBR-4 or OBR-44).",
    )
    modality_field = models.CharField(
        "modality from", max_length=12, blank=True, default="OBR-24", validators=[field_ref]
    )
    default_modality = models.CharField(
        max_length=16,
        default="US",
        help_text="When the message has none.",
        validators=[
            RegexValidator(r"^[A-Z0-9 _]{1,16}$", "A DICOM modality code: capital letters and digits, e.g. US.")
        ],
    )
    station_field = models.CharField("station code from", max_length=12, default="OBR-19", validators=[field_ref])
    station_codes = models.TextField(
        blank=True,
        max_length=STATION_CODES_MAX,
        validators=[MaxLengthValidator(STATION_CODES_MAX)],
        help_text="One line per code the practice system sends: CODE = AE title of a worklist station.",
    )
    default_station = models.ForeignKey(
        Modality,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="For an order without a station code. Empty: such an order is refused.",
    )
    # Status back to the practice system: its MLLP receiver (empty host: no status is sent).
    status_host = models.CharField(
        "status receiver host", max_length=253, blank=True, help_text="Empty: no order status is sent back."
    )
    status_port = models.PositiveIntegerField(
        "status receiver port",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
    )
    status_message_type = models.CharField(
        "status message type", max_length=8, choices=STATUS_MESSAGE_TYPES, default="ORM^O01"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sending_application", "sending_facility"]
        constraints = [
            models.UniqueConstraint(fields=["sending_application", "sending_facility"], name="hl7_mapping_sender")
        ]

    def __str__(self):
        facility = f" at {self.sending_facility}" if self.sending_facility else ""
        return f"{self.sending_application}{facility}"

    def clean(self):
        super().clean()
        try:
            codes = parse_station_codes(self.station_codes)
        except ValidationError as exc:
            raise ValidationError({"station_codes": exc.messages}) from exc
        if bool(self.status_host) != bool(self.status_port):
            raise ValidationError({"status_port": "Give both the status receiver's host and port, or neither."})
        if self.deployment_id:
            known = set(self.deployment.modalities.filter(allow_find_worklist=True).values_list("aet", flat=True))
            unknown = sorted({aet for aet in codes.values() if aet not in known})
            if unknown:
                raise ValidationError(
                    {
                        "station_codes": f"Not a worklist station of {self.deployment}: {', '.join(unknown)}. "
                        "Register it under Modalities with “C-FIND worklist” first."
                    }
                )

    @property
    def sends_status(self):
        return bool(self.status_host and self.status_port)

    def codes(self) -> dict:
        return parse_station_codes(self.station_codes)


class Hl7Order(models.Model):
    """An order the practice system placed, by its numbers, and the entry it became."""

    mapping = models.ForeignKey(Hl7Mapping, on_delete=models.CASCADE, related_name="orders")
    placer_number = models.CharField("placer order number (ORC-2)", max_length=64, blank=True)
    filler_number = models.CharField("filler order number (ORC-3)", max_length=64, blank=True)
    entry = models.OneToOneField(WorklistEntry, on_delete=models.CASCADE, related_name="hl7_order")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["mapping", "placer_number"], condition=~models.Q(placer_number=""), name="hl7_order_placer"
            )
        ]

    def __str__(self):
        return self.placer_number or self.filler_number


class Hl7Message(models.Model):
    """One message received and the acknowledgement sent back. Holds patient data: Admin only."""

    class Ack(models.TextChoices):
        AA = "AA", "Accepted"
        AE = "AE", "Error"
        AR = "AR", "Rejected"

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    peer = models.CharField(max_length=64, blank=True)
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sending_application = models.CharField(max_length=HD_MAX, blank=True)
    sending_facility = models.CharField(max_length=HD_MAX, blank=True)
    control_id = models.CharField("message control ID (MSH-10)", max_length=199, blank=True)
    message_type = models.CharField(max_length=20, blank=True)
    charset = models.CharField(max_length=16, blank=True)
    raw = models.BinaryField()
    ack = models.BinaryField()
    ack_code = models.CharField(max_length=2, choices=Ack.choices)
    error = models.CharField(max_length=500, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    # A repeat of an accepted message: answered with the original's ACK, nothing done again.
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # Written in the same transaction as the message's effect: a message is done once.
            models.UniqueConstraint(
                fields=["sending_application", "sending_facility", "control_id"],
                condition=models.Q(ack_code="AA", duplicate_of=None),
                name="hl7_message_once",
            )
        ]

    def __str__(self):
        return f"{self.message_type} {self.control_id} from {self.sending_application} ({self.ack_code})"


class Hl7Outbound(models.Model):
    """One order status message for the practice system's receiver: a transactional outbox row,
    written in the transaction of the status change, delivered in order per order by a task."""

    class State(models.TextChoices):
        PENDING = "PENDING", "Waiting"
        DELIVERED = "DELIVERED", "Delivered"
        DEAD = "DEAD", "Dead letter"

    mapping = models.ForeignKey(Hl7Mapping, on_delete=models.CASCADE, related_name="outbound")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    entry = models.ForeignKey(WorklistEntry, null=True, on_delete=models.SET_NULL, related_name="+")
    order_key = models.CharField(max_length=140, db_index=True)  # the order: messages of one key go in id order
    control_id = models.CharField(max_length=20, blank=True)
    entry_status = models.CharField(max_length=20)
    order_status = models.CharField("ORC-5", max_length=2)
    raw = models.BinaryField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    ack = models.BinaryField(default=b"")
    ack_code = models.CharField(max_length=2, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"ORC-5 {self.order_status} of {self.order_key} ({self.get_state_display()})"


class InterfaceHeartbeat(models.Model):
    """A running interface service (the HL7 listener, the MPPS SCP) says it is there: written when it
    starts listening and every minute after, by a thread of its own process."""

    class Service(models.TextChoices):
        HL7 = "hl7", "HL7 listener"
        MPPS = "mpps", "MPPS SCP"

    service = models.CharField(max_length=8, choices=Service.choices)
    host = models.CharField(max_length=253)
    address = models.CharField(max_length=64, help_text="Where it listens, address:port.")
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["service", "host", "address"]
        constraints = [models.UniqueConstraint(fields=["service", "host", "address"], name="interface_heartbeat_once")]

    def __str__(self):
        return f"{self.get_service_display()} on {self.host} ({self.address})"
