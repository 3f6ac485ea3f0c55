"""The values of a message: PID's patient, the mapping's field references, HL7 dates, and where
each refused value sits (ERR-2). Shared by the orders and the patient messages."""

import datetime
import re
from zoneinfo import ZoneInfo

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils import timezone

from worklists import scheduling

from .message import Hl7Error, get
from .models import FIELD_REF

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

    def __init__(self, message, mapping, header, stations=None):
        self.message, self.mapping, self.header = message, mapping, header
        self.deployment = mapping.deployment
        self.summary = []
        self._stations = stations

    @property
    def stations(self):
        """The deployment's worklist stations: the connection's recent read, or read now."""
        if self._stations is None:
            self._stations = list(scheduling.worklist_stations(self.deployment))
        return self._stations

    def station(self, aet):
        """The worklist station with this AE title (the first by name, as the front desk's), or None."""
        return next((s for s in self.stations if s.aet == aet), None)


# ---------------------------------------------------------------- values


def segments_of(message, segment_id):
    return [s for s in message if str(s[0]) == segment_id]


def one_segment(message, segment_id, required=True):
    found = segments_of(message, segment_id)
    if not found and required:
        raise Hl7Error(f"The message has no {segment_id} segment.", segment=segment_id, code=100)
    return found[0] if found else None


def hl7_datetime(value, where):
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
            value = hl7_datetime(value, ("PID", 7)).date() if value else None
        elif name == "sex":
            if value.upper() not in SEX:
                raise Hl7Error(f"PID-8 sex {value[:10]!r} is not one of F, M, O, U, A, N.", "PID", 8, code=103)
            value = SEX[value.upper()]
        data[name] = value
    if not partial and not data["family_name"]:
        raise Hl7Error("PID-5, the patient's family name, is missing.", "PID", 5, 1, code=101)
    return data


def parse_ref(text):
    segment, field, component = FIELD_REF.match(text).groups()
    return segment, int(field), int(component or 1)


def ref_value(group, text):
    """The value a mapping's field reference points at, within one order (ORC + OBR + TQ1…)."""
    if not text:
        return ""
    segment_id, field, component = parse_ref(text)
    segment = group.get(segment_id)
    return get(segment, field, component) if segment is not None else ""


def ref_where(group, text, component=None):
    segment_id, field, c = parse_ref(text)
    return segment_id, field, component or c, group["_seq"].get(segment_id, 1)


def physician(segment, field):
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
            raise Hl7Error(f"{where_label(where)}: {messages[0]}", *where[:3], code=102, sequence=where[3])
    where = locations.get(NON_FIELD_ERRORS) or ("MSH", 0, 0, 1)
    raise Hl7Error(f"{where_label(where)}: {exc.messages[0]}", *where[:3], code=102, sequence=where[3])


def where_label(where):
    segment, field, component, _seq = where
    label = f"{segment}-{field}" if field else segment
    return f"{label}.{component}" if component else label


def patient_locations():
    return {name: (s, f, c, 1) for name, (s, f, c) in PATIENT_FIELDS.items()}


def check_shown(problems: dict, locations: dict):
    for name, message in problems.items():
        where = locations.get(name, ("PID", 5, 0, 1))
        raise Hl7Error(f"{where_label(where)}: {message}", *where[:3], code=102, sequence=where[3])
