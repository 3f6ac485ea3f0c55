"""Crashes and concurrency: a worker killed mid-sync, and a machine querying during mass writes."""

import datetime
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.db.models import F
from django.utils import timezone

from tests.conftest import require_binary, wait_for
from tests.worklists.conftest import cfind, files_in, make_entry
from worklists.models import Patient, WorklistEntry
from worklists.sync import worklist_sync
from worklists.tasks import send_sync

pytestmark = pytest.mark.orthanc


def test_a_worker_killed_between_writing_the_file_and_updating_the_database_leaves_no_orphan_or_duplicate(
    wl_orthanc, celery_worker_factory
):
    d = wl_orthanc.deployment
    folder = Path(d.worklist_folder)
    # The first worker stops for a minute right after its files are written, before the database.
    slow = celery_worker_factory(queues=[d.queue], env={"WORKLISTS_SYNC_PAUSE_AFTER_WRITE": "60"})
    entry = make_entry(d, accession="KILLED", at="10:00")
    send_sync(d.pk, d.queue)
    wait_for(lambda: (folder / entry.file_name).exists(), timeout=20, message="the worker to write the file")
    slow.kill()
    entry.refresh_from_db()
    assert not entry.in_folder and entry.synced_revision == 0  # the database never heard of the file

    # The front desk moves the appointment meanwhile; the next sync runs on a healthy worker.
    entry.scheduled_time = datetime.time(11, 15)
    entry.save()
    celery_worker_factory(queues=[d.queue])
    send_sync(d.pk, d.queue)

    def synced():
        entry.refresh_from_db()
        return entry.in_folder and entry.synced_revision == entry.revision

    wait_for(synced, timeout=20, message="the next sync to record the file")
    assert files_in(d) == [entry.file_name]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    answers = cfind(wl_orthanc, accession="KILLED")
    assert len(answers) == 1
    assert answers[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "111500"


FIELD = re.compile(r"^I: +\((0008,0050|0032,1060|0040,0001)\) \w\w (?:\[(.*?)\]|\(no value available\))", re.M)


def _findscu_answers(d):
    """The machine's query for every entry, by dcmtk's findscu (C++: 10,000 answers in seconds):
    (accession, description, station) of each answer; None for a key an answer lacks."""
    require_binary("findscu", "dcmtk")
    args = ["findscu", "-W", "-v", "-to", "60", "-aet", "US1", "-aec", d.dicom_aet, "127.0.0.1", str(d.dicom_port)]
    for key in (
        "SpecificCharacterSet=ISO_IR 192",
        "AccessionNumber",
        "RequestedProcedureDescription",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    ):
        args += ["-k", key]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    text = out.stdout + out.stderr
    if out.returncode or "Received Final Find Response (Success)" not in text:
        raise AssertionError(f"findscu failed ({out.returncode}): {text[-500:]}")
    answers = []
    for block in text.split("Find Response: ")[1:]:
        fields = {tag: (value or "").strip() if value is not None else None for tag, value in FIELD.findall(block)}
        answers.append((fields.get("0008,0050"), fields.get("0032,1060"), fields.get("0040,0001")))
    return answers


def test_a_query_loop_during_10000_writes_and_rewrites_never_sees_a_partial_file(wl_orthanc):
    d = wl_orthanc.deployment
    count = 10_000
    today = timezone.localdate()
    patients = Patient.objects.bulk_create(
        [
            Patient(deployment=d, patient_id=f"BULK{i:05d}", family_name=f"Bulk{i}", given_name="Load")
            for i in range(count)
        ]
    )
    WorklistEntry.objects.bulk_create(
        [
            WorklistEntry(
                deployment=d,
                patient=p,
                accession_number=f"B{i:07d}",
                study_instance_uid=f"1.2.3.{i + 1}",
                requested_procedure_description="first",
                scheduled_date=today,
                scheduled_time=datetime.time(8 + i % 10, i % 60),
                station_aet="US1",
                station_name="ROOM1",
            )
            for i, p in enumerate(patients)
        ],
        batch_size=1000,
    )
    expected = {f"B{i:07d}" for i in range(count)}
    answers, problems, stop = [], [], threading.Event()
    phase = {"rewrite": False}

    def query_loop():
        while not stop.is_set():
            rewriting, started = phase["rewrite"], time.monotonic()
            try:
                result = _findscu_answers(d)
            except Exception as exc:  # a failed query is a problem too
                problems.append(f"query failed: {exc}")
                continue
            seen = [accession for accession, _, _ in result]
            bad = [
                answer
                for answer in result
                if answer[0] not in expected or answer[1] not in ("first", "second") or answer[2] != "US1"
            ]
            if bad:
                problems.append(f"{len(bad)} malformed answers")
            if len(set(seen)) != len(seen):
                problems.append("duplicate answers")
            if rewriting and phase["rewrite"] and len(seen) != count:
                problems.append(f"{len(seen)} answers instead of {count} while rewriting")
            answers.append((rewriting, len(seen), started))

    def a_query_started_after(moment):
        # A query over 10,000 files takes seconds; the first after a rewrite also reads them all.
        wait_for(lambda: any(started >= moment for _, _, started in answers), timeout=180, message="a query")

    thread = threading.Thread(target=query_loop, daemon=True)
    thread.start()
    try:
        first = worklist_sync(d.pk)
        assert first.written == count
        phase["rewrite"] = True
        a_query_started_after(time.monotonic())  # one query on the complete folder
        WorklistEntry.objects.filter(deployment=d).update(
            requested_procedure_description="second", revision=F("revision") + 1, needs_sync=True
        )
        second = worklist_sync(d.pk)
        assert second.written == count
        a_query_started_after(time.monotonic())  # and one on the rewritten folder
    finally:
        stop.set()
        thread.join(120)

    assert not problems, problems[:5]
    during_rewrite = [n for rewriting, n, _ in answers if rewriting]
    assert during_rewrite and set(during_rewrite) == {count}, answers
    assert len(answers) >= 3, answers


def test_sync_now_is_a_recorded_job_run_by_the_deployment_worker(
    wl_orthanc, celery_worker_factory, client, scheduler_user
):
    from django.urls import reverse

    from portal.models import Job

    d = wl_orthanc.deployment
    celery_worker_factory(queues=[d.queue])
    entry = make_entry(d, accession="NOW-1")
    client.force_login(scheduler_user)

    response = client.post(reverse("worklists:sync_now", args=[d.slug]))

    assert response.status_code == 302
    job = Job.objects.get(kind="worklists.sync_job")
    assert job.queue == d.queue
    done = wait_for(
        lambda: Job.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(), timeout=20, message="the job"
    )
    assert done.state == "succeeded", done.message
    assert "1 written" in done.message
    assert [a.AccessionNumber for a in cfind(wl_orthanc)] == ["NOW-1"]
    assert entry.pk
