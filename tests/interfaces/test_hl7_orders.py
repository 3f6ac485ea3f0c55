"""Orders and patient updates from the practice system over real MLLP, answered by the real
Orthanc's C-FIND (pynetdicom as the ultrasound machine)."""

import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from portal.models import AuditEntry
from tests.conftest import wait_for
from tests.interfaces.conftest import adt, make_mapping, order, send
from tests.worklists.conftest import cfind
from worklists.interfaces.hl7.models import Hl7Message, Hl7Order
from worklists.models import Patient, WorklistEntry
from worklists.sync import worklist_sync

pytestmark = pytest.mark.orthanc
Status = WorklistEntry.Status


def _tomorrow_at(hhmm):
    day = timezone.localdate() + datetime.timedelta(days=1)
    return day, f"{day:%Y%m%d}{hhmm}"


def _wl_files(deployment):
    return sorted(p.name for p in Path(deployment.worklist_folder).glob("*.wl"))


def test_a_new_order_is_acknowledged_aa_found_by_cfind_and_a_cancel_removes_it(
    wl_orthanc, hl7_listener, celery_worker_factory
):
    deployment = wl_orthanc.deployment
    make_mapping(deployment)
    # The real worker of the deployment's queue writes the folder when the listener's commit asks.
    celery_worker_factory(queues=("portal", deployment.queue))
    day, when = _tomorrow_at("1030")

    ack = send(hl7_listener.port, order("MSG-NW-1", when=when, accession="ACC100", family="Martin", given="Anne"))

    assert (ack.code, ack.control_id) == ("AA", "MSG-NW-1")
    entry = WorklistEntry.objects.get(accession_number="ACC100")
    assert (entry.patient.patient_id, entry.patient.family_name, entry.patient.given_name) == (
        "P1000",
        "Martin",
        "Anne",
    )
    assert (entry.scheduled_date, entry.scheduled_time, entry.station_aet) == (day, datetime.time(10, 30), "US1")
    assert (entry.requested_procedure_id, entry.requested_procedure_description) == ("US-ABD", "Abdomen ultrasound")
    assert entry.referring_physician == "Smith^John"
    assert Hl7Order.objects.get(entry=entry).placer_number == "ORD1"
    wait_for(lambda: entry.file_name in _wl_files(deployment), timeout=30, message="the entry's .wl file")
    answers = cfind(wl_orthanc, accession="ACC100")
    assert [(a.AccessionNumber, str(a.PatientName), a.PatientID) for a in answers] == [
        ("ACC100", "Martin^Anne", "P1000")
    ]
    assert AuditEntry.objects.filter(source="hl7", object_type="worklists.worklistentry").count() == 1

    ack = send(hl7_listener.port, order("MSG-CA-1", order_control="CA", when=when, accession="ACC100"))

    assert ack.code == "AA"
    assert WorklistEntry.objects.get(pk=entry.pk).status == Status.CANCELLED
    wait_for(lambda: entry.file_name not in _wl_files(deployment), timeout=30, message="the .wl file removed")
    assert cfind(wl_orthanc, accession="ACC100") == []


def test_an_a08_renames_the_patient_in_every_active_entrys_cfind_answer(wl_orthanc, hl7_listener):
    deployment = wl_orthanc.deployment
    make_mapping(deployment)
    _day, when = _tomorrow_at("0900")
    assert send(hl7_listener.port, order("M1", placer="O1", accession="A1", when=when)).code == "AA"
    assert send(hl7_listener.port, order("M2", placer="O2", accession="A2", when=when, station="ROOM-B")).code == "AA"
    worklist_sync(deployment.pk)
    assert sorted(str(a.PatientName) for a in cfind(wl_orthanc)) == ["Doe^Jane", "Doe^Jane"]

    ack = send(hl7_listener.port, adt("M3", "A08", "P1000", "Dupont", "Janine"))

    assert ack.code == "AA"
    assert Patient.objects.get(patient_id="P1000").family_name == "Dupont"
    worklist_sync(deployment.pk)
    answers = {a.AccessionNumber: str(a.PatientName) for a in cfind(wl_orthanc)}
    assert answers == {"A1": "Dupont^Janine", "A2": "Dupont^Janine"}


def test_an_a08_for_a_patient_never_scheduled_here_is_accepted_and_changes_nothing(hl7_deployment, hl7_listener):
    ack = send(hl7_listener.port, adt("M9", "A08", "P404", "Nobody"))

    assert ack.code == "AA"
    assert not Patient.objects.exists()
    assert "not known here" in Hl7Message.objects.get(control_id="M9").summary


def test_an_a40_merge_moves_the_entries_to_the_surviving_patient(wl_orthanc, hl7_listener):
    deployment = wl_orthanc.deployment
    make_mapping(deployment)
    _day, when = _tomorrow_at("1100")
    assert send(hl7_listener.port, order("M1", placer="O1", accession="A1", when=when, patient_id="OLD7")).code == "AA"
    assert send(hl7_listener.port, order("M2", placer="O2", accession="A2", when=when, patient_id="OLD7")).code == "AA"
    assert send(hl7_listener.port, order("M3", placer="O3", accession="A3", when=when, patient_id="NEW1")).code == "AA"

    ack = send(hl7_listener.port, adt("M4", "A40", "NEW1", "Doe", merged="OLD7"))

    assert ack.code == "AA"
    assert sorted(
        WorklistEntry.objects.filter(patient__patient_id="NEW1").values_list("accession_number", flat=True)
    ) == [
        "A1",
        "A2",
        "A3",
    ]
    assert not WorklistEntry.objects.filter(patient__patient_id="OLD7").exists()
    worklist_sync(deployment.pk)
    assert {a.AccessionNumber: a.PatientID for a in cfind(wl_orthanc)} == {"A1": "NEW1", "A2": "NEW1", "A3": "NEW1"}


def test_an_xo_changes_the_time_and_a_dc_of_an_exam_not_begun_cancels_it(hl7_deployment, hl7_listener):
    day, when = _tomorrow_at("0800")
    _day, later = _tomorrow_at("1415")
    assert send(hl7_listener.port, order("M1", when=when)).code == "AA"

    assert send(hl7_listener.port, order("M2", order_control="XO", when=later, station="ROOM-B")).code == "AA"

    entry = WorklistEntry.objects.get(accession_number="ACC1")
    assert (entry.scheduled_time, entry.station_aet) == (datetime.time(14, 15), "US2")

    assert send(hl7_listener.port, order("M3", order_control="DC", when=later)).code == "AA"
    assert WorklistEntry.objects.get(pk=entry.pk).status == Status.CANCELLED


def test_a_mapping_may_take_the_station_from_the_visit_and_the_accession_from_the_filler_number(
    hl7_deployment, hl7_listener
):
    from worklists.interfaces.hl7.models import Hl7Mapping

    Hl7Mapping.objects.update(station_field="PV1-3.1", accession_field="ORC-3")
    _day, when = _tomorrow_at("1200")
    text = order("M1", when=when, station="").replace("\rORC|NW|ORD1|", "\rPV1|1|O|ROOM-B\rORC|NW|ORD1|F77")

    assert send(hl7_listener.port, text).code == "AA"
    entry = WorklistEntry.objects.get()
    assert (entry.station_aet, entry.accession_number) == ("US2", "F77")
