"""Backups through real Celery workers and a real Redis: the record-first claim holds when the
broker delivers the same scheduled message to two workers."""

import pytest
from django.urls import reverse

from deployments.backups.models import BackupRun
from portal.celery import app
from portal.models import Job
from tests.backups.conftest import upload_studies
from tests.conftest import wait_for

pytestmark = pytest.mark.orthanc


def test_a_scheduled_message_delivered_to_two_workers_makes_one_run_and_run_now_goes_through_the_queue(
    backup_setup, celery_worker_factory, transactional_db, admin_client
):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=3)
    queue = setup.deployment.queue
    workers = [celery_worker_factory(queues=(queue,)), celery_worker_factory(queues=(queue,))]

    # What Redis does after its visibility timeout: the same message (same id) to a second worker.
    for _ in range(2):
        app.send_task("backups.scheduled_run", kwargs={"schedule_id": setup.schedule.pk}, queue=queue, task_id="beat-1")

    wait_for(lambda: any("skipped" in w.output() for w in workers), timeout=60, message="the second delivery")
    run = wait_for(
        lambda: BackupRun.objects.filter(state__in=["succeeded", "failed"]).first(), timeout=90, message="the run"
    )
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    assert (run.task_id, run.trigger) == ("beat-1", BackupRun.Trigger.SCHEDULE)
    assert BackupRun.objects.count() == 1
    assert setup.snapshots() == [run.snapshot]

    response = admin_client.post(reverse("backups:schedule_run", args=[setup.schedule.pk]))

    assert response.status_code == 302
    job = wait_for(
        lambda: Job.objects.filter(kind="backups.backup_run", state__in=["succeeded", "failed"]).first(),
        timeout=90,
        message="the Run now job",
    )
    assert job.state == Job.State.SUCCEEDED, job.message
    manual = BackupRun.objects.get(pk=job.target_id)
    assert manual.trigger == BackupRun.Trigger.MANUAL and manual.state == BackupRun.State.SUCCEEDED
    assert job.message.startswith(f"snapshot {manual.snapshot}")
