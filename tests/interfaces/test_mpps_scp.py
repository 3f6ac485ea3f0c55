"""The MPPS SCP against real parts: ``manage.py mpps_scp`` in its own process, pynetdicom as the
ultrasound machine, a real Orthanc serving the worklist folder to the machine's C-FIND."""

import pytest

from portal.models import AuditEntry
from tests.interfaces.mpps_fixtures import (
    connected,
    final,
    in_progress,
    machine,
    mpps_orthanc,
    mpps_scp,
    mpps_scp_factory,
    n_create,
    n_set,
)
from tests.worklists.conftest import cfind, files_in, make_entry
from worklists.interfaces.mpps.models import MppsMessage, PerformedStep
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

__all__ = ["mpps_orthanc", "mpps_scp", "mpps_scp_factory"]  # fixtures
Status = WorklistEntry.Status
REASON = ("110514", "DCM", "Incorrect worklist entry selected")


def _accessions(instance):
    return sorted(a.AccessionNumber for a in cfind(instance))


def _two_entries(instance):
    d = instance.deployment
    first = make_entry(d, accession="MPPS-1", at="09:00")
    second = make_entry(d, accession="MPPS-2", at="09:30")
    worklist_sync(d.pk)
    assert _accessions(instance) == ["MPPS-1", "MPPS-2"]
    return first, second


@pytest.mark.orthanc
def test_mpps_in_progress_from_the_registered_station_takes_the_entry_off_the_machines_list(mpps_orthanc, mpps_scp):
    first, second = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        status, uid, _ = n_create(assoc, in_progress(first))
    assert status == 0x0000, mpps_scp.output()

    # The very next query, nothing else ran: the SCP answered after the folder was synced.
    assert _accessions(mpps_orthanc) == ["MPPS-2"]
    first.refresh_from_db()
    assert first.status == Status.IN_PROGRESS and first.station_started_at is not None
    assert first.sync_label == ("removed", "started on the station")
    assert first.file_name not in files_in(mpps_orthanc.deployment)
    second.refresh_from_db()
    assert second.status == Status.SCHEDULED and second.station_started_at is None

    step = PerformedStep.objects.get(sop_instance_uid=uid)
    assert step.status == PerformedStep.Status.IN_PROGRESS and step.station_aet == "US1"
    assert list(step.entries.all()) == [first]
    (message,) = step.messages.all()
    assert message.command == MppsMessage.Command.N_CREATE and message.station_address == "127.0.0.1"
    # The dataset as the machine sent it, in the DICOM JSON model: (0040,0270) item's accession.
    assert message.dataset["00400270"]["Value"][0]["00080050"]["Value"] == ["MPPS-1"]
    audit = AuditEntry.objects.filter(source="mpps")
    assert audit.filter(object_type="worklists.worklistentry", object_id=str(first.pk)).get().changes["status"] == [
        "SCHEDULED",
        "IN_PROGRESS",
    ]
    assert audit.filter(object_type="mpps.performedstep", action=AuditEntry.Action.CREATE).count() == 1


@pytest.mark.orthanc
def test_an_entry_is_found_by_its_accession_number_when_the_machine_made_its_own_study_uid(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        status, _, _ = n_create(assoc, in_progress(first, study_uid="1.2.3.4.5.6.7"))
    assert status == 0x0000
    assert _accessions(mpps_orthanc) == ["MPPS-2"]
    first.refresh_from_db()
    assert first.status == Status.IN_PROGRESS


@pytest.mark.orthanc
def test_mpps_completed_closes_the_entry_and_the_closed_step_takes_no_more_updates(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        assert n_create(assoc, in_progress(first))[0] == 0x0000
        uid = PerformedStep.objects.get().sop_instance_uid
        assert n_set(assoc, final("COMPLETED"), uid) == (0x0000, "")
        first.refresh_from_db()
        assert first.status == Status.COMPLETED
        # PS3.4 F.7.2.2: a completed step may no longer be updated.
        status, comment = n_set(assoc, final("DISCONTINUED", REASON), uid)
    assert status == 0x0110 and "COMPLETED" in comment
    first.refresh_from_db()
    assert first.status == Status.COMPLETED
    step = PerformedStep.objects.get()
    assert step.status == PerformedStep.Status.COMPLETED and step.reason_code == ""
    assert [m.command for m in step.messages.all()] == ["N-CREATE", "N-SET"]
    assert _accessions(mpps_orthanc) == ["MPPS-2"]
    closed = AuditEntry.objects.filter(source="mpps", object_type="worklists.worklistentry", object_id=str(first.pk))
    assert [a.changes["status"] for a in closed.order_by("id")] == [
        ["SCHEDULED", "IN_PROGRESS"],
        ["IN_PROGRESS", "COMPLETED"],
    ]


@pytest.mark.orthanc
def test_mpps_discontinued_records_the_reason_the_machine_gives(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        assert n_create(assoc, in_progress(first))[0] == 0x0000
        uid = PerformedStep.objects.get().sop_instance_uid
        assert n_set(assoc, final("DISCONTINUED", REASON), uid) == (0x0000, "")
    first.refresh_from_db()
    assert first.status == Status.DISCONTINUED
    step = PerformedStep.objects.get()
    assert (step.status, step.reason_code, step.reason_scheme, step.reason_meaning) == (
        "DISCONTINUED",
        "110514",
        "DCM",
        "Incorrect worklist entry selected",
    )
    last = step.messages.last()
    assert last.dataset["00400281"]["Value"][0]["00080104"]["Value"] == ["Incorrect worklist entry selected"]
    why = AuditEntry.objects.filter(source="mpps", object_type="worklists.worklistentry", object_id=str(first.pk))
    assert "Incorrect worklist entry selected [DCM:110514]" in why.order_by("id").last().summary
    assert _accessions(mpps_orthanc) == ["MPPS-2"]


def _nothing_changed(instance, first):
    first.refresh_from_db()
    assert first.status == Status.SCHEDULED and first.station_started_at is None
    assert not PerformedStep.objects.exists() and not MppsMessage.objects.exists()
    assert _accessions(instance) == ["MPPS-1", "MPPS-2"]


@pytest.mark.orthanc
def test_an_unregistered_ae_title_is_refused_at_the_association_and_nothing_changes(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    assoc = machine(mpps_scp.port, calling="INTRUDER")
    assert assoc.is_rejected and not assoc.is_established
    _nothing_changed(mpps_orthanc, first)
    assert "association from INTRUDER at 127.0.0.1 to TESTPACS refused" in mpps_scp.output()


@pytest.mark.orthanc
def test_a_wrong_called_ae_title_is_refused(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    assoc = machine(mpps_scp.port, called="SOMEONEELSE")
    assert assoc.is_rejected
    _nothing_changed(mpps_orthanc, first)
    assert "no deployment served here answers to the called AE title 'SOMEONEELSE'" in mpps_scp.output()


@pytest.mark.orthanc
def test_a_registered_ae_title_from_another_address_is_refused_and_one_registered_there_is_not(mpps_orthanc, mpps_scp):
    from deployments.models import Modality

    first, _ = _two_entries(mpps_orthanc)
    # US1 is registered at 127.0.0.1: the same name from 127.0.0.2 is another device.
    assoc = machine(mpps_scp.port, calling="US1", address="127.0.0.2")
    assert assoc.is_rejected
    _nothing_changed(mpps_orthanc, first)
    assert "US1 is registered at 127.0.0.1, not at 127.0.0.2" in mpps_scp.output()

    # The same address is accepted for a station registered there (the refusal was the address).
    Modality.objects.create(deployment=mpps_orthanc.deployment, name="us3", aet="US3", host="127.0.0.2", port=104)
    with connected(mpps_scp, calling="US3", address="127.0.0.2") as assoc:
        assert n_create(assoc, in_progress(first))[0] == 0x0000
    assert _accessions(mpps_orthanc) == ["MPPS-2"]


@pytest.mark.orthanc
def test_n_set_for_an_unknown_sop_instance_gets_no_such_sop_instance(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        status, comment = n_set(assoc, final("COMPLETED"), "1.2.826.0.1.3680043.8.498.999999")
    assert status == 0x0112 and "no performed step" in comment
    _nothing_changed(mpps_orthanc, first)
    assert "N-SET 1.2.826.0.1.3680043.8.498.999999 from US1 at 127.0.0.1 (mpps) refused (0x0112)" in mpps_scp.output()


@pytest.mark.orthanc
def test_n_set_from_a_station_of_another_deployment_cannot_reach_this_ones_step(mpps_orthanc, mpps_scp, tmp_path):
    from deployments.models import Deployment, Modality

    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        _, uid, _ = n_create(assoc, in_progress(first))
    other = Deployment.objects.create(
        name="Other clinic",
        slug="other",
        orthanc_url="http://127.0.0.1:9",
        service_password="x" * 24,
        dicom_aet="OTHERPACS",
        config_dir=str(tmp_path / "c"),
        storage_dir=str(tmp_path / "s"),
        worklists_dir=str(tmp_path / "w"),
    )
    Modality.objects.create(deployment=other, name="o1", aet="OTHER1", host="127.0.0.1", port=104)
    with connected(mpps_scp, calling="OTHER1", called="OTHERPACS") as assoc:
        assert n_set(assoc, final("COMPLETED"), uid)[0] == 0x0112
    first.refresh_from_db()
    assert first.status == Status.IN_PROGRESS


@pytest.mark.orthanc
def test_a_duplicate_n_create_is_refused_and_changes_nothing(mpps_orthanc, mpps_scp):
    first, second = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        _, uid, _ = n_create(assoc, in_progress(first))
        status, _, comment = n_create(assoc, in_progress(second), uid=uid)
    assert status == 0x0111 and "exists already" in comment
    second.refresh_from_db()
    assert second.status == Status.SCHEDULED
    assert _accessions(mpps_orthanc) == ["MPPS-2"]
    assert MppsMessage.objects.count() == 1


@pytest.mark.orthanc
def test_an_scp_serving_another_deployment_only_refuses_this_ones_stations(mpps_orthanc, mpps_scp_factory, tmp_path):
    from deployments.models import Deployment

    Deployment.objects.create(
        name="Other clinic",
        slug="other",
        orthanc_url="http://127.0.0.1:9",
        service_password="x" * 24,
        dicom_aet="OTHERPACS",
        config_dir=str(tmp_path / "c"),
        storage_dir=str(tmp_path / "s"),
        worklists_dir=str(tmp_path / "w"),
    )
    first, _ = _two_entries(mpps_orthanc)
    scp = mpps_scp_factory(["--deployment", "other"])
    assoc = machine(scp.port)
    assert assoc.is_rejected
    _nothing_changed(mpps_orthanc, first)
    assert "no deployment served here answers to the called AE title 'TESTPACS'" in scp.output()


@pytest.mark.orthanc
def test_the_configured_mpps_ae_title_is_answered_for_the_stations_deployment(mpps_orthanc, mpps_scp_factory):
    first, _ = _two_entries(mpps_orthanc)
    scp = mpps_scp_factory(env={"MPPS_AE_TITLE": "CLINICMPPS"})
    with connected(scp, called="CLINICMPPS") as assoc:
        assert n_create(assoc, in_progress(first))[0] == 0x0000
    assert _accessions(mpps_orthanc) == ["MPPS-2"]
    assert PerformedStep.objects.get().deployment == mpps_orthanc.deployment


@pytest.mark.orthanc
def test_with_orthancs_classic_worklists_plugin_too_the_started_entry_leaves_the_list(orthanc_factory, mpps_scp):
    from tests.worklists.conftest import add_stations

    instance = orthanc_factory(slug="mppsclassic", start=False, worklist_server="classic")
    add_stations(instance)
    instance.write_config()
    instance.start()
    instance.save_deployment()
    first, _ = _two_entries(instance)
    with connected(mpps_scp) as assoc:
        assert n_create(assoc, in_progress(first))[0] == 0x0000
    assert _accessions(instance) == ["MPPS-2"]


@pytest.mark.orthanc
def test_an_unscheduled_exam_is_accepted_and_kept_without_an_entry(mpps_orthanc, mpps_scp):
    first, _ = _two_entries(mpps_orthanc)
    with connected(mpps_scp) as assoc:
        status, uid, _ = n_create(assoc, in_progress(study_uid="1.2.3.999", accession="", step_id=""))
        assert status == 0x0000
        assert n_set(assoc, final("COMPLETED"), uid)[0] == 0x0000
    step = PerformedStep.objects.get(sop_instance_uid=uid)
    assert step.status == PerformedStep.Status.COMPLETED and not step.entries.exists()
    assert step.messages.count() == 2
    first.refresh_from_db()
    assert first.status == Status.SCHEDULED
    assert _accessions(mpps_orthanc) == ["MPPS-1", "MPPS-2"]
    assert "matches no scheduled entry" in mpps_scp.output()


@pytest.mark.orthanc
def test_mpps_for_an_entry_the_fallback_completed_first_leaves_it_completed(mpps_orthanc, mpps_scp):
    from django.db import transaction

    from worklists.completion import study_arrived

    first, _ = _two_entries(mpps_orthanc)
    # The completion from Orthanc's changes got there first (the study arrived and became stable).
    with transaction.atomic():
        study_arrived(mpps_orthanc.deployment, first.accession_number, first.study_instance_uid, stable=True)
    first.refresh_from_db()
    assert first.status == Status.COMPLETED
    with connected(mpps_scp) as assoc:
        status, uid, _ = n_create(assoc, in_progress(first))
        assert status == 0x0000
        assert n_set(assoc, final("DISCONTINUED", REASON), uid)[0] == 0x0000
    first.refresh_from_db()
    assert first.status == Status.COMPLETED and first.station_started_at is None
    step = PerformedStep.objects.get(sop_instance_uid=uid)
    assert list(step.entries.all()) == [first] and step.reason_code == "110514"
    assert not AuditEntry.objects.filter(source="mpps", object_type="worklists.worklistentry").exists()
    assert "is COMPLETED already, left alone" in mpps_scp.output()
