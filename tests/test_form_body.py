"""A form body Django cannot read (a foreign charset, too many fields, too large) answers 400
naming the rule, on every form, the login page included, before anyone has signed in."""

import pytest
from django.test import Client
from django.urls import reverse


@pytest.fixture
def browser(db):
    """A client that keeps CSRF checks on, as a browser meets them: the body is read by the check."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.get(reverse("login"))
    return client, client.cookies["csrftoken"].value


def test_a_login_form_declaring_latin1_answers_400_naming_the_charset(browser):
    client, token = browser
    body = f"csrfmiddlewaretoken={token}&username=ada&password=M%FCller"
    response = client.post(reverse("login"), body, content_type="application/x-www-form-urlencoded; charset=latin-1")

    assert response.status_code == 400
    assert "Form data must be UTF-8" in response.content.decode() and "charset=latin-1" in response.content.decode()


def test_a_form_declaring_a_utf8_alias_is_read_as_utf8(browser):
    client, token = browser
    body = f"csrfmiddlewaretoken={token}&username=ada&password=wrong"
    response = client.post(reverse("login"), body, content_type="application/x-www-form-urlencoded; charset=UTF8")

    assert response.status_code == 200  # the login page again, with its error
    assert "Please enter a correct username and password" in response.content.decode()


def test_too_many_form_fields_answers_400_naming_the_limit(browser, settings):
    client, token = browser
    body = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.post(
        reverse("login"), f"{body}&csrfmiddlewaretoken={token}", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert f"at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}" in response.content.decode()
