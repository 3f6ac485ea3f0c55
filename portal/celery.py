"""The Celery app. Settings come from Django's (CELERY_*); routing sends deployment work to
the queue of that deployment, whose worker runs on the deployment's Orthanc host."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def deployment_queue(slug):
    return f"deployment.{slug}"


def _free_the_slot_of_a_lost_acknowledgement():
    """A late acknowledgement that fails on a dead connection (a site's cut link, a restarted Redis)
    leaves kombu's Redis transport counting the message as delivered: with one message a worker
    (prefetch 1) it never asks for the next, so the agent waited forever once its link was back
    (tests/multisite/test_network.py). The slot is freed and the error still raised (and logged);
    the message stays in Redis's unacked keys and comes back after the visibility timeout, when its
    job, already finished, is not run again (portal/jobs.py)."""
    import redis
    from kombu.transport import redis as kombu_redis
    from kombu.transport.virtual import QoS

    original = kombu_redis.QoS.ack
    if getattr(original, "frees_a_lost_slot", False):
        return

    def ack(self, delivery_tag):
        try:
            original(self, delivery_tag)
        except (redis.RedisError, OSError):
            QoS.ack(self, delivery_tag)
            raise

    ack.frees_a_lost_slot = True
    kombu_redis.QoS.ack = ack


_free_the_slot_of_a_lost_acknowledgement()
