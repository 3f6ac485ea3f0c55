"""Closing entries from what Orthanc really received (C-STORE by pynetdicom), and no-shows."""

import datetime
from io import BytesIO

import pydicom
import pytest
from django.utils import timezone
from pynetdicom import AE

from tests.conftest import wait_for
from tests.dicomfiles import US_IMAGE_STORAGE, make_instance
from tests.worklists.conftest import add_stations, cfind, files_in, make_entry
from worklists.completion import mark_no_shows, worklist_completion
from worklists.models import WorklistEntry, WorklistState
from worklists.sync import worklist_sync

Status = WorklistEntry.Status


def c_store(instance, dicom_bytes, calling="US1"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(US_IMAGE_STORAGE, pydicom.uid.ExplicitVRLittleEndian)
    d = instance.deployment
    assoc = ae.associate("127.0.0.1", d.dicom_port, ae_title=d.dicom_aet)
    assert assoc.is_established, "Orthanc refused the C-STORE association"
    try:
        status = assoc.send_c_store(pydicom.dcmread(BytesIO(dicom_bytes)))
    finally:
        assoc.release()
    assert status.Status == 0x0000


@pytest.mark.orthanc
def test_a_stored_study_with_the_entry_accession_completes_the_entry_and_removes_its_file(
    orthanc_factory, transactional_db
):
    # StableAge 1: the study is "stable" a second after its last image instead of a minute.
    instance = orthanc_factory(slug="wlc", start=False, extra_config={"StableAge": 1})
    add_stations(instance)
    instance.write_config()
    instance.start()
    d = instance.save_deployment()
    entry = make_entry(d, accession="ACC-STORE")
    other = make_entry(d, accession="ACC-OTHER")
    worklist_sync(d.pk)
    assert len(cfind(instance)) == 2

    c_store(instance, make_instance(patient_id=entry.patient.patient_id, accession="ACC-STORE"))

    def completed():
        worklist_completion(d.pk)
        entry.refresh_from_db()
        return entry.status == Status.COMPLETED

    wait_for(completed, timeout=20, interval=0.5, message="the entry to be completed")
    assert files_in(d) == [other.file_name]
    assert [a.AccessionNumber for a in cfind(instance)] == ["ACC-OTHER"]
    other.refresh_from_db()
    assert other.status == Status.SCHEDULED
    assert WorklistState.objects.get(deployment=d).last_change_seq > 0
    from portal.models import AuditEntry

    summaries = list(AuditEntry.objects.filter(object_id=str(entry.pk)).values_list("summary", flat=True))
    assert "Orthanc received the study" in summaries
    assert "the study is complete in Orthanc (stable)" in summaries


@pytest.mark.orthanc
def test_a_study_matched_by_study_instance_uid_starts_the_entry(wl_orthanc):
    d = wl_orthanc.deployment
    entry = make_entry(d, accession="ACC-UID")
    c_store(wl_orthanc, make_instance(study_uid=entry.study_instance_uid, accession=""))

    def started():
        worklist_completion(d.pk)
        entry.refresh_from_db()
        return entry.status == Status.IN_PROGRESS

    wait_for(started, timeout=10, interval=0.3, message="the entry to start")
    seq = WorklistState.objects.get(deployment=d).last_change_seq
    assert worklist_completion(d.pk)["changes"] == 0  # the last sequence number is kept
    assert WorklistState.objects.get(deployment=d).last_change_seq == seq


def test_entries_not_started_by_the_end_of_their_day_and_the_grace_become_no_show(wl_deployment, settings):
    settings.WORKLISTS_NO_SHOW_GRACE_HOURS = 2
    today = timezone.localdate()
    yesterday = today - datetime.timedelta(days=1)
    late = make_entry(wl_deployment, day=yesterday)
    arrived = make_entry(wl_deployment, day=yesterday, status=Status.ARRIVED)
    started = make_entry(wl_deployment, day=yesterday, status=Status.IN_PROGRESS)
    current = make_entry(wl_deployment, day=today)

    one_am = timezone.make_aware(datetime.datetime.combine(today, datetime.time(1, 0)))
    assert mark_no_shows(wl_deployment, now=one_am) == 0  # still inside the grace period
    three_am = one_am + datetime.timedelta(hours=2)
    assert mark_no_shows(wl_deployment, now=three_am) == 2

    statuses = dict(WorklistEntry.objects.values_list("pk", "status"))
    assert statuses[late.pk] == statuses[arrived.pk] == Status.NO_SHOW
    assert statuses[started.pk] == Status.IN_PROGRESS
    assert statuses[current.pk] == Status.SCHEDULED
