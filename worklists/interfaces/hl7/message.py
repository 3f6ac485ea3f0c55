"""Pure HL7 v2 handling: bytes → text by MSH-18, text → parsed message (python-hl7), and the
acknowledgement with its ERR segment. No database here."""

import re
from dataclasses import dataclass

import hl7
from django.conf import settings

# MSH-18 values (HL7 table 0211) → Python codecs. Others are refused, naming MSH-18.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}
DEFAULT_CHARSET = "8859/1"

# HL7 table 0357, the codes an ERR-3 may carry.
ERROR_CODES = {
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


class Hl7Error(Exception):
    """A message that is not done: the ACK code and where the problem is, for ERR-2/ERR-3."""

    def __init__(self, text, segment="MSH", field=0, component=0, code=207, ack="AE", sequence=1):
        super().__init__(text)
        self.text, self.segment, self.field, self.component = text, segment, field, component
        self.code, self.ack, self.sequence = code, ack, sequence

    @property
    def location(self):
        where = f"{self.segment}-{self.field}" if self.field else self.segment
        return f"{where}.{self.component}" if self.component else where


@dataclass
class Header:
    application: str
    facility: str
    control_id: str
    message_type: str
    event: str
    charset: str

    @property
    def type_name(self):
        return f"{self.message_type}^{self.event}" if self.event else self.message_type


def default_charset():
    return getattr(settings, "HL7_DEFAULT_CHARSET", DEFAULT_CHARSET) or DEFAULT_CHARSET


def declared_charset(raw: bytes) -> str:
    """MSH-18 read from the raw bytes, before decoding (the charset says how to decode the rest).
    Only the header's field separator is used here; the parsing proper is python-hl7's."""
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise Hl7Error("The message does not begin with an MSH segment.", code=100, ack="AR")
    separator = raw[3:4]
    if separator.isalnum() or separator in b" \r\n":
        raise Hl7Error("MSH-1, the field separator, is missing or not a sign.", field=1, code=102, ack="AR")
    header = re.split(rb"[\r\n]", raw, maxsplit=1)[0]
    fields = header.split(separator)  # fields[n] is MSH-(n+1): MSH-1 is the separator itself
    if len(fields) < 18:
        return ""
    value = fields[17]
    for mark in fields[1][:2]:  # the repetition and component separators of MSH-2
        value = value.split(bytes([mark]))[0]
    return value.decode("ascii", errors="replace").strip().upper()


def decode(raw: bytes) -> tuple[str, str]:
    """(text, MSH-18 charset) of the raw message; Hl7Error naming the field of a bad byte."""
    declared = declared_charset(raw)
    name = declared or default_charset()
    codec = CHARSETS.get(name)
    if codec is None:
        raise Hl7Error(
            f"MSH-18 character set {declared[:20]!r} is not one the portal reads: ASCII, 8859/1 or UNICODE UTF-8.",
            field=18,
            code=103,
            ack="AR",
        )
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        segment, sequence, field = _where(raw, exc.start)
        raise Hl7Error(
            f"Byte 0x{raw[exc.start]:02X} at position {exc.start + 1} ({segment}-{field}) is not valid "
            f"{name}, the character set MSH-18 declares"
            + ("" if declared else " (none declared: the portal's default)")
            + ". Send the message in the declared character set, or declare the one it is in.",
            segment=segment,
            field=field,
            sequence=sequence,
            code=102,
        ) from exc
    control = _CONTROL.search(text)
    if control:
        segment, sequence, field = _where(text, control.start())
        raise Hl7Error(
            f"A control character (0x{ord(control.group()):02X}) at position {control.start() + 1} ({segment}-{field}): "
            "HL7 text holds none but the segment end (CR); send it escaped or leave it out.",
            segment=segment,
            field=field,
            sequence=sequence,
            code=102,
        )
    return text, name


# Control characters other than CR and LF (segment ends) and TAB: never in an HL7 value.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _where(raw, position: int):
    """(segment ID, its sequence among segments of that ID, field number) of a position in the
    raw bytes or the decoded text."""
    if isinstance(raw, str):
        prefix = raw[:position].encode("utf-8", errors="replace")
        raw, position = prefix + b"?", len(prefix)
    before = re.split(rb"[\r\n]+", raw[:position])
    seen = {}
    for line in before:
        seen[line[:3]] = seen.get(line[:3], 0) + 1
    segment = before[-1][:3]
    separator = raw[3:4]
    field = before[-1].count(separator) + (1 if segment == b"MSH" else 0)
    return segment.decode("ascii", errors="replace"), seen[segment], field


def parse(text: str):
    """The parsed message (python-hl7). Segments end with CR; LF and CRLF are accepted too."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        message = hl7.parse(text)
        segment_ids = [str(s[0]) for s in message]
    except (hl7.HL7Exception, IndexError, ValueError, TypeError) as exc:
        raise Hl7Error(f"The message cannot be read as HL7 v2: {exc}", code=100, ack="AR") from exc
    if not segment_ids or segment_ids[0] != "MSH":
        raise Hl7Error("The message does not begin with an MSH segment.", code=100, ack="AR")
    for number, segment_id in enumerate(segment_ids, 1):
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment_id):
            raise Hl7Error(
                f"Segment {number} has no valid segment ID ({segment_id[:10]!r}): three capital letters or digits.",
                segment=segment_id[:3] or "MSH",
                code=100,
                ack="AR",
            )
    return message


def get(segment, field, component=1, repetition=1, subcomponent=1) -> str:
    """One value of a segment, unescaped; '' when absent."""
    try:
        return str(segment.extract_field(None, field, repetition, component, subcomponent))
    except (IndexError, KeyError, TypeError):
        return ""


def header(message, charset) -> Header:
    msh = message.segment("MSH")
    values = Header(
        application=get(msh, 3),
        facility=get(msh, 4),
        control_id=get(msh, 10),
        message_type=get(msh, 9, 1),
        event=get(msh, 9, 2),
        charset=charset,
    )
    if not values.control_id:
        raise Hl7Error("MSH-10, the message control ID, is missing.", field=10, code=101, ack="AR")
    if len(values.control_id) > 199:
        raise Hl7Error("MSH-10, the message control ID, is longer than 199 characters.", field=10, code=102, ack="AR")
    if not values.message_type:
        raise Hl7Error("MSH-9, the message type, is missing.", field=9, component=1, code=101, ack="AR")
    for name, field in (("application", 3), ("facility", 4)):
        if len(getattr(values, name)) > 180:
            raise Hl7Error(f"MSH-{field} is longer than 180 characters.", field=field, code=102, ack="AR")
    return values


ACK_TEMPLATE = "MSH|^~\\&|||||||ACK||P|2.5\rMSA|AA|"


def acknowledgement(message, code: str, error: Hl7Error | None = None, charset="") -> str:
    """The ACK text: MSA with ``code`` and, for an error, ERR-1 (v2.3), ERR-2/3/4/8 (v2.5) naming
    the segment, field and what is wrong."""
    if message is not None:
        ack = message.create_ack(code, application=_receiver(message, 5), facility=_receiver(message, 6))
        source = message
    else:
        source = hl7.parse(ACK_TEMPLATE)
        ack = hl7.parse(ACK_TEMPLATE)
        ack.assign_field("PORTAL", "MSH", 1, 3)
        ack.assign_field(hl7.generate_message_control_id(), "MSH", 1, 10)
        ack.assign_field(code, "MSA", 1, 1)
    if charset:
        ack.assign_field(_escape(source, charset), "MSH", 1, 18)
    if error is not None:
        ack.assign_field(_escape(source, error.text[:80]), "MSA", 1, 3)
        err = ack.create_segment([ack.create_field(["ERR"])])
        name = ERROR_CODES.get(error.code, "")
        field = str(error.field) if error.field else ""
        # ERR-1, for v2.3 receivers: segment^sequence^field^code&text&table.
        err.assign_field(error.segment, 1, 1, 1)
        err.assign_field(str(error.sequence), 1, 1, 2)
        err.assign_field(field, 1, 1, 3)
        err.assign_field(f"{error.code}&{name}&HL70357", 1, 1, 4)
        # ERR-2 error location (ERL): segment^sequence^field^repetition^component.
        err.assign_field(error.segment, 2, 1, 1)
        err.assign_field(str(error.sequence), 2, 1, 2)
        err.assign_field(field, 2, 1, 3)
        err.assign_field("1" if error.field else "", 2, 1, 4)
        err.assign_field(str(error.component) if error.component else "", 2, 1, 5)
        # ERR-3 HL7 error code (CWE), ERR-4 severity, ERR-8 the user message.
        err.assign_field(str(error.code), 3, 1, 1)
        err.assign_field(name, 3, 1, 2)
        err.assign_field("HL70357", 3, 1, 3)
        err.assign_field("E", 4)
        err.assign_field("", 5)
        err.assign_field("", 6)
        err.assign_field("", 7)
        err.assign_field(_escape(source, error.text[:500]), 8)
        ack.append(err)
    return str(ack)


def _escape(container, text):
    """python-hl7's escape for the separators, but letters beyond ASCII kept as letters: the ACK
    is encoded in the message's own character set (python-hl7 would write \\Xhh\\ one byte each)."""
    return "".join(c if ord(c) > 0x9F else container.escape(c) for c in text)


def _receiver(message, field):
    # The ACK comes from the application the message was sent to (MSH-5/6), or the portal.
    value = str(message.segment("MSH")(field)) if field < len(message.segment("MSH")) else ""
    return value or "PORTAL"
