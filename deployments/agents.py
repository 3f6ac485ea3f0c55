"""Is each site's worker (its agent) there? A heartbeat task on the site's own queue.

Every minute (``AGENT_HEARTBEAT_EVERY`` seconds) the central beat sends ``deployments.agent_heartbeat`` to each site's queue; the worker
next to that site's Orthanc runs it and records when. A site whose worker has not answered for
``AGENT_UNREACHABLE_AFTER`` is shown as "unreachable since" its last answer: its changes wait in its queue.
Heartbeats expire unrun after two periods, so a site back after a day runs one, not 1,440.
"""

import socket

from django.conf import settings
from django.utils import timezone

from .models import Deployment


def heartbeat(deployment_id):
    Deployment.objects.filter(pk=deployment_id).update(
        agent_seen_at=timezone.now(), agent_host=socket.gethostname()[:255]
    )


def send_heartbeats():
    from .tasks import agent_heartbeat_task

    for pk, slug in Deployment.objects.values_list("pk", "slug"):
        agent_heartbeat_task.apply_async(
            (pk,), queue=Deployment(slug=slug).queue, expires=2 * settings.AGENT_HEARTBEAT_EVERY
        )


def reachability(deployment, now=None):
    """("reachable" | "unreachable" | "never seen", since): since when it is so, if known."""
    now = now or timezone.now()
    seen = deployment.agent_seen_at
    if seen is None:
        return "never seen", None
    if now - seen > settings.AGENT_UNREACHABLE_AFTER:
        return "unreachable", seen
    return "reachable", seen
