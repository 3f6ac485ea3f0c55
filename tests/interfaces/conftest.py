"""The HL7 listener as its own process (``manage.py hl7_listener``) against the test database, a
real MLLP client over TCP, and message builders."""

import os
import socket
import subprocess
import sys
import time

import hl7
import pytest

from deployments.models import Deployment, Modality
from tests.conftest import ROOT, free_port, test_database_url, wait_for
from tests.worklists.conftest import wl_orthanc  # noqa: F401  (a fixture of the order tests)
from worklists.interfaces.hl7.models import Hl7Mapping

VT, FS_CR = b"\x0b", b"\x1c\x0d"


class Listener:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log

    def output(self):
        return self.log.read_text(errors="replace")

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def hl7_listener_factory(transactional_db, tmp_path):
    """Start ``manage.py hl7_listener`` processes; each sees the test database."""
    started = []

    def start(port=None, *args):
        port = port or free_port()
        log = tmp_path / f"hl7-{port}-{len(started)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "LOG_LEVEL": "INFO",
        }
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "hl7_listener", "--port", str(port), *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        listener = Listener(proc, port, log)
        started.append(listener)
        wait_for(lambda: _accepts(port) or proc.poll() is not None, timeout=30, message="the HL7 listener")
        if proc.poll() is not None:
            pytest.fail(f"manage.py hl7_listener exited:\n{listener.output()[-3000:]}", pytrace=False)
        return listener

    yield start
    for listener in started:
        if listener.proc.poll() is None:
            listener.proc.terminate()
            try:
                listener.proc.wait(10)
            except subprocess.TimeoutExpired:
                listener.kill()


@pytest.fixture
def hl7_listener(hl7_listener_factory):
    return hl7_listener_factory(None, "--frame-timeout", "1.5")


def add_hl7_stations(deployment):
    """Two ultrasound machines, as in tests/worklists: US1 reads UTF-8, US2 Latin-1 only."""
    Modality.objects.get_or_create(
        deployment=deployment,
        aet="US1",
        defaults=dict(
            name="us1", host="127.0.0.1", port=free_port(), charset=Modality.Charset.UTF8, station_name="ROOM1"
        ),
    )
    Modality.objects.get_or_create(
        deployment=deployment,
        aet="US2",
        defaults=dict(
            name="us2", host="127.0.0.1", port=free_port(), charset=Modality.Charset.LATIN1, station_name="ROOM2"
        ),
    )


def make_mapping(deployment, **fields):
    values = {
        "sending_application": "PRAXIS",
        "sending_facility": "CLINIC",
        "station_codes": "ROOM-A = US1\nROOM-B = US2",
    }
    mapping = Hl7Mapping(deployment=deployment, **{**values, **fields})
    mapping.full_clean()
    mapping.save()
    return mapping


@pytest.fixture
def hl7_deployment(transactional_db, tmp_path):
    """A deployment with a worklist folder, two stations and the PRAXIS mapping; no Orthanc."""
    deployment = Deployment.objects.create(
        name="HL7 clinic",
        slug="hl7clinic",
        orthanc_url="http://127.0.0.1:9",
        service_password="x" * 24,
        config_dir=str(tmp_path / "config"),
        storage_dir=str(tmp_path / "storage"),
        worklists_dir=str(tmp_path / "worklists"),
    )
    (tmp_path / "worklists").mkdir()
    add_hl7_stations(deployment)
    make_mapping(deployment)
    return deployment


# ---------------------------------------------------------------- messages


def msh(control, kind="ORM^O01", charset="UNICODE UTF-8", app="PRAXIS", facility="CLINIC"):
    return f"MSH|^~\\&|{app}|{facility}|PORTAL|US|20261201101500||{kind}|{control}|P|2.5|||AL|NE||{charset}"


def pid(patient_id="P1000", family="Doe", given="Jane", birth="19800102", sex="F"):
    return f"PID|1||{patient_id}^^^PRAXIS^PI||{family}^{given}||{birth}|{sex}"


def order(
    control="MSG1",
    order_control="NW",
    placer="ORD1",
    patient_id="P1000",
    family="Doe",
    given="Jane",
    station="ROOM-A",
    when="202612011030",
    accession="ACC1",
    procedure="US-ABD^Abdomen ultrasound",
    kind="ORM^O01",
    charset="UNICODE UTF-8",
    extra_pid="",
):
    segments = [
        msh(control, kind, charset),
        pid(patient_id, family, given) + extra_pid,
        f"ORC|{order_control}|{placer}|||||^^^{when}||20261201101500|||^Smith^John",
        f"OBR|1|{placer}||{procedure}||||||||||||||{accession}|{station}|||||US",
    ]
    return "\r".join(segments)


def adt(control, event, patient_id, family, given="Jane", merged=None, charset="UNICODE UTF-8"):
    segments = [
        msh(control, f"ADT^{event}", charset),
        "EVN|" + event + "|20261201101500",
        pid(patient_id, family, given),
    ]
    if merged:
        segments.append(f"MRG|{merged}^^^PRAXIS^PI")
    return "\r".join(segments)


def encode(text, codec="utf-8"):
    return text.encode(codec)


# ---------------------------------------------------------------- the client


class Client:
    """An MLLP client over a real TCP connection: one frame out, one ACK back."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, payload: bytes) -> bytes:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.sock.sendall(VT + payload + FS_CR)
        return self.receive()

    def receive(self) -> bytes:
        while FS_CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.buffer += chunk
        frame, self.buffer = self.buffer.split(FS_CR, 1)
        assert frame.startswith(VT), frame[:20]
        return frame[1:]

    def close(self):
        self.sock.close()


def send(port, payload) -> "Ack":
    client = Client(port)
    try:
        return Ack(client.send(payload))
    finally:
        client.close()


class Ack:
    """The parsed acknowledgement (python-hl7)."""

    def __init__(self, raw: bytes, codec="utf-8"):
        self.raw = raw
        self.message = hl7.parse(raw.decode(codec).replace("\r\n", "\r"))

    def value(self, segment, field, component=1, repetition=1):
        try:
            return str(self.message.segment(segment).extract_field(None, field, repetition, component, 1))
        except (KeyError, IndexError):
            return ""

    @property
    def code(self):
        return self.value("MSA", 1)

    @property
    def control_id(self):
        return self.value("MSA", 2)

    @property
    def location(self):
        """ERR-2 as SEG-FIELD (SEG-FIELD.COMPONENT when one is named)."""
        seg, field, comp = self.value("ERR", 2, 1), self.value("ERR", 2, 3), self.value("ERR", 2, 5)
        where = f"{seg}-{field}" if field else seg
        return f"{where}.{comp}" if comp else where

    @property
    def error_code(self):
        return self.value("ERR", 3, 1)

    @property
    def text(self):
        return self.value("ERR", 8)


def wait_closed(sock, timeout):
    """Seconds until the peer closed ``sock`` (recv returns b'' or fails), or None."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(1024)
    except TimeoutError:
        return None
    except OSError:
        return time.monotonic() - start
    return time.monotonic() - start if data == b"" else None
