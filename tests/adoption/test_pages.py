"""The adoption page: every bad input is a field error (never a 500) and changes nothing; the
typed account goes to the push encrypted and short-lived, and only there."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from deployments.adoption import login_take
from deployments.models import ConfigRevision, Deployment, PushLogin
from portal.models import AuditEntry

from .conftest import GET_ONLY_FILTER

CONFIG = (
    '{"AuthenticationEnabled": true, "LuaScripts": ["filter.lua"], "RegisteredUsers": {"alice": "Al1ce-long-Passw0rd"}}'
)


@pytest.fixture
def deployment(db):
    return Deployment.objects.create(
        name="Pages", slug="pages", orthanc_url="http://127.0.0.1:9", config_dir="/nonexistent/etc",
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip


def upload(name, text):
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def imported(admin_client, deployment):
    files = [upload("orthanc.json", CONFIG), upload("filter.lua", GET_ONLY_FILTER)]
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]), {"files": files, "confirm": "on"}
    )
    assert response.status_code == 302
    return deployment.adoptions.get()


def test_the_review_shows_each_user_with_the_role_its_old_filter_gave(admin_client, deployment):
    imported(admin_client, deployment)
    html = admin_client.get(reverse("deployments:adoption", args=[deployment.slug])).content.decode()
    assert 'data-step="review"' in html
    assert '<tr data-user="alice"><td>' in html and "<td>viewer</td><td>yes</td>" in html
    assert 'id="first-push-form"' in html
    assert "restarting Orthanc through the deployment" not in html  # no service control: not offered


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"way": "account"}, "username", "Needed to push with an admin account of this Orthanc."),
        ({"way": "account", "username": "admin"}, "password", "Needed to push with an admin account"),
        ({"way": "account", "username": "ad:min", "password": "x"}, "username", "cannot contain"),
        ({"way": "account", "username": "a" * 65, "password": "x"}, "username", "at most 64 characters"),
        ({"way": "account", "username": "admin", "password": "x" * 201}, "password", "at most 200 characters"),
        (
            {"way": "account", "username": "admin", "password": "two\nlines"},
            "password",
            "Control characters are not allowed",
        ),
        ({"way": "service"}, "way", "Select a valid choice"),
        ({"way": "sideways"}, "way", "Select a valid choice"),
        ({}, "way", "This field is required."),
    ],
)
def test_a_bad_first_push_form_is_a_field_error_and_changes_nothing(admin_client, deployment, data, field, message):
    imported(admin_client, deployment)
    audited = AuditEntry.objects.count()

    response = admin_client.post(reverse("deployments:adoption", args=[deployment.slug]), data)

    assert response.status_code == 200
    html = response.content.decode()
    shown = html.split(f'id="field-{field}"', 1)[1].split('id="field-', 1)[0]
    assert "field-error" in shown and message in shown, shown
    assert not deployment.revisions.exists() and not PushLogin.objects.exists()
    assert AuditEntry.objects.count() == audited


def test_a_first_push_before_any_import_is_refused_with_a_sentence(admin_client, deployment):
    response = admin_client.post(
        reverse("deployments:adoption", args=[deployment.slug]), {"way": "account", "username": "a", "password": "b"}
    )
    assert response.status_code == 200
    assert "Import this Orthanc&#x27;s configuration first" in response.content.decode()
    assert not deployment.revisions.exists() and not PushLogin.objects.exists()


def test_the_typed_account_is_kept_only_encrypted_for_the_next_push_which_deletes_it(admin_client, deployment):
    imported(admin_client, deployment)
    password = "Th3-clinic-admin-Passw0rd"

    response = admin_client.post(
        reverse("deployments:adoption", args=[deployment.slug]),
        {"way": "account", "username": "admin", "password": password},
    )

    assert response.status_code == 302
    assert deployment.revisions.get().state == ConfigRevision.State.PENDING
    row = PushLogin.objects.get()
    assert password not in row.token and "admin" not in row.token
    assert password not in json.dumps(list(AuditEntry.objects.values("summary", "changes")))
    assert login_take(deployment) == ("admin", password)
    assert not PushLogin.objects.exists() and login_take(deployment) is None


def test_a_typed_account_older_than_ten_minutes_is_worthless(deployment, db):
    from datetime import timedelta

    from cryptography.fernet import Fernet
    from django.conf import settings
    from django.utils import timezone

    from deployments.adoption import logins_forget_expired

    old_token = Fernet(settings.FIELD_ENCRYPTION_KEY.encode()).encrypt_at_time(
        json.dumps(["admin", "pw"]).encode(), int(timezone.now().timestamp()) - 601
    )
    PushLogin.objects.create(deployment=deployment, token=old_token.decode())
    assert login_take(deployment) is None and not PushLogin.objects.exists()
    PushLogin.objects.create(
        deployment=deployment, token=old_token.decode(), created_at=timezone.now() - timedelta(seconds=601)
    )
    assert logins_forget_expired() == 1


def test_lua_scripts_alone_are_not_an_import(admin_client, deployment):
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload("filter.lua", GET_ONLY_FILTER)], "confirm": "on"},
    )
    field = response.content.decode().split('id="field-files"', 1)[1].split('id="field-confirm"', 1)[0]
    assert "Nothing was imported: no *.json file" in field
    assert not deployment.adoptions.exists() and not deployment.orthanc_users.exists()


def test_viewers_cannot_see_or_start_an_adoption(client, viewer_user, deployment):
    client.force_login(viewer_user)
    assert client.get(reverse("deployments:adoption", args=[deployment.slug])).status_code == 403
    response = client.post(reverse("deployments:adoption", args=[deployment.slug]), {"way": "portal"})
    assert response.status_code == 403 and not deployment.revisions.exists()


def test_any_push_deletes_a_typed_account_even_when_it_brings_its_own(db, tmp_path):
    from deployments.adoption import login_store
    from deployments.push import deployment_push

    deployment = Deployment.objects.create(
        name="Own", slug="own", orthanc_url="http://127.0.0.1:9", config_dir=str(tmp_path / "etc"),
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip
    login_store(deployment, "admin", "Typed-0n-the-page")
    assert deployment_push(deployment.pk, login=("admin", "from-the-command")) == "nothing to push: no pending revision"
    assert not PushLogin.objects.exists()
