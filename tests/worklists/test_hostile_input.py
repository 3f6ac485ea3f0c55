"""Hostile input to the worklist pages, the API and the CSV import: a 400 (or a page) naming the
field or the rule, never a 500, and nothing written."""

import datetime
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment
from portal.roles import SCHEDULER
from portal.tokens import token_create
from tests.worklists.conftest import make_entry
from worklists.models import Patient, WorklistEntry


@pytest.fixture
def desk(client, scheduler_user, wl_deployment):
    client.force_login(scheduler_user)
    client.raise_request_exception = False  # a 500 is an answer to assert on, not an exception
    return client


@pytest.fixture
def token_client(client, scheduler_user, wl_deployment):
    """The API as an integration sees it: a Scheduler's token, no session."""
    assert scheduler_user.groups.filter(name=SCHEDULER).exists()
    _, token = token_create(scheduler_user, "Practice system", timezone.now() + datetime.timedelta(days=30))
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    client.raise_request_exception = False
    return client


@pytest.fixture
def other_deployment(db, tmp_path):
    return Deployment.objects.create(
        name="Other clinic",
        slug="other",
        orthanc_url="http://127.0.0.1:9",
        service_password="y" * 24,
        config_dir=str(tmp_path / "other"),
    )


def _entry_body(deployment, **overrides):
    body = {
        "deployment": deployment.slug,
        "patient": {"patient_id": "API-1", "family_name": "Doe", "given_name": "Jane"},
        "scheduled_date": timezone.localdate().isoformat(),
        "scheduled_time": "11:00",
        "station_aet": "US1",
    }
    body.update(overrides)
    return body


# ---------------------------------------------------------------- entry PATCH, Django validation


def test_entry_patch_with_a_partial_patient_changes_only_what_it_sends(desk, wl_deployment):
    entry = make_entry(wl_deployment, family="Doe", given="Jane")
    response = desk.patch(
        reverse("api:entry-detail", args=[entry.uuid]), {"patient": {"family_name": "X"}}, "application/json"
    )

    assert response.status_code == 200, response.content
    patient = Patient.objects.get(pk=entry.patient_id)
    assert (patient.family_name, patient.given_name) == ("X", "Jane")
    assert response.json()["patient"]["patient_id"] == patient.patient_id


def test_entry_patch_naming_a_new_patient_without_a_family_name_answers_400_naming_the_field(desk, wl_deployment):
    entry = make_entry(wl_deployment)
    response = desk.patch(
        reverse("api:entry-detail", args=[entry.uuid]), {"patient": {"patient_id": "NEW-9"}}, "application/json"
    )

    assert response.status_code == 400
    assert "NEW-9" in response.json()["patient"]["family_name"][0]
    entry.refresh_from_db()
    assert entry.patient.patient_id != "NEW-9" and not Patient.objects.filter(patient_id="NEW-9").exists()


def test_a_django_validation_error_inside_a_save_answers_400_with_its_message(desk, wl_deployment, settings):
    # A pattern giving more than 16 characters: numbering the entry refuses it deep in the save.
    settings.WORKLISTS_ACCESSION_PATTERN = "TOOLONGPREFIX{date:%Y%m%d}{seq:04d}"
    response = desk.post(reverse("api:entry-list"), _entry_body(wl_deployment), "application/json")

    assert response.status_code == 400
    assert "longer than 16 characters" in json.dumps(response.json())
    assert not WorklistEntry.objects.exists()


# ---------------------------------------------------------------- JSON bodies


def test_json_nested_100000_deep_answers_400_nested_too_deeply(desk, wl_deployment):
    body = "[" * 100_000 + "]" * 100_000
    response = desk.post(reverse("api:entry-list"), body, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"].lower()


@pytest.mark.parametrize(
    ("url_name", "body", "field"),
    [
        ("api:entry-list", '{"deployment": "folder", "patient": {"patient_id": "A", "sex": "\\ud800"}}', "patient.sex"),
        ("api:patient-list", '{"deployment": "folder", "patient_id": "A", "sex": "\\ud800"}', "sex"),
        ("api:entry-transition", '{"status": "\\ud800"}', "status"),
    ],
)
def test_a_lone_surrogate_in_json_answers_400_naming_the_field(desk, wl_deployment, url_name, body, field):
    args = [make_entry(wl_deployment).uuid] if url_name == "api:entry-transition" else []
    response = desk.post(reverse(url_name, args=args), body, content_type="application/json")

    assert response.status_code == 400
    assert "surrogate" in response.json()[field][0]
    assert Patient.objects.filter(patient_id="A").count() == 0


# ---------------------------------------------------------------- search strings and text limits


def test_a_60000_character_search_is_refused_naming_the_limit_everywhere(desk, wl_deployment):
    long = "x" * 60_000
    api = desk.get(reverse("api:patient-list"), {"q": long})
    assert api.status_code == 400 and "at most 64 characters" in api.json()["q"][0]

    page = desk.get(reverse("worklists:index"), {"d": wl_deployment.slug, "q": long})
    assert page.status_code == 200 and "at most 64 characters" in page.content.decode()

    lookup = desk.get(reverse("worklists:patient_lookup"), {"d": wl_deployment.slug, "family_name": long})
    assert lookup.status_code == 200 and "at most 64 characters" in lookup.content.decode()


def test_notes_have_a_limit_and_no_control_characters_in_the_api_and_the_form(desk, wl_deployment):
    too_long = desk.post(reverse("api:entry-list"), _entry_body(wl_deployment, notes="n" * 2001), "application/json")
    assert too_long.status_code == 400 and "2000" in too_long.json()["notes"][0]
    control = desk.post(reverse("api:entry-list"), _entry_body(wl_deployment, notes="a\x07b"), "application/json")
    assert control.status_code == 400 and "U+0007" in control.json()["notes"][0]

    station = wl_deployment.modalities.get(aet="US1")
    form = {
        "d": wl_deployment.slug,
        "patient_id": "P-1",
        "family_name": "Doe",
        "station": station.pk,
        "scheduled_date": timezone.localdate().isoformat(),
        "scheduled_time": "10:30",
        "modality": "US",
        "notes": "n" * 2001,
    }
    page = desk.post(reverse("worklists:create"), form)
    assert page.status_code == 200 and "at most 2000 characters" in page.content.decode()
    assert not WorklistEntry.objects.exists()


# ---------------------------------------------------------------- deployments are not crossed


def test_a_scheduler_token_cannot_move_a_patient_to_another_deployment(token_client, wl_deployment, other_deployment):
    entry = make_entry(wl_deployment)
    response = token_client.patch(
        reverse("api:patient-detail", args=[entry.patient_id]),
        {"deployment": other_deployment.slug},
        "application/json",
    )

    assert response.status_code == 400
    assert "fixed" in response.json()["deployment"][0]
    assert Patient.objects.get(pk=entry.patient_id).deployment == wl_deployment


def test_a_scheduler_token_cannot_move_an_entry_or_reach_another_deployments_station(
    token_client, wl_deployment, other_deployment
):
    entry = make_entry(wl_deployment)
    moved = token_client.patch(
        reverse("api:entry-detail", args=[entry.uuid]), {"deployment": other_deployment.slug}, "application/json"
    )
    assert moved.status_code == 400 and "deployment" in moved.json()

    # US1 is a station of wl_deployment only: an entry on the other deployment cannot use it.
    created = token_client.post(reverse("api:entry-list"), _entry_body(other_deployment), "application/json")
    assert created.status_code == 400 and "US1" in created.json()["station_aet"][0]
    assert WorklistEntry.objects.filter(deployment=other_deployment).count() == 0


# ---------------------------------------------------------------- CSV import


HEADER = "patient_id,family_name,scheduled_date,scheduled_time,station"


def _upload(desk, deployment, text):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("day.csv", text.encode(), content_type="text/csv")
    return desk.post(reverse("worklists:import") + f"?d={deployment.slug}", {"d": deployment.slug, "file": upload})


def test_a_csv_file_with_cr_only_line_endings_is_read_line_by_line(desk, wl_deployment):
    day = timezone.localdate().isoformat()
    text = f"{HEADER}\rP1,Doe,{day},09:00,US1\rP2,Roe,{day},09:30,US1\r"
    response = _upload(desk, wl_deployment, text)

    assert response.status_code == 200
    assert "Preview: 2 entries" in response.content.decode()
    assert not WorklistEntry.objects.exists()  # a preview writes nothing


@pytest.mark.parametrize("where", ["header", "field"])
def test_a_csv_value_over_128_kib_is_a_clear_error_and_nothing_is_imported(desk, wl_deployment, where):
    day = timezone.localdate().isoformat()
    huge = "x" * (129 * 1024)
    text = f"{HEADER},{huge}\n" if where == "header" else f"{HEADER}\nP1,{huge},{day},09:00,US1\n"
    response = _upload(desk, wl_deployment, text)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was imported" in page and "longer than 128 KiB" in page
    assert not WorklistEntry.objects.exists()


def test_the_csv_error_list_shows_the_first_50_and_counts_the_rest(desk, wl_deployment):
    rows = "".join(f"P{i},Doe,not-a-date,09:00,US1\n" for i in range(80))
    response = _upload(desk, wl_deployment, f"{HEADER}\n{rows}")

    page = response.content.decode()
    assert page.count("<tr><td>") == 50
    assert "and 30 more errors not listed" in page
    assert not WorklistEntry.objects.exists()
