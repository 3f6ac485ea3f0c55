"""What a real machine gets from the real Orthanc worklists plugin (Debian package) (C-FIND by pynetdicom)."""

import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from deployments.models import Modality
from tests.dicomfiles import make_instance  # noqa: F401  (kept beside: same real-DICOM helpers)
from tests.worklists.conftest import add_stations, cfind, make_entry
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

pytestmark = pytest.mark.orthanc
Status = WorklistEntry.Status


def _accessions(answers):
    return sorted(a.AccessionNumber for a in answers)


def test_matching_by_date_range_station_modality_name_wildcard_and_accession(wl_orthanc):
    d = wl_orthanc.deployment
    today = timezone.localdate()
    tomorrow = today + datetime.timedelta(days=1)
    a = make_entry(d, family="Martin", given="Anne", accession="ACC-A", day=today)
    b = make_entry(d, family="Marchal", given="Bob", accession="ACC-B", day=tomorrow, station="US2")
    c = make_entry(d, family="Dupont", given="Cleo", accession="ACC-C", day=today, modality="CT")
    worklist_sync(d.pk)
    day, next_day = today.strftime("%Y%m%d"), tomorrow.strftime("%Y%m%d")

    assert _accessions(cfind(wl_orthanc, date=day)) == ["ACC-A", "ACC-C"]
    assert _accessions(cfind(wl_orthanc, date=f"{day}-{next_day}")) == ["ACC-A", "ACC-B", "ACC-C"]
    assert _accessions(cfind(wl_orthanc, station_aet="US2")) == ["ACC-B"]
    assert _accessions(cfind(wl_orthanc, modality="US")) == ["ACC-A", "ACC-B"]
    assert _accessions(cfind(wl_orthanc, patient_name="MAR*")) == ["ACC-A", "ACC-B"]
    assert _accessions(cfind(wl_orthanc, accession="ACC-C")) == ["ACC-C"]
    answer = cfind(wl_orthanc, accession="ACC-A")[0]
    step = answer.ScheduledProcedureStepSequence[0]
    assert (str(answer.PatientName), answer.PatientID) == ("Martin^Anne", a.patient.patient_id)
    assert (step.ScheduledStationAETitle, step.ScheduledProcedureStepStartTime) == ("US1", "093000")
    assert answer.StudyInstanceUID == a.study_instance_uid
    assert {b.pk, c.pk}


def test_a_utf8_name_comes_back_intact_when_every_station_reads_utf8(orthanc_factory, transactional_db):
    # Orthanc sends one encoding to all: UTF-8 only when no station shows just Latin-1 (test_charsets.py).
    instance = orthanc_factory(slug="utf8", start=False)
    add_stations(instance)
    instance.modalities = [m for m in instance.modalities if m.charset == Modality.Charset.UTF8]
    instance.write_config()
    instance.start()
    d = instance.save_deployment()
    make_entry(d, family="Müller", given="Zoë", accession="UTF8")
    make_entry(d, family="Łukasiewicz", given="Śmiały", accession="UTF8-PL")
    worklist_sync(d.pk)

    answers = {a.AccessionNumber: a for a in cfind(instance, charset="ISO_IR 192")}

    assert str(answers["UTF8"].PatientName) == "Müller^Zoë"
    assert str(answers["UTF8-PL"].PatientName) == "Łukasiewicz^Śmiały"


def test_cancelled_entry_disappears_from_cfind_and_a_foreign_wl_file_is_left_alone(wl_orthanc):
    d = wl_orthanc.deployment
    folder = Path(d.worklist_folder)
    keep, cancel = make_entry(d, accession="KEEP"), make_entry(d, accession="CANCEL")
    # A foreign worklist file, e.g. written by a RIS: a real item, not ours.
    foreign = make_entry(d, accession="FOREIGN")
    from worklists.dicom import entry_bytes

    (folder / "ris-0001.wl").write_bytes(entry_bytes(foreign))
    WorklistEntry.objects.filter(pk=foreign.pk).update(status=Status.CANCELLED)
    worklist_sync(d.pk)
    assert _accessions(cfind(wl_orthanc)) == ["CANCEL", "FOREIGN", "KEEP"]

    cancel.transition(Status.CANCELLED)
    cancel.save()
    worklist_sync(d.pk)

    assert _accessions(cfind(wl_orthanc)) == ["FOREIGN", "KEEP"]
    assert (folder / "ris-0001.wl").read_bytes() == entry_bytes(foreign)
    assert keep.pk
