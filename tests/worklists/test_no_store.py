"""Pages and API answers carry ``Cache-Control: no-store`` (patient data, secrets shown once);
static files keep their own caching."""

import datetime
import os
import subprocess
import sys

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.tokens import token_create
from tests.test_compose import ROOT, manage, production_env
from tests.worklists.conftest import make_entry


def test_a_worklist_page_is_sent_with_cache_control_no_store(client, scheduler_user, wl_deployment):
    make_entry(wl_deployment, family="Cacheless")
    client.force_login(scheduler_user)

    response = client.get(reverse("worklists:index"), {"d": wl_deployment.slug})

    assert "CACHELESS" in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_an_api_answer_is_sent_with_cache_control_no_store(scheduler_user, wl_deployment):
    make_entry(wl_deployment, family="Cacheless")
    _, token = token_create(scheduler_user, "Practice system", timezone.now() + datetime.timedelta(days=1))

    response = Client().get(reverse("api:entry-list"), HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200 and "Cacheless" in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_the_login_page_is_sent_with_cache_control_no_store(db):
    response = Client().get(reverse("login"))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_in_production_static_files_keep_their_caching_and_pages_get_no_store(tmp_path):
    """With DEBUG off, WhiteNoise serves the static files before the no-store middleware runs."""
    env = production_env(tmp_path)
    manage(env, "collectstatic", "--noinput")
    host = env["ALLOWED_HOSTS"].split(",")[0]
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "c = Client()\n"
        f"for path in ('/static/css/portal.css', '/healthz'):\n"
        f"    r = c.get(path, secure=True, HTTP_HOST={host!r})\n"
        "    print(path, r.status_code, r.get('Cache-Control', ''))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "PYTHONPATH": os.fspath(ROOT)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    static, page = result.stdout.splitlines()[-2:]
    assert static.startswith("/static/css/portal.css 200 ") and "max-age" in static and "no-store" not in static
    assert page.startswith("/healthz 200 ") and "no-store" in page
