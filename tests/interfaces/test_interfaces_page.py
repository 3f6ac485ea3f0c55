"""The Interfaces page: the services' heartbeats as the running processes write them, and the
refused messages with their raw text."""

import datetime

from django.utils import timezone

from tests.conftest import wait_for
from tests.interfaces.conftest import send
from tests.interfaces.mpps_fixtures import mpps_scp, mpps_scp_factory
from worklists.interfaces.hl7.models import InterfaceHeartbeat

__all__ = ["mpps_scp", "mpps_scp_factory"]  # fixtures


def test_the_running_listener_beats_and_shows_running_then_a_silent_one_shows_since_when(
    hl7_deployment, hl7_listener, admin_client
):
    wait_for(
        lambda: InterfaceHeartbeat.objects.filter(service="hl7", address__endswith=f":{hl7_listener.port}").exists(),
        timeout=10,
        message="the listener's heartbeat",
    )
    url = f"/worklists/interfaces/{hl7_deployment.slug}/"
    page = admin_client.get(url).content.decode()
    assert "HL7 listener" in page and "running" in page and f":{hl7_listener.port}" in page

    hl7_listener.kill()
    # Three minutes on: a killed process writes no more beats.
    InterfaceHeartbeat.objects.update(seen_at=timezone.now() - datetime.timedelta(minutes=3))
    page = admin_client.get(url).content.decode()
    assert "not heard from since" in page and ">running<" not in page


def test_a_refused_message_is_shown_with_its_raw_text_and_its_ack(hl7_deployment, hl7_listener, admin_client):
    ack = send(hl7_listener.port, "MSH|^~\\&|PRAXIS|CLINIC|PORTAL|US|20261201||ORM^O01|BAD1|P|2.5\rPID|1||")
    assert ack.code in ("AE", "AR")
    page = admin_client.get(f"/worklists/interfaces/{hl7_deployment.slug}/").content.decode()
    assert "BAD1" in page and "PID|1||" in page and f"MSA|{ack.code}|BAD1" in page


def test_the_mpps_scp_beats_once_it_listens(hl7_deployment, mpps_scp, admin_client):
    wait_for(
        lambda: InterfaceHeartbeat.objects.filter(service="mpps", address__endswith=f":{mpps_scp.port}").exists(),
        timeout=10,
        message="the MPPS SCP's heartbeat",
    )
    page = admin_client.get(f"/worklists/interfaces/{hl7_deployment.slug}/").content.decode()
    assert "MPPS SCP" in page and f":{mpps_scp.port}" in page
