"""One message in, one acknowledgement out: decode, parse, find the sender's mapping, apply in one
transaction with the message's own row (so a message is done once), and keep both."""

import logging
import time

from django.db import IntegrityError, transaction

from portal import audit
from portal.models import AuditEntry
from worklists.scheduling import worklist_stations

from . import orders, patients
from .message import CHARSETS, Hl7Error, acknowledgement, decode, default_charset, header, parse
from .models import Hl7Mapping, Hl7Message

log = logging.getLogger(__name__)

HANDLERS = {
    ("ORM", "O01"): orders.order_apply,
    ("OMI", "O23"): orders.order_apply,
    ("ADT", "A08"): patients.patient_update,
    ("ADT", "A40"): patients.patient_merge,
}
TYPES = {t for t, _e in HANDLERS}


def encode(text: str, charset: str) -> bytes:
    """The ACK in the message's own character set (a letter it cannot hold becomes ?)."""
    codec = CHARSETS.get(charset) or CHARSETS.get(default_charset(), "latin-1")
    return text.encode(codec, errors="replace")


# How long one connection reuses what it read of a sender's setup.
SENDER_SECONDS = 1.0


class Senders:
    """What one connection has read of its senders' setup: the mapping, its deployment and their
    worklist stations, reused for SENDER_SECONDS. A burst of orders reads them once a second
    instead of once an order; an Admin's change reaches the connection's next message within that
    second. An unknown or switched-off sender is never kept: it is asked again at once."""

    def __init__(self):
        self._known = {}  # (MSH-3, MSH-4) → (monotonic time read, mapping, stations)

    def get(self, head):
        """(mapping, worklist stations) of the message's sender; Hl7Error when it has none."""
        key = (head.application, head.facility)
        known = self._known.get(key)
        if known is None or time.monotonic() - known[0] > SENDER_SECONDS:
            mapping = _mapping(head)
            known = self._known[key] = (time.monotonic(), mapping, list(worklist_stations(mapping.deployment)))
        return known[1], known[2]


def message_receive(raw: bytes, peer: str = "", senders: Senders | None = None) -> bytes:
    """The ACK for ``raw`` (one MLLP frame's content). Never raises for what the sender sent.
    ``senders``: the connection's, kept from one message to the next (None: read afresh)."""
    message, head, charset = None, None, ""
    try:
        text, charset = decode(raw)
        message = parse(text)
        head = header(message, charset)
        return _process(raw, peer, message, head, senders or Senders())
    except Hl7Error as exc:
        return _refuse(raw, peer, message, head, charset, exc)
    except Exception:
        # A fault of ours: the sender gets AE 207 and may resend; the log has the traceback.
        log.exception("HL7 message from %s could not be processed", peer)
        error = Hl7Error("The portal could not process the message (internal error); try again later.", code=207)
        return _refuse(raw, peer, message, head, charset, error)


# Only the deployment's columns an order needs (of some sixty, two of them decrypted at each load):
# with them all, this query was a fifth of an order's work.
DEPLOYMENT_FIELDS = ("deployment__name", "deployment__slug", "deployment__default_encoding")


def _mapping(head):
    mapping = (
        Hl7Mapping.objects.select_related("deployment")
        .only(*(f.name for f in Hl7Mapping._meta.concrete_fields), *DEPLOYMENT_FIELDS)
        .filter(sending_application=head.application, sending_facility__in=[head.facility, ""])
        .order_by("-sending_facility")
        .first()
    )
    if mapping is None:
        raise Hl7Error(
            f"No HL7 mapping for sending application {head.application[:40]!r} at facility {head.facility[:40]!r}: "
            "an Admin adds one under the deployment's HL7 page.",
            field=3,
            code=103,
            ack="AR",
        )
    if not mapping.enabled:
        raise Hl7Error(f"The HL7 mapping of {mapping} is switched off.", field=3, code=103, ack="AR")
    return mapping


def _handler(head):
    handler = HANDLERS.get((head.message_type, head.event))
    if handler is not None:
        return handler
    if head.message_type not in TYPES:
        raise Hl7Error(
            f"Message type {head.message_type[:10]} is not handled: ORM^O01, OMI^O23, ADT^A08, ADT^A40.",
            field=9,
            component=1,
            code=200,
            ack="AR",
        )
    raise Hl7Error(
        f"Event {head.type_name[:20]} is not handled: ORM^O01, OMI^O23, ADT^A08, ADT^A40.",
        field=9,
        component=2,
        code=201,
        ack="AR",
    )


def _original(head):
    # At most one (the constraint hl7_message_once), and asked of every message: no order, and
    # only what a repeat's answer needs.
    return (
        Hl7Message.objects.filter(
            sending_application=head.application,
            sending_facility=head.facility,
            control_id=head.control_id,
            ack_code=Hl7Message.Ack.AA,
            duplicate_of=None,
        )
        .order_by()
        .only("deployment_id", "ack", "ack_code")
        .first()
    )


def _message_row(raw, peer, head, **fields):
    """The received message's own row: who sent it, what it was, and what it was answered."""
    return Hl7Message.objects.create(
        peer=peer,
        sending_application=head.application,
        sending_facility=head.facility,
        control_id=head.control_id,
        message_type=head.type_name,
        charset=head.charset,
        raw=raw,
        **fields,
    )


def _repeat(raw, peer, head, original):
    _message_row(
        raw,
        peer,
        head,
        deployment_id=original.deployment_id,
        ack=original.ack,
        ack_code=original.ack_code,
        summary="repeat of an accepted message: its acknowledgement sent again, nothing done",
        duplicate_of=original,
    )
    return bytes(original.ack)


def _process(raw, peer, message, head, senders):
    mapping = None
    try:
        with transaction.atomic(), audit.acting_as("hl7"), audit.batched():
            # Asked first, and only here: inside the transaction (SQLite's IMMEDIATE one holds the
            # write lock), a repeat gets the first ACK even if its sender's mapping changed since.
            original = _original(head)
            if original is not None:
                return _repeat(raw, peer, head, original)
            mapping, stations = senders.get(head)
            handler = _handler(head)
            ack = encode(acknowledgement(message, "AA", charset=head.charset), head.charset)
            ctx = orders.Context(message, mapping, head, stations)
            handler(ctx)
            _keep(raw, peer, head, mapping, ctx, ack)
    except Hl7Error as exc:
        # The same message on another connection, committed meanwhile: its refusal of "order
        # already exists" would be wrong; the first one's ACK is the answer.
        original = _original(head)
        if original is not None:
            return _repeat(raw, peer, head, original)
        if mapping is not None:
            exc.deployment = mapping.deployment  # kept with the refused message, for its site's page
        raise
    except IntegrityError:
        # The same message on another connection at the same moment: the first one did it.
        original = _original(head)
        if original is None:
            raise
        return _repeat(raw, peer, head, original)
    # Only now, after the commit, does the sender hear AA.
    return ack


def _keep(raw, peer, head, mapping, ctx, ack):
    """The accepted message's own row and its audit entry, in the transaction of what it did."""
    row = _message_row(
        raw,
        peer,
        head,
        deployment=mapping.deployment,
        ack=ack,
        ack_code=Hl7Message.Ack.AA,
        summary="; ".join(ctx.summary)[:300],
    )
    audit.record(
        None,
        AuditEntry.Action.ACTION,
        row,
        summary=f"HL7 {head.type_name} {head.control_id[:40]} from {mapping}: {row.summary}",
    )


def _refuse(raw, peer, message, head, charset, error):
    try:
        text = acknowledgement(message, error.ack, error, charset=charset)
    except (IndexError, KeyError, TypeError):  # a header too short to answer from
        text = acknowledgement(None, error.ack, error, charset=charset)
    ack = encode(text, charset or "")
    log.warning("HL7 %s from %s: %s %s", error.ack, peer, error.location, error.text)
    try:
        Hl7Message.objects.create(
            peer=peer,
            deployment=getattr(error, "deployment", None),
            sending_application=(head.application if head else "")[:180],
            sending_facility=(head.facility if head else "")[:180],
            control_id=(head.control_id if head else "")[:199],
            message_type=(head.type_name if head else "")[:20],
            charset=charset[:16],
            raw=raw,
            ack=ack,
            ack_code=error.ack,
            error=f"{error.location}: {error.text}"[:500],
        )
    except Exception:
        log.exception("HL7 message from %s could not be recorded", peer)
    return ack
