"""A staff member in a real Chromium: log in, see the live Orthanc status."""

import pytest

from tests.conftest import browser_login
from tests.dicomfiles import make_instance

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]


def test_an_admin_logs_in_and_sees_the_live_orthanc_status(
    page, live_server, orthanc, orthanc_deployment, admin_user, orthanc_version
):
    orthanc.client().upload(make_instance(patient_id="B1"))

    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")

    page.wait_for_selector(".deployment-card")
    assert page.inner_text("#whoami").startswith("ada_admin")
    state = page.locator(".orthanc-state")
    assert state.get_attribute("data-state") == "up"
    assert f"Orthanc up · version {orthanc_version}" in state.inner_text()
    assert page.inner_text('[data-stat="instances"]') == "1"
    assert page.console_errors == [], page.console_errors  # no CSP violation, no script error


def test_the_dashboard_turns_to_unreachable_by_itself_when_orthanc_stops(
    page, live_server, orthanc, orthanc_deployment, admin_user
):
    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")
    page.wait_for_selector('.orthanc-state[data-state="up"]')

    orthanc.stop()

    # htmx refreshes the cards every 10 s without a reload.
    page.wait_for_selector('.orthanc-state[data-state="down"]', timeout=25000)
    assert "Last success:" in page.inner_text(".deployment-card")


def test_a_wrong_password_in_the_browser_shows_the_error_on_the_login_page(page, live_server, admin_user):
    browser_login(page, live_server, "ada_admin", "not-the-password")

    assert "Please enter a correct username and password" in page.inner_text("main")
