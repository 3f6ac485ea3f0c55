"""The portal as an ultrasound machine: a real Modality Worklist C-FIND to Orthanc (pynetdicom).

Used by the "what the machine sees" page and the tests. It calls with the station's own AE
title, so the answer is what that machine gets.
"""

from urllib.parse import urlsplit

from pydicom.dataset import Dataset
from pynetdicom import AE, debug_logger  # noqa: F401  (debug_logger: handy when diagnosing)
from pynetdicom.sop_class import ModalityWorklistInformationFind

RETURN_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
]
STEP_KEYS = [
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
]


class CFindError(Exception):
    pass


def worklist_query(station_aet="", date="", modality="", patient_name="", accession="", charset="ISO_IR 192"):
    """A query dataset asking for every return key, matching on what is given."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    for key in RETURN_KEYS:
        setattr(ds, key, "")
    ds.PatientName = patient_name
    ds.AccessionNumber = accession
    step = Dataset()
    for key in STEP_KEYS:
        setattr(step, key, "")
    step.ScheduledStationAETitle = station_aet
    step.ScheduledProcedureStepStartDate = date
    step.Modality = modality
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def find(host, port, called_aet, calling_aet, query, timeout=10) -> list[Dataset]:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        raise CFindError(
            f"Orthanc at {host}:{port} ({called_aet}) refused the association from {calling_aet}: "
            "is the station registered with 'C-FIND worklist' allowed and the address it calls from?"
        )
    answers = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            if status is None:
                raise CFindError("The association ended before Orthanc answered (timeout or abort).")
            if status.Status in (0xFF00, 0xFF01):
                answers.append(identifier)
            elif status.Status != 0x0000:
                raise CFindError(f"Orthanc answered the C-FIND with status 0x{status.Status:04X}.")
    finally:
        assoc.release()
    return answers


def deployment_address(deployment):
    """Where the deployment's DICOM server listens: the host of its REST URL, its DICOM port."""
    return urlsplit(deployment.orthanc_url).hostname or "127.0.0.1", deployment.dicom_port


def station_worklist(deployment, station, date="") -> list[Dataset]:
    host, port = deployment_address(deployment)
    query = worklist_query(station_aet=station.aet, date=date)
    return find(host, port, deployment.dicom_aet, station.aet, query)
