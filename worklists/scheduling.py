"""Scheduling as the front desk, the API and the CSV import all do it: one place that finds or
creates the patient, checks what the station can display, numbers the entry, saves, audits and
asks for a sync once the transaction commits."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from pydicom.uid import generate_uid

from deployments import charsets
from portal import audit
from portal.models import AuditEntry

from . import vr
from .models import Patient, WorklistEntry
from .tasks import request_sync

# Values a station displays: checked against its character set.
SHOWN_PATIENT_FIELDS = Patient.NAME_FIELDS
SHOWN_ENTRY_FIELDS = ("requested_procedure_description", "performing_physician", "referring_physician")


def worklist_stations(deployment):
    return deployment.modalities.filter(allow_find_worklist=True).order_by("name")


def station_letters(deployment, stations=None) -> dict:
    """{station AE title: the character set whose letters reach that station intact}: what the
    station shows, narrowed by the one encoding Orthanc sends (deployments/charsets.py)."""
    stations = list(worklist_stations(deployment)) if stations is None else stations
    encoding = deployment.worklist_encoding(stations)
    return {s.aet: charsets.received(s.charset, encoding) for s in stations if s.allow_find_worklist}


def station_problems(station, values: dict, letters=None) -> dict:
    """{field: message} for values that would not reach the station intact, naming the letters.
    ``letters``: the result of ``station_letters`` when the caller checks many values."""
    problems = {}
    if station is None:
        return problems
    if letters is None:
        letters = station_letters(station.deployment)
    charset = letters.get(station.aet, station.charset)
    for name, value in values.items():
        if not value:
            continue
        try:
            vr.check_charset(str(value), charset, station.aet)
        except ValidationError as exc:
            problems[name] = exc.messages[0] if charset == station.charset else _narrowed(station, charset, value)
    return problems


def _narrowed(station, charset, value):
    """The refusal when the deployment's one encoding, not the station, loses the letters."""
    why = charsets.reason(station.deployment.default_encoding, list(worklist_stations(station.deployment)))
    return (
        f"The station {station.aet} receives its worklist with {vr.CHARSET_NAMES[charset]} letters only ({why}) "
        f"and cannot show: {', '.join(vr.unshowable(str(value), charset))}. Type the name as the patient's "
        "documents spell it in those letters, or ask an administrator about the deployment's worklist "
        "character set."
    )


def patient_problems(
    deployment, patient_data: dict, exclude_entry=None, letters=None, stations=None, patient=None
) -> dict:
    """{field: message} for a known patient's new name parts that a station of one of its other
    active entries would not receive intact: a patient's name is on every one of its entries.
    ``stations``: the deployment's ``worklist_stations``, and ``patient``: the patient of that ID,
    when the caller has read them already in its transaction."""
    patient_id = patient_data.get("patient_id")
    if not patient_id:
        return {}
    if patient is not None and not renamed(patient, patient_data):
        return {}  # its entries' stations have these very names already: nothing new reaches them
    entries = (
        WorklistEntry.objects.filter(deployment=deployment, patient__patient_id=patient_id)
        .filter(WorklistEntry.LISTED)
        .exclude(pk=exclude_entry)
        .order_by("scheduled_date", "scheduled_time")
    )
    stations = {s.aet: s for s in (worklist_stations(deployment) if stations is None else stations)}
    problems = {}
    for aet, accession in entries.values_list("station_aet", "accession_number"):
        station = stations.get(aet)
        if station is None:
            continue
        if letters is None:
            letters = station_letters(deployment, list(stations.values()))
        values = {k: patient_data.get(k, "") for k in SHOWN_PATIENT_FIELDS}
        for name, message in station_problems(station, values, letters).items():
            problems.setdefault(name, f"{patient_id} is also scheduled on {aet} ({accession}). {message}")
    return problems


def renamed(patient, patient_data: dict) -> bool:
    """Whether ``patient_data`` changes a name part the stations show."""
    return any(getattr(patient, k) != patient_data.get(k, "") for k in SHOWN_PATIENT_FIELDS)


def find_patient(deployment, patient_id):
    return Patient.objects.filter(deployment=deployment, patient_id=patient_id).first()


def unsendable_entries(deployment, setting, stations, limit=10) -> list[str]:
    """Sentences naming the listed entries whose shown values would not reach their station
    intact with these ``stations`` and this encoding ``setting`` (at most ``limit``, then a count).
    Registered with deployments.charsets: the station and settings forms refuse such a change."""
    encoding = charsets.resolve(setting, [s.charset for s in stations if s.allow_find_worklist])
    letters = {s.aet: charsets.received(s.charset, encoding) for s in stations if s.allow_find_worklist}
    entries = (
        WorklistEntry.objects.filter(WorklistEntry.LISTED, deployment=deployment, station_aet__in=list(letters))
        .select_related("patient")
        .order_by("scheduled_date", "scheduled_time", "id")
    )
    found = []
    for entry in entries.iterator():
        values = shown_values({k: getattr(entry.patient, k) for k in SHOWN_PATIENT_FIELDS}, vars(entry))
        bad = [c for v in values.values() if v for c in vr.unshowable(str(v), letters[entry.station_aet])]
        if bad:
            found.append((entry, ", ".join(dict.fromkeys(bad))))
    sentences = [
        f"{e.accession_number} ({e.patient.display_name}, {e.scheduled_date:%Y-%m-%d} on {e.station_aet}) has letters "
        f"{e.station_aet} would receive garbled or not at all: {letters_}. Correct or move it first."
        for e, letters_ in found[:limit]
    ]
    if len(found) > limit:
        sentences.append(f"And {len(found) - limit} more scheduled entries.")
    return sentences


def shown_values(patient_data: dict, entry_data: dict) -> dict:
    values = {k: patient_data.get(k, "") for k in SHOWN_PATIENT_FIELDS}
    values.update({k: entry_data.get(k, "") for k in SHOWN_ENTRY_FIELDS})
    return values


def next_accession(date, pattern=None) -> str:
    """The next free number of ``pattern`` for the day; at most 16 characters (DICOM SH)."""
    return next(accession_numbers(date, pattern))


def accession_numbers(date, pattern=None, taken=frozenset()):
    """The day's free numbers of ``pattern``, one after the other, skipping those in ``taken``."""
    pattern = pattern or settings.WORKLISTS_ACCESSION_PATTERN
    prefix = pattern.split("{seq", 1)[0].format(date=date)
    last = (
        WorklistEntry.objects.filter(accession_number__startswith=prefix)
        .order_by("-accession_number")
        .values_list("accession_number", flat=True)
        .first()
    )
    seq = 1
    if last:
        tail = last[len(prefix) :]
        seq = int(tail) + 1 if tail.isdigit() else 1
    while True:
        number = pattern.format(date=date, seq=seq)
        if len(number) > 16:
            raise ValidationError(f"The accession pattern gives {number!r}, longer than 16 characters (DICOM SH).")
        seq += 1
        if number not in taken:
            yield number


def new_study_uid() -> str:
    prefix = getattr(settings, "WORKLISTS_UID_PREFIX", "") or None
    return generate_uid(prefix=prefix)


def save_patient(who, deployment, data: dict, patient=None) -> Patient:
    """Create or update the patient of ``data``'s ID. ``patient``: that patient, when the caller has
    just read it in its transaction (None: it is looked up)."""
    if patient is None:
        patient = find_patient(deployment, data["patient_id"])
    if patient is None:
        patient = Patient(deployment=deployment, **data)
        patient.full_clean(exclude=["deployment"])
        patient.save()
        audit.record(who, AuditEntry.Action.CREATE, patient, None, audit.snapshot(patient))
        return patient
    before = audit.snapshot(patient)
    changed = False
    for name, value in data.items():
        if getattr(patient, name) != value:
            setattr(patient, name, value)
            changed = True
    if changed:
        patient.full_clean(exclude=["deployment"], validate_unique=False)
        patient.save()
        audit.record(who, AuditEntry.Action.UPDATE, patient, before, audit.snapshot(patient))
    return patient


def save_entry(
    who, deployment, patient_data: dict, entry_data: dict, entry=None, sync=True, patient=None
) -> WorklistEntry:
    """Create (``entry`` None) or update an entry from validated data. Call inside a transaction.
    ``sync=False`` when the caller asks for one sync after many entries (the CSV import).
    ``patient``: as for ``save_patient``."""
    station = entry_data.get("station")
    patient = save_patient(who, deployment, patient_data, patient)
    creating = entry is None
    if creating:
        entry = WorklistEntry(deployment=deployment, created_by=audit.actor_of(who))
        before = None
    else:
        before = audit.snapshot(entry)
    for name, value in entry_data.items():
        setattr(entry, name, value)
    entry.patient = patient
    if station is not None:
        # The station's own AE title and name, copied: history keeps what the machine was sent.
        entry.station_aet = station.aet
        entry.station_name = entry_data.get("station_name") or station.station_name
    generated = []
    if not entry.study_instance_uid:
        entry.study_instance_uid = new_study_uid()
        generated.append("study_instance_uid")
    if not entry.accession_number:
        entry.accession_number = _save_with_new_accession(entry)
    else:
        _full_clean(entry, generated)
        entry.save()
    audit.record(
        who, AuditEntry.Action.CREATE if creating else AuditEntry.Action.UPDATE, entry, before, audit.snapshot(entry)
    )
    if sync:
        request_sync(deployment.pk, deployment.queue)
    return entry


def _full_clean(entry, generated):
    """``full_clean``, without asking the database whether values new by construction are taken:
    the uuid (uuid4, never typed nor changed) and the ``generated`` ones (a study UID made here).
    Their unique constraints still hold in the database; every value is still validated."""
    exclude = {"deployment", "patient", "station"}
    errors = {}
    try:
        entry.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    try:
        entry.validate_unique(exclude=exclude | set(errors) | {"uuid", *generated})
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def _save_with_new_accession(entry) -> str:
    # Two desks may number the same day at once: the unique constraint decides, we retry.
    for _ in range(20):
        entry.accession_number = next_accession(entry.scheduled_date)
        try:
            with transaction.atomic():
                entry.save()
            return entry.accession_number
        except IntegrityError:
            entry.pk = None
            entry._state.adding = True
    raise ValidationError("Could not find a free accession number; try again.")


def change_status(who, entry, status, summary="") -> WorklistEntry:
    """A front-desk status change (arrived, no-show, cancel…): refused when not allowed."""
    before = audit.snapshot(entry)
    entry.transition(status)
    entry.save(update_fields=["status"])
    audit.record(
        who,
        AuditEntry.Action.ACTION,
        entry,
        before,
        audit.snapshot(entry),
        summary=summary or f"status → {entry.get_status_display()}",
    )
    request_sync(entry.deployment_id)
    return entry
