"""DICOM value representation checks (PS3.5 §6.2), run before anything is saved.

Each check raises a ``ValidationError`` whose message names the limit, so the same sentence
reaches a form field, an API error and a CSV line.
"""

import datetime
import re

from django.core.exceptions import ValidationError

# Characters a DICOM text value may not hold: the value separator, and control characters, C0,
# DEL and C1 (ESC is allowed by the standard only for ISO 2022 code extensions, which we never write).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# AE titles use the default repertoire only (PS3.5 6.2): printable ASCII.
_AE = re.compile(r"^[\x20-\x7e]*$")
_CS = re.compile(r"^[A-Z0-9 _]*$")
_UI = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_TM = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
_DA = re.compile(r"^[0-9]{8}$")

CHARSET_CODECS = {"ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1", "ISO_IR 6": "ascii"}
CHARSET_NAMES = {"ISO_IR 192": "UTF-8", "ISO_IR 100": "Latin-1", "ISO_IR 6": "ASCII"}


def _length(value, limit, vr):
    if len(value) > limit:
        raise ValidationError(f"At most {limit} characters (DICOM {vr}); this has {len(value)}.", code="max_length")


def _control(value, vr):
    if _CONTROL.search(value):
        raise ValidationError(f"Control characters (tab, line break…) are not allowed in a DICOM {vr}.", code="control")


def _text(value, limit, vr):
    _length(value, limit, vr)
    _control(value, vr)
    if "\\" in value:
        raise ValidationError(f"A backslash (\\) separates DICOM values and cannot be inside a {vr}.", code="backslash")


def check_lo(value):
    """LO, long string: 64 characters."""
    _text(value, 64, "LO")


def check_sh(value):
    """SH, short string: 16 characters."""
    _text(value, 16, "SH")


def check_cs(value):
    """CS, code string: 16 characters of capital letters, digits, space and underscore."""
    _length(value, 16, "CS")
    if not _CS.match(value):
        raise ValidationError(
            "Only capital letters A–Z, digits, space and underscore (DICOM CS, at most 16).", code="cs"
        )


def check_ae(value):
    """AE, application entity title: 16 characters of printable ASCII, no backslash, not only spaces."""
    _text(value, 16, "AE")
    if not _AE.match(value):
        raise ValidationError("An AE title is plain ASCII: letters A–Z, digits, spaces, signs (DICOM AE).", code="ae")
    if value and not value.strip():
        raise ValidationError("An AE title cannot be only spaces (DICOM AE, at most 16).", code="ae")


def check_pn_component(value):
    """One component of a person name (family, given, middle, prefix, suffix)."""
    _length(value, 64, "PN component")
    _control(value, "PN")
    bad = sorted({c for c in value if c in "^=\\"})
    if bad:
        shown = " ".join(bad)
        raise ValidationError(
            f"{shown} cannot be inside a name part: DICOM PN uses ^ = \\ as separators.", code="pn_separator"
        )


def check_pn(value):
    """A whole PN written as Family^Given^Middle^Prefix^Suffix: at most 5 components, and at most 64
    characters for all of them with their ^ (PS3.5 6.2: 64 per component group; we write one group)."""
    _control(value, "PN")
    if "=" in value or "\\" in value:
        raise ValidationError(
            "= and \\ are not allowed in a person name (DICOM PN); separate parts with ^.", code="pn_separator"
        )
    if len(value.split("^")) > 5:
        raise ValidationError(
            "A DICOM PN has at most 5 parts separated by ^ (family^given^middle^prefix^suffix).", code="pn_parts"
        )
    _length(value, 64, "PN, the whole name with its ^")


def check_ui(value):
    """UI, unique identifier: at most 64 characters of digits and dots, no leading zeros."""
    _length(value, 64, "UI")
    if value and not _UI.match(value):
        raise ValidationError(
            "A DICOM UID (UI) is digits separated by dots, no leading zero in a part, at most 64 characters.",
            code="ui",
        )


def check_da(value):
    """DA, date: YYYYMMDD, a real calendar date."""
    if not _DA.match(value or ""):
        raise ValidationError("A DICOM date (DA) is 8 digits, YYYYMMDD.", code="da")
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as exc:
        raise ValidationError(f"{value} is not a calendar date (DICOM DA, YYYYMMDD).", code="da") from exc


def check_tm(value):
    """TM, time: HH, HHMM, HHMMSS or HHMMSS.FFFFFF."""
    if not _TM.match(value or ""):
        raise ValidationError("A DICOM time (TM) is HHMMSS, optionally .FFFFFF (24-hour clock).", code="tm")


def da(value: datetime.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def tm(value: datetime.time | None) -> str:
    return value.strftime("%H%M%S") if value else ""


def unshowable(text: str, charset: str) -> list[str]:
    """The distinct letters of ``text`` that the character set cannot represent, in order."""
    codec = CHARSET_CODECS.get(charset, "utf-8")
    seen = []
    for char in text:
        if char in seen:
            continue
        try:
            char.encode(codec)
        except UnicodeEncodeError:
            seen.append(char)
    return seen


def check_charset(text: str, charset: str, station: str):
    """Refuse a value the station cannot display, naming the letters (never strip them)."""
    bad = unshowable(text, charset)
    if bad:
        letters = ", ".join(bad)
        raise ValidationError(
            f"The station {station} shows only {CHARSET_NAMES.get(charset, charset)} letters and cannot show: "
            f"{letters}. Type the name as the patient's documents spell it in those letters, or choose "
            f"a station that supports UTF-8.",
            code="charset",
        )
