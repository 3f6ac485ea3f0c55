"""Pure: what an MPPS dataset says (status, the scheduled steps it performs, why it stopped), and
the dataset as size-limited JSON for the audit."""

import json
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

STATUSES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")


class DatasetProblem(Exception):
    """The dataset cannot be acted on: ``status`` is the DIMSE failure to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# DIMSE statuses (PS3.7 annex C) the SCP answers with.
INVALID_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
NOT_AUTHORISED = 0x0124


@dataclass
class ScheduledRef:
    study_uid: str = ""
    accession: str = ""
    step_id: str = ""


@dataclass
class Report:
    status: str = ""  # "" when an N-SET leaves the status as it is
    refs: list = field(default_factory=list)
    reason_code: str = ""
    reason_scheme: str = ""
    reason_meaning: str = ""


def _text(ds, keyword) -> str:
    value = ds.get(keyword, "")
    return str(value).strip() if value is not None else ""


def read(ds: Dataset, creating: bool) -> Report:
    """The report of an N-CREATE (``creating``) or N-SET attribute list; DatasetProblem otherwise.
    Every element is decoded here, so a malformed one is refused before anything is changed."""
    try:
        for _elem in ds.iterall():
            pass
        report = Report(status=_text(ds, "PerformedProcedureStepStatus").upper())
        for item in ds.get("ScheduledStepAttributesSequence") or []:
            report.refs.append(
                ScheduledRef(
                    study_uid=_text(item, "StudyInstanceUID"),
                    accession=_text(item, "AccessionNumber"),
                    step_id=_text(item, "ScheduledProcedureStepID"),
                )
            )
        reasons = ds.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
        if reasons:
            report.reason_code = _text(reasons[0], "CodeValue")[:16]
            report.reason_scheme = _text(reasons[0], "CodingSchemeDesignator")[:16]
            report.reason_meaning = _text(reasons[0], "CodeMeaning")[:64]
    except DatasetProblem:
        raise
    except Exception as exc:  # pydicom raises many kinds for bytes it cannot decode
        raise DatasetProblem(PROCESSING_FAILURE, f"unreadable dataset: {exc}") from exc
    if creating:
        if not report.status:
            raise DatasetProblem(MISSING_ATTRIBUTE, "PerformedProcedureStepStatus is missing")
        if report.status != "IN PROGRESS":
            # PS3.4 F.7.2.1: a step is created IN PROGRESS; it ends by N-SET.
            raise DatasetProblem(INVALID_VALUE, f"N-CREATE with status {report.status!r}, not 'IN PROGRESS'")
        if "ScheduledStepAttributesSequence" not in ds:
            raise DatasetProblem(MISSING_ATTRIBUTE, "ScheduledStepAttributesSequence is missing")
    elif report.status and report.status not in STATUSES:
        raise DatasetProblem(INVALID_VALUE, f"unknown PerformedProcedureStepStatus {report.status!r}")
    return report


def _omit_binary(elem):
    return "omitted:binary"


def as_json(ds: Dataset, limit: int) -> tuple[dict, bool]:
    """(the DICOM JSON of ``ds``, whether values were left out to stay within ``limit`` bytes).
    Binary values never go in; past the limit the largest top-level values are replaced by a note
    of their size, so what the machine sent is still visible in outline."""
    data = {}
    for elem in ds:
        # Element by element: one value pydicom cannot put in JSON must not lose the others.
        tag = f"{elem.tag:08X}"
        try:
            data[tag] = elem.to_json_dict(bulk_data_element_handler=_omit_binary, bulk_data_threshold=256)
        except Exception as exc:  # pydicom's converters raise many kinds
            data[tag] = {"vr": elem.VR, "unreadable": str(exc)[:200]}
    sizes = {tag: len(json.dumps(value)) for tag, value in data.items()}
    total = len(json.dumps(data))
    shortened = False
    for tag in sorted(sizes, key=sizes.get, reverse=True):
        if total <= limit:
            break
        note = {"vr": data[tag].get("vr", "UN"), "omitted": f"{sizes[tag]} bytes"}
        total -= sizes[tag] - len(json.dumps(note))
        data[tag] = note
        shortened = True
    return data, shortened
