"""The listener as a network service: framing limits, many connections, repeats, character sets,
and a SIGKILL in the middle of a stream of orders."""

import datetime
import socket
import threading
import time

from django.utils import timezone

from portal.models import AuditEntry
from tests.conftest import wait_for
from tests.interfaces.conftest import VT, Ack, Client, order, send, wait_closed
from worklists.interfaces.hl7.models import Hl7Message, Hl7Order
from worklists.models import Patient, WorklistEntry

WHEN = f"{timezone.localdate() + datetime.timedelta(days=1):%Y%m%d}1000"


def _order(n, **kw):
    return order(f"MSG{n}", placer=f"ORD{n}", accession=f"ACC{n}", patient_id=f"P{n}", when=WHEN, **kw)


def test_the_same_control_id_twice_is_done_once_and_answered_with_the_first_ack(hl7_deployment, hl7_listener):
    first = send(hl7_listener.port, _order(1))
    again = send(hl7_listener.port, _order(1))

    assert first.code == "AA"
    assert again.raw == first.raw
    assert WorklistEntry.objects.count() == 1
    assert AuditEntry.objects.filter(object_type="worklists.worklistentry").count() == 1
    rows = Hl7Message.objects.order_by("pk")
    assert [(m.ack_code, m.duplicate_of_id) for m in rows] == [("AA", None), ("AA", rows[0].pk)]


def test_the_same_control_id_from_another_sender_is_another_message(hl7_deployment, hl7_listener):
    from tests.interfaces.conftest import make_mapping

    make_mapping(hl7_deployment, sending_facility="ANNEX")
    assert send(hl7_listener.port, _order(1)).code == "AA"
    other = _order(2).replace("MSG2", "MSG1").replace("|CLINIC|", "|ANNEX|", 1)

    assert send(hl7_listener.port, other).code == "AA"
    assert WorklistEntry.objects.count() == 2


def test_a_half_frame_is_closed_after_the_timeout_and_others_are_served_meanwhile(hl7_deployment, hl7_listener):
    stalled = socket.create_connection(("127.0.0.1", hl7_listener.port))
    stalled.sendall(VT + _order(1).encode()[:40])
    time.sleep(0.3)

    assert send(hl7_listener.port, _order(2)).code == "AA"
    closed_after = wait_closed(stalled, timeout=10)

    assert closed_after is not None and closed_after < 5, "the stalled connection is closed"
    wait_for(lambda: "half a frame" in hl7_listener.output(), message="the log line")
    assert send(hl7_listener.port, _order(3)).code == "AA"
    assert sorted(WorklistEntry.objects.values_list("accession_number", flat=True)) == ["ACC2", "ACC3"]


def test_an_oversized_frame_closes_its_connection_with_a_log_line_and_nothing_is_done(
    hl7_deployment, hl7_listener_factory
):
    listener = hl7_listener_factory(None, "--max-bytes", "4096")
    big = socket.create_connection(("127.0.0.1", listener.port))
    big.sendall(VT + _order(1).encode() + b"\rNTE|1||" + b"x" * 8000)

    assert wait_closed(big, timeout=10) is not None
    wait_for(lambda: "a frame over 4096 bytes" in listener.output(), message="the log line")
    assert send(listener.port, _order(2)).code == "AA"
    assert list(WorklistEntry.objects.values_list("accession_number", flat=True)) == ["ACC2"]


def test_bytes_outside_a_frame_are_ignored_and_the_next_frame_is_answered(hl7_deployment, hl7_listener):
    client = Client(hl7_listener.port)
    client.sock.sendall(b"hello\r\n")

    assert Ack(client.send(_order(1))).code == "AA"
    client.close()


def test_many_connections_at_once_are_all_answered(hl7_deployment, hl7_listener):
    acks, errors = {}, []

    def sender(first):
        try:
            client = Client(hl7_listener.port, timeout=60)
            for n in range(first, first + 3):
                acks[n] = Ack(client.send(_order(n))).code
            client.close()
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=sender, args=(i * 10,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert not errors
    assert len(acks) == 24 and set(acks.values()) == {"AA"}
    assert WorklistEntry.objects.count() == 24


def test_a_latin1_message_decodes_its_accents_by_msh18_and_by_default(hl7_deployment, hl7_listener):
    declared = _order(1, family="Dupré", given="Hélène", charset="8859/1").encode("latin-1")
    undeclared = _order(2, family="Müller", given="Zoë", charset="").encode("latin-1")

    ack = send(hl7_listener.port, declared)
    assert ack.code == "AA"
    assert ack.value("MSH", 18) == "8859/1"
    assert send(hl7_listener.port, undeclared).code == "AA"

    assert (Patient.objects.get(patient_id="P1").family_name, Patient.objects.get(patient_id="P1").given_name) == (
        "Dupré",
        "Hélène",
    )
    assert Patient.objects.get(patient_id="P2").family_name == "Müller"


def test_a_utf8_message_decodes_letters_beyond_latin1(hl7_deployment, hl7_listener):
    ack = send(hl7_listener.port, _order(1, family="Łukasiewicz", given="Zoë").encode("utf-8"))

    # With a Latin-1 station in the deployment Orthanc sends Latin-1 to all (DESIGN.md): the
    # refusal names exactly the letters decoded, and ë (Latin-1) is not among them.
    assert (ack.code, ack.location) == ("AE", "PID-5.1")
    assert "cannot show: Ł." in ack.text

    hl7_deployment.modalities.filter(aet="US2").update(allow_find_worklist=False)
    assert send(hl7_listener.port, _order(2, family="Łukasiewicz", given="Śmiały").encode("utf-8")).code == "AA"
    patient = Patient.objects.get(patient_id="P2")
    assert (patient.family_name, patient.given_name) == ("Łukasiewicz", "Śmiały")


def test_the_listener_killed_mid_stream_and_restarted_loses_no_acknowledged_order_and_does_none_twice(
    hl7_deployment, hl7_listener_factory
):
    listener = hl7_listener_factory(None)
    port = listener.port
    acknowledged, stop = [], threading.Event()

    def sender():
        # A practice system: sends in order, and resends a message until it hears its ACK.
        n, client = 0, None
        while n < 60 and not stop.is_set():
            try:
                client = client or Client(port, timeout=5)
                ack = Ack(client.send(_order(n)))
            except OSError:
                client = None
                time.sleep(0.1)
                continue
            if ack.code == "AA":
                acknowledged.append(n)
            n += 1

    thread = threading.Thread(target=sender)
    thread.start()
    wait_for(lambda: len(acknowledged) >= 15, timeout=60, message="15 orders acknowledged")
    listener.kill()  # SIGKILL: no cleanup, a transaction may be cut in the middle
    time.sleep(0.5)
    hl7_listener_factory(port)
    thread.join(180)
    stop.set()

    assert acknowledged == list(range(60)), "every order was acknowledged in the end"
    entries = sorted(WorklistEntry.objects.values_list("accession_number", flat=True))
    assert entries == sorted(f"ACC{n}" for n in range(60)), "each acknowledged order is in the database once"
    assert Hl7Order.objects.count() == 60
    done = Hl7Message.objects.filter(ack_code="AA", duplicate_of=None)
    assert done.count() == 60 and done.values("control_id").distinct().count() == 60


def _self_signed(folder):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hl7.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "hl7.crt", folder / "hl7.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_over_tls_an_order_is_acknowledged_and_a_plain_connection_is_closed_with_a_log_line(
    hl7_deployment, hl7_listener_factory, tmp_path
):
    import ssl

    cert, key = _self_signed(tmp_path)
    listener = hl7_listener_factory(None, "--tls-cert", str(cert), "--tls-key", str(key), "--frame-timeout", "2")
    context = ssl.create_default_context(cafile=str(cert))
    plain = socket.create_connection(("127.0.0.1", listener.port))
    plain.sendall(VT + _order(1).encode() + b"\x1c\r")

    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", listener.port)), server_hostname="127.0.0.1"
    ) as tls:
        tls.sendall(VT + _order(2).encode() + b"\x1c\r")
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = tls.recv(65536)
            assert chunk, "the listener closed the TLS connection"
            answer += chunk

    assert Ack(answer[1:-2]).code == "AA"
    assert wait_closed(plain, timeout=10) is not None
    wait_for(lambda: "no TLS handshake" in listener.output(), message="the log line")
    assert list(WorklistEntry.objects.values_list("accession_number", flat=True)) == ["ACC2"]


def test_the_same_message_on_many_connections_at_once_is_done_once_and_all_hear_the_same_aa(
    hl7_deployment, hl7_listener
):
    answers, start = [], threading.Barrier(6)

    def sender():
        client = Client(hl7_listener.port, timeout=60)
        start.wait()
        answers.append(client.send(_order(1).encode()))
        client.close()

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert len(answers) == 6 and len(set(answers)) == 1
    assert Ack(answers[0]).code == "AA"
    assert WorklistEntry.objects.count() == 1
    assert Hl7Message.objects.filter(duplicate_of=None).count() == 1
