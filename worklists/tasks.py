"""Thin Celery tasks: ids in, one domain function called. Folder work runs on the deployment's
own queue (its worker is on the Orthanc host); the fan-out tasks run on the portal queue."""

import logging

import redis
from celery import shared_task
from django.conf import settings
from django.db import transaction

from deployments.models import Deployment
from portal.celery import app
from portal.jobs import job_task

from .completion import worklist_completion
from .sync import worklist_sync

log = logging.getLogger(__name__)
SYNC = "worklists.sync"
COMPLETION = "worklists.completion"
# A sync asked for and not yet begun: the changes committed meanwhile wait for it instead of
# queueing one sync each (a burst of HL7 orders would otherwise queue hundreds). It expires on its
# own, in case its task is lost; the minute sync is the safety net behind that.
# Named after the queue: a site's agent may touch only its own queue's keys (deployments/agent_setup.py).
PENDING_KEY = "worklist-sync-pending.{}"
PENDING_SECONDS = 10
_broker = None


def _redis():
    global _broker
    if _broker is None:
        tls = getattr(settings, "CELERY_BROKER_USE_SSL", None) or {}  # the broker's own CA, as Celery uses it
        _broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2, **tls)
    return _broker


def _claim_sync(queue) -> bool:
    """True when no sync of the deployment waits in its queue: the caller sends one."""
    try:
        return bool(_redis().set(PENDING_KEY.format(queue), 1, nx=True, ex=PENDING_SECONDS))
    except redis.RedisError:
        return True


def _release_sync(queue):
    try:
        _redis().delete(PENDING_KEY.format(queue))
    except redis.RedisError:
        pass


@shared_task(name=SYNC)
def sync_task(deployment_id, full=False):
    # Released before the sync reads the database: a change committed from now on asks again.
    _release_sync(Deployment.objects.get(pk=deployment_id).queue)
    return worklist_sync(deployment_id, full=full).summary()


@shared_task(name=COMPLETION)
def completion_task(deployment_id):
    return worklist_completion(deployment_id)


def _sync_job(deployment_id):
    return worklist_sync(deployment_id, full=True).summary()


# "Sync now" from the deployment page: a recorded job, so the page can show its outcome.
sync_job_task = job_task("worklists.sync_job")(_sync_job)


def send_sync(deployment_id, queue=None, full=False) -> bool:
    """Send a sync to the deployment's queue now. False when the broker is unreachable: the
    every-minute safety net then does it."""
    if queue is None:
        queue = Deployment.objects.get(pk=deployment_id).queue
    try:
        app.send_task(
            SYNC,
            args=[deployment_id],
            kwargs={"full": full},
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # kombu and redis-py raise their own; both mean "not sent"
        log.warning("worklist sync of deployment %s not sent (the minute sync will do it): %s", deployment_id, exc)
        return False
    return True


def request_sync(deployment_id, queue=None):
    """After the current transaction commits, sync the deployment's folder (or leave it to the
    sync already waiting in its queue, which will read this change). ``queue``: the deployment's,
    when the caller has it at hand (one query less per order of an HL7 burst)."""
    if queue is None:
        queue = Deployment.objects.get(pk=deployment_id).queue

    def send():
        if _claim_sync(queue) and not send_sync(deployment_id, queue):
            _release_sync(queue)

    transaction.on_commit(send)


@shared_task(name="worklists.sync_all")
def sync_all_task():
    for deployment in Deployment.objects.filter(worklists_enabled=True):
        send_sync(deployment.pk, deployment.queue, full=True)


@shared_task(name="worklists.completion_all")
def completion_all_task():
    for deployment in Deployment.objects.filter(worklists_enabled=True):
        app.send_task(COMPLETION, args=[deployment.pk], queue=deployment.queue)
