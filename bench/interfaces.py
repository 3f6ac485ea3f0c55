"""Benchmark of the interface services: MPPS IN PROGRESS → the entry absent from the machine's
C-FIND (the issue's goal: p95 < 500 ms).

A real Orthanc (Debian package) serving the worklist folder, the real ``manage.py mpps_scp`` in
its own process, pynetdicom as the ultrasound machine: it opens an association, sends the
N-CREATE and then queries its day's list (C-FIND by its station and the date) until the entry is
gone. The folder holds BENCH_LISTED entries of the clinic's rooms; the measured room's own day
list holds BENCH_ROOM of them (a busy ultrasound room) at every start.
Run: .venv/bin/python bench/interfaces.py   (BENCH_ROUNDS=50, BENCH_ROOM=30, BENCH_LISTED=200)
"""

import datetime
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, setup_django, summary  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 50))
ROOM = int(os.environ.get("BENCH_ROOM", 30))
LISTED = int(os.environ.get("BENCH_LISTED", 200))


def start_orthanc(var):
    from deployments.demo import local_deployment, make_folders, write_config
    from deployments.models import Modality
    from deployments.service import LocalService

    deployment = local_deployment(var / "orthanc", name="Bench clinic", slug="bench", dicom_aet="BENCHPACS")
    deployment.save()
    for n in (1, 2):
        Modality.objects.create(
            deployment=deployment,
            name=f"us{n}",
            aet=f"US{n}",
            host="127.0.0.1",
            port=free_port(),
            station_name=f"ROOM{n}",
        )
    make_folders(deployment)
    write_config(deployment)
    service = LocalService.for_deployment(deployment)
    service.start()
    return deployment, service


def start_scp(var):
    port = free_port()
    log = open(var / "mpps_scp.log", "wb")  # noqa: SIM115 - kept open for the process's lifetime
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "mpps_scp", "--port", str(port)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise SystemExit(f"mpps_scp did not start: {(var / 'mpps_scp.log').read_text()[-2000:]}")


def add_entries(deployment, today, first, count, station):
    from worklists.models import Patient, WorklistEntry

    patient, _ = Patient.objects.get_or_create(deployment=deployment, patient_id="BENCH1", family_name="Bench")
    return WorklistEntry.objects.bulk_create(
        WorklistEntry(
            deployment=deployment,
            patient=patient,
            accession_number=f"MP{i:08d}",
            study_instance_uid=f"1.2.826.0.1.3680043.8.498.77.{i + 1}",
            scheduled_date=today,
            scheduled_time=datetime.time(7 + i % 12, i % 60),
            station_aet=station,
            station_name=f"ROOM{station[-1]}",
        )
        for i in range(first, first + count)
    )


def n_create(port, entry):
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityPerformedProcedureStep

    ae = AE(ae_title="US1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="BENCHPACS")
    if not assoc.is_established:
        raise SystemExit("the MPPS SCP refused the association")
    ds = Dataset()
    item = Dataset()
    item.StudyInstanceUID = entry.study_instance_uid
    item.AccessionNumber = entry.accession_number
    item.ScheduledProcedureStepID = entry.accession_number
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "US"
    try:
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, generate_uid())
    finally:
        assoc.release()
    if status is None or status.Status != 0x0000:
        raise SystemExit(f"N-CREATE failed: {status}")


def bench_mpps(deployment, today, var):
    """Each round, one more patient joins the room's list (untimed), then the machine starts them:
    the room's day list holds ROOM entries at every N-CREATE, the folder about LISTED."""
    from worklists.cfind import find, worklist_query
    from worklists.sync import worklist_sync

    add_entries(deployment, today, 0, ROOM - 1, "US1")
    add_entries(deployment, today, ROOM, max(0, LISTED - ROOM), "US2")
    worklist_sync(deployment.pk)
    query = worklist_query(station_aet="US1", date=today.strftime("%Y%m%d"))

    def listed():
        answers = find("127.0.0.1", deployment.dicom_port, deployment.dicom_aet, "US1", query)
        return {a.AccessionNumber for a in answers}

    proc, port = start_scp(var)
    number = LISTED + 1000
    try:
        gone, created, sizes = [], [], set()
        for round_ in range(ROUNDS + 1):
            (entry,) = add_entries(deployment, today, number + round_, 1, "US1")
            worklist_sync(deployment.pk)
            sizes.add(len(listed()))
            started = time.perf_counter()
            n_create(port, entry)
            answered = time.perf_counter() - started
            while entry.accession_number in listed():
                if time.perf_counter() - started > 30:
                    raise SystemExit("an entry stayed in the list 30 s after MPPS IN PROGRESS")
            if round_:  # the first round warms up the SCP's database connection
                created.append(answered)
                gone.append(time.perf_counter() - started)
        left = len(listed())
    finally:
        proc.terminate()
        proc.wait(10)
    if sizes != {ROOM} or left != ROOM - 1:
        raise SystemExit(f"the room's list held {sorted(sizes)} entries before each start, {left} after")
    summary(f"MPPS N-CREATE answered (association, N-CREATE, release; {LISTED} entries in the folder)", created)
    summary(
        f"MPPS IN PROGRESS → entry absent from the machine's C-FIND of its day list ({ROOM} entries on its "
        f"station, {LISTED} in the folder; goal p95 < 500 ms)",
        gone,
    )


def main():
    var = setup_django("interfaces")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its association log is not a figure
    from django.conf import settings
    from django.utils import timezone

    if not Path(settings.ORTHANC_BINARY).exists():
        raise SystemExit("Orthanc is missing: apt-get install orthanc")
    deployment, service = start_orthanc(var)
    today = timezone.localdate()
    parts = {"mpps": bench_mpps}
    # BENCH_PARTS=mpps (the default: all) runs only some parts.
    wanted = os.environ.get("BENCH_PARTS", ",".join(parts)).split(",")
    try:
        for name in wanted:
            parts[name](deployment, today, var)
    finally:
        service.stop()


if __name__ == "__main__":
    main()
