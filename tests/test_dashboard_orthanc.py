"""The dashboard against a real Orthanc from the Debian package."""

import re
from html import unescape

import pytest
from django.urls import reverse

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

    html = admin_client.get(reverse("dashboard")).content.decode()

    assert 'data-state="up"' in html
    assert f"version {orthanc_version}" in html
    assert _stat(html, "patients") == str(stats["CountPatients"]) == "2"
    assert _stat(html, "studies") == str(stats["CountStudies"]) == "2"
    assert _stat(html, "instances") == str(stats["CountInstances"])
    assert _stat(html, "disk-size") == f"{stats['TotalDiskSizeMB']} MB"
    assert _stat(html, "free-disk") != "unknown"


def test_dashboard_says_unreachable_with_the_time_of_the_last_success_when_orthanc_stops(
    orthanc, orthanc_deployment, admin_client
):
    first = admin_client.get(reverse("dashboard"))
    assert 'data-state="up"' in first.content.decode()
    orthanc.stop()

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

    html = unescape(admin_client.get(reverse("dashboard")).content.decode())

    assert 'data-state="auth"' in html
    assert "Authentication failed" in html
    assert "refused the portal's credentials (401)" in html
    assert "Last success: never" in html


def test_orthanc_refuses_anonymous_requests_with_the_rendered_configuration(orthanc):
    import requests

    assert requests.get(f"{orthanc.url}/system", timeout=5).status_code == 401
    assert requests.get(f"{orthanc.url}/system", auth=orthanc.auth, timeout=5).status_code == 200
