"""Order status back to the practice system: a transactional outbox and its MLLP delivery.

Every status change of an entry an HL7 order created is saved by ``WorklistEntry.save``, which
sends ``status_changed`` inside its transaction; ``queue_status`` writes one ``Hl7Outbound`` row
per move there, so a change and its message commit (or roll back) together. After the commit the
deployment's queue is asked to deliver (``outbound_deliver``): per receiver, in id order, one message at a
time over one MLLP connection, each waiting for its ACK. A message never overtakes an earlier
undelivered one of the same order (one pass at a time per deployment, under a Redis lock, and no
database transaction held over the network); a receiver that cannot be reached stops the pass for it, the
message waits ``backoff`` and is tried again (the minute sweep sends what a lost task left behind).
AE/AR from the receiver, or ``HL7_STATUS_MAX_ATTEMPTS`` failures, make it a dead letter, kept with
the reason, that an Admin resends from the Interfaces page; the order's later messages wait for it.

ORC-5 (HL7 table 0038), with ORC-1 = SC (status changed) and the reason in ORC-16:
SCHEDULED → SC, ARRIVED → IP (ARRIVED^Patient arrived), IN_PROGRESS → IP (STARTED^Exam started),
COMPLETED → CM, CANCELLED → CA, NO_SHOW → CA (NOSHOW^Patient did not come: the order was never
performed, so cancelled rather than DC), DISCONTINUED → DC (the exam was started and stopped)."""

import logging
import socket
import time
from datetime import timedelta

import hl7
import redis
from django.conf import settings
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from portal.celery import app
from worklists.models import WorklistEntry, status_changed

from .models import Hl7Order, Hl7Outbound

log = logging.getLogger(__name__)
Status = WorklistEntry.Status
DELIVER = "hl7.status_deliver"
START, END = b"\x0b", b"\x1c\x0d"
PASS_SECONDS = 60  # one pass delivers for at most this long, then hands over to the next

# entry status → (ORC-5, ORC-16 code^text or "")
ORDER_STATUS = {
    Status.SCHEDULED: ("SC", ""),
    Status.ARRIVED: ("IP", "ARRIVED^Patient arrived"),
    Status.IN_PROGRESS: ("IP", "STARTED^Exam started"),
    Status.COMPLETED: ("CM", ""),
    Status.CANCELLED: ("CA", ""),
    Status.NO_SHOW: ("CA", "NOSHOW^Patient did not come"),
    Status.DISCONTINUED: ("DC", "DISCONTINUED^Exam discontinued"),
}


def _escape(value) -> str:
    text = str(value or "")
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        text = text.replace(raw, escaped)
    return text.replace("\r", " ").replace("\n", " ")


def build(outbound_id, mapping, order, entry, status) -> bytes:
    code, reason = ORDER_STATUS[status]
    kind = mapping.status_message_type
    patient = entry.patient
    now = timezone.localtime().strftime("%Y%m%d%H%M%S")
    name = "^".join(_escape(getattr(patient, f)) for f in ("family_name", "given_name", "middle_name")).rstrip("^")
    birth = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    segments = [
        f"MSH|^~\\&|PORTAL|{_escape(entry.deployment.slug.upper())}|{_escape(mapping.sending_application)}|"
        f"{_escape(mapping.sending_facility)}|{now}||{kind}^{kind.replace('^', '_')}|ST{outbound_id}|P|2.5|||AL|NE||"
        "UNICODE UTF-8",
        f"PID|1||{_escape(patient.patient_id)}||{name}||{birth}|{_escape(patient.sex)}",
        f"ORC|SC|{_escape(order.placer_number)}|{_escape(order.filler_number or entry.accession_number)}||{code}"
        f"|||||||||||{reason}",
        f"OBR|1|{_escape(order.placer_number)}|{_escape(order.filler_number or entry.accession_number)}|"
        f"{_escape(entry.requested_procedure_id)}^{_escape(entry.requested_procedure_description)}"
        f"||||||||||||||{_escape(entry.accession_number)}|{_escape(entry.station_aet)}|||||{_escape(entry.modality)}",
    ]
    return "\r".join(segments).encode("utf-8")


@receiver(status_changed, sender=WorklistEntry, dispatch_uid="hl7-status-outbox")
def queue_status(sender, entry, moves, **kwargs):
    """Inside the status change's transaction: one outbox row per move of an HL7 order's entry."""
    order = Hl7Order.objects.filter(entry_id=entry.pk).select_related("mapping").first()
    if order is None or not order.mapping.sends_status:
        return
    mapping = order.mapping
    for _old, new in moves:
        out = Hl7Outbound.objects.create(
            mapping=mapping,
            deployment_id=entry.deployment_id,
            entry=entry,
            order_key=f"{mapping.pk}:{order.placer_number or order.filler_number or entry.accession_number}",
            entry_status=new,
            order_status=ORDER_STATUS[new][0],
            raw=b"",
        )
        out.control_id = f"ST{out.pk}"
        out.raw = build(out.pk, mapping, order, entry, new)
        out.save(update_fields=["control_id", "raw"])
    queue = entry.deployment.queue
    transaction.on_commit(lambda: send_deliver(entry.deployment_id, queue))


def send_deliver(deployment_id, queue, countdown=None):
    try:
        app.send_task(
            DELIVER,
            args=[deployment_id],
            queue=queue,
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # the broker is away: the minute sweep delivers
        log.warning("HL7 status delivery of deployment %s not sent (the sweep will): %s", deployment_id, exc)


def backoff(attempts) -> float:
    base, cap = settings.HL7_STATUS_RETRY_BASE, settings.HL7_STATUS_RETRY_MAX
    return min(cap, base * (2 ** max(0, attempts - 1)))


class Refused(Exception):
    """The receiver answered AE or AR."""


def exchange(sock, raw, control_id) -> tuple[bytes, str]:
    """Send one framed message, read its ACK; (ack bytes, code). Raises OSError on the wire."""
    sock.sendall(START + raw + END)
    buffer = b""
    while END not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the receiver closed the connection before its ACK")
        buffer += chunk
        if len(buffer) > 1 << 20:
            raise ConnectionError("an ACK over 1 MB")
    ack = buffer[buffer.find(START) + 1 : buffer.find(END)]
    try:
        parsed = hl7.parse(ack.decode("utf-8", "replace"))
        msa = parsed.segment("MSA")
        code, acked = str(msa[1]), str(msa[2])
    except (KeyError, IndexError, hl7.ParseException) as exc:
        raise ConnectionError(f"not an ACK: {ack[:80]!r}") from exc
    if acked != control_id:
        raise ConnectionError(f"the ACK is for {acked!r}, not {control_id!r}")
    return ack, code


def _ack_text(ack: bytes) -> str:
    try:
        parsed = hl7.parse(ack.decode("utf-8", "replace"))
        text = str(parsed.segment("MSA")[3]) if len(parsed.segment("MSA")) > 3 else ""
        try:
            err = str(parsed.segment("ERR"))
        except KeyError:
            err = ""
        return "; ".join(t for t in (text, err) if t)
    except Exception:
        return ""


DELIVERY_LOCK_KEY = "hl7-status-delivery.{}"  # named after the queue: a site's agent may touch only its queue's keys


def _pass_lock(queue):
    """One delivery pass per deployment at a time, across its workers: a lock in the broker's Redis
    that expires by itself if its holder dies (no database transaction is held over the network)."""
    tls = getattr(settings, "CELERY_BROKER_USE_SSL", None) or {}  # the broker's own CA, as Celery uses it
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, **tls)
    return client.lock(DELIVERY_LOCK_KEY.format(queue), timeout=PASS_SECONDS * 2, blocking=False)


def outbound_deliver(deployment_id) -> dict:
    """Deliver the deployment's waiting messages; {delivered, failed, waiting}. Each outcome is
    written as soon as it is known, so a message acknowledged is never sent again by the next pass."""
    from deployments.models import Deployment

    queue = Deployment.objects.get(pk=deployment_id).queue
    lock = _pass_lock(queue)
    if not lock.acquire():
        # Another pass runs: it may have read the waiting rows before ours were committed.
        send_deliver(deployment_id, queue, countdown=0.5)
        return {"busy": True}
    delivered = failed = 0
    retry_in, again = None, False
    began = time.monotonic()
    sockets = {}
    try:
        now = timezone.now()
        waiting = (
            Hl7Outbound.objects.filter(deployment_id=deployment_id, state=Hl7Outbound.State.PENDING)
            .select_related("mapping")
            .order_by("id")
        )
        # An order with a dead letter waits for it to be resent.
        held = set(
            Hl7Outbound.objects.filter(deployment_id=deployment_id, state=Hl7Outbound.State.DEAD).values_list(
                "order_key", flat=True
            )
        )
        down = set()
        for out in waiting.iterator():
            if time.monotonic() - began > PASS_SECONDS:
                again = True  # a long backlog: the next pass goes on, the lock is not held for ever
                break
            if out.order_key in held or out.mapping_id in down or not out.mapping.sends_status:
                # Behind an earlier undelivered message of its order, its receiver down in this pass,
                # or no receiver on the mapping any more: it waits.
                held.add(out.order_key)
                continue
            if out.next_attempt_at and out.next_attempt_at > now:
                held.add(out.order_key)
                wait = (out.next_attempt_at - now).total_seconds()
                retry_in = wait if retry_in is None else min(retry_in, wait)
                continue
            mapping = out.mapping
            out.attempts += 1
            try:
                sock = sockets.get(mapping.pk)
                if sock is None:
                    sock = socket.create_connection(
                        (mapping.status_host, mapping.status_port), timeout=settings.HL7_STATUS_TIMEOUT
                    )
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.settimeout(settings.HL7_STATUS_TIMEOUT)
                    sockets[mapping.pk] = sock
                ack, code = exchange(sock, bytes(out.raw), out.control_id)
            except OSError as exc:
                bad = sockets.pop(mapping.pk, None)
                if bad is not None:
                    bad.close()
                down.add(mapping.pk)
                held.add(out.order_key)
                out.error = f"{mapping.status_host}:{mapping.status_port}: {exc}"[:500]
                if out.attempts >= settings.HL7_STATUS_MAX_ATTEMPTS:
                    out.state = Hl7Outbound.State.DEAD
                    failed += 1
                else:
                    wait = backoff(out.attempts)
                    out.next_attempt_at = timezone.now() + timedelta(seconds=wait)
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                out.save(update_fields=["attempts", "error", "state", "next_attempt_at"])
                log.warning("HL7 status %s not delivered (attempt %d): %s", out.control_id, out.attempts, exc)
                continue
            out.ack, out.ack_code = ack, code
            if code in ("AA", "CA"):
                out.state, out.delivered_at, out.error = Hl7Outbound.State.DELIVERED, timezone.now(), ""
                delivered += 1
            else:
                out.state = Hl7Outbound.State.DEAD
                out.error = f"{code} from the receiver: {_ack_text(ack) or 'no reason given'}"[:500]
                held.add(out.order_key)
                failed += 1
            out.save(update_fields=["attempts", "ack", "ack_code", "state", "delivered_at", "error"])
    finally:
        for sock in sockets.values():
            sock.close()
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired meanwhile: another pass may run, nothing to undo
            pass
    left = Hl7Outbound.objects.filter(deployment_id=deployment_id, state=Hl7Outbound.State.PENDING).count()
    if again:
        send_deliver(deployment_id, queue)
    elif retry_in is not None:
        send_deliver(deployment_id, queue, countdown=max(retry_in, 0.05))
    return {"delivered": delivered, "failed": failed, "waiting": left}


def resend(outbound: Hl7Outbound):
    """A dead letter back in line, as it was: tried again at once (the caller audits)."""
    Hl7Outbound.objects.filter(pk=outbound.pk).update(state=Hl7Outbound.State.PENDING, attempts=0, next_attempt_at=None)
    queue = outbound.deployment.queue
    transaction.on_commit(lambda: send_deliver(outbound.deployment_id, queue))
