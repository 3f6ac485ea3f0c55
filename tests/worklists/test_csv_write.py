"""How a checked CSV file is written: a few rows per short transaction, numbered, audited."""

import pytest
from django.utils import timezone

from portal.models import AuditEntry
from tests.worklists.conftest import make_entry
from worklists import csv_import
from worklists.models import Patient, WorklistEntry

HEADER = "patient_id,family_name,given_name,scheduled_date,scheduled_time,station,accession_number\n"


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(csv_import, "CHUNK", 3)  # seven rows cross two chunk boundaries


def _parsed(deployment, day, extra=""):
    text = HEADER + (
        f"P1,Peeters,An,{day},09:00,US1,\n"
        f"P2,Janssens,Luc,{day},09:10,US1,\n"
        f"P3,Maes,Els,{day},09:20,US1,\n"
        f"P1,Peeters,Anna,{day},09:30,US1,\n"
        f"OLD,Newname,Jo,{day},09:40,US1,\n"
        f"P4,Claes,Tom,{day},09:50,US1,EXPLICIT1\n"
        f"P5,Wouters,Ine,{day},10:00,US1,{extra}\n"
    )
    parsed = csv_import.parse(deployment, text)
    assert parsed.ok, parsed.errors
    return parsed


def test_an_import_in_several_transactions_numbers_after_the_days_last_entry_and_updates_known_patients(
    wl_deployment, scheduler_user, small_chunks, settings
):
    settings.WORKLISTS_ACCESSION_PATTERN = "US{date:%y%m%d}{seq:04d}"
    today = timezone.localdate()
    existing = make_entry(wl_deployment, patient_id="OLD", family="Oldname", accession=f"US{today:%y%m%d}0007")
    parsed = _parsed(wl_deployment, today.isoformat())

    assert csv_import.import_rows(scheduler_user, wl_deployment, parsed) == 7

    imported = WorklistEntry.objects.exclude(pk=existing.pk).order_by("scheduled_time")
    numbers = [e.accession_number for e in imported]
    prefix = f"US{today:%y%m%d}"
    assert numbers == [f"{prefix}{n:04d}" for n in (8, 9, 10, 11, 12)] + ["EXPLICIT1", f"{prefix}0013"]
    assert Patient.objects.get(patient_id="P1").given_name == "Anna"  # its last row
    assert Patient.objects.get(patient_id="OLD").family_name == "Newname"
    assert imported.filter(patient__patient_id="OLD").get().patient_id == existing.patient_id
    assert all(
        e.station_aet == "US1" and e.station_name == "ROOM1" and e.created_by == scheduler_user for e in imported
    )
    audits = AuditEntry.objects.filter(actor=scheduler_user)
    assert audits.filter(object_type="worklists.worklistentry", action="create").count() == 7
    assert audits.filter(object_type="worklists.patient", action="create").count() == 5
    updates = {a.object_id: a.changes for a in audits.filter(object_type="worklists.patient", action="update")}
    assert updates[str(Patient.objects.get(patient_id="P1").pk)]["given_name"] == ["An", "Anna"]
    assert updates[str(existing.patient_id)]["family_name"] == ["Oldname", "Newname"]


def test_a_number_taken_after_the_check_stops_the_import_there_and_says_which_lines_were_written(
    wl_deployment, scheduler_user, small_chunks
):
    parsed = _parsed(wl_deployment, timezone.localdate().isoformat(), extra="TAKEN1")
    make_entry(wl_deployment, patient_id="DESK", accession="TAKEN1")  # typed at the desk meanwhile

    with pytest.raises(csv_import.ImportStopped) as stopped:
        csv_import.import_rows(scheduler_user, wl_deployment, parsed)

    assert "The import stopped at line 8" in stopped.value.messages[0]
    assert "lines 2–7 were imported, the rest was not" in stopped.value.messages[0]
    assert WorklistEntry.objects.exclude(patient__patient_id="DESK").count() == 6
