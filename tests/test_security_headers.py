"""CSRF on every form, a Content-Security-Policy on every page, no inline script or style."""

import re
from pathlib import Path

from django.test import Client
from django.urls import reverse

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_every_page_carries_a_content_security_policy_without_unsafe_inline(admin_client):
    response = admin_client.get(reverse("dashboard"))

    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_post_without_the_csrf_token_is_refused(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(reverse("staff_create"), {"username": "x", "role": "Viewer"})

    assert response.status_code == 403


def test_the_login_form_is_refused_without_its_csrf_token(db):
    client = Client(enforce_csrf_checks=True)

    response = client.post(reverse("login"), {"username": "a", "password": "b"})

    assert response.status_code == 403


def test_no_template_has_an_inline_script_style_or_event_handler():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{path.name}: inline {match.group(0)}")
        for match in re.finditer(r"\s(style|on[a-z]+)=[\"']", text):
            offenders.append(f"{path.name}: {match.group(1)}= attribute")
        if "<style" in text:
            offenders.append(f"{path.name}: <style> block")
    assert not offenders, offenders


def test_every_post_form_in_the_templates_carries_the_csrf_token():
    missing = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", text, flags=re.S | re.I):
            if "{% csrf_token %}" not in form:
                missing.append(path.name)
    assert not missing, missing
