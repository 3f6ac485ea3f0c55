"""Record-first background work.

``enqueue`` writes a Job row and sends its task after the transaction commits. A task
decorated with ``job_task`` claims its row (pending → running) before it works, so a message
delivered twice runs once. ``jobs_reconcile`` (every minute from beat) re-sends jobs that never
reached the broker and revives jobs whose worker died.
"""

import logging
from functools import wraps

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .celery import app
from .models import Job

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


def enqueue(kind, target_id=None, *, queue=None, user=None) -> Job:
    job = Job.objects.create(
        kind=kind,
        target_id=target_id,
        queue=queue or settings.CELERY_TASK_DEFAULT_QUEUE,
        requested_by=user if user is not None and user.is_authenticated else None,
    )
    transaction.on_commit(lambda: send(job.id))
    return job


def send(job_id) -> bool:
    """Hand the job to the broker. False (and the reason on the row) when Redis is down."""
    job = Job.objects.get(pk=job_id)
    try:
        app.send_task(
            job.kind,
            args=[job.id],
            queue=job.queue,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # kombu raises OperationalError, redis-py its own; both mean "not sent"
        reason = f"task queue unreachable: {exc}"[:300]
        log.warning("job %s not sent: %s", job_id, reason)
        Job.objects.filter(pk=job_id).update(send_error=reason, sent_at=timezone.now())
        return False
    Job.objects.filter(pk=job_id).update(send_error="", sent_at=timezone.now())
    return True


def claim(job_id) -> bool:
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, state=Job.State.PENDING).update(
            state=Job.State.RUNNING, started_at=now, attempts=F("attempts") + 1
        )
    )


def finish(job_id, state, message=""):
    Job.objects.filter(pk=job_id).update(state=state, finished_at=timezone.now(), message=str(message)[:5000])


def job_task(name):
    """A Celery task that takes a job id and calls ``func(target_id)``; its return is the message."""

    def decorator(func):
        @shared_task(name=name, bind=True)
        @wraps(func)
        def task(self, job_id):
            if not claim(job_id):
                log.info("job %s already claimed or finished: delivery ignored", job_id)
                return
            job = Job.objects.get(pk=job_id)
            try:
                message = func(job.target_id)
            except Exception as exc:
                log.exception("job %s (%s) failed", job_id, name)
                finish(job_id, Job.State.FAILED, f"{type(exc).__name__}: {exc}")
                return
            finish(job_id, Job.State.SUCCEEDED, message or "")

        return task

    return decorator


def jobs_reconcile() -> dict:
    now = timezone.now()
    lost = Job.objects.filter(state=Job.State.RUNNING, started_at__lt=now - settings.JOB_LOST_AFTER)
    revived = lost.filter(attempts__lt=MAX_ATTEMPTS).update(state=Job.State.PENDING, sent_at=None)
    given_up = lost.update(
        state=Job.State.FAILED, finished_at=now, message="the worker was lost and the job was tried too often"
    )
    resend = list(
        Job.objects.filter(state=Job.State.PENDING)
        .filter(Q(sent_at__isnull=True) | Q(sent_at__lt=now - settings.JOB_RESEND_AFTER))
        .values_list("id", flat=True)[:500]
    )
    sent = sum(send(job_id) for job_id in resend)
    return {"resent": sent, "unsent": len(resend) - sent, "revived": revived, "given_up": given_up}


def context_processor(request):
    """Every page says so when work is waiting for an unreachable task queue."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unsent_jobs": Job.objects.filter(state=Job.State.PENDING).exclude(send_error="").count()}
