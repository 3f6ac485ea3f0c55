"""CSV import of a day's schedule: every row is checked like the form checks it; errors come
with their line and column; nothing is written unless every row is valid."""

import csv
import io
import re
import time
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from portal import audit
from portal.models import AuditEntry

from .forms import EntryForm, PatientForm, check_station
from .models import Patient, WorklistEntry
from .scheduling import (
    SHOWN_PATIENT_FIELDS,
    accession_numbers,
    new_study_uid,
    station_letters,
    station_problems,
    worklist_stations,
)
from .tasks import request_sync

PATIENT_COLUMNS = ["patient_id", "family_name", "given_name", "middle_name", "prefix", "suffix", "birth_date", "sex"]
ENTRY_COLUMNS = [
    "scheduled_date",
    "scheduled_time",
    "station",
    "requested_procedure_description",
    "referring_physician",
    "performing_physician",
    "accession_number",
    "requested_procedure_id",
    "modality",
    "notes",
]
COLUMNS = PATIENT_COLUMNS + ENTRY_COLUMNS
REQUIRED = ["patient_id", "family_name", "scheduled_date", "scheduled_time", "station"]
MAX_ROWS = 5000
CHUNK = 200  # rows written per transaction: each holds the database's write lock for a moment
# Between two of them on SQLite: a writer waiting for the lock looks again every 100 ms (SQLite's
# busy handler, no queue), so a shorter gap would leave it waiting until the import ends.
SQLITE_GAP = 0.12
MAX_LISTED_ERRORS = 50  # the page lists these and counts the rest
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


@dataclass
class Row:
    line: int
    values: dict
    patient: dict = field(default_factory=dict)
    entry: dict = field(default_factory=dict)


@dataclass
class Parsed:
    rows: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (line, column, message)

    @property
    def ok(self):
        return bool(self.rows) and not self.errors

    @property
    def listed_errors(self):
        return self.errors[:MAX_LISTED_ERRORS]

    @property
    def unlisted_errors(self):
        return max(0, len(self.errors) - MAX_LISTED_ERRORS)


def _date(value):
    match = _COMPACT_DATE.match(value)
    return f"{match[1]}-{match[2]}-{match[3]}" if match else value


def _names(names):
    return ", ".join(name if len(name) <= 40 else f"{name[:40]}…" for name in names)


def parse(deployment, text: str) -> Parsed:
    parsed = Parsed()
    # newline="": the csv module then reads \n, \r\n and a lone \r (old Mac exports) as line ends.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        parsed.errors.append((1, "", _csv_error(exc)))
        return parsed
    reader.fieldnames = header
    unknown = [h for h in header if h not in COLUMNS]
    missing = [h for h in REQUIRED if h not in header]
    if unknown:
        parsed.errors.append((1, _names(unknown), f"Unknown column; the columns are: {', '.join(COLUMNS)}."))
    if missing:
        parsed.errors.append((1, ", ".join(missing), "Required column missing from the header line."))
    if parsed.errors:
        return parsed
    stations = {s.aet: s for s in worklist_stations(deployment)}
    letters = station_letters(deployment, list(stations.values()))
    seen_accessions = {}
    try:
        for record in reader:
            line = reader.line_num
            if len(parsed.rows) >= MAX_ROWS:
                parsed.errors.append((line, "", f"More than {MAX_ROWS} rows: split the file."))
                break
            if None in record:
                parsed.errors.append((line, "", f"{len(record[None])} more values than columns."))
                continue
            values = {k: (v or "").strip() for k, v in record.items()}
            if not any(values.values()):
                continue
            _check_row(deployment, line, values, stations, seen_accessions, parsed, letters)
    except csv.Error as exc:
        parsed.errors.append((reader.line_num, "", _csv_error(exc)))
    _check_patients_across_rows(parsed, letters)
    if not parsed.rows and not parsed.errors:
        parsed.errors.append((1, "", "The file has a header line but no rows."))
    return parsed


def _csv_error(exc):
    if "field larger than field limit" in str(exc):
        return f"A value longer than {csv.field_size_limit() // 1024} KiB: no column holds that much."
    return f"Not a readable CSV line: {exc}."


def _check_row(deployment, line, values, stations, seen_accessions, parsed, letters):
    row = Row(line, values)
    data = {k: values.get(k, "") for k in COLUMNS}
    data["birth_date"], data["scheduled_date"] = _date(data["birth_date"]), _date(data["scheduled_date"])
    station = stations.get(data["station"])
    if data["station"] and station is None:
        parsed.errors.append(
            (line, "station", f"No station {data['station']!r} may query the worklist; known: {', '.join(stations)}.")
        )
        return
    data["station"] = station.pk if station else ""
    data["modality"] = data["modality"] or "US"
    patient_form = PatientForm(data)
    entry_form = EntryForm(data, deployment=deployment)
    if not check_station(patient_form, entry_form, letters):
        for form in (patient_form, entry_form):
            for name, messages in form.errors.items():
                for message in messages:
                    parsed.errors.append((line, name if name != "__all__" else "", message))
        return
    accession = entry_form.cleaned_data.get("accession_number")
    if accession:
        if accession in seen_accessions:
            parsed.errors.append(
                (line, "accession_number", f"Also on line {seen_accessions[accession]}: accession numbers are unique.")
            )
            return
        seen_accessions[accession] = line
    row.patient, row.entry = patient_form.cleaned_data, entry_form.cleaned_data
    parsed.rows.append(row)


def _check_patients_across_rows(parsed, letters):
    """A patient on several rows ends with the last row's name (``_save_patients``): each of its
    rows' stations must show that name too."""
    last = {row.patient["patient_id"]: row for row in parsed.rows}
    for row in parsed.rows:
        final = last[row.patient["patient_id"]]
        if final is row:
            continue
        values = {k: final.patient.get(k, "") for k in SHOWN_PATIENT_FIELDS}
        for name, message in station_problems(row.entry["station"], values, letters).items():
            parsed.errors.append(
                (final.line, name, f"{final.patient['patient_id']} is also on line {row.line}. {message}")
            )


def import_rows(who, deployment, parsed: Parsed) -> int:
    """Write the checked rows in file order, CHUNK rows per transaction.

    ``parse`` has checked every row, outside any transaction. Writing thousands of rows takes
    seconds, and SQLite has one write lock for the whole database: in short transactions, a desk's
    save waits a moment instead of for the whole file. Numbers and patients are looked up inside
    each transaction, so saves made in between are taken into account. Should a concurrent change
    still collide (say, the same accession number typed at the desk meanwhile), the import stops
    there and ImportStopped says which lines were written.
    """
    if not parsed.ok:
        raise ValidationError("The file has errors: nothing was imported.")
    actor = audit.actor_of(who)
    entries = [_new_entry(deployment, row, actor) for row in parsed.rows]
    taken = {e.accession_number for e in entries if e.accession_number}
    for start in range(0, len(entries), CHUNK):
        rows = parsed.rows[start : start + CHUNK]
        for attempt in (1, 2):  # a desk may take the same next number at the same moment: once more
            try:
                with transaction.atomic():
                    _write(who, deployment, rows, entries[start : start + CHUNK], taken)
                break
            except (IntegrityError, ValidationError) as exc:
                if attempt == 2 or not isinstance(exc, IntegrityError):
                    raise ImportStopped(parsed.rows, start, exc) from exc
        if connection.vendor == "sqlite" and start + CHUNK < len(entries):
            time.sleep(SQLITE_GAP)
    request_sync(deployment.pk)
    return len(entries)


class ImportStopped(ValidationError):
    """A write failed after every row was checked: says where, and which lines were written."""

    def __init__(self, rows, written, exc):
        reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else f"a concurrent change: {exc}"
        done = f"lines {rows[0].line}–{rows[written - 1].line} were imported" if written else "nothing was imported"
        super().__init__(f"The import stopped at line {rows[written].line} ({reason}): {done}, the rest was not.")
        self.written = written


def _write(who, deployment, rows, entries, taken):
    patients = _save_patients(who, deployment, rows)
    numbers = {}
    for entry, row in zip(entries, rows, strict=True):
        entry.pk = None  # from a failed attempt
        entry.patient = patients[row.patient["patient_id"]]
        if not row.entry["accession_number"]:
            day = entry.scheduled_date
            numbers.setdefault(day, accession_numbers(day, taken=taken))
            entry.accession_number = next(numbers[day])
    WorklistEntry.objects.bulk_create(entries)
    AuditEntry.objects.bulk_create(
        audit.entry(who, AuditEntry.Action.CREATE, e, None, audit.snapshot(e)) for e in entries
    )


def _new_entry(deployment, row, actor):
    entry = WorklistEntry(deployment=deployment, created_by=actor, study_instance_uid=new_study_uid(), **row.entry)
    # The station's own AE title and name, copied: history keeps what the machine was sent.
    entry.station_aet = row.entry["station"].aet
    entry.station_name = row.entry.get("station_name") or row.entry["station"].station_name
    return entry


def _save_patients(who, deployment, rows) -> dict:
    """{patient_id: Patient}: new ones created, known ones updated to the file's last row for them."""
    wanted = {row.patient["patient_id"]: row.patient for row in rows}
    known = {p.patient_id: p for p in Patient.objects.filter(deployment=deployment, patient_id__in=list(wanted))}
    created, changed, records = [], [], []
    for patient_id, data in wanted.items():
        patient = known.get(patient_id)
        if patient is None:
            created.append(Patient(deployment=deployment, **data))
            continue
        if any(getattr(patient, name) != value for name, value in data.items()):
            before = audit.snapshot(patient)
            for name, value in data.items():
                setattr(patient, name, value)
            changed.append(patient)
            records.append(audit.entry(who, AuditEntry.Action.UPDATE, patient, before, audit.snapshot(patient)))
    Patient.objects.bulk_create(created)
    Patient.objects.bulk_update(changed, list(PATIENT_COLUMNS))
    Patient.rewrite_entries(p.pk for p in changed)  # bulk_update bypasses Patient.save
    records += [audit.entry(who, AuditEntry.Action.CREATE, p, None, audit.snapshot(p)) for p in created]
    AuditEntry.objects.bulk_create(records)
    return {**known, **{p.patient_id: p for p in created}}
