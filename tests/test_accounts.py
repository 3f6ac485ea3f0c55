"""Staff accounts: login, lockout, password change, staff pages."""

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from portal.models import AuditEntry


def _login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_a_staff_member_logs_in_with_the_right_password(viewer_user, client):
    response = _login(client, "vic_viewer", "vic_viewer-Pa55word!")

    assert response.status_code == 302
    assert response.url == reverse("dashboard")


def test_a_wrong_password_shows_an_error_beside_the_form(viewer_user, client):
    response = _login(client, "vic_viewer", "wrong")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_five_wrong_passwords_lock_the_account_with_a_clear_message(viewer_user, client):
    for _ in range(5):
        _login(client, "vic_viewer", "wrong")

    response = _login(client, "vic_viewer", "vic_viewer-Pa55word!")

    assert response.status_code == 429
    assert "Account locked" in response.content.decode()
    assert "Too many wrong passwords" in response.content.decode()


def test_an_admin_unlocks_a_locked_account_by_giving_it_a_new_password(viewer_user, admin_client):
    other = Client()
    for _ in range(5):
        _login(other, "vic_viewer", "wrong")

    response = admin_client.post(reverse("staff_reset_password", args=[viewer_user.pk]))

    password = response.context["password"]
    assert _login(Client(), "vic_viewer", password).status_code == 302


def test_a_staff_member_changes_their_own_password(viewer_user, client):
    client.force_login(viewer_user)

    response = client.post(
        reverse("password_change"),
        {
            "old_password": "vic_viewer-Pa55word!",
            "new_password1": "a-new-Long-pass-42",
            "new_password2": "a-new-Long-pass-42",
        },
    )

    assert response.status_code == 302
    viewer_user.refresh_from_db()
    assert viewer_user.check_password("a-new-Long-pass-42")


def test_an_admin_creates_a_scheduler_whose_password_is_shown_once(admin_client):
    response = admin_client.post(
        reverse("staff_create"), {"username": "front_desk", "role": "Scheduler", "is_active": "on"}
    )

    assert response.status_code == 200
    password = response.context["password"]
    assert password in response.content.decode()
    user = User.objects.get(username="front_desk")
    assert [g.name for g in user.groups.all()] == ["Scheduler"]
    assert user.check_password(password)
    entry = AuditEntry.objects.get(object_type="auth.user", action="create")
    assert entry.changes["role"] == [None, "Scheduler"]
    assert entry.changes["password"][1] == "••••••"
    assert password not in str(entry.changes)


def test_an_admin_cannot_remove_their_own_admin_role(admin_user, admin_client):
    response = admin_client.post(
        reverse("staff_edit", args=[admin_user.pk]), {"username": "ada_admin", "role": "Viewer", "is_active": "on"}
    )

    assert response.status_code == 200
    assert "You cannot remove your own Admin role" in response.content.decode()
    assert admin_user.groups.get().name == "Admin"


def test_a_staff_username_that_is_taken_gets_an_error_beside_the_field(admin_client, viewer_user):
    response = admin_client.post(reverse("staff_create"), {"username": "vic_viewer", "role": "Viewer"})

    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()


def test_an_anonymous_visitor_with_a_very_long_address_is_sent_to_the_login_page(client):
    # Found by the fuzzer: Django refuses a redirect over 16,384 characters and answered a bare 400.
    for path in (reverse("staff_list"), reverse("api:docs"), reverse("password_change")):
        response = client.get(path, {"q": "é" * 20_000})

        assert response.status_code == 302
        assert response.url == f"{reverse('login')}?next={path}"
