"""The backup dashboard in the Debian Chromium, after real runs to a real sshd."""

import pytest

from deployments.backups.models import BackupRun
from tests.backups.conftest import upload_studies
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]


def test_the_dashboard_shows_the_light_the_history_and_charts_of_a_schedule_with_runs(
    backup_setup, live_server, page, admin_user, transactional_db
):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=2, per_study=2)
    first = setup.run()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    second = setup.run()
    assert first.state == second.state == BackupRun.State.SUCCEEDED, (first.error, second.error)
    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")

    page.goto(f"{live_server.url}/backups/")

    card = page.locator(f'.backup-card[data-schedule="{setup.schedule.pk}"]')
    assert card.locator(".card-header .backup-light").get_attribute("data-light") == "green"
    assert card.locator(".card-header .backup-light-text").inner_text() == "Green"
    assert card.locator(".card-header .status-dot.backup-light-green").is_visible()
    rows = card.locator("tr.backup-run")
    assert rows.count() == 2
    assert rows.first.locator("code").inner_text() == second.snapshot
    chart = card.locator('svg.backup-chart[aria-label="Snapshot size"]')
    assert chart.get_attribute("data-points") == "2"
    assert chart.locator("polyline").count() == 1 and chart.is_visible()
    assert card.locator('svg.backup-chart[aria-label="Bytes transferred"] circle').count() == 2
    assert "free" in card.locator('[data-fact="growth"]').inner_text()

    assert card.locator("button", has_text="Restore drill of the newest snapshot").is_visible()

    card.locator("a", has_text="Full history").click()

    page.wait_for_url(f"**/backups/schedules/{setup.schedule.pk}/")
    assert page.locator("tr.backup-run").count() == 2
    assert page.locator("#host-key code").inner_text() == setup.schedule.host_key_fingerprint
    page.locator("tr.backup-run a").first.click()
    assert page.locator("#run-state").inner_text() == "Succeeded"
    page.goto(f"{live_server.url}/backups/schedules/{setup.schedule.pk}/edit/")
    assert page.locator("#field-hour").is_hidden()  # a preset: the crontab fields stay out of the way
    page.select_option("#id_preset", "custom")
    assert page.locator("#field-hour").is_visible()
    assert page.console_errors == []
