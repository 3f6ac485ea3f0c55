"""A corrected patient reaches every machine: any change to a patient (page, API, CSV) rewrites the
files of all its active entries in the same sync, and a change of station or of the name is checked
against every station that would show it. Bad input answers 400 naming the field and changes nothing."""

import datetime
import json
from pathlib import Path

import pydicom
import pytest
from django.urls import reverse
from django.utils import timezone

from portal.tokens import token_create
from tests.worklists.conftest import add_stations, cfind, make_entry
from worklists.models import Patient, WorklistEntry
from worklists.sync import worklist_sync


@pytest.fixture
def api(client, scheduler_user):
    _, token = token_create(scheduler_user, "Practice system", timezone.now() + datetime.timedelta(days=1))
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    client.raise_request_exception = False  # a 500 is an answer to assert on, not an exception
    return client


def _names_in_files(deployment):
    folder = Path(deployment.worklist_folder)
    return sorted(str(pydicom.dcmread(p).PatientName) for p in folder.glob("portal-*.wl"))


def _two_entries(deployment, **patient):
    first = make_entry(deployment, family="Doe", given="Jane", patient_id="P-TWO", accession="TWO-A", **patient)
    second = make_entry(deployment, patient_id="P-TWO", accession="TWO-B", at="11:00")
    worklist_sync(deployment.pk)
    return first, second


def _state(deployment):
    """Everything a refused request must leave as it was."""
    patients = list(Patient.objects.values_list("pk", *Patient.NAME_FIELDS, "patient_id"))
    entries = list(WorklistEntry.objects.values_list("pk", "revision", "station_aet", "patient_id", "needs_sync"))
    return patients, entries, _names_in_files(deployment)


@pytest.mark.orthanc
@pytest.mark.parametrize("server", ["indexed", "classic"])
def test_a_patient_renamed_through_the_api_shows_the_new_name_in_both_cfind_answers_after_one_sync(
    orthanc_factory, transactional_db, api, server
):
    instance = orthanc_factory(slug=f"fix{server}", start=False, worklist_server=server)
    add_stations(instance)
    instance.write_config()
    instance.start()
    d = instance.save_deployment()
    first, _ = _two_entries(d)
    assert sorted(str(a.PatientName) for a in cfind(instance)) == ["Doe^Jane", "Doe^Jane"]

    response = api.patch(
        reverse("api:patient-detail", args=[first.patient_id]), {"family_name": "Dupont"}, "application/json"
    )
    assert response.status_code == 200, response.content
    result = worklist_sync(d.pk)

    assert result.written == 2
    answers = {a.AccessionNumber: str(a.PatientName) for a in cfind(instance)}
    assert answers == {"TWO-A": "Dupont^Jane", "TWO-B": "Dupont^Jane"}


def test_an_entry_patch_with_a_partial_patient_rewrites_the_patients_other_entries_too(api, wl_deployment):
    first, second = _two_entries(wl_deployment)

    response = api.patch(
        reverse("api:entry-detail", args=[first.uuid]), {"patient": {"given_name": "Janet"}}, "application/json"
    )
    assert response.status_code == 200, response.content
    result = worklist_sync(wl_deployment.pk)

    assert result.written == 2
    assert _names_in_files(wl_deployment) == ["Doe^Janet", "Doe^Janet"]


def test_a_patient_corrected_on_the_page_reaches_all_its_entries(client, scheduler_user, wl_deployment):
    first, second = _two_entries(wl_deployment)
    client.force_login(scheduler_user)
    form = {
        "d": wl_deployment.slug,
        "patient_id": "P-TWO",
        "family_name": "Doe-Martin",
        "given_name": "Jane",
        "birth_date": "1980-01-02",
        "sex": "F",
        "station": wl_deployment.modalities.get(aet="US1").pk,
        "scheduled_date": first.scheduled_date.isoformat(),
        "scheduled_time": "09:30",
        "requested_procedure_description": first.requested_procedure_description,
        "modality": "US",
    }

    response = client.post(reverse("worklists:edit", args=[first.pk]), form)
    assert response.status_code == 302
    worklist_sync(wl_deployment.pk)

    assert _names_in_files(wl_deployment) == ["Doe-Martin^Jane", "Doe-Martin^Jane"]


def test_a_csv_row_that_corrects_a_known_patient_reaches_its_existing_entries(client, scheduler_user, wl_deployment):
    _two_entries(wl_deployment)
    client.force_login(scheduler_user)
    day = timezone.localdate().isoformat()
    text = (
        "patient_id,family_name,given_name,scheduled_date,scheduled_time,station,requested_procedure_description\n"
        f"P-TWO,Doe,Joanna,{day},15:00,US1,Thyroid\n"
    )

    response = client.post(
        f"{reverse('worklists:import')}?d={wl_deployment.slug}", {"d": wl_deployment.slug, "text": text, "confirm": "1"}
    )
    assert response.status_code == 302
    worklist_sync(wl_deployment.pk)

    assert _names_in_files(wl_deployment) == ["Doe^Joanna"] * 3


def test_moving_an_entry_to_a_station_that_cannot_show_the_stored_name_answers_400_and_changes_nothing(
    api, wl_deployment
):
    # Forced to UTF-8: US1 gets every letter; US2 shows only Latin-1 and so gets only ASCII intact.
    wl_deployment.default_encoding = "Utf8"
    wl_deployment.save(update_fields=["default_encoding"])
    entry = make_entry(wl_deployment, family="Łukasiewicz", given="Zoë", station="US1")
    worklist_sync(wl_deployment.pk)
    before = _state(wl_deployment)

    response = api.patch(reverse("api:entry-detail", args=[entry.uuid]), {"station_aet": "US2"}, "application/json")

    assert response.status_code == 400
    message = response.json()["patient"]["family_name"][0]
    assert "US2" in message and "cannot show: Ł" in message
    assert "ë" in response.json()["patient"]["given_name"][0]
    assert _state(wl_deployment) == before


def test_renaming_a_patient_to_letters_a_station_of_its_entries_cannot_show_answers_400_and_changes_nothing(
    api, wl_deployment
):
    first, _ = _two_entries(wl_deployment)
    make_entry(wl_deployment, patient_id="P-TWO", accession="TWO-US2", station="US2")
    worklist_sync(wl_deployment.pk)
    before = _state(wl_deployment)

    by_api = api.patch(
        reverse("api:patient-detail", args=[first.patient_id]), {"family_name": "Łukasiewicz"}, "application/json"
    )
    by_entry = api.patch(
        reverse("api:entry-detail", args=[first.uuid]), {"patient": {"family_name": "Łukasiewicz"}}, "application/json"
    )

    assert by_api.status_code == 400 and by_entry.status_code == 400
    assert "P-TWO is also scheduled on" in by_api.json()["family_name"][0]
    assert "cannot show: Ł" in by_api.json()["family_name"][0]
    assert "cannot show: Ł" in by_entry.json()["patient"]["family_name"][0]
    assert _state(wl_deployment) == before


def test_a_csv_file_that_would_rename_a_patient_beyond_what_its_other_row_station_shows_is_refused(
    client, scheduler_user, wl_deployment
):
    wl_deployment.default_encoding = "Utf8"
    wl_deployment.save(update_fields=["default_encoding"])
    client.force_login(scheduler_user)
    day = timezone.localdate().isoformat()
    text = (
        "patient_id,family_name,given_name,scheduled_date,scheduled_time,station\n"
        f"P-CSV,Lukasiewicz,Jan,{day},09:00,US2\n"
        f"P-CSV,Łukasiewicz,Jan,{day},10:00,US1\n"
    )

    response = client.post(
        f"{reverse('worklists:import')}?d={wl_deployment.slug}", {"d": wl_deployment.slug, "text": text, "confirm": "1"}
    )

    errors = response.context["parsed"].errors
    assert any(line == 3 and col == "family_name" and "line 2" in m and "Ł" in m for line, col, m in errors), errors
    assert not WorklistEntry.objects.exists() and not Patient.objects.exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"patient_id": "P-OTHER"}, ["non_field_errors"]),
        ({"deployment": "nope"}, ["deployment"]),
        ({"birth_date": "1980-13-01"}, ["birth_date"]),
        ({"sex": "X"}, ["sex"]),
        ({"family_name": ""}, ["family_name"]),
        ({"family_name": None}, ["family_name"]),
        ({"given_name": ["a"]}, ["given_name"]),
        ({"family_name": "A^B"}, ["family_name"]),
    ],
)
def test_a_bad_partial_patient_body_answers_400_naming_the_field_and_changes_nothing(api, wl_deployment, body, path):
    first, _ = _two_entries(wl_deployment)
    make_entry(wl_deployment, patient_id="P-OTHER", family="Other")
    before = _state(wl_deployment)

    response = api.patch(reverse("api:patient-detail", args=[first.patient_id]), body, "application/json")

    assert response.status_code == 400, response.content
    value = response.json()
    for key in path:
        value = value[key]
    assert value and isinstance(value[0], str)
    assert _state(wl_deployment) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"patient": None}, ["patient"]),
        ({"patient": []}, ["patient", "non_field_errors"]),
        ({"patient": "P-TWO"}, ["patient", "non_field_errors"]),
        ({"patient": {"sex": "X"}}, ["patient", "sex"]),
        ({"patient": {"patient_id": ""}}, ["patient", "patient_id"]),
        ({"station_aet": ""}, ["station_aet"]),
        ({"station_aet": None}, ["station_aet"]),
        ({"scheduled_date": None}, ["scheduled_date"]),
        ({"scheduled_time": "noon"}, ["scheduled_time"]),
        ({"deployment": "nope"}, ["deployment"]),
        ({"accession_number": "TWO-B"}, ["accession_number"]),
    ],
)
def test_a_bad_partial_entry_body_answers_400_naming_the_field_and_changes_nothing(api, wl_deployment, body, path):
    first, _ = _two_entries(wl_deployment)
    before = _state(wl_deployment)

    response = api.patch(reverse("api:entry-detail", args=[first.uuid]), json.dumps(body), "application/json")

    assert response.status_code == 400, response.content
    value = response.json()
    for key in path:
        value = value[key]
    assert value and isinstance(value[0], str)
    assert _state(wl_deployment) == before
