"""The .wl file against the DICOM standard, not against the encoder's own element list.

- Which keys a worklist item carries and of which type: PS3.4 Annex K, Table K.6-1 (Modality
  Worklist Information Model, C-FIND return keys), written out below by hand.
- Each key's tag and VR: pydicom's data dictionary, and dcmtk's ``dcmdump`` of the written file
  (its own dictionary names the tag it reads).
- The byte layout: PS3.10 §7 (preamble, DICM, file meta) and PS3.5 §7.1.2, §7.5 (explicit VR
  little endian, sequences and items of undefined length, their delimiters), §6.2 (padding).
"""

import datetime
import io
import re
import struct
import subprocess
import uuid
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.datadict import dictionary_keyword, dictionary_VR, tag_for_keyword

from tests.conftest import require_binary
from worklists.dicom import entry_bytes, entry_dataset
from worklists.models import WorklistEntry

# PS3.4 Table K.6-1: (keyword, return key type). Type 1: present with a value; 2: present, may be
# empty; 1C: present with a value when known. The Scheduled Procedure Step's keys are nested.
ANNEX_K = [
    ("SpecificCharacterSet", "1C"),
    ("AccessionNumber", "2"),
    ("ReferringPhysicianName", "2"),
    ("PatientName", "1"),
    ("PatientID", "1"),
    ("PatientBirthDate", "2"),
    ("PatientSex", "2"),
    ("StudyInstanceUID", "1"),
    ("RequestingPhysician", "2"),
    ("RequestedProcedureDescription", "1C"),
    ("AdmissionID", "2"),
    ("CurrentPatientLocation", "2"),
    ("ScheduledProcedureStepSequence", "1"),
    ("RequestedProcedureID", "1"),
    ("RequestedProcedurePriority", "2"),
]
STEP_KEYS = [
    ("Modality", "1"),
    ("ScheduledStationAETitle", "1"),
    ("ScheduledProcedureStepStartDate", "1"),
    ("ScheduledProcedureStepStartTime", "1"),
    ("ScheduledPerformingPhysicianName", "2"),
    ("ScheduledProcedureStepDescription", "1C"),
    ("ScheduledProcedureStepID", "1"),
    ("ScheduledStationName", "2"),
    ("ScheduledProcedureStepLocation", "2"),
    ("ScheduledProcedureStepStatus", "3"),
]
ENTRY_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def entry(**changes):
    """An entry whose every value differs from every other, so that a value under the wrong tag shows."""
    patient = SimpleNamespace(
        dicom_name="Müller^Zoë", patient_id="PID-7", birth_date=datetime.date(1980, 1, 2), sex="F"
    )
    values = dict(
        uuid=ENTRY_UUID,
        accession_number="ACC-1",
        referring_physician="Ref^Rita",
        study_instance_uid="1.2.3.45",  # odd length: padded
        requested_procedure_id="RP-9",
        requested_procedure_description="Abdomen",
        modality="US",
        station_aet="US1",
        station_name="ROOM1",
        scheduled_date=datetime.date(2026, 11, 22),
        scheduled_time=datetime.time(9, 30, 15),
        performing_physician="Perf^Paul",
        status="ARRIVED",
        DICOM_STATUS=WorklistEntry.DICOM_STATUS,
        patient=patient,
        notes="secret internal note",
    )
    values.update(changes)
    return SimpleNamespace(**values)


# What each key must say for entry(): written from the fields, not from the encoder.
EXPECTED = {
    "SpecificCharacterSet": "ISO_IR 192",
    "AccessionNumber": "ACC-1",
    "ReferringPhysicianName": "Ref^Rita",
    "PatientName": "Müller^Zoë",
    "PatientID": "PID-7",
    "PatientBirthDate": "19800102",
    "PatientSex": "F",
    "StudyInstanceUID": "1.2.3.45",
    "RequestingPhysician": "Ref^Rita",
    "RequestedProcedureDescription": "Abdomen",
    "AdmissionID": "",
    "CurrentPatientLocation": "",
    "RequestedProcedureID": "RP-9",
    "RequestedProcedurePriority": "",
    "Modality": "US",
    "ScheduledStationAETitle": "US1",
    "ScheduledProcedureStepStartDate": "20261122",
    "ScheduledProcedureStepStartTime": "093015",
    "ScheduledPerformingPhysicianName": "Perf^Paul",
    "ScheduledProcedureStepDescription": "Abdomen",
    "ScheduledProcedureStepID": "ACC-1",
    "ScheduledStationName": "ROOM1",
    "ScheduledProcedureStepLocation": "",
    "ScheduledProcedureStepStatus": "ARRIVED",
}

_LINE = re.compile(
    r"^(?P<indent> *)\((?P<group>[0-9a-f]{4}),(?P<element>[0-9a-f]{4})\) (?P<vr>[A-Za-z]{2}) "
    r"(?:\[(?P<value>.*)\]|\(no value available\)|=\S+|\(.*?\)|\S+)\s+#\s*(?P<length>[\w/]+), (?P<vm>\d+) (?P<keyword>\w+)$"
)


def dcmdump(tmp_path, data):
    binary = require_binary("dcmdump", "dcmtk")
    path = tmp_path / "entry.wl"
    path.write_bytes(data)
    done = subprocess.run([binary, "+L", "-Un", str(path)], capture_output=True, timeout=30)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode(errors="replace")
    rows = []
    for line in done.stdout.decode("utf-8").splitlines():
        match = _LINE.match(line)
        if match:
            rows.append(match.groupdict())
    return rows


def test_every_annex_k_key_is_written_under_its_standard_tag_and_vr_with_its_value(tmp_path):
    rows = dcmdump(tmp_path, entry_bytes(entry()))
    top = {r["keyword"]: r for r in rows if r["indent"] == "" and r["group"] != "0002"}
    nested = {r["keyword"]: r for r in rows if r["indent"] == "    "}
    for keys, found in ((ANNEX_K, top), (STEP_KEYS, nested)):
        for keyword, key_type in keys:
            assert keyword in found, f"{keyword} (type {key_type}) is missing"
            row = found[keyword]
            tag = int(row["group"] + row["element"], 16)
            # dcmtk named the tag it read; pydicom's dictionary agrees on the tag and the VR.
            assert tag == tag_for_keyword(keyword), keyword
            assert dictionary_keyword(tag) == keyword
            assert row["vr"] == dictionary_VR(tag), keyword
            if keyword == "ScheduledProcedureStepSequence":
                continue
            assert (row["value"] or "") == EXPECTED[keyword], keyword
            if key_type == "1":
                assert row["value"], f"{keyword} is type 1: it needs a value"
    # Nothing but the keys of the information model (and the sequence's item markers).
    written = set(top) | set(nested)
    assert written - {k for k, _ in ANNEX_K + STEP_KEYS} == {"SequenceDelimitationItem"}
    assert [r["keyword"] for r in rows if r["indent"] == "  "] == ["Item", "ItemDelimitationItem"]
    # In ascending tag order at each level (PS3.5 §7.1).
    for level in ("", "    "):
        tags = [
            int(r["group"] + r["element"], 16)
            for r in rows
            if r["indent"] == level and r["group"] not in ("fffe", "0002")
        ]
        assert tags == sorted(tags), level


def test_the_file_meta_says_modality_worklist_explicit_vr_little_endian_and_names_the_entry(tmp_path):
    data = entry_bytes(entry())
    assert data[:128] == b"\x00" * 128 and data[128:132] == b"DICM"
    meta = {r["keyword"]: r for r in dcmdump(tmp_path, data) if r["group"] == "0002"}
    assert meta["MediaStorageSOPClassUID"]["value"] == "1.2.840.10008.5.1.4.31"
    assert meta["TransferSyntaxUID"]["value"] == "1.2.840.10008.1.2.1"
    assert meta["MediaStorageSOPInstanceUID"]["value"] == f"2.25.{ENTRY_UUID.int}"
    assert meta["ImplementationClassUID"]["value"] == "1.2.826.0.1.3680043.8.498.1"
    assert meta["ImplementationVersionName"]["value"] == "PORTAL_WL_1"
    assert meta["FileMetaInformationVersion"]["value"] is None  # OB 00\01, shown without brackets
    # The group length counts the bytes of the meta elements after it (PS3.10 §7.1).
    (group_length,) = struct.unpack("<I", data[140:144])
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    dataset_start = 144 + group_length
    assert data[dataset_start : dataset_start + 4] == b"\x08\x00\x05\x00"  # (0008,0005) comes first
    read = pydicom.dcmread(io.BytesIO(data))
    assert read.file_meta.FileMetaInformationVersion == b"\x00\x01"


def test_values_are_padded_to_even_length_uids_with_nul_text_with_space():
    data = entry_bytes(entry(accession_number="ACC", station_aet="US1"))
    read = pydicom.dcmread(io.BytesIO(data))
    raw = {
        "StudyInstanceUID": read.get_item("StudyInstanceUID").value,  # "1.2.3.45": 8, even
        "MediaStorageSOPInstanceUID": read.file_meta.get_item("MediaStorageSOPInstanceUID").value,
        "AccessionNumber": read.get_item("AccessionNumber").value,
    }
    assert raw["StudyInstanceUID"] == b"1.2.3.45"
    odd_uid = pydicom.dcmread(io.BytesIO(entry_bytes(entry(study_instance_uid="1.2.3.4"))))
    assert odd_uid.get_item("StudyInstanceUID").value == b"1.2.3.4\x00"
    # (0002,0010) UI, length 20: 19 characters and a NUL.
    assert b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00" in data
    assert raw["AccessionNumber"] == b"ACC "
    assert b"\x40\x00\x01\x00AE\x04\x00US1 " in data  # (0040,0001) AE padded with a space too
    # UTF-8 text counts bytes, not letters: "Müller^Zoë" is 12 bytes, even, unpadded; "Zoë^Al" 7.
    assert read.get_item("PatientName").value == "Müller^Zoë".encode()
    patient = SimpleNamespace(dicom_name="Zoë^Al", patient_id="P", birth_date=None, sex="")
    odd_name = pydicom.dcmread(io.BytesIO(entry_bytes(entry(patient=patient))))
    assert odd_name.get_item("PatientName").value == "Zoë^Al".encode() + b" "


def test_the_sequence_and_its_item_have_undefined_length_and_zero_length_delimiters():
    data = entry_bytes(entry())
    # PS3.5 §7.5: (0040,0100) SQ, reserved 0000, length FFFFFFFF; item (FFFE,E000) of undefined
    # length; item delimitation (FFFE,E00D) and sequence delimitation (FFFE,E0DD) of length 0.
    sequence = b"\x40\x00\x00\x01SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_end = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence_end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    start = data.index(sequence)
    assert data[start + 12 : start + 20] == item
    assert data.count(item_end) == data.count(sequence_end) == 1
    end = data.index(sequence_end)
    assert data.index(item_end) + 8 == end
    assert data[end + 8 : end + 12] == b"\x40\x00\x01\x10"  # RequestedProcedureID follows


@pytest.mark.parametrize("vr_name", ["OB", "SQ", "UN", "UT", "OW"])
def test_the_long_vrs_have_a_reserved_field_and_a_four_byte_length(vr_name):
    from worklists.dicom import _encode

    value = b"\x01\x02" if vr_name != "SQ" else []
    data = _encode([(0x00091001, vr_name, value)])
    if vr_name == "SQ":
        assert data == b"\x09\x00\x01\x10SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    else:
        assert data == b"\x09\x00\x01\x10" + vr_name.encode() + b"\x00\x00\x02\x00\x00\x00\x01\x02"
    short = _encode([(0x00091002, "LO", "abc")])
    assert short == b"\x09\x00\x02\x10LO\x04\x00abc "
    # OB pads with NUL (PS3.5 §6.2); group, element and lengths are unsigned (element 9004h > 7FFFh).
    assert _encode([(0x00091003, "OB", b"\x01")]) == b"\x09\x00\x03\x10OB\x00\x00\x02\x00\x00\x00\x01\x00"
    assert _encode([(0x00189004, "CS", "PRODUCT")]) == b"\x18\x00\x04\x90CS\x08\x00PRODUCT "
    assert _encode([(0x00189004, "UT", "x")]) == b"\x18\x00\x04\x90UT\x00\x00\x02\x00\x00\x00x "


def test_the_requested_procedure_id_is_the_entry_s_own_and_the_accession_only_without_one(tmp_path):
    with_id = pydicom.dcmread(io.BytesIO(entry_bytes(entry(requested_procedure_id="RP-9"))))
    assert (with_id.RequestedProcedureID, with_id.AccessionNumber) == ("RP-9", "ACC-1")
    without = pydicom.dcmread(io.BytesIO(entry_bytes(entry(requested_procedure_id=""))))
    assert without.RequestedProcedureID == "ACC-1"


def test_each_active_status_is_told_to_the_machine_in_dicom_words():
    for status, dicom in (("SCHEDULED", "SCHEDULED"), ("ARRIVED", "ARRIVED"), ("IN_PROGRESS", "STARTED")):
        read = pydicom.dcmread(io.BytesIO(entry_bytes(entry(status=status))))
        assert read.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == dicom
    other = pydicom.dcmread(io.BytesIO(entry_bytes(entry(status="COMPLETED"))))
    assert other.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "SCHEDULED"


def test_an_empty_date_and_time_are_written_empty_and_the_notes_never():
    data = entry_bytes(entry(patient=SimpleNamespace(dicom_name="X", patient_id="P", birth_date=None, sex="")))
    read = pydicom.dcmread(io.BytesIO(data))
    assert read.PatientBirthDate == "" and read.PatientSex == ""
    assert b"secret internal note" not in data


def test_the_dataset_the_portal_shows_is_the_file_it_writes():
    e = entry(patient=SimpleNamespace(dicom_name="Other^Name", patient_id="P2", birth_date=None, sex="M"))
    read = pydicom.dcmread(io.BytesIO(entry_bytes(e)))
    shown = entry_dataset(e)
    assert read == shown
    assert [e for e in read.file_meta if e.tag != 0x00020000] == list(shown.file_meta)
    # A patient given beside the entry wins over the entry's own (a rename before it is saved).
    renamed = SimpleNamespace(dicom_name="New^Name", patient_id="P3", birth_date=None, sex="")
    assert entry_dataset(e, renamed).PatientName == "New^Name"
    assert pydicom.dcmread(io.BytesIO(entry_bytes(e, renamed))).PatientName == "New^Name"
