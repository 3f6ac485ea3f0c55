"""Bad input on the configuration forms: an error beside the field, nothing saved or written."""

from pathlib import Path

import pytest
from django.urls import reverse

from deployments.models import ConfigRevision, Deployment, Modality, OrthancUser


@pytest.fixture
def deployment(db, tmp_path):
    return Deployment.objects.create(
        name="Form clinic",
        slug="form",
        orthanc_url="http://127.0.0.1:9",
        service_password="s" * 24,
        config_dir=str(tmp_path / "config"),
        storage_dir=str(tmp_path / "storage"),
    )


def _nothing_written(deployment):
    folder = Path(deployment.config_dir)
    assert not folder.exists() or not any(folder.iterdir()), "something reached the configuration folder"
    assert not ConfigRevision.objects.exists()


MODALITY = {
    "name": "US1",
    "aet": "US_ROOM_1",
    "host": "10.1.2.3",
    "port": 104,
    "manufacturer": "Generic",
    "allow_echo": "on",
    "allow_store": "on",
    "allow_find_worklist": "on",
    "timeout": 0,
    "charset": "ISO_IR 100",
}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("aet", "A" * 17, "Ensure this value has at most 16 characters"),
        ("aet", "US\\ROOM", "without backslash"),
        ("aet", "    ", "This field is required."),  # the form strips spaces first
        ("host", "us-room-1.clinic.local", "give an IP address, not a host name"),
        ("port", 0, "A port is between 1 and 65535."),
        ("port", 70000, "A port is between 1 and 65535."),
        ("name", "US 1/../x", "Use letters, digits, '-' and '_' only."),
        ("local_aet", "X" * 17, "at most 16 characters"),
    ],
)
def test_an_invalid_modality_value_gets_an_error_beside_its_field(admin_client, deployment, field, value, message):
    response = admin_client.post(reverse("deployments:modality_create", args=["form"]), {**MODALITY, field: value})

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert f'id="field-{field}"' in response.content.decode()
    assert not Modality.objects.exists()
    _nothing_written(deployment)


def test_a_hostname_is_accepted_when_modality_hosts_are_not_checked(admin_client, deployment):
    deployment.dicom_check_modality_host = False
    deployment.save()

    response = admin_client.post(
        reverse("deployments:modality_create", args=["form"]), {**MODALITY, "host": "us1.local"}
    )

    assert response.status_code == 302
    assert Modality.objects.get().host == "us1.local"
    assert ConfigRevision.objects.get().state == "pending"


def test_a_second_modality_with_the_same_aet_host_and_port_is_refused(admin_client, deployment):
    Modality.objects.create(deployment=deployment, name="US1", aet="US_ROOM_1", host="10.1.2.3", port=104)

    response = admin_client.post(reverse("deployments:modality_create", args=["form"]), {**MODALITY, "name": "US2"})

    assert "A modality with this AE title, host and port already exists." in response.context["form"].errors["aet"]
    assert Modality.objects.count() == 1


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"username": "bad:name"}, "username", "cannot contain ':'"),
        ({"username": "two words"}, "username", "cannot contain ' '"),
        ({"username": "tab\tname"}, "username", "cannot contain '\\t'"),
        ({"password": "orthanc"}, "password", "known default"),
        ({"password": "change-me"}, "password", "known default"),
        ({"username": "alice", "password": "alice"}, "password", "known default"),
        ({"username": "clerk", "password": "clerk"}, "password", "the username itself"),
        ({"password": "password123"}, "password", "common passwords"),
        ({"password": "short-pw-1"}, "password", "at least 12 characters"),
        ({"username": "portal"}, "username", "the portal's own account"),
        ({"username": "x" * 65}, "username", "at most 64 characters"),
    ],
)
def test_an_invalid_orthanc_user_gets_an_error_beside_its_field(admin_client, deployment, data, field, message):
    post = {"username": "clerk", "password": "", "role": "viewer", "is_active": "on", **data}

    response = admin_client.post(reverse("deployments:user_create", args=["form"]), post)

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not OrthancUser.objects.exists()
    _nothing_written(deployment)


def test_a_duplicate_orthanc_username_is_refused(admin_client, deployment):
    OrthancUser.objects.create(deployment=deployment, username="clerk", password="c" * 24)

    response = admin_client.post(
        reverse("deployments:user_create", args=["form"]), {"username": "clerk", "role": "viewer", "is_active": "on"}
    )

    assert "already exists" in response.context["form"].errors["username"][0]


def test_a_new_orthanc_user_gets_a_generated_password_shown_once_and_stored_encrypted(admin_client, deployment):
    from django.db import connection

    response = admin_client.post(
        reverse("deployments:user_create", args=["form"]), {"username": "clerk", "role": "viewer", "is_active": "on"}
    )

    password = response.context["password"]
    assert len(password) >= 20
    user = OrthancUser.objects.get()
    assert user.password == password
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM deployments_orthancuser")
        stored = cursor.fetchone()[0]
    assert password not in stored and stored.startswith("gAAAA")  # a Fernet token
    assert password not in admin_client.get(reverse("deployments:orthanc_users")).content.decode()


def test_authentication_cannot_be_turned_off(admin_client, deployment):
    from tests.test_audit import NEW

    data = {
        **NEW,
        "slug": "form",
        "name": "Form clinic",
        "config_dir": deployment.config_dir,
        "authentication_enabled": "",
    }
    response = admin_client.post(reverse("deployments:edit", args=["form"]), data)

    assert "Authentication must stay on" in response.context["form"].errors["authentication_enabled"][0]
    _nothing_written(deployment)


def test_remote_access_without_authentication_is_refused(admin_client, deployment):
    from tests.test_audit import NEW

    data = {
        **NEW,
        "slug": "form",
        "name": "Form clinic",
        "config_dir": deployment.config_dir,
        "remote_access_allowed": "on",
        "authentication_enabled": "",
    }
    response = admin_client.post(reverse("deployments:edit", args=["form"]), data)

    assert "Remote access needs it too" in response.context["form"].errors["authentication_enabled"][0]
    _nothing_written(deployment)


def test_a_find_limit_of_zero_needs_an_explicit_confirmation(admin_client, deployment):
    from tests.test_audit import NEW

    data = {**NEW, "slug": "form", "name": "Form clinic", "config_dir": deployment.config_dir, "limit_find_results": 0}
    refused = admin_client.post(reverse("deployments:edit", args=["form"]), data)
    accepted = admin_client.post(reverse("deployments:edit", args=["form"]), {**data, "confirm_unlimited_find": "on"})

    assert "0 removes the limit" in refused.context["form"].errors["limit_find_results"][0]
    assert accepted.status_code == 302
    deployment.refresh_from_db()
    assert deployment.limit_find_results == 0


def test_turning_on_host_checks_is_refused_while_a_modality_has_a_hostname(admin_client, deployment):
    from tests.test_audit import NEW

    deployment.dicom_check_modality_host = False
    deployment.save()
    Modality.objects.create(deployment=deployment, name="OLD", aet="OLD", host="old.local", port=104)
    data = {**NEW, "slug": "form", "name": "Form clinic", "config_dir": deployment.config_dir}

    response = admin_client.post(reverse("deployments:edit", args=["form"]), data)

    assert "OLD" in response.context["form"].errors["dicom_check_modality_host"][0]


def test_the_portals_worklist_server_is_refused_while_classic_plugin_options_are_kept(admin_client, deployment):
    from tests.test_audit import NEW

    deployment.extra_config = {"Worklists": {"FilterIssuerAet": True}}
    deployment.worklist_server = "classic"
    deployment.save()
    data = {**NEW, "slug": "form", "name": "Form clinic", "config_dir": deployment.config_dir}
    refused = admin_client.post(reverse("deployments:edit", args=["form"]), data)
    accepted = admin_client.post(reverse("deployments:edit", args=["form"]), {**data, "worklist_server": "classic"})

    assert "FilterIssuerAet only work with Orthanc's classic" in refused.context["form"].errors["worklist_server"][0]
    assert accepted.status_code == 302


# ---------------------------------------------------------------- values that depend on Orthanc's release


def _edit(admin_client, deployment, **values):
    from tests.test_audit import NEW

    data = {**NEW, "slug": "form", "name": "Form clinic", "config_dir": deployment.config_dir, **values}
    return admin_client.post(reverse("deployments:edit", args=["form"]), data)


def test_the_2023b_log_edition_is_offered_and_saved_when_the_deployments_orthanc_accepts_it(admin_client, deployment):
    deployment.last_version = "1.12.7"
    deployment.save()

    page = admin_client.get(reverse("deployments:edit", args=["form"]))
    response = _edit(admin_client, deployment, deidentify_logs_dicom_version="2023b")

    choices = [value for value, _ in page.context["form"].fields["deidentify_logs_dicom_version"].choices]
    assert choices == ["2008", "2017c", "2021b", "2023b"]
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == "2023b"


def test_the_2023b_log_edition_is_refused_beside_its_field_for_an_orthanc_that_would_not_start(
    admin_client, deployment
):
    deployment.last_version = "1.10.1"
    deployment.save()

    response = _edit(admin_client, deployment, deidentify_logs_dicom_version="2023b")

    form = response.context["form"]
    assert form.errors["deidentify_logs_dicom_version"] == [
        "2023b is not accepted by Orthanc 1.10.1: Orthanc would refuse to start. Choose 2008, 2017c, 2021b."
    ]
    assert "2023b needs Orthanc 1.12.1 or later." in form.fields["deidentify_logs_dicom_version"].help_text
    _nothing_written(deployment)


def test_an_unknown_version_offers_the_log_editions_every_supported_release_accepts_and_says_so(
    admin_client, deployment
):
    page = admin_client.get(reverse("deployments:edit", args=["form"]))
    response = _edit(admin_client, deployment, deidentify_logs_dicom_version="2023b")

    field = page.context["form"].fields["deidentify_logs_dicom_version"]
    assert [value for value, _ in field.choices] == ["2008", "2017c", "2021b"]
    assert "Orthanc's version is not known yet" in field.help_text
    assert "version is not known yet (the portal has not reached it)" in page.content.decode()
    assert response.context["form"].errors["deidentify_logs_dicom_version"] == [
        "2023b is not accepted by every supported Orthanc release: Orthanc would refuse to start. "
        "Choose 2008, 2017c, 2021b."
    ]
