"""In a real Chromium: an Admin uploads /etc/orthanc's files, reviews the report, then the audit."""

import pytest

from tests.conftest import browser_login

from .test_importer import DEBIAN, make_deployment

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]


def test_an_admin_uploads_a_configuration_folder_and_follows_a_fix_link(
    page, live_server, admin_user, transactional_db
):
    if not (DEBIAN / "orthanc.json").exists():
        pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
    deployment = make_deployment(orthanc_url="http://127.0.0.1:9")
    browser_login(page, live_server, "ada_admin", "ada_admin-Pa55word!")

    page.goto(f"{live_server.url}/deployments/{deployment.slug}/import/")
    page.set_input_files("#id_files", [str(p) for p in sorted(DEBIAN.glob("*.json"))])
    page.check("#id_confirm")
    page.click("#import-form button[type=submit]")

    page.wait_for_selector("#adoption-steps[data-step=review]")
    page.click("text=Everything the import read")
    assert "serve-folders.json" in page.inner_text("#import-report")
    page.click("text=Security audit")
    row = page.locator('tr.finding[data-id="webdav-enabled"]')  # Debian's default turns WebDAV on
    row.locator("a.fix-link").click()
    page.wait_for_selector("#field-webdav_enabled")
    assert page.url.endswith("#field-webdav_enabled")
    assert page.console_errors == [], page.console_errors
