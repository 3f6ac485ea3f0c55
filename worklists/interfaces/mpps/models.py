"""What the machines reported by MPPS: one row per performed procedure step (the SOP instance the
machine created), and each N-CREATE / N-SET dataset as received, kept for the audit."""

from django.db import models
from django.utils import timezone

from deployments.models import Deployment, Modality
from worklists.models import WorklistEntry


class PerformedStep(models.Model):
    class Status(models.TextChoices):
        # The values of PerformedProcedureStepStatus (0040,0252), as the machine sends them.
        IN_PROGRESS = "IN PROGRESS", "In progress"
        COMPLETED = "COMPLETED", "Completed"
        DISCONTINUED = "DISCONTINUED", "Discontinued"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="performed_steps")
    sop_instance_uid = models.CharField("SOP instance UID", max_length=64)
    station = models.ForeignKey(Modality, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    station_aet = models.CharField("station AE title", max_length=16)
    station_address = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=Status.choices)
    # The scheduled steps it performs; empty for an unscheduled exam (nothing matched).
    entries = models.ManyToManyField(WorklistEntry, blank=True, related_name="performed_steps")
    reason_code = models.CharField("discontinuation reason code", max_length=16, blank=True)
    reason_scheme = models.CharField("coding scheme", max_length=16, blank=True)
    reason_meaning = models.CharField("discontinuation reason", max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "sop_instance_uid"], name="mpps_unique_instance"),
        ]

    def __str__(self):
        return f"MPPS {self.sop_instance_uid} ({self.status})"

    @property
    def is_final(self):
        return self.status != self.Status.IN_PROGRESS


class MppsMessage(models.Model):
    class Command(models.TextChoices):
        N_CREATE = "N-CREATE", "N-CREATE"
        N_SET = "N-SET", "N-SET"

    step = models.ForeignKey(PerformedStep, on_delete=models.CASCADE, related_name="messages")
    command = models.CharField(max_length=8, choices=Command.choices)
    status = models.CharField("status sent", max_length=16, blank=True)
    # The dataset in the DICOM JSON model (PS3.18 F.2); its largest values are left out past the limit.
    dataset = models.JSONField()
    shortened = models.BooleanField(default=False, help_text="Values were left out to keep it within the limit.")
    station_aet = models.CharField("station AE title", max_length=16)
    station_address = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self):
        return f"{self.command} {self.status} of {self.step.sop_instance_uid}"
