"""A burst of orders asks for one worklist sync, not one each: the sync waiting in the deployment's
queue reads every change committed before it begins (real Redis, no worker: the queue is counted)."""

import redis
from django.db import transaction

from worklists import tasks


def _queued(redis_server, queue):
    return redis.Redis.from_url(redis_server["url"]).llen(queue)


def test_changes_committed_while_a_sync_waits_queue_no_more_and_one_after_it_began_queues_the_next(
    hl7_deployment, redis_server
):
    queue = hl7_deployment.queue
    redis.Redis.from_url(redis_server["url"]).delete(queue, tasks.PENDING_KEY.format(queue))
    for _ in range(20):
        with transaction.atomic():
            tasks.request_sync(hl7_deployment.pk)
    assert _queued(redis_server, queue) == 1

    tasks._release_sync(queue)  # what sync_task does first, before it reads the database
    with transaction.atomic():
        tasks.request_sync(hl7_deployment.pk)
    assert _queued(redis_server, queue) == 2


def test_a_request_rolled_back_sends_nothing(hl7_deployment, redis_server):
    queue = hl7_deployment.queue
    redis.Redis.from_url(redis_server["url"]).delete(queue, tasks.PENDING_KEY.format(queue))
    try:
        with transaction.atomic():
            tasks.request_sync(hl7_deployment.pk)
            raise RuntimeError
    except RuntimeError:
        pass
    assert _queued(redis_server, queue) == 0
