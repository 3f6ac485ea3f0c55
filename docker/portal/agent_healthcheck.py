"""Healthcheck of a site agent: healthy while it answers the heartbeats the central beat sends to its
queue (deployments/agents.py). An agent answers no remote control (it may not read the shared
channels), so `celery inspect ping` cannot ask it; its own row in the database can."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from deployments.agents import reachability  # noqa: E402
from deployments.models import Deployment  # noqa: E402

slug = settings.PORTAL_AGENT_QUEUE.removeprefix("deployment.")
deployment = Deployment.objects.filter(slug=slug).first()
state, since = reachability(deployment) if deployment else ("unknown site", None)
if state != "reachable":
    print(f"site agent of {slug}: {state} (last heartbeat {since})", file=sys.stderr)
sys.exit(0 if state == "reachable" else 1)
