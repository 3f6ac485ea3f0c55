"""Pure: a worklist entry → the pydicom Dataset of its ``.wl`` file, and that file's bytes.

The return keys are those of the Modality Worklist Information Model (DICOM PS3.4 annex K):
patient, visit, imaging service request, requested procedure and the Scheduled Procedure Step
Sequence. One list of elements (``entry_elements``) feeds both the Dataset and a small
Explicit VR Little Endian encoder: pydicom's general writer costs about 1 ms a file, too slow
for a full sync at thousands of entries a second. The tests check that pydicom reads the
bytes back to the same Dataset. The bytes are deterministic (no time stamps, UIDs derived from
the entry) so their hash says whether the file on disk is already right.
"""

import hashlib
import struct

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from . import vr

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
CHARSET = "ISO_IR 192"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's, as dcmwrite would write
IMPLEMENTATION_VERSION = "PORTAL_WL_1"


def entry_uid(entry) -> str:
    """A UID of the entry's own (the UUID form of PS3.5 §B.2): stable across rewrites."""
    return f"2.25.{entry.uuid.int}"


def entry_elements(entry, patient=None) -> list:
    """(tag, VR, value) in tag order; a sequence's value is a list of item element lists.
    Internal notes are never part of it."""
    p = patient or entry.patient
    step = [
        (0x00080060, "CS", entry.modality),
        (0x00400001, "AE", entry.station_aet),
        (0x00400002, "DA", vr.da(entry.scheduled_date)),
        (0x00400003, "TM", vr.tm(entry.scheduled_time)),
        (0x00400006, "PN", entry.performing_physician),
        (0x00400007, "LO", entry.requested_procedure_description),
        (0x00400009, "SH", entry.accession_number),
        (0x00400010, "SH", entry.station_name),
        (0x00400011, "SH", ""),
        (0x00400020, "CS", entry.DICOM_STATUS.get(entry.status, "SCHEDULED")),
    ]
    return [
        (0x00080005, "CS", CHARSET),  # SOP common: SpecificCharacterSet
        (0x00080050, "SH", entry.accession_number),  # imaging service request
        (0x00080090, "PN", entry.referring_physician),
        (0x00100010, "PN", p.dicom_name),  # patient
        (0x00100020, "LO", p.patient_id),
        (0x00100030, "DA", vr.da(p.birth_date)),
        (0x00100040, "CS", p.sex),
        (0x0020000D, "UI", entry.study_instance_uid),  # requested procedure
        (0x00321032, "PN", entry.referring_physician),
        (0x00321060, "LO", entry.requested_procedure_description),
        (0x00380010, "LO", ""),  # visit: AdmissionID
        (0x00380300, "LO", ""),  # visit: CurrentPatientLocation
        (0x00400100, "SQ", [step]),  # Scheduled Procedure Step Sequence
        (0x00401001, "SH", entry.requested_procedure_id or entry.accession_number),
        (0x00401003, "SH", ""),  # RequestedProcedurePriority
    ]


def file_meta_elements(entry) -> list:
    return [
        (0x00020001, "OB", b"\x00\x01"),
        (0x00020002, "UI", MODALITY_WORKLIST_FIND),
        (0x00020003, "UI", entry_uid(entry)),
        (0x00020010, "UI", ExplicitVRLittleEndian),
        (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        (0x00020013, "SH", IMPLEMENTATION_VERSION),
    ]


def _to_dataset(elements) -> Dataset:
    ds = Dataset()
    for tag, vr_name, value in elements:
        if vr_name == "SQ":
            value = [_to_dataset(item) for item in value]
        ds.add(DataElement(tag, vr_name, value))
    return ds


def entry_dataset(entry, patient=None) -> Dataset:
    """The worklist item of ``entry`` with its file meta (worklist SOP class, Explicit VR LE)."""
    ds = _to_dataset(entry_elements(entry, patient))
    meta = FileMetaDataset()
    for tag, vr_name, value in file_meta_elements(entry):
        meta.add(DataElement(tag, vr_name, value))
    ds.file_meta = meta
    return ds


# --- the encoder: Explicit VR Little Endian, the subset of VRs above (PS3.5 §7.1.2)
_LONG_VRS = {"OB", "SQ", "UN", "UT", "OW"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, _UNDEFINED)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _value_bytes(vr_name, value) -> bytes:
    if isinstance(value, bytes):
        data = value
    else:
        # ISO_IR 192: every text value is UTF-8; UIDs pad with NUL, text with a space.
        data = value.encode("utf-8")
    if len(data) % 2:
        data += b"\x00" if vr_name in ("UI", "OB") else b" "
    return data


def _encode(elements) -> bytes:
    out = []
    for tag, vr_name, value in elements:
        group, element = tag >> 16, tag & 0xFFFF
        if vr_name == "SQ":
            out.append(struct.pack("<HH2sHI", group, element, b"SQ", 0, _UNDEFINED))
            for item in value:
                out.extend((_ITEM, _encode(item), _ITEM_END))
            out.append(_SEQ_END)
            continue
        data = _value_bytes(vr_name, value)
        if vr_name in _LONG_VRS:
            out.append(struct.pack("<HH2sHI", group, element, vr_name.encode(), 0, len(data)))
        else:
            out.append(struct.pack("<HH2sH", group, element, vr_name.encode(), len(data)))
        out.append(data)
    return b"".join(out)


def entry_bytes(entry, patient=None) -> bytes:
    """The complete Part 10 file: preamble, DICM, file meta with its group length, dataset."""
    meta = _encode(file_meta_elements(entry))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
    return b"\x00" * 128 + b"DICM" + group_length + meta + _encode(entry_elements(entry, patient))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
