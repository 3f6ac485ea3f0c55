"""Bad MPPS input gets a clear DIMSE failure status (with an ErrorComment) and a log line, changes
nothing, and the SCP keeps serving: the same association and the next ones still work."""

import time
from io import BytesIO

import pytest
from pydicom.uid import generate_uid
from pynetdicom.dimse_primitives import N_CREATE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from tests.interfaces.mpps_fixtures import (
    connected,
    in_progress,
    machine,
    mpps_orthanc,
    mpps_scp,
    mpps_scp_factory,
    n_create,
)
from tests.worklists.conftest import cfind, make_entry
from worklists.interfaces.mpps.models import PerformedStep
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

__all__ = ["mpps_orthanc", "mpps_scp", "mpps_scp_factory"]  # fixtures
# (0040,0270) SQ of undefined length whose item claims 4096 bytes and holds 2: pydicom cannot read it.
UNREADABLE = b"\x40\x00\x70\x02\xff\xff\xff\xff\xfe\xff\x00\xe0\x00\x10\x00\x00\x01\x02"


def raw_n_create(assoc, payload: bytes):
    """An N-CREATE whose attribute list is these bytes, as a broken machine would send them."""
    request = N_CREATE()
    request.MessageID = 99
    request.AffectedSOPClassUID = ModalityPerformedProcedureStep
    request.AffectedSOPInstanceUID = generate_uid()
    request.AttributeList = BytesIO(payload)
    context = assoc._get_valid_context(ModalityPerformedProcedureStep, "", "scu")
    # As pynetdicom's own send_n_create: pause the association's reactor, or it may take the answer.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(request, context.context_id)
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    assert response is not None, "no answer"
    return response.Status, response.ErrorComment or ""


def _accessions(instance):
    return sorted(a.AccessionNumber for a in cfind(instance))


@pytest.mark.orthanc
def test_malformed_datasets_get_an_error_status_and_the_scp_keeps_serving(mpps_orthanc, mpps_scp):
    d = mpps_orthanc.deployment
    first = make_entry(d, accession="BAD-1", at="09:00")
    second = make_entry(d, accession="BAD-2", at="09:30")
    worklist_sync(d.pk)

    wrong_status = in_progress(first)
    wrong_status.PerformedProcedureStepStatus = "COMPLETED"  # a step is created IN PROGRESS
    no_steps = in_progress(first)
    del no_steps.ScheduledStepAttributesSequence
    with connected(mpps_scp) as assoc:
        status, _, comment = n_create(assoc, wrong_status)
        assert (status, comment) == (0x0106, "N-CREATE with status 'COMPLETED', not 'IN PROGRESS'")
        status, _, comment = n_create(assoc, no_steps)
        assert (status, comment) == (0x0120, "ScheduledStepAttributesSequence is missing")
        status, comment = raw_n_create(assoc, UNREADABLE)
        assert status == 0x0110 and comment.startswith("unreadable dataset")
        assert not PerformedStep.objects.exists()
        assert _accessions(mpps_orthanc) == ["BAD-1", "BAD-2"]
        # The same association goes on.
        assert n_create(assoc, in_progress(first))[0] == 0x0000
    # And the next machine is served.
    with connected(mpps_scp, calling="US2") as other:
        assert n_create(other, in_progress(second))[0] == 0x0000

    assert _accessions(mpps_orthanc) == []
    assert set(WorklistEntry.objects.values_list("status", flat=True)) == {WorklistEntry.Status.IN_PROGRESS}
    assert mpps_scp.proc.poll() is None
    log = mpps_scp.output()
    assert "refused (0x0106): N-CREATE with status 'COMPLETED'" in log
    assert "refused (0x0120): ScheduledStepAttributesSequence is missing" in log
    assert "refused (0x0110): unreadable dataset" in log
    assert "Traceback" not in log


@pytest.mark.orthanc
def test_a_machine_that_drops_the_connection_mid_association_leaves_the_scp_serving(mpps_orthanc, mpps_scp):
    d = mpps_orthanc.deployment
    entry = make_entry(d, accession="DROP-1")
    worklist_sync(d.pk)
    dropped = machine(mpps_scp.port)
    assert dropped.is_established
    dropped.abort()
    with connected(mpps_scp) as assoc:
        assert n_create(assoc, in_progress(entry))[0] == 0x0000
    assert _accessions(mpps_orthanc) == []


@pytest.mark.orthanc
def test_a_connection_that_sends_half_a_pdu_and_waits_does_not_hold_up_the_others(mpps_orthanc, mpps_scp):
    import socket

    d = mpps_orthanc.deployment
    entry = make_entry(d, accession="HALF-1")
    worklist_sync(d.pk)
    # An A-ASSOCIATE-RQ header announcing 200 bytes, then 10 of them, then silence.
    stuck = socket.create_connection(("127.0.0.1", mpps_scp.port))
    try:
        stuck.sendall(b"\x01\x00\x00\x00\x00\xc8" + b"\x00" * 10)
        with connected(mpps_scp) as assoc:
            assert n_create(assoc, in_progress(entry))[0] == 0x0000
    finally:
        stuck.close()
    assert _accessions(mpps_orthanc) == []
    assert mpps_scp.proc.poll() is None
