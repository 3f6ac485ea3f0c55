"""Order status back to the practice system: a real MLLP receiver (a TCP server in the test that
answers ACKs), a real Celery worker on the deployment's queue delivering the outbox."""

import socket
import threading
import time

import hl7
import pytest

from portal.models import AuditEntry
from tests.conftest import free_port, wait_for
from tests.interfaces.conftest import FS_CR, VT, order
from worklists import scheduling
from worklists.interfaces.hl7.intake import message_receive
from worklists.interfaces.hl7.models import Hl7Mapping, Hl7Outbound
from worklists.models import WorklistEntry

Status = WorklistEntry.Status
FAST_RETRIES = {"HL7_STATUS_RETRY_BASE": "0.2", "HL7_STATUS_RETRY_MAX": "0.4", "HL7_STATUS_TIMEOUT": "3"}


class Receiver:
    """The practice system's MLLP receiver: keeps what it got, answers ``answer`` (AA, AE or AR)."""

    def __init__(self, port, answer="AA"):
        self.port, self.answer, self.received = port, answer, []
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(8)
        self.running = True
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while self.running:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buffer = b""
        with conn:
            while self.running:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while FS_CR in buffer:
                    frame, buffer = buffer.split(FS_CR, 1)
                    message = hl7.parse(frame[1:].decode("utf-8"))
                    control = str(message.segment("MSH")[10])
                    answer = self.answer
                    if answer == "AA":
                        self.received.append(message)
                    err = "\rERR|||207^Application internal error|E||||unknown order" if answer != "AA" else ""
                    ack = (
                        f"MSH|^~\\&|PRAXIS|CLINIC|PORTAL|X|20261201||ACK|A{control}|P|2.5\rMSA|{answer}|{control}{err}"
                    )
                    conn.sendall(VT + ack.encode() + FS_CR)

    def statuses(self):
        """(placer number, ORC-5, ORC-16 code) of each message received, in order."""
        return [
            (str(m.segment("ORC")[2]), str(m.segment("ORC")[5]), str(m.segment("ORC")[16]).split("^")[0])
            for m in self.received
        ]

    def stop(self):
        self.running = False
        self.server.close()


@pytest.fixture
def receiver_port(hl7_deployment):
    port = free_port()
    Hl7Mapping.objects.filter(deployment=hl7_deployment).update(status_host="127.0.0.1", status_port=port)
    return port


@pytest.fixture
def receivers():
    started = []

    def start(port, answer="AA"):
        started.append(Receiver(port, answer))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def place(control, placer, accession):
    """A new order through the listener's own intake: the entry an HL7 order made."""
    ack = message_receive(order(control=control, placer=placer, accession=accession).encode())
    assert b"MSA|AA" in ack, ack
    return WorklistEntry.objects.get(accession_number=accession)


def move(entry, *statuses):
    for status in statuses:
        entry = WorklistEntry.objects.get(pk=entry.pk)
        scheduling.change_status(None, entry, status)


def test_each_status_change_of_an_hl7_order_reaches_the_receiver_in_order_and_is_acknowledged(
    hl7_deployment, receiver_port, receivers, celery_worker_factory
):
    receiver = receivers(receiver_port)
    celery_worker_factory(queues=(hl7_deployment.queue,), env=FAST_RETRIES)
    first, second = place("M1", "ORD1", "ACC1"), place("M2", "ORD2", "ACC2")
    move(first, Status.ARRIVED, Status.IN_PROGRESS, Status.COMPLETED)
    move(second, Status.NO_SHOW)
    wait_for(lambda: len(receiver.received) == 4, timeout=20, message="four status messages")
    got = receiver.statuses()
    # Per order, in the order of the changes; the placing itself sends nothing.
    assert [s for s in got if s[0] == "ORD1"] == [
        ("ORD1", "IP", "ARRIVED"),
        ("ORD1", "IP", "STARTED"),
        ("ORD1", "CM", ""),
    ]
    assert [s for s in got if s[0] == "ORD2"] == [("ORD2", "CA", "NOSHOW")]
    assert str(receiver.received[0].segment("MSH")[9]) == "ORM^O01^ORM_O01"
    wait_for(
        lambda: Hl7Outbound.objects.filter(state=Hl7Outbound.State.DELIVERED, ack_code="AA").count() == 4,
        timeout=10,
        message="all four recorded delivered",
    )


def test_with_the_receiver_down_the_messages_wait_and_arrive_in_order_once_it_returns_none_lost(
    hl7_deployment, receiver_port, receivers, celery_worker_factory
):
    celery_worker_factory(queues=(hl7_deployment.queue,), env=FAST_RETRIES)
    Hl7Mapping.objects.update(status_message_type="OMG^O19")
    entries = [place(f"M{i}", f"ORD{i}", f"ACC{i}") for i in range(3)]
    for entry in entries:
        move(entry, Status.ARRIVED, Status.IN_PROGRESS)
    move(entries[0], Status.COMPLETED)
    # Nobody listens: the first message of each order is tried, fails, and waits for its retry.
    wait_for(
        lambda: Hl7Outbound.objects.filter(attempts__gte=2).exists(), timeout=15, message="failed delivery attempts"
    )
    assert not Hl7Outbound.objects.exclude(state=Hl7Outbound.State.PENDING).exists()
    receiver = receivers(receiver_port)
    wait_for(lambda: len(receiver.received) == 7, timeout=20, message="the seven waiting messages")
    got = receiver.statuses()
    assert [s for s in got if s[0] == "ORD0"] == [
        ("ORD0", "IP", "ARRIVED"),
        ("ORD0", "IP", "STARTED"),
        ("ORD0", "CM", ""),
    ]
    for i in (1, 2):
        assert [s for s in got if s[0] == f"ORD{i}"] == [(f"ORD{i}", "IP", "ARRIVED"), (f"ORD{i}", "IP", "STARTED")]
    assert str(receiver.received[0].segment("MSH")[9]) == "OMG^O19^OMG_O19"
    wait_for(
        lambda: Hl7Outbound.objects.filter(state=Hl7Outbound.State.DELIVERED).count() == 7,
        timeout=10,
        message="all delivered",
    )
    assert len({str(m.segment("MSH")[10]) for m in receiver.received}) == 7  # none sent twice


def test_a_rejected_message_is_a_dead_letter_that_holds_its_order_until_an_admin_resends_it(
    hl7_deployment, receiver_port, receivers, celery_worker_factory, admin_client
):
    receiver = receivers(receiver_port, answer="AE")
    celery_worker_factory(queues=(hl7_deployment.queue,), env=FAST_RETRIES)
    entry = place("M1", "ORD1", "ACC1")
    move(entry, Status.ARRIVED)
    wait_for(
        lambda: Hl7Outbound.objects.filter(state=Hl7Outbound.State.DEAD).exists(), timeout=15, message="a dead letter"
    )
    dead = Hl7Outbound.objects.get(state=Hl7Outbound.State.DEAD)
    assert dead.ack_code == "AE" and "unknown order" in dead.error
    # A later change of the same order does not overtake the dead letter.
    receiver.answer = "AA"
    move(entry, Status.IN_PROGRESS)
    time.sleep(1.0)  # the pass after this change has run: the receiver would take it now
    assert receiver.received == []
    assert Hl7Outbound.objects.get(entry_status=Status.IN_PROGRESS).attempts == 0
    page = admin_client.get(f"/worklists/interfaces/{hl7_deployment.slug}/")
    assert page.status_code == 200 and b"unknown order" in page.content
    response = admin_client.post(f"/worklists/interfaces/{hl7_deployment.slug}/resend/{dead.pk}/")
    assert response.status_code == 302
    wait_for(lambda: len(receiver.received) == 2, timeout=20, message="the resent message and the one it held")
    assert receiver.statuses() == [("ORD1", "IP", "ARRIVED"), ("ORD1", "IP", "STARTED")]
    assert AuditEntry.objects.filter(summary__icontains="resent").exists()
