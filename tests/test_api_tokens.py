"""API tokens: stored hashed, named, expiring, shown once, listed and revoked from a page; a
password reset or a deactivation revokes them."""

import datetime
import hashlib
import importlib
import io
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal import tokens
from portal.models import ApiToken, AuditEntry

API = reverse("api:entry-list")


def _make(owner, name="Practice system", days=30):
    return tokens.token_create(owner, name, timezone.now() + datetime.timedelta(days=days))


def _api(token):
    return Client().get(API, HTTP_AUTHORIZATION=f"Token {token}")


def _valid_until(days=365):
    return (timezone.localdate() + datetime.timedelta(days=days)).isoformat()


@pytest.fixture
def scheduler_client(scheduler_user):
    client = Client()
    client.force_login(scheduler_user)
    return client


def test_a_token_is_stored_hashed_and_shown_once(scheduler_client, scheduler_user):
    response = scheduler_client.post(
        reverse("api_token_create"), {"name": "Practice system", "valid_until": _valid_until()}
    )

    assert response.status_code == 200
    token = response.context["token"]
    assert token in response.content.decode()
    row = ApiToken.objects.get()
    assert row.user == scheduler_user and row.name == "Practice system"
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.prefix + "_") and len(token) > 40
    stored = [str(value) for value in ApiToken.objects.values_list().get()]
    assert not any(token in value or token[len(row.prefix) + 1 :] in value for value in stored)
    listing = scheduler_client.get(reverse("api_tokens")).content.decode()
    assert row.prefix in listing and token not in listing
    entry = AuditEntry.objects.get(object_type="portal.apitoken", action=AuditEntry.Action.CREATE)
    assert token not in str(entry.changes) and entry.changes["name"] == [None, "Practice system"]
    assert _api(token).status_code == 200


def test_the_token_list_shows_name_owner_prefix_dates_and_last_use(admin_client, scheduler_user):
    row, token = _make(scheduler_user)
    _api(token)

    page = admin_client.get(reverse("api_tokens")).content.decode()

    row.refresh_from_db()
    assert row.last_used_at is not None
    for text in ("Practice system", "sam_scheduler", row.prefix, f"{timezone.localtime(row.expires_at):%Y-%m-%d}"):
        assert text in page
    assert "never" not in page


def test_a_revoked_token_gets_401_saying_it_was_revoked(scheduler_client, scheduler_user):
    row, token = _make(scheduler_user)

    response = scheduler_client.post(reverse("api_token_revoke", args=[row.pk]))

    assert response.status_code == 302
    assert AuditEntry.objects.filter(object_type="portal.apitoken", summary__contains="revoked").exists()
    answer = _api(token)
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]


def test_an_expired_token_gets_401_saying_it_expired(scheduler_user):
    row, token = _make(scheduler_user)
    row.expires_at = timezone.now() - datetime.timedelta(seconds=1)
    row.save()

    answer = _api(token)

    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]
    assert answer["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("header", ["Token nonsense", "Token ocp_00000000_xyz", "Token a b", "Token"])
def test_an_unknown_or_malformed_token_gets_401(db, header):
    answer = Client().get(API, HTTP_AUTHORIZATION=header)

    assert answer.status_code == 401
    assert answer.json()["detail"]


def test_a_scheduler_cannot_revoke_another_users_token(scheduler_client, admin_user):
    row, token = _make(admin_user, "Admin's script")

    response = scheduler_client.post(reverse("api_token_revoke", args=[row.pk]))

    assert response.status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None and _api(token).status_code == 200


def test_a_scheduler_sees_only_their_own_tokens_and_an_admin_sees_everyones(
    scheduler_client, admin_client, scheduler_user, admin_user
):
    _make(scheduler_user, "Practice system")
    _make(admin_user, "Admin's script")

    mine = scheduler_client.get(reverse("api_tokens")).content.decode()
    everyone = admin_client.get(reverse("api_tokens")).content.decode()

    assert "Practice system" in mine and "Admin&#x27;s script" not in mine
    assert "Practice system" in everyone and "Admin&#x27;s script" in everyone


def test_a_scheduler_makes_tokens_only_for_themselves(scheduler_client, scheduler_user, admin_user):
    form = scheduler_client.get(reverse("api_token_create")).context["form"]
    assert "user" not in form.fields

    scheduler_client.post(
        reverse("api_token_create"), {"name": "Sneaky", "valid_until": _valid_until(), "user": admin_user.pk}
    )

    assert ApiToken.objects.get().user == scheduler_user


def test_an_admin_makes_a_token_for_a_scheduler_account_and_revokes_it(admin_client, scheduler_user):
    response = admin_client.post(
        reverse("api_token_create"),
        {"name": "Practice system", "valid_until": _valid_until(30), "user": scheduler_user.pk},
    )
    row = ApiToken.objects.get()

    assert row.user == scheduler_user and row.created_by.username == "ada_admin"
    assert row.expires_at == tokens.end_of(timezone.localdate() + datetime.timedelta(days=30))
    assert _api(response.context["token"]).status_code == 200
    assert admin_client.post(reverse("api_token_revoke", args=[row.pk])).status_code == 302
    assert _api(response.context["token"]).status_code == 401


def test_a_password_reset_revokes_the_users_tokens(admin_client, scheduler_user):
    _, token = _make(scheduler_user, "Practice system")
    _make(scheduler_user, "Reporting")

    response = admin_client.post(reverse("staff_reset_password", args=[scheduler_user.pk]))

    assert response.status_code == 200
    assert "2 API token(s)" in response.content.decode()
    reasons = set(scheduler_user.api_tokens.values_list("revoked_reason", flat=True))
    assert reasons == {"password reset"}
    assert _api(token).status_code == 401


def test_deactivating_an_account_revokes_its_tokens(admin_client, scheduler_user):
    row, token = _make(scheduler_user)

    admin_client.post(
        reverse("staff_edit", args=[scheduler_user.pk]),
        {"username": "sam_scheduler", "role": "Scheduler", "is_active": ""},
    )

    row.refresh_from_db()
    assert row.revoked_reason == "account deactivated"
    assert _api(token).status_code == 401


def test_a_token_of_a_deactivated_account_does_not_work_even_unrevoked(scheduler_user):
    _, token = _make(scheduler_user)
    scheduler_user.is_active = False
    scheduler_user.save()

    assert _api(token).status_code == 401


def test_the_users_own_password_change_keeps_the_integrations_tokens(scheduler_client, scheduler_user):
    _, token = _make(scheduler_user)

    scheduler_client.post(
        reverse("password_change"),
        {
            "old_password": "sam_scheduler-Pa55word!",
            "new_password1": "a-new-Long-pass-42",
            "new_password2": "a-new-Long-pass-42",
        },
    )

    assert _api(token).status_code == 200


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"name": ""}, "name", "required"),
        ({"name": "bad\x00name"}, "name", "Null characters"),
        ({"valid_until": "2001-01-01"}, "valid_until", "past"),
        ({"valid_until": _valid_until(tokens.MAX_DAYS + 1)}, "valid_until", f"At most {tokens.MAX_DAYS} days"),
        ({"valid_until": "9999-12-31"}, "valid_until", "At most"),
        ({"valid_until": "99999-01-01"}, "valid_until", "valid date"),
        ({"valid_until": "tomorrow"}, "valid_until", "valid date"),
        ({"user": "abc"}, "user", "valid choice"),
        ({"user": "999999"}, "user", "valid choice"),
    ],
)
def test_bad_input_on_the_token_form_gets_a_field_error(admin_client, scheduler_user, data, field, words):
    body = {"name": "Practice system", "valid_until": _valid_until(), "user": scheduler_user.pk, **data}

    response = admin_client.post(reverse("api_token_create"), body)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert words.lower() in " ".join(errors[field]).lower()
    assert not ApiToken.objects.exists()


def test_a_viewer_account_cannot_be_given_a_token(admin_client, viewer_user):
    response = admin_client.post(
        reverse("api_token_create"), {"name": "Screen", "valid_until": _valid_until(), "user": viewer_user.pk}
    )

    assert "user" in response.context["form"].errors


def test_a_second_token_in_use_with_the_same_name_is_refused_but_a_revoked_ones_name_is_free(
    scheduler_client, scheduler_user
):
    row, _ = _make(scheduler_user, "Practice system")
    body = {"name": "practice SYSTEM", "valid_until": _valid_until()}

    refused = scheduler_client.post(reverse("api_token_create"), body)
    tokens.token_revoke(row, "test")
    accepted = scheduler_client.post(reverse("api_token_create"), body)

    assert "already has a token named" in " ".join(refused.context["form"].errors["name"])
    assert "token" in accepted.context and ApiToken.objects.count() == 2


def test_the_create_api_token_command_prints_a_working_token_once(scheduler_user):
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "create_api_token", "sam_scheduler", "--name", "Practice system", "--days", "10", stdout=out, stderr=err
    )

    token = out.getvalue().strip()
    row = ApiToken.objects.get()
    assert row.digest == tokens.digest_of(token) and "shown once" in err.getvalue()
    assert row.expires_at == tokens.end_of(timezone.localdate() + datetime.timedelta(days=10))
    assert AuditEntry.objects.get(object_type="portal.apitoken").source == "command"
    assert _api(token).status_code == 200


@pytest.mark.parametrize(
    "args, words",
    [
        (["nobody", "--name", "x"], "No active Admin or Scheduler"),
        (["sam_scheduler", "--name", "x", "--days", "-1"], "past"),
        (["sam_scheduler", "--name", "x", "--days", "100000"], "At most"),
        (["sam_scheduler", "--name", "x" * 101], "at most 100 characters"),
    ],
)
def test_the_create_api_token_command_refuses_bad_input_with_the_forms_rules(scheduler_user, args, words):
    with pytest.raises(CommandError, match=words):
        call_command("create_api_token", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.exists()


def test_a_clear_token_from_before_is_hashed_by_the_migration_and_keeps_working(scheduler_user):
    from django.apps import apps

    migration = importlib.import_module("portal.migrations.0003_api_tokens_hashed")
    clear = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, user_id integer)")
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [clear, datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC), scheduler_user.pk],
        )

    # The function reads only the editor's connection (a real schema editor refuses to open
    # inside the test's transaction on SQLite).
    migration.hash_clear_tokens(apps, SimpleNamespace(connection=connection))

    assert "authtoken_token" not in connection.introspection.table_names()
    row = ApiToken.objects.get()
    assert row.user == scheduler_user and row.prefix == clear[:8] and clear not in row.digest
    assert row.created_at.date() == datetime.date(2025, 3, 1)
    assert row.expires_at > timezone.now() + datetime.timedelta(days=364)
    assert _api(clear).status_code == 200
