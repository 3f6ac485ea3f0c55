"""ADT messages: a patient corrected (A08), two patients merged (A40), through the front desk's
functions, so every active entry's file is rewritten."""

from django.core.exceptions import ValidationError

from worklists import scheduling
from worklists.models import Patient
from worklists.tasks import request_sync

from .fields import (
    PATIENT_FIELDS,
    Context,
    check_shown,
    one_segment,
    patient_locations,
    patient_values,
    raise_validation,
)
from .message import Hl7Error, get

# ---------------------------------------------------------------- patients


def _full_patient(patient, changes):
    data = {name: getattr(patient, name) for name in PATIENT_FIELDS}
    data.update(changes)
    return data


def patient_update(ctx: Context):
    """ADT^A08: the known patient corrected; every active entry's file is rewritten."""
    changes = patient_values(one_segment(ctx.message, "PID"), partial=True)
    patient = Patient.objects.filter(deployment=ctx.deployment, patient_id=changes["patient_id"]).first()
    if patient is None:
        # An ADT feed tells of every patient of the practice: one never scheduled here is no error.
        ctx.summary.append(f"patient {changes['patient_id']} is not known here: nothing to update")
        return
    data = _full_patient(patient, changes)
    if not data.get("family_name"):
        raise Hl7Error("PID-5, the patient's family name, cannot be emptied.", "PID", 5, 1, code=101)
    check_shown(scheduling.patient_problems(ctx.deployment, data), patient_locations())
    try:
        scheduling.save_patient(None, ctx.deployment, data)
    except ValidationError as exc:
        raise_validation(exc, patient_locations())
    request_sync(ctx.deployment.pk)
    ctx.summary.append(f"patient {patient.patient_id} updated")


def patient_merge(ctx: Context):
    """ADT^A40: the entries of MRG-1's patient move to PID-3's."""
    changes = patient_values(one_segment(ctx.message, "PID"), partial=True)
    mrg = one_segment(ctx.message, "MRG")
    merged_id = get(mrg, 1, 1)
    if not merged_id:
        raise Hl7Error("MRG-1, the patient ID merged away, is missing.", "MRG", 1, 1, code=101)
    if merged_id == changes["patient_id"]:
        raise Hl7Error("MRG-1 names the same patient as PID-3.", "MRG", 1, 1, code=207)
    merged = Patient.objects.filter(deployment=ctx.deployment, patient_id=merged_id).first()
    if merged is None:
        ctx.summary.append(f"patient {merged_id} is not known here: nothing to move")
        return
    surviving = Patient.objects.filter(deployment=ctx.deployment, patient_id=changes["patient_id"]).first()
    data = _full_patient(surviving or merged, changes)
    data["patient_id"] = changes["patient_id"]
    if not data.get("family_name"):
        raise Hl7Error("PID-5, the patient's family name, is missing.", "PID", 5, 1, code=101)
    entries = list(merged.entries.select_related("station").order_by("pk"))
    letters = scheduling.station_letters(ctx.deployment)
    locations = patient_locations()
    for entry in entries:
        if entry.is_listed:
            check_shown(scheduling.station_problems(entry.station, data, letters), locations)
    check_shown(scheduling.patient_problems(ctx.deployment, data, letters=letters), locations)
    try:
        for entry in entries:
            scheduling.save_entry(None, ctx.deployment, data, {}, entry=entry, sync=False)
        if not entries:
            scheduling.save_patient(None, ctx.deployment, data)
    except ValidationError as exc:
        raise_validation(exc, locations)
    request_sync(ctx.deployment.pk)
    ctx.summary.append(f"{len(entries)} entries moved from patient {merged_id} to {changes['patient_id']}")
