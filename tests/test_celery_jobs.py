"""Background jobs through a real Redis and a real Celery worker process."""

import pytest
import redis
from django.urls import reverse

from portal import jobs
from portal.models import Job
from tests.conftest import wait_for


def _job_state(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.state in (Job.State.SUCCEEDED, Job.State.FAILED) else None


@pytest.mark.orthanc
def test_a_status_check_queued_from_the_page_is_run_by_a_real_worker_over_real_redis(
    orthanc, orthanc_deployment, admin_client, celery_worker_factory, orthanc_version
):
    celery_worker_factory(queues=[orthanc_deployment.queue])

    response = admin_client.post(reverse("deployments:check", args=[orthanc_deployment.slug]))

    assert response.status_code == 302
    job = Job.objects.get(kind="deployments.deployment_check")
    assert job.queue == "deployment.test"
    done = wait_for(lambda: _job_state(job.pk), timeout=20, message="the worker to run the job")
    assert done.state == Job.State.SUCCEEDED, done.message
    assert done.message.startswith(f"Orthanc {orthanc_version} is up: 0 patients")
    assert done.attempts == 1
    page = admin_client.get(reverse("deployments:detail", args=[orthanc_deployment.slug])).content.decode()
    assert f"Orthanc {orthanc_version} is up" in page


@pytest.mark.orthanc
def test_a_job_queued_while_redis_is_down_is_kept_and_run_once_redis_returns(
    orthanc, orthanc_deployment, admin_client, redis_server, celery_worker_factory
):
    worker = celery_worker_factory(queues=[orthanc_deployment.queue])
    redis.Redis.from_url(redis_server["url"]).shutdown(nosave=True)
    redis_server["proc"].wait(10)

    response = admin_client.post(reverse("deployments:check", args=[orthanc_deployment.slug]), follow=True)

    assert response.status_code == 200
    job = Job.objects.get(kind="deployments.deployment_check")
    assert job.state == Job.State.PENDING
    assert "task queue unreachable" in job.send_error
    assert "Queued for later" in response.content.decode()
    banner = admin_client.get(reverse("deployments:list")).content.decode()
    assert "The task queue (Redis) is unreachable: 1 change is recorded" in banner

    # Redis comes back on the same port; the reconciler (beat's safety net) sends the job again.
    import subprocess

    from tests.conftest import _redis_ping

    redis_server["proc"] = subprocess.Popen(
        [
            redis_server["binary"],
            "--bind",
            "127.0.0.1",
            "--port",
            str(redis_server["port"]),
            "--dir",
            str(redis_server["folder"]),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: _redis_ping(redis_server["url"]), message="redis to come back")
    Job.objects.filter(pk=job.pk).update(sent_at=None)  # as if JOB_RESEND_AFTER had passed
    outcome = jobs.jobs_reconcile()

    assert outcome["resent"] == 1
    done = wait_for(lambda: _job_state(job.pk), timeout=30, message="the job to run after redis returned")
    assert done.state == Job.State.SUCCEEDED, done.message + worker.output()[-2000:]


@pytest.mark.orthanc
def test_a_second_delivery_of_the_same_job_does_nothing(orthanc, orthanc_deployment, celery_worker_factory):
    celery_worker_factory(queues=[orthanc_deployment.queue])
    job = Job.objects.create(
        kind="deployments.deployment_check", target_id=orthanc_deployment.pk, queue=orthanc_deployment.queue
    )

    jobs.send(job.pk)
    wait_for(lambda: _job_state(job.pk), timeout=20, message="the first delivery")
    jobs.send(job.pk)  # what Redis does after the visibility timeout of an unacknowledged task
    jobs.send(job.pk)

    import time

    time.sleep(2)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert job.attempts == 1


def test_the_reconciler_revives_a_job_whose_worker_died(db, settings):
    from django.utils import timezone

    job = Job.objects.create(
        kind="deployments.deployment_check",
        queue="deployment.x",
        state=Job.State.RUNNING,
        attempts=1,
        started_at=timezone.now() - settings.JOB_LOST_AFTER * 2,
    )

    outcome = jobs.jobs_reconcile()

    job.refresh_from_db()
    assert outcome["revived"] == 1
    assert job.state == Job.State.PENDING
    # Redis is not running in this test: the job stays recorded, with the reason.
    assert "task queue unreachable" in job.send_error
