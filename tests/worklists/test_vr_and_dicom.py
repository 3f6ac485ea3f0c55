"""DICOM value checks and the .wl writer (pure)."""

import datetime
import io
import uuid
from types import SimpleNamespace

import pydicom
import pytest
from django.core.exceptions import ValidationError

from worklists import vr
from worklists.dicom import MODALITY_WORKLIST_FIND, entry_bytes, entry_dataset
from worklists.models import InvalidTransition, WorklistEntry


@pytest.mark.parametrize(
    ("check", "value", "words"),
    [
        (vr.check_pn_component, "A" * 65, "At most 64 characters (DICOM PN component)"),
        (vr.check_pn_component, "Doe^Jane", "^ cannot be inside a name part"),
        (vr.check_pn_component, "Doe=X", "="),
        (vr.check_pn_component, "Doe\\X", "\\"),
        (vr.check_pn_component, "Doe\nX", "Control characters"),
        (vr.check_pn, "A^" + "B" * 65, "At most 64 characters (DICOM PN, the whole name with its ^); this has 67"),
        (vr.check_lo, "x" * 65, "At most 64 characters (DICOM LO); this has 65"),
        (vr.check_sh, "x" * 17, "At most 16 characters (DICOM SH); this has 17"),
        (vr.check_cs, "us", "capital letters"),
        (vr.check_cs, "X" * 17, "At most 16 characters (DICOM CS)"),
        (vr.check_ae, "A" * 17, "At most 16 characters (DICOM AE)"),
        (vr.check_ae, "   ", "only spaces"),
        (vr.check_da, "2026-11-22", "YYYYMMDD"),
        (vr.check_da, "20260230", "not a calendar date"),
        (vr.check_tm, "2500", "HHMMSS"),
        (vr.check_ui, "1.2.03", "digits separated by dots"),
        (vr.check_ui, "1." + "2" * 64, "At most 64 characters (DICOM UI)"),
    ],
)
def test_each_value_representation_violation_names_its_limit(check, value, words):
    with pytest.raises(ValidationError) as error:
        check(value)
    assert words in error.value.messages[0]


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (vr.check_pn_component, "Müller"),
        (vr.check_pn, "Müller^Zoë"),
        (vr.check_lo, "x" * 64),
        (vr.check_sh, "A1"),
        (vr.check_cs, "US"),
        (vr.check_ae, "US1"),
        (vr.check_da, "20261122"),
        (vr.check_tm, "093000.5"),
        (vr.check_ui, "1.2.840.10008.5.1.4.31"),
    ],
)
def test_valid_values_pass(check, value):
    check(value)


def test_a_name_a_latin1_station_cannot_show_is_refused_naming_the_letters():
    with pytest.raises(ValidationError) as error:
        vr.check_charset("Łukasiewicz Śmiały", "ISO_IR 100", "US2")
    message = error.value.messages[0]
    assert "Ł, Ś, ł" in message and "US2" in message and "Latin-1" in message
    vr.check_charset("Müller Zoë", "ISO_IR 100", "US2")  # Latin-1 has these
    vr.check_charset("Łukasiewicz", "ISO_IR 192", "US1")


def _entry(**kw):
    patient = SimpleNamespace(dicom_name="Müller^Zoë", patient_id="P1", birth_date=datetime.date(1980, 1, 2), sex="F")
    values = dict(
        uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        accession_number="A1",
        referring_physician="Ref^Rita",
        study_instance_uid="1.2.3.4",
        requested_procedure_id="",
        requested_procedure_description="Abdomen",
        modality="US",
        station_aet="US1",
        station_name="ROOM1",
        scheduled_date=datetime.date(2026, 11, 22),
        scheduled_time=datetime.time(9, 30),
        performing_physician="Perf^Paul",
        status="SCHEDULED",
        DICOM_STATUS=WorklistEntry.DICOM_STATUS,
        patient=patient,
        notes="secret internal note",
    )
    values.update(kw)
    return SimpleNamespace(**values)


def test_the_wl_file_carries_the_annex_k_keys_and_reads_back_as_the_dataset():
    entry = _entry()
    data = entry_bytes(entry)
    read = pydicom.dcmread(io.BytesIO(data))
    expected = entry_dataset(entry)

    assert read == expected
    assert read.file_meta.MediaStorageSOPClassUID == MODALITY_WORKLIST_FIND
    assert read.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert read.SpecificCharacterSet == "ISO_IR 192"
    assert str(read.PatientName) == "Müller^Zoë"
    step = read.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate) == (
        "US",
        "US1",
        "20261122",
    )
    assert (step.ScheduledProcedureStepStartTime, step.ScheduledProcedureStepStatus) == ("093000", "SCHEDULED")
    assert (step.ScheduledPerformingPhysicianName, step.ScheduledProcedureStepDescription) == ("Perf^Paul", "Abdomen")
    assert step.ScheduledProcedureStepID == "A1"
    for key in (
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "ReferringPhysicianName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AdmissionID",
    ):
        assert key in read, key
    assert b"secret internal note" not in data


def test_the_same_entry_gives_the_same_bytes_and_a_change_changes_them():
    assert entry_bytes(_entry()) == entry_bytes(_entry())
    assert entry_bytes(_entry()) != entry_bytes(_entry(scheduled_time=datetime.time(10, 0)))
    assert entry_bytes(_entry()) == entry_bytes(_entry(notes="another note"))


def test_invalid_status_transitions_are_refused():
    entry = WorklistEntry(status="SCHEDULED")
    entry.transition("ARRIVED")
    entry.transition("IN_PROGRESS")
    entry.transition("COMPLETED")
    with pytest.raises(InvalidTransition, match="completed cannot become scheduled"):
        entry.transition("SCHEDULED")
    with pytest.raises(InvalidTransition):
        WorklistEntry(status="CANCELLED").transition("ARRIVED")
    with pytest.raises(InvalidTransition):
        WorklistEntry(status="SCHEDULED").transition("COMPLETED")
