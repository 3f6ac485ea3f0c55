"""Patients, scheduled procedure steps (worklist entries) and the per-deployment sync state."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from deployments.models import Deployment, Modality
from portal.text import multi_line

from . import vr

# Sent by WorklistEntry.save for the status moves (old, new) it wrote, inside its transaction.
status_changed = Signal()

NOTES_MAX_LENGTH = 2000


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="patients")
    patient_id = models.CharField("patient ID", max_length=64, validators=[vr.check_lo])
    family_name = models.CharField(max_length=64, validators=[vr.check_pn_component])
    given_name = models.CharField(max_length=64, blank=True, validators=[vr.check_pn_component])
    middle_name = models.CharField(max_length=64, blank=True, validators=[vr.check_pn_component])
    prefix = models.CharField(max_length=64, blank=True, validators=[vr.check_pn_component])
    suffix = models.CharField(max_length=64, blank=True, validators=[vr.check_pn_component])
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    NAME_FIELDS = ("family_name", "given_name", "middle_name", "prefix", "suffix")

    class Meta:
        ordering = ["family_name", "given_name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "patient_id"], name="patient_unique_id")]
        indexes = [models.Index(fields=["deployment", "family_name"], name="patient_family_idx")]

    def __str__(self):
        return f"{self.display_name} ({self.patient_id})"

    def save(self, *args, **kwargs):
        updating = not self._state.adding
        super().save(*args, **kwargs)
        if updating:
            Patient.rewrite_entries([self.pk])

    @staticmethod
    def rewrite_entries(patient_pks) -> int:
        """Mark the active entries of these patients for rewriting: a patient's name and details
        are in the file of every one of its entries, so one correction reaches every machine at
        the next sync. (Bulk updates, which bypass ``save``, call this themselves.)"""
        return (
            WorklistEntry.objects.filter(WorklistEntry.LISTED, patient_id__in=list(patient_pks))
            .order_by()
            .update(
                revision=F("revision") + 1,
                needs_sync=True,
                sync_state=WorklistEntry.SyncState.PENDING,
            )
        )

    @property
    def dicom_name(self):
        """Family^Given^Middle^Prefix^Suffix without trailing empty components."""
        return "^".join(getattr(self, f) for f in self.NAME_FIELDS).rstrip("^")

    def clean(self):
        # DICOM PN counts the whole name as written (Family^Given^Middle^Prefix^Suffix), not each part.
        super().clean()
        try:
            vr.check_pn(self.dicom_name)
        except ValidationError as exc:
            raise ValidationError({"family_name": exc.messages}) from exc

    @property
    def display_name(self):
        given = " ".join(p for p in (self.prefix, self.given_name, self.middle_name) if p)
        name = f"{self.family_name.upper()}, {given}" if given else self.family_name.upper()
        return f"{name} {self.suffix}".strip()


class InvalidTransition(ValidationError):
    pass


class WorklistEntry(models.Model):
    """A scheduled procedure step: one patient expected on one station at one time."""

    class Status(models.TextChoices):
        SCHEDULED = "SCHEDULED", "Scheduled"
        ARRIVED = "ARRIVED", "Arrived"
        IN_PROGRESS = "IN_PROGRESS", "In progress"
        COMPLETED = "COMPLETED", "Completed"
        CANCELLED = "CANCELLED", "Cancelled"
        NO_SHOW = "NO_SHOW", "No show"
        DISCONTINUED = "DISCONTINUED", "Discontinued"

    class SyncState(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_LIST = "in_list", "In the machine's list"
        REMOVED = "removed", "Not in the list"
        ERROR = "error", "Error"

    # After dcm4chee: the front desk moves an entry forward; Orthanc's arrival of the study
    # completes it. Everything else is refused.
    TRANSITIONS = {
        Status.SCHEDULED: {Status.ARRIVED, Status.IN_PROGRESS, Status.CANCELLED, Status.NO_SHOW},
        Status.ARRIVED: {Status.IN_PROGRESS, Status.CANCELLED, Status.NO_SHOW, Status.DISCONTINUED},
        Status.IN_PROGRESS: {Status.COMPLETED, Status.DISCONTINUED},
        Status.COMPLETED: set(),
        Status.CANCELLED: set(),
        Status.NO_SHOW: {Status.ARRIVED},  # the patient came late after all
        Status.DISCONTINUED: set(),
    }
    # Statuses whose entry belongs in the machines' list (when inside the active window)...
    ACTIVE = (Status.SCHEDULED, Status.ARRIVED, Status.IN_PROGRESS)
    # ...until the first image of its study arrives, or the station reports by MPPS that it started
    # the step: the machine's list then shows the next patient.
    LISTED = models.Q(status__in=ACTIVE, study_arrived_at=None, station_started_at=None)
    SYNC_FIELDS = ("synced_revision", "in_folder", "file_hash", "sync_error", "synced_at")  # the sync's own
    # What the ScheduledProcedureStepStatus (CS) says to the machine.
    DICOM_STATUS = {Status.SCHEDULED: "SCHEDULED", Status.ARRIVED: "ARRIVED", Status.IN_PROGRESS: "STARTED"}

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="worklist_entries")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="entries")
    accession_number = models.CharField(max_length=16, unique=True, validators=[vr.check_sh])
    study_instance_uid = models.CharField("study instance UID", max_length=64, unique=True, validators=[vr.check_ui])
    requested_procedure_id = models.CharField(
        "requested procedure ID", max_length=16, blank=True, validators=[vr.check_sh]
    )
    requested_procedure_description = models.CharField("procedure", max_length=64, blank=True, validators=[vr.check_lo])
    scheduled_date = models.DateField()
    scheduled_time = models.TimeField()
    modality = models.CharField(max_length=16, default="US", validators=[vr.check_cs])
    station = models.ForeignKey(Modality, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    station_aet = models.CharField("station AE title", max_length=16, validators=[vr.check_ae])
    station_name = models.CharField(max_length=16, blank=True, validators=[vr.check_sh])
    performing_physician = models.CharField(max_length=324, blank=True, validators=[vr.check_pn])
    referring_physician = models.CharField(max_length=324, blank=True, validators=[vr.check_pn])
    notes = models.TextField(
        "internal notes",
        max_length=NOTES_MAX_LENGTH,
        blank=True,
        # TextField's max_length binds forms and the API only; the validator binds the model too.
        validators=[MaxLengthValidator(NOTES_MAX_LENGTH), multi_line],
        help_text=f"Never sent to the machines. At most {NOTES_MAX_LENGTH} characters.",
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SCHEDULED, db_index=True)
    study_arrived_at = models.DateTimeField(
        null=True, blank=True, help_text="When Orthanc received the first image of the entry's study."
    )
    station_started_at = models.DateTimeField(
        null=True, blank=True, help_text="When the station reported by MPPS (IN PROGRESS) that it started the step."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    # Sync bookkeeping: every save bumps ``revision``; the sync records the revision it wrote,
    # so it finds changed entries with one indexed query instead of rendering them all.
    revision = models.PositiveIntegerField(default=1)
    synced_revision = models.PositiveIntegerField(default=0)
    in_folder = models.BooleanField(default=False)
    # revision != synced_revision, kept as a column so the sync finds changed entries by index.
    needs_sync = models.BooleanField(default=True)
    file_hash = models.CharField(max_length=64, blank=True)
    sync_state = models.CharField(max_length=8, choices=SyncState.choices, default=SyncState.PENDING)
    sync_error = models.CharField(max_length=300, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scheduled_date", "scheduled_time", "id"]
        verbose_name_plural = "worklist entries"
        indexes = [
            models.Index(fields=["deployment", "scheduled_date", "scheduled_time"], name="entry_day_idx"),
            # Covers the sync's "which files should be in the folder" questions.
            models.Index(fields=["deployment", "in_folder", "status", "scheduled_date"], name="entry_folder_idx"),
            models.Index(fields=["deployment", "needs_sync"], name="entry_dirty_idx"),
        ]

    def __str__(self):
        return f"{self.accession_number} {self.scheduled_date} {self.scheduled_time:%H:%M}"

    def save(self, *args, **kwargs):
        updating = not self._state.adding
        if updating:
            # F() so two concurrent saves both count; read back after the write.
            self.revision = F("revision") + 1
            self.sync_state = self.SyncState.PENDING
            self.needs_sync = True
            fields = kwargs.get("update_fields")
            if fields is None:
                # The sync's bookkeeping is the sync's: a save from an instance loaded before the
                # last sync must not put back stale values.
                fields = [f.name for f in self._meta.concrete_fields if not f.primary_key]
                fields = [f for f in fields if f not in self.SYNC_FIELDS]
            kwargs["update_fields"] = {*fields, "revision", "sync_state", "needs_sync", "updated_at"}
        moves = self.__dict__.pop("_status_moves", None)
        if not moves:
            super().save(*args, **kwargs)
        else:
            # The one hook of every status change (front desk, completion, MPPS, HL7): receivers
            # (the HL7 status outbox) write their rows in the same transaction as the change.
            with transaction.atomic():
                super().save(*args, **kwargs)
                status_changed.send(sender=WorklistEntry, entry=self, moves=moves)
        if updating:
            self.refresh_from_db(fields=["revision", *self.SYNC_FIELDS])

    @property
    def file_name(self):
        # From the UUID only: nothing a user types can reach a path.
        return f"portal-{self.uuid}.wl"

    @property
    def is_listed(self) -> bool:
        """Whether the entry belongs in the machines' list (the window aside): ``LISTED``."""
        return self.status in self.ACTIVE and self.study_arrived_at is None and self.station_started_at is None

    @property
    def is_terminal(self):
        return not self.TRANSITIONS[self.status]

    @property
    def sync_label(self):
        """(css class, words) of where the entry stands with the machines' list."""
        if self.sync_state == self.SyncState.ERROR:
            return "error", f"error: {self.sync_error}"
        if self.status not in self.ACTIVE or self.study_arrived_at or self.station_started_at:
            if self.in_folder:
                return "pending", "pending removal"
            if self.study_arrived_at:
                return "removed", "images received"
            return ("removed", "started on the station") if self.station_started_at else ("removed", "not in the list")
        if self.revision != self.synced_revision or not self.in_folder:
            before = getattr(settings, "WORKLISTS_WINDOW_DAYS_BEFORE", 1)
            after = getattr(settings, "WORKLISTS_WINDOW_DAYS_AFTER", 30)
            days = (self.scheduled_date - timezone.localdate()).days
            if not self.in_folder and not -before <= days <= after:
                return "removed", "outside the active window"
            return "pending", "pending"
        return "in-list", "in the machine's list"

    def allowed_transitions(self):
        return sorted(self.TRANSITIONS[self.status])

    def transition(self, new_status):
        """Move to ``new_status`` (not saved), or raise InvalidTransition."""
        if new_status not in self.Status.values:
            raise InvalidTransition(f"Unknown status {new_status!r}.", code="invalid_status")
        if new_status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(
                f"An entry that is {self.get_status_display().lower()} cannot become "
                f"{self.Status(new_status).label.lower()}.",
                code="invalid_transition",
            )
        self.__dict__.setdefault("_status_moves", []).append((self.status, new_status))
        self.status = new_status


class WorklistState(models.Model):
    """What the portal knows about one deployment's worklist folder and Orthanc's changes feed."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="worklist_state")
    last_change_seq = models.BigIntegerField(default=0, help_text="Last /changes sequence number read.")
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.CharField(max_length=300, blank=True)
    last_sync_summary = models.CharField(max_length=200, blank=True)
    last_poll_at = models.DateTimeField(null=True, blank=True)
    last_poll_error = models.CharField(max_length=300, blank=True)
    folder_files = models.PositiveIntegerField(default=0)
    foreign_files = models.JSONField(default=list, blank=True)

    def __str__(self):
        return f"worklist state of {self.deployment}"

    @classmethod
    def of(cls, deployment):
        return cls.objects.get_or_create(deployment=deployment)[0]
