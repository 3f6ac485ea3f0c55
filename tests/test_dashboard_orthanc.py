"""The dashboard against a real Orthanc from the Debian package: it shows what the periodic status
check recorded, with its age, and never asks Orthanc itself."""

import http.server
import re
import threading
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment
from deployments.tasks import check_all_task
from portal.models import Job
from tests.dicomfiles import make_instance

pytestmark = pytest.mark.orthanc


def _stat(html, name):
    match = re.search(rf'data-stat="{name}">([^<]*)<', html)
    assert match, f"no {name} on the page"
    return match.group(1).strip()


def test_dashboard_statistics_equal_orthancs_after_storing_a_real_dicom_file(
    orthanc, orthanc_deployment, admin_client, orthanc_version
):
    client = orthanc.client()
    for n in range(3):
        client.upload(make_instance(patient_id="P1", study_uid="1.2.826.0.1.3680043.10.1.1", instance_number=n + 1))
    client.upload(make_instance(patient_id="P2"))
    stats = client.statistics()
    assert stats["CountInstances"] == 4

    check_all_task()  # the periodic check, as beat runs it every minute
    html = admin_client.get(reverse("dashboard")).content.decode()

    assert 'data-state="up"' in html
    assert f"version {orthanc_version}" in html
    assert _stat(html, "patients") == str(stats["CountPatients"]) == "2"
    assert _stat(html, "studies") == str(stats["CountStudies"]) == "2"
    assert _stat(html, "instances") == str(stats["CountInstances"])
    assert _stat(html, "disk-size") == f"{stats['TotalDiskSizeMB']} MB"
    assert _stat(html, "free-disk") != "unknown"
    assert re.search(r'data-card="checked"[^>]*>Checked \d+ s ago<', html)


def test_dashboard_says_unreachable_with_the_time_of_the_last_success_when_orthanc_stops(
    orthanc, orthanc_deployment, admin_client
):
    check_all_task()
    first = admin_client.get(reverse("dashboard"))
    assert 'data-state="up"' in first.content.decode()
    orthanc.stop()
    # The page shows what was recorded: it does not ask the stopped Orthanc.
    assert 'data-state="up"' in admin_client.get(reverse("dashboard_cards")).content.decode()

    check_all_task()
    response = admin_client.get(reverse("dashboard_cards"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-state="down"' in html
    assert "Unreachable" in html and "is unreachable" in html
    orthanc_deployment.refresh_from_db()
    assert orthanc_deployment.last_ok_at is not None
    assert f"Last success: {orthanc_deployment.last_ok_at.astimezone():%Y-%m-%d}" in html


def test_dashboard_says_authentication_failed_when_the_portal_password_is_wrong(
    orthanc, orthanc_deployment, admin_client
):
    orthanc_deployment.service_password = "not-the-password"
    orthanc_deployment.save()

    check_all_task()
    html = unescape(admin_client.get(reverse("dashboard")).content.decode())

    assert 'data-state="auth"' in html
    assert "Authentication failed" in html
    assert "refused the portal's credentials (401)" in html
    assert "Last success: never" in html


def test_before_any_check_the_dashboard_says_not_checked_yet_and_asks_nobody(orthanc, orthanc_deployment, admin_client):
    orthanc.stop()  # were the page to ask, it would find Orthanc down

    html = admin_client.get(reverse("dashboard_cards")).content.decode()

    assert 'data-state="unknown"' in html and "Not checked yet" in html
    assert "No check has run yet" in html
    orthanc_deployment.refresh_from_db()
    assert orthanc_deployment.last_checked_at is None


def test_a_status_older_than_three_minutes_is_flagged_with_its_age(orthanc, orthanc_deployment, admin_client):
    check_all_task()
    Deployment.objects.update(last_checked_at=timezone.now() - timedelta(minutes=7))

    html = admin_client.get(reverse("dashboard_cards")).content.decode()

    assert 'data-state="up"' in html
    assert "Checked 7 min ago" in html
    assert 'data-card="stale"' in html and "The last check was 7 min ago" in html


def test_check_now_queues_the_status_check_and_comes_back_to_the_dashboard(orthanc, orthanc_deployment, admin_client):
    html = admin_client.get(reverse("dashboard")).content.decode()
    assert "Check now" in html

    response = admin_client.post(
        reverse("deployments:check", args=[orthanc_deployment.slug]), {"next": reverse("dashboard")}
    )

    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert Job.objects.get(kind="deployments.deployment_check").queue == orthanc_deployment.queue
    elsewhere = admin_client.post(
        reverse("deployments:check", args=[orthanc_deployment.slug]), {"next": "https://example.org/"}
    )
    assert elsewhere["Location"] == orthanc_deployment.get_absolute_url()


@pytest.fixture
def not_orthanc():
    """A loopback HTTP server that answers every request with a JSON list, as no Orthanc does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_periodic_check_records_a_server_that_is_not_orthanc_as_down_and_checks_the_others(
    not_orthanc, transactional_db
):
    for name, url in (("A not Orthanc", not_orthanc), ("B nobody", "http://127.0.0.1:9")):
        Deployment.objects.create(name=name, slug=name[0].lower(), orthanc_url=url, config_dir="/x")

    check_all_task()

    first, second = Deployment.objects.order_by("name")
    assert first.last_state == "down" and "does not answer like Orthanc" in first.last_error
    assert second.last_state == "down" and second.last_checked_at is not None


def test_orthanc_refuses_anonymous_requests_with_the_rendered_configuration(orthanc):
    import requests

    assert requests.get(f"{orthanc.url}/system", timeout=5).status_code == 401
    assert requests.get(f"{orthanc.url}/system", auth=orthanc.auth, timeout=5).status_code == 200
