"""A viewer in Orthanc Explorer, in a real Chromium against a real Orthanc: the search works (it is
a POST to /tools/find), the delete does not."""

import pytest
import requests

from deployments.models import OrthancUser
from tests.dicomfiles import make_instance

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]

PASSWORD = "Viewer-pa55word-of-vera"


def test_a_viewer_finds_a_study_in_orthanc_explorer_and_cannot_delete_it(orthanc_factory, browser):
    instance = orthanc_factory(start=False)
    instance.users.append(OrthancUser(username="vera", password=PASSWORD, role="viewer"))
    instance.write_config()
    instance.start()
    client = instance.client()
    study = client.upload(make_instance(patient_id="EXPL-1", patient_name="Explorer^Vera"))["ParentStudy"]
    client.upload(make_instance(patient_id="EXPL-2", patient_name="Other^Olga"))

    context = browser.new_context(http_credentials={"username": "vera", "password": PASSWORD})
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        page.goto(f"{instance.url}/app/explorer.html")
        page.fill("#lookup-patient-id", "EXPL-1")
        with page.expect_response(lambda r: r.url.endswith("/tools/find")) as search:
            page.click("#lookup-submit")
        assert (search.value.request.method, search.value.status) == ("POST", 200)
        found = page.locator("#lookup-result li a")
        found.first.wait_for()
        assert found.count() == 1
        assert "Explorer^Vera" in found.first.inner_text()

        found.first.click()
        page.wait_for_url(f"**#study?uuid={study}")
        page.click("#study-delete")
        with page.expect_response(lambda r: r.request.method == "DELETE") as delete:
            page.get_by_text("OK", exact=True).click()  # the confirmation dialog
        assert delete.value.status == 403
    finally:
        context.close()
    assert requests.get(f"{instance.url}/studies/{study}", auth=instance.auth, timeout=10).status_code == 200
