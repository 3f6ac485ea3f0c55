"""The front desk in Chromium: schedule with the type-ahead, save, and the machine sees it."""

import time

import pytest

from tests.conftest import browser_login
from tests.worklists.conftest import cfind, make_entry
from worklists.models import WorklistEntry

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]


def test_an_entry_saved_in_the_ui_is_returned_by_cfind_within_2_s(
    page, live_server, scheduler_user, wl_orthanc, celery_worker_factory
):
    d = wl_orthanc.deployment
    celery_worker_factory(queues=[d.queue])
    known = make_entry(d, family="Vandenberghe", given="Ilse", patient_id="KNOWN-1", status="CANCELLED")
    browser_login(page, live_server, "sam_scheduler", "sam_scheduler-Pa55word!")
    page.goto(f"{live_server.url}/worklists/?d={d.slug}")
    page.keyboard.press("n")  # the keyboard shortcut to the schedule form
    page.wait_for_selector("#schedule-form")

    page.fill("#id_family_name", "Vanden")
    page.click(".wl-patient-match")  # the type-ahead's suggestion fills the patient fields
    assert page.input_value("#id_patient_id") == "KNOWN-1"
    assert page.input_value("#id_given_name") == "Ilse"
    page.select_option("#id_station", value=str(d.modalities.get(aet="US1").pk))
    page.fill("#id_scheduled_time", "14:45")
    page.fill("#id_requested_procedure_description", "Abdomen ultrasound")
    started = time.monotonic()
    page.click("#save-entry")
    page.wait_for_selector(".alert-success")

    entry = WorklistEntry.objects.exclude(pk=known.pk).get()
    answers = []
    while time.monotonic() - started < 5 and not answers:
        answers = cfind(wl_orthanc, accession=entry.accession_number)
    elapsed = time.monotonic() - started

    assert answers, "the machine never saw the entry"
    assert elapsed < 2.0, f"visible after {elapsed:.2f} s"
    assert str(answers[0].PatientName) == "Vandenberghe^Ilse"
    assert answers[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "144500"
    page.reload()
    assert "in the machine's list" in page.inner_text(f"#entry-{entry.pk}")
    assert not [e for e in page.console_errors if "Content Security Policy" in e], page.console_errors


def test_the_machine_view_shows_the_real_cfind_answer(page, live_server, scheduler_user, wl_orthanc):
    from worklists.sync import worklist_sync

    d = wl_orthanc.deployment
    make_entry(d, family="Müller", given="Zoë", accession="SEEN-1")
    worklist_sync(d.pk)
    browser_login(page, live_server, "sam_scheduler", "sam_scheduler-Pa55word!")
    page.goto(f"{live_server.url}/worklists/machine/?d={d.slug}")

    table = page.inner_text("#cfind-answer")
    assert "Müller^Zoë" in table and "SEEN-1" in table
