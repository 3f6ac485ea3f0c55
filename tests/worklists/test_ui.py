"""The front desk pages: validation beside the fields, status buttons, the list's query count,
CSV import, and the REST API."""

import datetime
import json
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.tokens import token_create
from tests.worklists.conftest import make_entry
from worklists.models import Patient, WorklistEntry

Status = WorklistEntry.Status


@pytest.fixture
def desk(client, scheduler_user, wl_deployment):
    client.force_login(scheduler_user)
    return client


def _form(deployment, **overrides):
    station = deployment.modalities.get(aet="US1")
    data = {
        "d": deployment.slug,
        "patient_id": "P-100",
        "family_name": "Müller",
        "given_name": "Zoë",
        "middle_name": "",
        "prefix": "",
        "suffix": "",
        "birth_date": "1980-02-03",
        "sex": "F",
        "station": station.pk,
        "scheduled_date": timezone.localdate().isoformat(),
        "scheduled_time": "10:30",
        "requested_procedure_description": "Abdomen",
        "referring_physician": "",
        "performing_physician": "",
        "accession_number": "",
        "requested_procedure_id": "",
        "modality": "US",
        "station_name": "",
        "notes": "",
    }
    data.update(overrides)
    return data


def test_the_scheduler_schedules_a_patient_and_the_entry_gets_a_number_and_a_uid(desk, wl_deployment):
    response = desk.post(reverse("worklists:create"), _form(wl_deployment))

    assert response.status_code == 302
    entry = WorklistEntry.objects.get()
    assert entry.patient.dicom_name == "Müller^Zoë"
    assert entry.accession_number.startswith("US") and len(entry.accession_number) <= 16
    assert entry.study_instance_uid and len(entry.study_instance_uid) <= 64
    assert (entry.station_aet, entry.station_name) == ("US1", "ROOM1")
    page = desk.get(response.url).content.decode()
    assert "MÜLLER, Zoë" in page and "Station US1" in page


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("family_name", "A" * 65, "At most 64 characters (DICOM PN component)"),
        ("given_name", "Zoë^Anne", "cannot be inside a name part"),
        ("patient_id", "P" * 65, "At most 64 characters (DICOM LO)"),
        ("requested_procedure_description", "x" * 65, "At most 64 characters (DICOM LO)"),
        ("requested_procedure_id", "x" * 17, "At most 16 characters (DICOM SH)"),
        ("accession_number", "A" * 17, "16 characters"),
        ("modality", "us", "capital letters"),
        ("referring_physician", "Dr=House", "= and \\ are not allowed"),
    ],
)
def test_each_violation_gives_a_field_error_naming_the_limit_and_nothing_reaches_the_folder(
    desk, wl_deployment, field, value, words
):
    response = desk.post(reverse("worklists:create"), _form(wl_deployment, **{field: value}))

    assert response.status_code == 200
    errors = response.context["patient_form"].errors | response.context["entry_form"].errors
    assert words in " ".join(errors[field]), errors
    assert not WorklistEntry.objects.exists()
    assert os.listdir(wl_deployment.worklist_folder) == []


def test_a_name_the_latin1_station_cannot_show_is_refused_with_the_letters(desk, wl_deployment):
    station = wl_deployment.modalities.get(aet="US2")
    response = desk.post(
        reverse("worklists:create"), _form(wl_deployment, family_name="Łukasiewicz", station=station.pk)
    )

    errors = response.context["patient_form"].errors["family_name"]
    assert "cannot show: Ł" in errors[0]
    assert not WorklistEntry.objects.exists()
    assert "cannot show: Ł" in response.content.decode()


def test_status_buttons_move_the_entry_and_refuse_invalid_transitions(desk, wl_deployment):
    entry = make_entry(wl_deployment)
    desk.post(reverse("worklists:status", args=[entry.pk]), {"status": Status.ARRIVED})
    entry.refresh_from_db()
    assert entry.status == Status.ARRIVED

    desk.post(reverse("worklists:status", args=[entry.pk]), {"status": Status.CANCELLED})
    response = desk.post(reverse("worklists:status", args=[entry.pk]), {"status": Status.ARRIVED}, follow=True)

    entry.refresh_from_db()
    assert entry.status == Status.CANCELLED
    assert "cancelled cannot become arrived" in response.content.decode()


def test_editing_an_entry_keeps_its_accession_and_uid(desk, wl_deployment):
    entry = make_entry(wl_deployment, family="Doe")
    data = _form(wl_deployment, patient_id=entry.patient.patient_id, family_name="Doe", scheduled_time="15:45")
    response = desk.post(reverse("worklists:edit", args=[entry.pk]), data)

    assert response.status_code == 302
    edited = WorklistEntry.objects.get(pk=entry.pk)
    assert (edited.accession_number, edited.study_instance_uid) == (entry.accession_number, entry.study_instance_uid)
    assert edited.scheduled_time == datetime.time(15, 45)
    assert edited.revision > entry.revision  # the sync rewrites it


def test_the_list_page_query_count_does_not_grow_with_its_rows(desk, wl_deployment):
    url = f"{reverse('worklists:index')}?d={wl_deployment.slug}"
    for i in range(3):
        make_entry(wl_deployment, at=f"08:{i:02d}")
    desk.get(url)
    with CaptureQueriesContext(connection) as few:
        assert desk.get(url).status_code == 200
    for i in range(40):
        make_entry(wl_deployment, at=f"09:{i:02d}", station="US1" if i % 2 else "US2")
    with CaptureQueriesContext(connection) as many:
        page = desk.get(url).content.decode()

    assert page.count('id="entry-') == 43
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= 15


def test_search_finds_by_name_id_and_accession_on_any_day(desk, wl_deployment):
    entry = make_entry(wl_deployment, family="Zimmermann", day=timezone.localdate() + datetime.timedelta(days=9))
    url = reverse("worklists:index")
    for q in ("zimmer", entry.patient.patient_id, entry.accession_number):
        assert f'id="entry-{entry.pk}"' in desk.get(url, {"d": wl_deployment.slug, "q": q}).content.decode(), q


def test_the_patient_type_ahead_offers_known_patients(desk, wl_deployment):
    make_entry(wl_deployment, family="Vandenberghe", given="Ilse")
    response = desk.get(reverse("worklists:patient_lookup"), {"d": wl_deployment.slug, "family_name": "vanden"})
    assert 'data-family_name="Vandenberghe"' in response.content.decode()


CSV_HEADER = "patient_id,family_name,given_name,birth_date,sex,scheduled_date,scheduled_time,station,requested_procedure_description\n"


def test_csv_import_previews_then_writes_every_row(desk, wl_deployment):
    day = timezone.localdate().strftime("%Y%m%d")
    text = (
        CSV_HEADER + f"C1,Peeters,An,1990-01-01,F,{day},09:00,US1,Abdomen\nC2,Janssens,Luc,,M,{day},09:20,US2,Thyroid\n"
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = f"{reverse('worklists:import')}?d={wl_deployment.slug}"
    preview = desk.post(url, {"d": wl_deployment.slug, "file": SimpleUploadedFile("day.csv", text.encode())})
    assert 'id="csv-preview"' in preview.content.decode()
    assert not WorklistEntry.objects.exists()

    done = desk.post(url, {"d": wl_deployment.slug, "text": text, "confirm": "1"})

    assert done.status_code == 302
    assert WorklistEntry.objects.count() == 2


def test_csv_import_lists_errors_by_line_and_column_and_writes_nothing(desk, wl_deployment):
    day = timezone.localdate().isoformat()
    text = CSV_HEADER + (
        f"C1,Peeters,An,1990-01-01,F,{day},09:00,US1,Abdomen\n"
        f"C2,{'X' * 65},Luc,,M,{day},09:20,US1,Thyroid\n"
        f"C3,Łukasiewicz,Jan,,M,{day},09:40,US2,Thyroid\n"
        f"C4,Doe,Jo,,M,2026-13-01,09:40,NOPE,Thyroid\n"
    )
    response = desk.post(
        f"{reverse('worklists:import')}?d={wl_deployment.slug}", {"d": wl_deployment.slug, "text": text, "confirm": "1"}
    )

    errors = response.context["parsed"].errors
    assert (3, "family_name") in [(line, col) for line, col, _ in errors]
    assert any(line == 4 and col == "family_name" and "cannot show: Ł" in m for line, col, m in errors)
    assert any(line == 5 and col == "station" for line, col, _ in errors)
    assert "At most 64 characters" in response.content.decode()
    assert not WorklistEntry.objects.exists() and not Patient.objects.exists()
    assert os.listdir(wl_deployment.worklist_folder) == []


# ---------------------------------------------------------------- REST API


@pytest.fixture
def api(client, scheduler_user, wl_deployment):
    _, token = token_create(scheduler_user, "Practice system", timezone.now() + datetime.timedelta(days=1))
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client


def _api_entry(deployment, **overrides):
    body = {
        "deployment": deployment.slug,
        "patient": {
            "patient_id": "API-1",
            "family_name": "Müller",
            "given_name": "Zoë",
            "birth_date": "1980-02-03",
            "sex": "F",
        },
        "scheduled_date": timezone.localdate().isoformat(),
        "scheduled_time": "11:00",
        "station_aet": "US1",
        "requested_procedure_description": "Abdomen",
    }
    body.update(overrides)
    return body


def test_an_integration_with_a_token_schedules_lists_moves_and_cancels_entries(api, wl_deployment):
    url = reverse("api:entry-list")
    created = api.post(url, _api_entry(wl_deployment), content_type="application/json")
    assert created.status_code == 201, created.content
    uid = created.json()["uuid"]
    assert created.json()["status"] == "SCHEDULED"

    listed = api.get(url, {"date": timezone.localdate().isoformat(), "station": "US1", "status": "SCHEDULED"}).json()
    assert listed["count"] == 1 and listed["results"][0]["patient"]["family_name"] == "Müller"
    assert api.get(url, {"station": "US2"}).json()["count"] == 0

    moved = api.post(
        reverse("api:entry-transition", args=[uid]), {"status": "ARRIVED"}, content_type="application/json"
    )
    assert moved.json()["status"] == "ARRIVED"
    patched = api.patch(
        reverse("api:entry-detail", args=[uid]), {"scheduled_time": "11:30"}, content_type="application/json"
    )
    assert patched.status_code == 200 and patched.json()["scheduled_time"] == "11:30:00"
    assert api.post(reverse("api:entry-cancel", args=[uid])).json()["status"] == "CANCELLED"
    refused = api.post(
        reverse("api:entry-transition", args=[uid]), {"status": "ARRIVED"}, content_type="application/json"
    )
    assert refused.status_code == 400 and "cannot become arrived" in refused.json()["status"][0]


@pytest.mark.parametrize(
    ("overrides", "path", "words"),
    [
        ({"requested_procedure_description": "x" * 65}, ["requested_procedure_description"], "64"),
        ({"accession_number": "A" * 17}, ["accession_number"], "16"),
        ({"modality": "us"}, ["modality"], "capital letters"),
        ({"scheduled_time": "25:00"}, ["scheduled_time"], ""),
        ({"station_aet": "NOPE"}, ["station_aet"], "NOPE"),
        ({"patient": {"patient_id": "X", "family_name": "A" * 65}}, ["patient", "family_name"], "64"),
        (
            {"station_aet": "US2", "patient": {"patient_id": "X", "family_name": "Łukasiewicz"}},
            ["patient", "family_name"],
            "cannot show: Ł",
        ),
    ],
)
def test_api_validation_errors_are_400_json_naming_the_field_and_nothing_is_written(
    api, wl_deployment, overrides, path, words
):
    response = api.post(
        reverse("api:entry-list"), _api_entry(wl_deployment, **overrides), content_type="application/json"
    )

    assert response.status_code == 400
    node = response.json()
    for key in path:
        node = node[key]
    assert words in node[0]
    assert not WorklistEntry.objects.exists()
    assert os.listdir(wl_deployment.worklist_folder) == []


def test_the_api_needs_a_token_and_a_viewer_token_reads_nothing(client, viewer_user, wl_deployment):
    assert client.get(reverse("api:entry-list")).status_code == 401
    _, token = token_create(viewer_user, "Viewer's script", timezone.now() + datetime.timedelta(days=1))
    assert client.get(reverse("api:entry-list"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 403


def test_the_openapi_schema_and_its_doc_page_describe_the_entries(api, desk):
    schema = api.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/worklists/entries/" in text and "station_aet" in text
    page = desk.get(reverse("api:docs")).content.decode()
    assert "/api/worklists/entries/{uuid}/cancel/" in page and "at most 64 characters" in page
    assert "<script>" not in page
    assert json.loads(api.get(reverse("api:schema"), {"format": "json"}).content)["info"]["title"]


def test_a_day_with_more_entries_than_the_page_limit_shows_the_first_and_says_so(desk, wl_deployment, monkeypatch):
    from worklists.views import entries as views

    monkeypatch.setattr(views, "DAY_LIMIT", 5)
    for i in range(7):
        make_entry(wl_deployment, at=f"10:{i:02d}")

    page = desk.get(reverse("worklists:index"), {"d": wl_deployment.slug}).content.decode()

    assert page.count('id="entry-') == 5
    assert "Only the first 5 entries are shown" in page
