"""Each bad message gets AE or AR with an ERR naming the segment and field, over real MLLP, and
nothing reaches the database's worklist or Orthanc's folder."""

import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from tests.interfaces.conftest import msh, order, pid, send
from worklists.interfaces.hl7.models import Hl7Message, Hl7Order
from worklists.models import Patient, WorklistEntry
from worklists.sync import worklist_sync

WHEN = f"{timezone.localdate() + datetime.timedelta(days=1):%Y%m%d}0930"


def _order(**kw):
    return order(when=WHEN, **kw)


CASES = {
    "no MSH segment": (b"PID|1||P1000||Doe^Jane", "AR", "MSH", "100"),
    "an MSH without its control ID": (_order(control="").encode(), "AR", "MSH-10", "101"),
    "an unknown message type": (_order(kind="ORU^R01").encode(), "AR", "MSH-9.1", "200"),
    "an unknown event": (_order(kind="ADT^A01").encode(), "AR", "MSH-9.2", "201"),
    "an unknown sending application": (
        "\r".join([msh("X1", app="OTHER"), pid(), "ORC|NW|O1"]).encode(),
        "AR",
        "MSH-3",
        "103",
    ),
    "an unknown MSH-18 character set": (_order(charset="ISO IR87").encode(), "AR", "MSH-18", "103"),
    "a malformed segment": ((_order() + "\r1X|garbage").encode(), "AR", "1X", "100"),
    "no PID-3": (_order(patient_id="").encode(), "AE", "PID-3.1", "101"),
    "an unknown station code": (_order(station="ROOM-Z").encode(), "AE", "OBR-19.1", "103"),
    "a family name over 64 characters": (_order(family="D" * 65).encode(), "AE", "PID-5.1", "102"),
    "an accession number over 16 characters (DICOM SH)": (_order(accession="A" * 17).encode(), "AE", "OBR-18.1", "102"),
    "a procedure text over 64 characters (DICOM LO)": (
        _order(procedure="US-ABD^" + "x" * 65).encode(),
        "AE",
        "OBR-4.2",
        "102",
    ),
    "a start that is no date": (order(when="20261399").encode(), "AE", "ORC-7", "102"),
    "no placer order number": (_order(placer="").encode(), "AE", "ORC-2.1", "101"),
    "Latin-1 bytes in a message declared UTF-8": (
        _order(family="Dupré", charset="UNICODE UTF-8").encode("latin-1"),
        "AE",
        "PID-5",
        "102",
    ),
    "a non-ASCII byte in a message declared ASCII": (
        _order(family="Dupré", charset="ASCII").encode("latin-1"),
        "AE",
        "PID-5",
        "102",
    ),
    "a name the Latin-1 station cannot show": (
        _order(family="Łukasiewicz", station="ROOM-B").encode("utf-8"),
        "AE",
        "PID-5.1",
        "102",
    ),
}


@pytest.mark.parametrize("payload, code, location, error", CASES.values(), ids=list(CASES))
def test_a_bad_message_is_refused_naming_the_field_and_nothing_is_written(
    hl7_deployment, hl7_listener, payload, code, location, error
):
    ack = send(hl7_listener.port, payload)

    assert (ack.code, ack.location, ack.error_code) == (code, location, error), ack.raw
    assert ack.text and ack.value("MSA", 3), "a human text in ERR-8 and MSA-3"
    assert not WorklistEntry.objects.exists()
    assert not Patient.objects.exists()
    assert not Hl7Order.objects.exists()
    worklist_sync(hl7_deployment.pk)
    assert not list(Path(hl7_deployment.worklist_folder).glob("*.wl"))
    kept = Hl7Message.objects.get()
    assert (kept.ack_code, bytes(kept.raw), bytes(kept.ack)) == (code, payload, ack.raw)


def test_a_name_the_station_cannot_show_is_refused_with_the_letters_named(hl7_deployment, hl7_listener):
    ack = send(hl7_listener.port, _order(family="Łukasiewicz", given="Śmiały", station="ROOM-B"))

    assert ack.code == "AE"
    assert "cannot show: Ł" in ack.text
    assert "US2" in ack.text


def test_a_second_order_of_a_batch_that_fails_leaves_the_first_undone(hl7_deployment, hl7_listener):
    # One message, one transaction: an error in its second order undoes its first.
    first = _order()
    second = "ORC|NW|ORD2|||||^^^" + WHEN + "\rOBR|1|ORD2||US^x" + "|" * 14 + "ACC2|ROOM-Z"
    ack = send(hl7_listener.port, first + "\r" + second)

    assert (ack.code, ack.location) == ("AE", "OBR-19.1")
    assert ack.value("ERR", 2, 2) == "2", "the second OBR"
    assert not WorklistEntry.objects.exists()
    assert not Patient.objects.exists()
