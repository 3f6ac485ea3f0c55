"""The interface services' heartbeat: a row per running service, refreshed every minute by a daemon
thread of its process. The Interfaces page calls a service running while its row is fresh; a killed
process simply stops refreshing it (nothing claims "running" on its behalf)."""

import logging
import socket
import threading

from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)
EVERY = 60  # seconds
FRESH = 2.5 * EVERY  # the page's limit: two beats missed


def beat(service, address, started_at):
    from .hl7.models import InterfaceHeartbeat

    InterfaceHeartbeat.objects.update_or_create(
        service=service,
        host=socket.gethostname()[:253],
        address=address[:64],
        defaults={"started_at": started_at, "seen_at": timezone.now()},
    )


def start(service, address) -> threading.Event:
    """Beat now and every minute until the returned event is set."""
    stop, started_at = threading.Event(), timezone.now()

    def run():
        try:
            while True:
                try:
                    beat(service, address, started_at)
                except Exception as exc:  # the database away for a while: the page shows the gap
                    log.warning("%s heartbeat not recorded: %s", service, exc)
                if stop.wait(EVERY):
                    return
        finally:
            connection.close()

    threading.Thread(target=run, name=f"{service}-heartbeat", daemon=True).start()
    return stop
