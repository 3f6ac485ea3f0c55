"""What an accepted order does to the worklist, through the front desk's own functions
(worklists/scheduling.py): the same checks, the same audit, the same sync. Raises Hl7Error naming
the segment and field of the first problem; the caller's transaction then leaves nothing behind."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from worklists import scheduling
from worklists.models import InvalidTransition, WorklistEntry

from .fields import (
    Context,
    check_shown,
    hl7_datetime,
    one_segment,
    parse_ref,
    patient_locations,
    patient_values,
    physician,
    raise_validation,
    ref_value,
    ref_where,
    where_label,
)
from .message import Hl7Error, get
from .models import Hl7Order

Status = WorklistEntry.Status

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
    pid = one_segment(ctx.message, "PID")
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
            return hl7_datetime(value, (segment_id, field)), (
                segment_id,
                field,
                component,
                group["_seq"].get(segment_id, 1),
            )
    raise Hl7Error("The order has no start date and time: TQ1-7, ORC-7.4, OBR-27.4 or OBR-36.", "ORC", 7, 4, code=101)


def _entry_values(ctx, group):
    """(entry data, {field: where}) of one order, from the mapping's fields."""
    mapping = ctx.mapping
    moment, when = _scheduled(group)
    seq = group["_seq"]
    procedure_ref = mapping.procedure_field
    station_code = ref_value(group, mapping.station_field)
    if station_code:
        aet = mapping.codes().get(station_code)
        station = ctx.station(aet) if aet else None
        if station is None:
            raise Hl7Error(
                f"{mapping.station_field} station code {station_code[:64]!r} is not in the mapping of {mapping} "
                "(an Admin adds it under the deployment's HL7 mapping).",
                *ref_where(group, mapping.station_field)[:3],
                code=103,
                sequence=ref_where(group, mapping.station_field)[3],
            )
    elif mapping.default_station is not None and mapping.default_station.allow_find_worklist:
        station = mapping.default_station
    else:
        raise Hl7Error(
            f"{mapping.station_field}, the station code, is missing and the mapping of {mapping} has no default station.",
            *ref_where(group, mapping.station_field)[:3],
            code=101,
            sequence=ref_where(group, mapping.station_field)[3],
        )
    segment_id, field, _c = parse_ref(procedure_ref)
    procedure = group.get(segment_id)
    data = {
        "scheduled_date": moment.date(),
        "scheduled_time": moment.time().replace(microsecond=0),
        "station": station,
        "requested_procedure_id": get(procedure, field, 1) if procedure is not None else "",
        "requested_procedure_description": get(procedure, field, 2) if procedure is not None else "",
        "modality": ref_value(group, mapping.modality_field) or mapping.default_modality,
    }
    accession = ref_value(group, mapping.accession_field)
    if accession:
        data["accession_number"] = accession
    referring = ("ORC", 12) if get(group["ORC"], 12, 2) else ("OBR", 16)
    if group.get(referring[0]) is not None:
        data["referring_physician"] = physician(group[referring[0]], referring[1])
    locations = {
        "scheduled_date": when,
        "scheduled_time": when,
        "station": ref_where(group, mapping.station_field),
        "station_aet": ref_where(group, mapping.station_field),
        "station_name": ref_where(group, mapping.station_field),
        "requested_procedure_id": (segment_id, field, 1, seq.get(segment_id, 1)),
        "requested_procedure_description": (segment_id, field, 2, seq.get(segment_id, 1)),
        "modality": ref_where(group, mapping.modality_field) if mapping.modality_field else ("OBR", 24, 1, 1),
        "accession_number": ref_where(group, mapping.accession_field) if mapping.accession_field else ("ORC", 3, 1, 1),
        "referring_physician": (referring[0], referring[1], 0, seq.get(referring[0], 1)),
        "study_instance_uid": ("ORC", 2, 1, seq["ORC"]),
        NON_FIELD_ERRORS: ("ORC", 1, 0, seq["ORC"]),
        **patient_locations(),
    }
    return data, locations


def _save(ctx, patient_data, data, locations, entry=None):
    letters = scheduling.station_letters(ctx.deployment, ctx.stations)
    problems = scheduling.station_problems(data["station"], scheduling.shown_values(patient_data, data), letters)
    # Read once, for the name check and the save.
    patient = scheduling.find_patient(ctx.deployment, patient_data["patient_id"])
    others = scheduling.patient_problems(
        ctx.deployment, patient_data, entry.pk if entry else None, letters, stations=ctx.stations, patient=patient
    )
    check_shown({**others, **problems}, locations)
    try:
        return scheduling.save_entry(None, ctx.deployment, patient_data, data, entry=entry, patient=patient)
    except ValidationError as exc:
        _raise_taken(exc, data, locations)
        raise_validation(exc, locations)


def _raise_taken(exc, data, locations):
    """An accession number another entry has is a duplicate key (ERR 205), not a data type error:
    the entry's own unique check found it, no query of its own."""
    errors = getattr(exc, "error_dict", {}).get("accession_number", [])
    if any(error.code == "unique" for error in errors):
        where = locations["accession_number"]
        raise Hl7Error(
            f"{where_label(where)}: accession number {data['accession_number']} is already used by another entry.",
            *where[:3],
            code=205,
            sequence=where[3],
        )


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
