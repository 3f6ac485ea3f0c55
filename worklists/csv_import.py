"""CSV import of a day's schedule: every row is checked like the form checks it; errors come
with their line and column; nothing is written unless every row is valid."""

import csv
import io
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from .forms import EntryForm, PatientForm, check_station
from .scheduling import save_entry, worklist_stations
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
            _check_row(deployment, line, values, stations, seen_accessions, parsed)
    except csv.Error as exc:
        parsed.errors.append((reader.line_num, "", _csv_error(exc)))
    if not parsed.rows and not parsed.errors:
        parsed.errors.append((1, "", "The file has a header line but no rows."))
    return parsed


def _csv_error(exc):
    if "field larger than field limit" in str(exc):
        return f"A value longer than {csv.field_size_limit() // 1024} KiB: no column holds that much."
    return f"Not a readable CSV line: {exc}."


def _check_row(deployment, line, values, stations, seen_accessions, parsed):
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
    if not check_station(patient_form, entry_form):
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


def import_rows(who, deployment, parsed: Parsed) -> int:
    """Write every row in one transaction, or none of them."""
    if not parsed.ok:
        raise ValidationError("The file has errors: nothing was imported.")
    with transaction.atomic():
        for row in parsed.rows:
            try:
                save_entry(who, deployment, row.patient, row.entry, sync=False)
            except ValidationError as exc:
                # Checked a moment ago; a concurrent change can still collide: all or nothing.
                raise ValidationError(f"Line {row.line}: {'; '.join(exc.messages)}") from exc
        request_sync(deployment.pk)
    return len(parsed.rows)
