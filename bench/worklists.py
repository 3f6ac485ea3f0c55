"""Benchmark of the worklists: folder sync, C-FIND latency through findscu, save-to-visible,
and the front desk's list page with a million entries in the database.

A real Orthanc (Debian package) with the worklists plugin, findscu (dcmtk) as the machines,
Redis and a Celery worker on the deployment's queue for save-to-visible.
Run: .venv/bin/python bench/worklists.py   (BENCH_LIST_ENTRIES=100000 for a quicker last part)
"""

import datetime
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, percentile, setup_django, start_redis, start_worker, summary  # noqa: E402

LIST_ENTRIES = int(os.environ.get("BENCH_LIST_ENTRIES", 1_000_000))
# BENCH_PARTS=sync,cfind,visible,list (the default: all) runs only some parts.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 30))


def findscu(deployment, calling="US1", accession=None, date=None, quiet=False):
    """One findscu worklist query; returns (seconds, number of answers; None when quiet).

    Quiet, findscu does not print the answers: a machine does not either, and printing 200
    datasets costs findscu itself about 20 ms."""
    args = [
        "findscu",
        "-W",
        "-q" if quiet else "-v",
        "-aet",
        calling,
        "-aec",
        deployment.dicom_aet,
        "127.0.0.1",
        str(deployment.dicom_port),
        "-k",
        "SpecificCharacterSet=ISO_IR 192",
        "-k",
        "PatientName",
        "-k",
        "PatientID",
        "-k",
        f"AccessionNumber={accession or ''}",
        "-k",
        f"ScheduledProcedureStepSequence[0].ScheduledStationAETitle={calling}",
        "-k",
        f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={date or ''}",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        "-k",
        "ScheduledProcedureStepSequence[0].Modality",
    ]
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"findscu failed: {out.stdout[-500:]}{out.stderr[-1500:]}")
    return elapsed, None if quiet else (out.stdout + out.stderr).count("(Pending)")


def latencies(deployment, rounds, calling="US1", date=None, expect=None, accession=None, quiet=True):
    """Timed queries; one printed query first checks the number of answers."""
    if expect is not None:
        _, answers = findscu(deployment, calling, accession=accession, date=date)
        if answers != expect:
            raise SystemExit(f"findscu got {answers} answers, expected {expect}")
    return [findscu(deployment, calling, accession=accession, date=date, quiet=quiet)[0] for _ in range(rounds)]


def make_entries(deployment, count, day_of, status="SCHEDULED", prefix="E", patients=None, station="US1"):
    from worklists.models import Patient, WorklistEntry

    if patients is None:
        patients = Patient.objects.bulk_create(
            [
                Patient(
                    deployment=deployment,
                    patient_id=f"{prefix}P{i:07d}",
                    family_name=f"Family{i}",
                    given_name="Given",
                    birth_date=datetime.date(1970 + i % 50, 1 + i % 12, 1 + i % 28),
                    sex="FMO"[i % 3],
                )
                for i in range(min(count, 100_000))
            ],
            batch_size=5000,
        )
    batch = []
    for i in range(count):
        batch.append(
            WorklistEntry(
                deployment=deployment,
                patient=patients[i % len(patients)],
                accession_number=f"{prefix}{i:09d}",
                study_instance_uid=f"1.2.826.0.1.3680043.8.498.{len(prefix)}{ord(prefix[0])}.{i + 1}",
                requested_procedure_description="Abdomen ultrasound",
                scheduled_date=day_of(i),
                scheduled_time=datetime.time(7 + i % 12, (i * 5) % 60),
                station_aet=station,
                station_name="ROOM1",
                status=status,
            )
        )
        if len(batch) == 5000:
            WorklistEntry.objects.bulk_create(batch)
            batch = []
    if batch:
        WorklistEntry.objects.bulk_create(batch)
    return patients


def start_orthanc(var):
    from deployments.demo import local_deployment, make_folders, write_config
    from deployments.models import Modality
    from deployments.service import LocalService

    deployment = local_deployment(var / "orthanc", name="Bench clinic", slug="bench", dicom_aet="BENCHPACS")
    deployment.save()
    for n in range(1, 5):
        Modality.objects.create(
            deployment=deployment,
            name=f"us{n}",
            aet=f"US{n}",
            host="127.0.0.1",
            port=free_port(),
            charset=Modality.Charset.UTF8,
            station_name=f"ROOM{n}",
        )
    make_folders(deployment)
    write_config(deployment)
    service = LocalService.for_deployment(deployment)
    service.start()
    return deployment, service


def bench_sync(deployment, today):
    from worklists.models import WorklistEntry
    from worklists.sync import worklist_sync

    make_entries(deployment, 10_000, lambda i: today, prefix="S")
    started = time.perf_counter()
    result = worklist_sync(deployment.pk)
    elapsed = time.perf_counter() - started
    print(
        f"full sync of 10,000 entries: {elapsed:.2f} s = {10_000 / elapsed:,.0f} entries/s "
        f"(goal >= 2,000 entries/s; {result.written} files written)",
        flush=True,
    )
    times = []
    for i in range(15):
        entry = WorklistEntry.objects.filter(deployment=deployment, accession_number=f"S{i * 613:09d}").first()
        entry.requested_procedure_description = f"Changed {i}"
        entry.save()
        started = time.perf_counter()
        result = worklist_sync(deployment.pk)
        times.append(time.perf_counter() - started)
        assert result.written == 1, result
    summary("incremental sync, one change among 10,000 (goal < 50 ms)", times)
    # Back to an empty folder for the C-FIND part.
    WorklistEntry.objects.filter(deployment=deployment).update(status="COMPLETED")
    worklist_sync(deployment.pk)


def restart_with(deployment, server):
    """The same Orthanc, serving the folder with the portal's server or the classic plugin."""
    from deployments.demo import write_config
    from deployments.service import LocalService

    deployment.worklist_server = server
    deployment.save(update_fields=["worklist_server"])
    write_config(deployment)
    service = LocalService.for_deployment(deployment)
    service.stop()
    service.start()


def bench_cfind(deployment, today):
    from worklists.models import WorklistEntry
    from worklists.sync import worklist_sync

    day = today.strftime("%Y%m%d")
    make_entries(deployment, 1, lambda i: today, prefix="ONE")
    worklist_sync(deployment.pk)
    latencies(deployment, 3, date=day)  # warm-up
    # The goal compares the same query with one file and with 200: the machine asks for today's
    # entry with a given accession number and gets one answer in both cases.
    single = latencies(deployment, ROUNDS, date=day, expect=1, accession="ONE000000000")
    summary("C-FIND, a single file in the folder (one answer)", single)

    started = time.perf_counter()
    make_entries(
        deployment, 100_000, lambda i: today - datetime.timedelta(days=2 + i % 1000), status="COMPLETED", prefix="H"
    )
    make_entries(deployment, 199, lambda i: today, prefix="A")
    print(f"(100,000 historical entries created in {time.perf_counter() - started:.1f} s)", flush=True)
    worklist_sync(deployment.pk)
    one = latencies(deployment, ROUNDS, date=day, expect=1, accession="A000000007")
    summary("C-FIND, 100,000 historical entries in the database and 200 active files (one answer)", one)
    ratio = percentile(one, 50) / percentile(single, 50)
    print(f"ratio of medians, 200 active files / a single file: {ratio:.2f}x (goal within 1.2x)", flush=True)
    # For information: the whole day's list, 200 answers instead of one. Each answer is parsed,
    # encoded and sent by Orthanc, so this measures the answers, not the folder.
    active = latencies(deployment, ROUNDS, date=day, expect=200)
    summary("(information) C-FIND, 200 active files, today's whole list (200 answers)", active)
    ratio = percentile(active, 50) / percentile(single, 50)
    print(f"(information) ratio of medians, 200 answers / one answer from a single file: {ratio:.2f}x", flush=True)

    make_entries(deployment, 1800, lambda i: today + datetime.timedelta(days=1 + i % 20), prefix="F")
    worklist_sync(deployment.pk)
    files = len(list(Path(deployment.worklist_folder).glob("*.wl")))
    # The first query after 1,800 new files reads them into the server's memory: shown apart.
    first, _ = findscu(deployment, date=day)
    print(f"(first C-FIND after 1,800 files were written: {first * 1000:.0f} ms)", flush=True)
    latencies(deployment, 3, date=day)  # warm-up, as for the other cases
    many = latencies(deployment, ROUNDS, date=day, expect=200)
    summary(f"C-FIND with {files:,} active files, 200 answers (goal p95 <= 150 ms)", many)
    printed = latencies(deployment, ROUNDS, date=day, quiet=False)
    summary("(information) the same, findscu printing the 200 answers (-v)", printed)

    times, lock = [], threading.Lock()

    def machine(n):
        mine = latencies(deployment, ROUNDS, calling=f"US{n}", date=day)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=machine, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary(f"C-FIND with {files:,} active files, four machines at once (goal p95 <= 1 s)", times)

    # For comparison: Orthanc's classic worklists plugin on the same folder.
    restart_with(deployment, "classic")
    latencies(deployment, 3, date=day)  # warm-up
    classic = latencies(deployment, ROUNDS, date=day, expect=200)
    summary(f"(comparison) classic worklists plugin, C-FIND with {files:,} active files", classic)
    restart_with(deployment, "indexed")
    WorklistEntry.objects.filter(deployment=deployment, status="SCHEDULED").update(status="COMPLETED")
    worklist_sync(deployment.pk)


def bench_save_to_visible(deployment, today, var):
    from django.db import transaction

    from worklists.scheduling import save_entry

    station = deployment.modalities.get(aet="US1")
    times = []
    for i in range(ROUNDS):
        started = time.perf_counter()
        with transaction.atomic():
            entry = save_entry(
                None,
                deployment,
                {
                    "patient_id": f"VIS{i:05d}",
                    "family_name": "Visible",
                    "given_name": f"N{i}",
                    "middle_name": "",
                    "prefix": "",
                    "suffix": "",
                    "birth_date": None,
                    "sex": "",
                },
                {
                    "station": station,
                    "scheduled_date": today,
                    "scheduled_time": datetime.time(12, i % 60),
                    "requested_procedure_description": "Saved now",
                    "modality": "US",
                },
            )
        while True:
            _, answers = findscu(deployment, accession=entry.accession_number)
            if answers:
                break
            if time.perf_counter() - started > 30:
                raise SystemExit("an entry did not become visible within 30 s")
            time.sleep(0.02)
        times.append(time.perf_counter() - started)
    summary("save to visible by C-FIND, through Redis and a Celery worker (goal p95 < 2 s)", times)


def bench_list_page(deployment, today):
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from worklists.models import WorklistEntry

    # The earlier parts left ~10,000 entries on today: a realistic day is a few dozen.
    WorklistEntry.objects.filter(scheduled_date=today).update(scheduled_date=today - datetime.timedelta(days=2000))
    existing = WorklistEntry.objects.count()
    wanted = max(0, LIST_ENTRIES - existing)
    started = time.perf_counter()
    # History: about 180 entries a day over 13 years, none of them today.
    make_entries(
        deployment, wanted, lambda i: today - datetime.timedelta(days=1 + i % 5000), status="COMPLETED", prefix="M"
    )
    # A busy day on the page itself: 40 entries today.
    make_entries(deployment, 40, lambda i: today, prefix="T")
    total = WorklistEntry.objects.count()
    print(
        f"({wanted:,} entries created with bulk_create in batches of 5,000 in {time.perf_counter() - started:.0f} s; "
        f"{total:,} entries in the database)",
        flush=True,
    )
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    # As in production (DEBUG off): parsed templates are cached, not read again at each request.
    settings.TEMPLATES[0]["APP_DIRS"] = False
    settings.TEMPLATES[0]["OPTIONS"]["loaders"] = [
        (
            "django.template.loaders.cached.Loader",
            ["django.template.loaders.filesystem.Loader", "django.template.loaders.app_directories.Loader"],
        )
    ]
    user = User.objects.create_superuser("bench", password=secrets.token_urlsafe(16))
    client = Client()
    client.force_login(user)
    url = f"/worklists/?d={deployment.slug}"
    client.get(url)
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    summary(f"worklist list page with {total:,} entries in the database (goal p95 < 200 ms)", times)
    rows = response.content.decode().count('id="entry-')
    print(
        f"SQL queries for the list page: {len(queries)} for {rows} rows (asserted constant in tests/worklists/test_ui.py)"
    )


def main():
    var = setup_django("worklists")
    from django.conf import settings
    from django.utils import timezone

    if not Path(settings.ORTHANC_BINARY).exists():
        raise SystemExit("Orthanc is missing: apt-get install orthanc")
    redis_proc, broker = start_redis(var)
    os.environ["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL = broker
    from portal.celery import app

    app.conf.broker_url = broker
    deployment, service = start_orthanc(var)
    worker = start_worker([deployment.queue], broker, var / "worker.log")
    today = timezone.localdate()
    parts = {"sync": bench_sync, "cfind": bench_cfind, "visible": bench_save_to_visible, "list": bench_list_page}
    wanted = os.environ.get("BENCH_PARTS", ",".join(parts)).split(",")
    try:
        for name in wanted:
            part = parts[name]
            part(deployment, today, var) if name == "visible" else part(deployment, today)
    finally:
        worker.terminate()
        worker.wait(15)
        service.stop()
        redis_proc.terminate()
        redis_proc.wait(10)


if __name__ == "__main__":
    main()
