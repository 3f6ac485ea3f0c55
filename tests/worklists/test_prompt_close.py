"""An entry leaves the machine's list as soon as the first image of its study arrives, so the next
patient is at the top; it becomes COMPLETED when the study is stable. Real Orthanc with Orthanc's
default StableAge (60 s), the machine's C-STORE and C-FIND by pynetdicom."""

import datetime

import pytest
from django.utils import timezone

from tests.dicomfiles import make_instance
from tests.worklists.conftest import add_stations, cfind, files_in, make_entry
from tests.worklists.test_completion import c_store
from worklists.completion import worklist_completion
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

Status = WorklistEntry.Status


def _orthanc(orthanc_factory, server):
    instance = orthanc_factory(slug=f"close{server}", start=False, worklist_server=server)
    add_stations(instance)
    instance.write_config()
    instance.start()
    instance.save_deployment()
    return instance


def _accessions(instance):
    return sorted(a.AccessionNumber for a in cfind(instance))


@pytest.mark.orthanc
def test_the_portals_worklist_server_drops_the_entry_at_the_first_image_before_the_portal_acts(
    orthanc_factory, transactional_db
):
    instance = _orthanc(orthanc_factory, "indexed")
    d = instance.deployment
    done = make_entry(d, accession="CLOSE-1", at="09:00")
    by_accession = make_entry(d, accession="CLOSE-2", at="09:20")
    make_entry(d, accession="NEXT", at="09:40")
    worklist_sync(d.pk)
    assert _accessions(instance) == ["CLOSE-1", "CLOSE-2", "NEXT"]

    # The machine copies the study UID from the worklist...
    c_store(instance, make_instance(patient_id=done.patient.patient_id, study_uid=done.study_instance_uid))
    assert _accessions(instance) == ["CLOSE-2", "NEXT"]  # the very next query, nothing else ran
    # ...or makes its own study UID and keeps the accession number.
    c_store(instance, make_instance(patient_id=by_accession.patient.patient_id, accession="CLOSE-2"))
    assert _accessions(instance) == ["NEXT"]

    # The portal's poll then records it: started, taken off the list, the file removed.
    worklist_completion(d.pk)
    done.refresh_from_db()
    assert done.status == Status.IN_PROGRESS and done.study_arrived_at is not None
    assert done.sync_label == ("removed", "images received")
    assert sorted(files_in(d)) == sorted([e.file_name for e in WorklistEntry.objects.filter(accession_number="NEXT")])
    assert _accessions(instance) == ["NEXT"]


@pytest.mark.orthanc
def test_a_restarted_orthanc_still_hides_the_entry_whose_study_it_holds(orthanc_factory, transactional_db):
    instance = _orthanc(orthanc_factory, "indexed")
    d = instance.deployment
    entry = make_entry(d, accession="RESTART-1")
    make_entry(d, accession="RESTART-2", at="10:00")
    worklist_sync(d.pk)
    c_store(instance, make_instance(patient_id=entry.patient.patient_id, study_uid=entry.study_instance_uid))

    instance.stop()  # before the portal polled: the file is still in the folder
    instance.start()

    assert entry.file_name in files_in(d)
    assert _accessions(instance) == ["RESTART-2"]


@pytest.mark.orthanc
def test_with_the_classic_plugin_the_first_poll_after_the_image_takes_the_entry_off_the_list(
    orthanc_factory, transactional_db
):
    instance = _orthanc(orthanc_factory, "classic")
    d = instance.deployment
    entry = make_entry(d, accession="CLASSIC-1")
    make_entry(d, accession="CLASSIC-2", at="10:00")
    worklist_sync(d.pk)
    c_store(instance, make_instance(patient_id=entry.patient.patient_id, accession="CLASSIC-1"))
    assert _accessions(instance) == ["CLASSIC-1", "CLASSIC-2"]  # the classic plugin knows nothing of it

    worklist_completion(d.pk)

    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS  # completed only once the study is stable (60 s here)
    assert _accessions(instance) == ["CLASSIC-2"]


def test_an_entry_the_front_desk_set_in_progress_stays_in_the_list_until_its_images_arrive(wl_deployment):
    entry = make_entry(wl_deployment, status=Status.IN_PROGRESS)
    worklist_sync(wl_deployment.pk)
    assert files_in(wl_deployment) == [entry.file_name]

    WorklistEntry.objects.filter(pk=entry.pk).update(study_arrived_at=timezone.now())
    entry.refresh_from_db()
    entry.save(update_fields=["study_arrived_at"])  # as the completion saves it
    result = worklist_sync(wl_deployment.pk)

    assert result.removed == 1 and files_in(wl_deployment) == []
    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS and entry.sync_label == ("removed", "images received")


def test_a_renamed_patient_whose_study_arrived_is_not_put_back_in_the_list(wl_deployment):
    entry = make_entry(wl_deployment, study_arrived_at=timezone.now() - datetime.timedelta(minutes=1))
    entry.patient.family_name = "Renamed"
    entry.patient.save()

    worklist_sync(wl_deployment.pk)

    assert files_in(wl_deployment) == []
