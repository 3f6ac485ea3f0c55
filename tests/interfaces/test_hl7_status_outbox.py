"""The status outbox itself, without delivery: every path that changes an HL7 order's status writes
its message in the change's own transaction, and only for orders whose sender has a receiver."""

import datetime

import pytest
from django.db import transaction

from deployments.models import Modality
from tests.interfaces.conftest import order
from tests.interfaces.mpps_fixtures import final, in_progress
from worklists import scheduling
from worklists.completion import study_arrived
from worklists.interfaces.hl7.intake import message_receive
from worklists.interfaces.hl7.models import Hl7Mapping, Hl7Outbound
from worklists.interfaces.mpps.performed import Caller, mpps_create, mpps_set
from worklists.models import Patient, WorklistEntry

Status = WorklistEntry.Status


@pytest.fixture
def receiving(hl7_deployment):
    # Port 9 (discard): nothing is delivered here; the broker is absent, so no task runs.
    Hl7Mapping.objects.filter(deployment=hl7_deployment).update(status_host="127.0.0.1", status_port=9)
    return hl7_deployment


def place(control="M1", placer="ORD1", accession="ACC1", order_control="NW"):
    ack = message_receive(
        order(control=control, placer=placer, accession=accession, order_control=order_control).encode()
    )
    assert b"MSA|AA" in ack, ack
    return WorklistEntry.objects.get(accession_number=accession)


def sent():
    return list(Hl7Outbound.objects.order_by("id").values_list("order_status", "entry_status"))


def test_a_status_change_rolled_back_leaves_no_message(receiving):
    entry = place()
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduling.change_status(None, entry, Status.ARRIVED)
        assert sent() == [("IP", "ARRIVED")]  # written inside the change's transaction
        raise RuntimeError("the request failed after the change")
    assert sent() == []


def test_the_front_desk_the_orthanc_completion_mpps_and_an_hl7_cancel_all_queue_a_message(receiving):
    desk, orthanc, machine, cancelled = (place(f"M{i}", f"ORD{i}", f"ACC{i}") for i in range(4))
    scheduling.change_status(None, desk, Status.NO_SHOW)
    with transaction.atomic():
        study_arrived(receiving, orthanc.accession_number, "", stable=True)
    caller = Caller(receiving, Modality.objects.get(aet="US1"), "127.0.0.1")
    mpps_create(caller, "1.2.3.4.1", in_progress(machine))
    mpps_set(caller, "1.2.3.4.1", final("DISCONTINUED"))
    place("M9", "ORD3", "ACC3", order_control="CA")
    by_order = {}
    for out in Hl7Outbound.objects.order_by("id"):
        by_order.setdefault(out.order_key.split(":")[1], []).append(out.order_status)
    assert by_order == {"ORD0": ["CA"], "ORD1": ["IP", "CM"], "ORD2": ["IP", "DC"], "ORD3": ["CA"]}
    assert all(out.raw.startswith(b"MSH|") and out.control_id for out in Hl7Outbound.objects.all())


def test_no_message_for_an_entry_the_practice_system_did_not_order_or_a_sender_without_receiver(hl7_deployment):
    place()  # the mapping has no status receiver
    scheduling.change_status(None, WorklistEntry.objects.get(), Status.ARRIVED)
    patient = Patient.objects.create(deployment=hl7_deployment, patient_id="D1", family_name="Desk")
    desk = WorklistEntry.objects.create(
        deployment=hl7_deployment,
        patient=patient,
        accession_number="DESK1",
        study_instance_uid="1.2.3.777",
        scheduled_date=datetime.date.today(),
        scheduled_time=datetime.time(9, 0),
        station_aet="US1",
    )
    Hl7Mapping.objects.update(status_host="127.0.0.1", status_port=9)
    scheduling.change_status(None, desk, Status.ARRIVED)
    assert sent() == []
