"""A staff member in a real Chromium: log in, see the Orthanc status the periodic check recorded."""

import pytest

from deployments.tasks import check_all_task
from tests.conftest import browser_login
from tests.dicomfiles import make_instance

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]


def test_an_admin_checks_now_and_a_real_worker_brings_the_orthanc_status_to_the_page(
    page, live_server, orthanc, orthanc_deployment, admin_user, orthanc_version, celery_worker_factory
):
    orthanc.client().upload(make_instance(patient_id="B1"))
    celery_worker_factory(queues=[orthanc_deployment.queue])

    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")

    page.wait_for_selector(".deployment-card")
    assert page.inner_text("#whoami").startswith("ada_admin")
    assert page.locator(".orthanc-state").get_attribute("data-state") == "unknown"
    page.click("text=Check now")
    # The worker records the status; htmx refreshes the cards every 10 s without a reload.
    page.wait_for_selector('.orthanc-state[data-state="up"]', timeout=30000)
    state = page.locator(".orthanc-state")
    assert f"Orthanc up · version {orthanc_version}" in state.inner_text()
    assert page.inner_text('[data-stat="instances"]') == "1"
    assert page.inner_text('[data-card="checked"]').endswith("s ago")
    assert page.console_errors == [], page.console_errors  # no CSP violation, no script error


def test_the_dashboard_turns_to_unreachable_by_itself_after_the_periodic_check_finds_orthanc_stopped(
    page, live_server, orthanc, orthanc_deployment, admin_user
):
    check_all_task()
    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")
    page.wait_for_selector('.orthanc-state[data-state="up"]')

    orthanc.stop()
    check_all_task()  # as beat runs it every minute

    # htmx refreshes the cards every 10 s without a reload.
    page.wait_for_selector('.orthanc-state[data-state="down"]', timeout=25000)
    assert "Last success:" in page.inner_text(".deployment-card")


def test_a_wrong_password_in_the_browser_shows_the_error_on_the_login_page(page, live_server, admin_user):
    browser_login(page, live_server, "ada_admin", "not-the-password")

    assert "Please enter a correct username and password" in page.inner_text("main")
