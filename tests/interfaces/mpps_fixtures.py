"""The MPPS tests' parts: the real ``manage.py mpps_scp`` process against the test database, a
real Orthanc serving the worklist folder, and pynetdicom as the ultrasound machine."""

import contextlib
import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from tests.conftest import free_port, test_database_url, wait_for
from tests.worklists.conftest import add_stations

ROOT = Path(__file__).resolve().parents[2]


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Scp:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log

    def output(self):
        return self.log.read_text(errors="replace")


@pytest.fixture
def mpps_orthanc(orthanc_factory, transactional_db):
    """A started Orthanc (AE title TESTPACS) whose deployment row and stations US1 and US2 (both at
    127.0.0.1) are in the database."""
    instance = orthanc_factory(slug="mpps", start=False)
    add_stations(instance)
    instance.write_config()
    instance.start()
    instance.save_deployment()
    return instance


@pytest.fixture
def mpps_scp_factory(transactional_db, tmp_path):
    """Start ``manage.py mpps_scp`` as make run does, on a free port, against the test database;
    ``args`` and ``env`` are added to its command line and environment."""
    started = []

    def start(args=(), env=None):
        port = free_port()
        log = tmp_path / f"mpps_scp-{port}.log"
        environ = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "MPPS_PORT": str(port),
            **(env or {}),
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "mpps_scp", *args],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        scp = Scp(proc, port, log)
        started.append(scp)
        wait_for(lambda: _listening(port) or proc.poll() is not None, timeout=30, message="mpps_scp listening")
        if proc.poll() is not None:
            pytest.fail(f"mpps_scp exited:\n{scp.output()[-3000:]}", pytrace=False)
        return scp

    yield start
    for scp in started:
        scp.proc.terminate()
        try:
            scp.proc.wait(10)
        except subprocess.TimeoutExpired:
            scp.proc.kill()
            scp.proc.wait()


@pytest.fixture
def mpps_scp(mpps_scp_factory):
    return mpps_scp_factory()


def machine(port, calling="US1", called="TESTPACS", address="127.0.0.1"):
    """The ultrasound machine's association to the SCP (not yet checked for acceptance)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(ModalityPerformedProcedureStep)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(address, 0))


@contextlib.contextmanager
def connected(scp, **machine_args):
    """An association of the machine with the SCP, established (or the SCP's log says why not)."""
    assoc = machine(scp.port, **machine_args)
    assert assoc.is_established, scp.output()
    try:
        yield assoc
    finally:
        assoc.release()


def in_progress(entry=None, study_uid=None, accession=None, step_id=None):
    """An N-CREATE attribute list as a machine sends it, naming the worklist item it started."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = entry.patient.dicom_name if entry else "Unknown^Patient"
    ds.PatientID = entry.patient.patient_id if entry else "X"
    item = Dataset()
    item.StudyInstanceUID = study_uid if study_uid is not None else (entry.study_instance_uid if entry else "")
    item.AccessionNumber = accession if accession is not None else (entry.accession_number if entry else "")
    item.ScheduledProcedureStepID = step_id if step_id is not None else item.AccessionNumber
    item.RequestedProcedureID = item.AccessionNumber
    item.ReferencedStudySequence = []
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "US1"
    now = datetime.datetime.now()
    ds.PerformedProcedureStepStartDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = now.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "US"
    ds.PerformedSeriesSequence = []
    return ds


def final(status, reason=None):
    """An N-SET modification list that ends the step; ``reason``: (code, scheme, meaning)."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    now = datetime.datetime.now()
    ds.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = now.strftime("%H%M%S")
    if reason:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = reason
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return ds


def n_create(assoc, ds, uid=None):
    uid = uid or generate_uid()
    status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
    assert status is not None, "no answer to the N-CREATE"
    return status.Status, uid, status.get("ErrorComment", "")


def n_set(assoc, ds, uid):
    status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
    assert status is not None, "no answer to the N-SET"
    return status.Status, status.get("ErrorComment", "")


__all__ = ["free_port", "mpps_orthanc", "mpps_scp", "mpps_scp_factory"]
