"""What an accepted message does to the worklist, through the front desk's own functions
(worklists/scheduling.py): the same checks, the same audit, the same sync. Raises Hl7Error naming
the segment and field of the first problem; the caller's transaction then leaves nothing behind."""

import datetime
import re
from zoneinfo import ZoneInfo

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils import timezone

from worklists import scheduling
from worklists.models import InvalidTransition, Patient, WorklistEntry
from worklists.tasks import request_sync

from .message import Hl7Error, get
from .models import FIELD_REF, Hl7Order

Status = WorklistEntry.Status
NULL = '""'  # HL7's explicit "delete this value"

# Where each patient field comes from (PID), for the ERR of a value the portal refuses.
PATIENT_FIELDS = {
    "patient_id": ("PID", 3, 1),
    "family_name": ("PID", 5, 1),
    "given_name": ("PID", 5, 2),
    "middle_name": ("PID", 5, 3),
    "suffix": ("PID", 5, 4),
    "prefix": ("PID", 5, 5),
    "birth_date": ("PID", 7, 0),
    "sex": ("PID", 8, 0),
}
SEX = {"F": "F", "M": "M", "O": "O", "U": "", "A": "O", "N": ""}


class Context:
    """One message being applied: its parsed form, mapping and deployment."""

    def __init__(self, message, mapping, header):
        self.message, self.mapping, self.header = message, mapping, header
        self.deployment = mapping.deployment
        self.summary = []


# ---------------------------------------------------------------- values


def _segments(message, segment_id):
    return [s for s in message if str(s[0]) == segment_id]


def _one(message, segment_id, required=True):
    found = _segments(message, segment_id)
    if not found and required:
        raise Hl7Error(f"The message has no {segment_id} segment.", segment=segment_id, code=100)
    return found[0] if found else None


def _ts(value, where):
    """An HL7 TS (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]) → aware or naive-local datetime parts."""
    match = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?", value)
    if not match:
        raise Hl7Error(
            f"{where[0]}-{where[1]} {value[:30]!r} is not an HL7 date/time (YYYYMMDDHHMM).", *where, code=102
        )
    day, hour, minute, second, offset = match.groups()
    try:
        moment = datetime.datetime(
            int(day[:4]), int(day[4:6]), int(day[6:]), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError as exc:
        raise Hl7Error(f"{where[0]}-{where[1]} {value!r} is not a calendar date and time.", *where, code=102) from exc
    if offset:
        sign = 1 if offset[0] == "+" else -1
        zone = datetime.timezone(sign * datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:])))
        moment = moment.replace(tzinfo=zone).astimezone(ZoneInfo(timezone.get_current_timezone_name()))
    return moment


def patient_values(pid, partial=False) -> dict:
    """The patient fields PID carries. ``partial`` (A08): only those sent; '""' clears a value."""
    raw = {name: get(pid, f, c or 1) for name, (_s, f, c) in PATIENT_FIELDS.items()}
    if not raw["patient_id"]:
        raise Hl7Error("PID-3, the patient ID, is missing.", "PID", 3, 1, code=101)
    data = {}
    for name, value in raw.items():
        if partial and value == "":
            continue
        value = "" if value == NULL else value
        if name == "birth_date":
            value = _ts(value, ("PID", 7)).date() if value else None
        elif name == "sex":
            if value.upper() not in SEX:
                raise Hl7Error(f"PID-8 sex {value[:10]!r} is not one of F, M, O, U, A, N.", "PID", 8, code=103)
            value = SEX[value.upper()]
        data[name] = value
    if not partial and not data["family_name"]:
        raise Hl7Error("PID-5, the patient's family name, is missing.", "PID", 5, 1, code=101)
    return data


def _ref(text):
    segment, field, component = FIELD_REF.match(text).groups()
    return segment, int(field), int(component or 1)


def _value(group, text):
    """The value a mapping's field reference points at, within one order (ORC + OBR + TQ1…)."""
    if not text:
        return ""
    segment_id, field, component = _ref(text)
    segment = group.get(segment_id)
    return get(segment, field, component) if segment is not None else ""


def _where(group, text, component=None):
    segment_id, field, c = _ref(text)
    return segment_id, field, component or c, group["_seq"].get(segment_id, 1)


def _physician(segment, field):
    """XCN id^family^given^middle^suffix^prefix → DICOM PN family^given^middle^prefix^suffix."""
    parts = [get(segment, field, c) for c in (2, 3, 4, 6, 5)]
    return "^".join(parts).rstrip("^")


# ---------------------------------------------------------------- errors


def raise_validation(exc: ValidationError, locations: dict):
    """The first message of a model/form ValidationError as an Hl7Error at its field's place."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            messages = [m for e in errors for m in e.messages]
            where = locations.get(name) or locations.get(NON_FIELD_ERRORS) or ("MSH", 0, 0, 1)
            raise Hl7Error(f"{_label(where)}: {messages[0]}", *where[:3], code=102, sequence=where[3])
    where = locations.get(NON_FIELD_ERRORS) or ("MSH", 0, 0, 1)
    raise Hl7Error(f"{_label(where)}: {exc.messages[0]}", *where[:3], code=102, sequence=where[3])


def _label(where):
    segment, field, component, _seq = where
    label = f"{segment}-{field}" if field else segment
    return f"{label}.{component}" if component else label


def _patient_locations():
    return {name: (s, f, c, 1) for name, (s, f, c) in PATIENT_FIELDS.items()}


def _check_shown(problems: dict, locations: dict):
    for name, message in problems.items():
        where = locations.get(name, ("PID", 5, 0, 1))
        raise Hl7Error(f"{_label(where)}: {message}", *where[:3], code=102, sequence=where[3])


# ---------------------------------------------------------------- orders


def order_groups(message):
    """Each ORC with the OBR, TQ1, IPC… that follow it: one order each."""
    groups, current, seen, visit = [], None, {}, {"_seq": {}}
    for segment in message:
        segment_id = str(segment[0])
        seen[segment_id] = seen.get(segment_id, 0) + 1
        if segment_id == "ORC":
            # The patient visit (PV1, PV2 before the first ORC) belongs to every order.
            current = {**visit, "ORC": segment, "_seq": {**visit["_seq"], "ORC": seen["ORC"]}}
            groups.append(current)
        elif current is None:
            visit.setdefault(segment_id, segment)
            visit["_seq"].setdefault(segment_id, seen[segment_id])
        elif segment_id not in current or segment_id in visit:
            current[segment_id] = segment
            current["_seq"][segment_id] = seen[segment_id]
    if not groups:
        raise Hl7Error("The order has no ORC segment.", "ORC", code=100)
    return groups


def order_apply(ctx: Context):
    pid = _one(ctx.message, "PID")
    patient_data = patient_values(pid)
    for group in order_groups(ctx.message):
        control = get(group["ORC"], 1).upper()
        handler = {"NW": _new, "XO": _change, "CA": _cancel, "DC": _discontinue}.get(control)
        if handler is None:
            raise Hl7Error(
                f"ORC-1 order control {control[:10]!r} is not handled here: NW, XO, CA or DC.",
                "ORC",
                1,
                code=103,
                sequence=group["_seq"]["ORC"],
            )
        handler(ctx, group, patient_data)


def _numbers(group):
    placer, filler = get(group["ORC"], 2), get(group["ORC"], 3)
    obr = group.get("OBR")
    if obr is not None:
        placer, filler = placer or get(obr, 2), filler or get(obr, 3)
    for value, field in ((placer, 2), (filler, 3)):
        if len(value) > 64:
            raise Hl7Error(f"ORC-{field} is longer than 64 characters.", "ORC", field, 1, code=102)
    if not placer and not filler:
        raise Hl7Error("ORC-2, the placer order number, is missing.", "ORC", 2, 1, code=101)
    return placer, filler


def _find_order(ctx, group):
    placer, filler = _numbers(group)
    orders = Hl7Order.objects.select_related("entry").filter(mapping=ctx.mapping)
    order = orders.filter(placer_number=placer).first() if placer else None
    if order is None and filler:
        order = orders.filter(filler_number=filler).first()
    if order is None:
        raise Hl7Error(
            f"No order {placer or filler} from {ctx.mapping} is known here.",
            "ORC",
            2 if placer else 3,
            1,
            code=204,
            sequence=group["_seq"]["ORC"],
        )
    return order


def _scheduled(group):
    """The start: TQ1-7, ORC-7.4, OBR-27.4, OBR-36 or OBR-6, the first that is sent."""
    for segment_id, field, component in (("TQ1", 7, 1), ("ORC", 7, 4), ("OBR", 27, 4), ("OBR", 36, 1), ("OBR", 6, 1)):
        segment = group.get(segment_id)
        value = get(segment, field, component) if segment is not None else ""
        if value:
            return _ts(value, (segment_id, field)), (segment_id, field, component, group["_seq"].get(segment_id, 1))
    raise Hl7Error("The order has no start date and time: TQ1-7, ORC-7.4, OBR-27.4 or OBR-36.", "ORC", 7, 4, code=101)


def _entry_values(ctx, group):
    """(entry data, {field: where}) of one order, from the mapping's fields."""
    mapping = ctx.mapping
    moment, when = _scheduled(group)
    seq = group["_seq"]
    procedure_ref = mapping.procedure_field
    station_code = _value(group, mapping.station_field)
    if station_code:
        aet = mapping.codes().get(station_code)
        station = ctx.deployment.modalities.filter(aet=aet, allow_find_worklist=True).first() if aet else None
        if station is None:
            raise Hl7Error(
                f"{mapping.station_field} station code {station_code[:64]!r} is not in the mapping of {mapping} "
                "(an Admin adds it under the deployment's HL7 mapping).",
                *_where(group, mapping.station_field)[:3],
                code=103,
                sequence=_where(group, mapping.station_field)[3],
            )
    elif mapping.default_station is not None and mapping.default_station.allow_find_worklist:
        station = mapping.default_station
    else:
        raise Hl7Error(
            f"{mapping.station_field}, the station code, is missing and the mapping of {mapping} has no default station.",
            *_where(group, mapping.station_field)[:3],
            code=101,
            sequence=_where(group, mapping.station_field)[3],
        )
    segment_id, field, _c = _ref(procedure_ref)
    procedure = group.get(segment_id)
    data = {
        "scheduled_date": moment.date(),
        "scheduled_time": moment.time().replace(microsecond=0),
        "station": station,
        "requested_procedure_id": get(procedure, field, 1) if procedure is not None else "",
        "requested_procedure_description": get(procedure, field, 2) if procedure is not None else "",
        "modality": _value(group, mapping.modality_field) or mapping.default_modality,
    }
    accession = _value(group, mapping.accession_field)
    if accession:
        data["accession_number"] = accession
    referring = ("ORC", 12) if get(group["ORC"], 12, 2) else ("OBR", 16)
    if group.get(referring[0]) is not None:
        data["referring_physician"] = _physician(group[referring[0]], referring[1])
    locations = {
        "scheduled_date": when,
        "scheduled_time": when,
        "station": _where(group, mapping.station_field),
        "station_aet": _where(group, mapping.station_field),
        "station_name": _where(group, mapping.station_field),
        "requested_procedure_id": (segment_id, field, 1, seq.get(segment_id, 1)),
        "requested_procedure_description": (segment_id, field, 2, seq.get(segment_id, 1)),
        "modality": _where(group, mapping.modality_field) if mapping.modality_field else ("OBR", 24, 1, 1),
        "accession_number": _where(group, mapping.accession_field) if mapping.accession_field else ("ORC", 3, 1, 1),
        "referring_physician": (referring[0], referring[1], 0, seq.get(referring[0], 1)),
        "study_instance_uid": ("ORC", 2, 1, seq["ORC"]),
        NON_FIELD_ERRORS: ("ORC", 1, 0, seq["ORC"]),
        **_patient_locations(),
    }
    return data, locations


def _save(ctx, patient_data, data, locations, entry=None):
    letters = scheduling.station_letters(ctx.deployment)
    problems = scheduling.station_problems(data["station"], scheduling.shown_values(patient_data, data), letters)
    others = scheduling.patient_problems(ctx.deployment, patient_data, entry.pk if entry else None, letters)
    _check_shown({**others, **problems}, locations)
    if entry is None and data.get("accession_number"):
        if WorklistEntry.objects.filter(accession_number=data["accession_number"]).exists():
            where = locations["accession_number"]
            raise Hl7Error(
                f"{_label(where)}: accession number {data['accession_number']} is already used by another entry.",
                *where[:3],
                code=205,
                sequence=where[3],
            )
    try:
        return scheduling.save_entry(None, ctx.deployment, patient_data, data, entry=entry)
    except ValidationError as exc:
        raise_validation(exc, locations)


def _new(ctx, group, patient_data):
    placer, filler = _numbers(group)
    known = Hl7Order.objects.filter(mapping=ctx.mapping)
    if (placer and known.filter(placer_number=placer).exists()) or (
        not placer and known.filter(filler_number=filler).exists()
    ):
        raise Hl7Error(
            f"Order {placer or filler} already exists; send XO to change it.",
            "ORC",
            2 if placer else 3,
            1,
            code=205,
            sequence=group["_seq"]["ORC"],
        )
    data, locations = _entry_values(ctx, group)
    entry = _save(ctx, patient_data, data, locations)
    Hl7Order.objects.create(mapping=ctx.mapping, placer_number=placer, filler_number=filler, entry=entry)
    ctx.summary.append(f"new order {placer or filler} → {entry.accession_number}")


def _change(ctx, group, patient_data):
    order = _find_order(ctx, group)
    entry = order.entry
    if entry.status not in WorklistEntry.ACTIVE:
        raise Hl7Error(
            f"Order {order} is {entry.get_status_display().lower()}: it cannot change any more.",
            "ORC",
            1,
            code=207,
            sequence=group["_seq"]["ORC"],
        )
    if entry.patient.patient_id != patient_data["patient_id"]:
        raise Hl7Error(
            f"PID-3 {patient_data['patient_id']} is not the patient of order {order}; merge patients with ADT^A40.",
            "PID",
            3,
            1,
            code=207,
        )
    data, locations = _entry_values(ctx, group)
    data.pop("accession_number", None)  # the machine and the study carry it: never renumbered
    _save(ctx, patient_data, data, locations, entry=entry)
    ctx.summary.append(f"order {order} changed ({entry.accession_number})")


def _status(ctx, group, wanted, words):
    order = _find_order(ctx, group)
    entry = order.entry
    for status in wanted:
        if status == entry.status:
            ctx.summary.append(f"order {order} was already {entry.get_status_display().lower()}")
            return
        if status in WorklistEntry.TRANSITIONS[entry.status]:
            scheduling.change_status(None, entry, status, summary=f"HL7 {words} → {Status(status).label.lower()}")
            ctx.summary.append(f"order {order} {Status(status).label.lower()} ({entry.accession_number})")
            return
    try:
        entry.transition(wanted[0])
    except InvalidTransition as exc:
        raise Hl7Error(f"Order {order}: {exc.messages[0]}", "ORC", 1, code=207, sequence=group["_seq"]["ORC"]) from exc


def _cancel(ctx, group, patient_data):
    _status(ctx, group, [Status.CANCELLED], "CA")


def _discontinue(ctx, group, patient_data):
    # DC of an exam not begun is a cancellation (the entry model allows DISCONTINUED only once
    # the patient arrived or the exam started).
    _status(ctx, group, [Status.DISCONTINUED, Status.CANCELLED], "DC")


# ---------------------------------------------------------------- patients


def _full_patient(patient, changes):
    data = {name: getattr(patient, name) for name in PATIENT_FIELDS}
    data.update(changes)
    return data


def patient_update(ctx: Context):
    """ADT^A08: the known patient corrected; every active entry's file is rewritten."""
    changes = patient_values(_one(ctx.message, "PID"), partial=True)
    patient = Patient.objects.filter(deployment=ctx.deployment, patient_id=changes["patient_id"]).first()
    if patient is None:
        # An ADT feed tells of every patient of the practice: one never scheduled here is no error.
        ctx.summary.append(f"patient {changes['patient_id']} is not known here: nothing to update")
        return
    data = _full_patient(patient, changes)
    if not data.get("family_name"):
        raise Hl7Error("PID-5, the patient's family name, cannot be emptied.", "PID", 5, 1, code=101)
    _check_shown(scheduling.patient_problems(ctx.deployment, data), _patient_locations())
    try:
        scheduling.save_patient(None, ctx.deployment, data)
    except ValidationError as exc:
        raise_validation(exc, _patient_locations())
    request_sync(ctx.deployment.pk)
    ctx.summary.append(f"patient {patient.patient_id} updated")


def patient_merge(ctx: Context):
    """ADT^A40: the entries of MRG-1's patient move to PID-3's."""
    changes = patient_values(_one(ctx.message, "PID"), partial=True)
    mrg = _one(ctx.message, "MRG")
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
    locations = _patient_locations()
    for entry in entries:
        if entry.is_listed:
            _check_shown(scheduling.station_problems(entry.station, data, letters), locations)
    _check_shown(scheduling.patient_problems(ctx.deployment, data, letters=letters), locations)
    try:
        for entry in entries:
            scheduling.save_entry(None, ctx.deployment, data, {}, entry=entry, sync=False)
        if not entries:
            scheduling.save_patient(None, ctx.deployment, data)
    except ValidationError as exc:
        raise_validation(exc, locations)
    request_sync(ctx.deployment.pk)
    ctx.summary.append(f"{len(entries)} entries moved from patient {merged_id} to {changes['patient_id']}")
