"""MPPS and the fallback completion from Orthanc's /changes do not fight: an entry MPPS closed is
left alone when its study arrives; one MPPS started is recorded as arrived and stays started."""

import pytest

from tests.dicomfiles import make_instance
from tests.interfaces.mpps_fixtures import (
    connected,
    final,
    in_progress,
    mpps_orthanc,
    mpps_scp,
    mpps_scp_factory,
    n_create,
    n_set,
)
from tests.worklists.conftest import make_entry
from tests.worklists.test_completion import c_store
from worklists.completion import worklist_completion
from worklists.interfaces.mpps.models import PerformedStep
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

__all__ = ["mpps_orthanc", "mpps_scp", "mpps_scp_factory"]  # fixtures
Status = WorklistEntry.Status


@pytest.mark.orthanc
def test_the_completion_from_orthancs_changes_leaves_an_entry_mpps_discontinued_alone(mpps_orthanc, mpps_scp):
    d = mpps_orthanc.deployment
    stopped = make_entry(d, accession="FIGHT-1", at="09:00")
    started = make_entry(d, accession="FIGHT-2", at="09:30")
    worklist_sync(d.pk)
    with connected(mpps_scp) as assoc:
        _, uid, _ = n_create(assoc, in_progress(stopped))
        assert n_set(assoc, final("DISCONTINUED", ("110526", "DCM", "Resource failure")), uid)[0] == 0x0000
        assert n_create(assoc, in_progress(started))[0] == 0x0000

    # The machine had sent images of both before it stopped; Orthanc's changes report them.
    for entry in (stopped, started):
        c_store(mpps_orthanc, make_instance(patient_id=entry.patient.patient_id, study_uid=entry.study_instance_uid))
    result = worklist_completion(d.pk)

    assert result["matched"] == 1
    stopped.refresh_from_db()
    assert stopped.status == Status.DISCONTINUED and stopped.study_arrived_at is None
    assert PerformedStep.objects.get(sop_instance_uid=uid).reason_meaning == "Resource failure"
    started.refresh_from_db()
    assert started.status == Status.IN_PROGRESS and started.study_arrived_at is not None
    assert not started.in_folder and not stopped.in_folder
