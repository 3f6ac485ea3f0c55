"""The live audit runs in a task (an Admin's button, the daily schedule) or from the command, its
result is stored, and the security page shows the stored result: viewing it asks Orthanc
nothing, and no page or stored finding holds a password."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from deployments.models import Deployment, OrthancUser, SecurityAudit
from deployments.security.runs import security_audit_inline, security_audit_run
from deployments.tasks import security_audit_all_task
from portal.schedules import ensure_periodic_tasks
from tests.conftest import wait_for

from .test_audit import run_command, start_with, strong


class CountingServer:
    """An HTTP listener that answers 401 to everything and counts what reaches it."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="Orthanc Secure Area"')
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = CountingServer()
    yield server
    server.close()


def test_viewing_the_security_page_sends_nothing_to_orthanc(client, viewer_user, admin_user, listener, tmp_path):
    deployment = Deployment.objects.create(
        name="Watched", slug="watched", orthanc_url=listener.url, service_password=strong(), config_dir=str(tmp_path)
    )
    for user in (viewer_user, admin_user):
        client.force_login(user)
        response = client.get(reverse("deployments:security", args=[deployment.slug]))
        assert response.status_code == 200
        assert "The live server has not been checked yet." in response.content.decode()
    assert listener.requests == []


def test_an_admin_starts_the_live_audit_and_a_worker_stores_it_without_the_password(
    client, admin_user, viewer_user, orthanc_factory, celery_worker_factory
):
    instance = start_with(orthanc_factory, [OrthancUser(username="alice", password="bob", role="viewer")])
    deployment = instance.save_deployment()
    celery_worker_factory(queues=(deployment.queue,))
    client.force_login(admin_user)

    response = client.post(reverse("deployments:security_audit", args=[deployment.slug]))

    assert response.status_code == 302
    audit = SecurityAudit.objects.get(deployment=deployment)
    assert audit.requested_by == admin_user and audit.source == SecurityAudit.Source.WEB
    wait_for(
        lambda: SecurityAudit.objects.get(pk=audit.pk).state in ("done", "failed"), timeout=60, message="the audit"
    )
    audit.refresh_from_db()
    assert audit.state == "done", audit.error
    assert audit.started_at <= audit.finished_at
    stored = {f["id"]: f for f in audit.findings}
    assert "a well-known default password for: alice" in stored["live-default-credentials"]["what"]
    assert "bob" not in json.dumps(audit.findings)
    assert deployment.service_password not in json.dumps(audit.findings)

    client.force_login(viewer_user)
    html = client.get(reverse("deployments:security", args=[deployment.slug])).content.decode()
    assert 'data-id="live-default-credentials" data-severity="critical"' in html
    assert 'id="live-audit-age"' in html and "by ada_admin" in html
    assert "bob" not in html and deployment.service_password not in html
    assert "security-audit-form" not in html  # the button is for Admins


def test_the_daily_schedule_queues_one_live_audit_per_deployment(db, tmp_path):
    for slug in ("north", "south"):
        Deployment.objects.create(
            name=slug, slug=slug, orthanc_url="http://127.0.0.1:9", service_password=strong(), config_dir=str(tmp_path)
        )
    ensure_periodic_tasks()
    assert PeriodicTask.objects.get(task="deployments.security_audit_all").interval.every == 24 * 3600

    assert security_audit_all_task() == 2

    audits = SecurityAudit.objects.all()
    assert {a.deployment.slug for a in audits} == {"north", "south"}
    assert {a.source for a in audits} == {SecurityAudit.Source.SCHEDULE}
    assert {a.state for a in audits} == {SecurityAudit.State.PENDING}


def test_a_password_in_an_audit_error_is_masked(db, tmp_path, listener):
    password = strong()
    deployment = Deployment.objects.create(
        name="Leaky", slug="leaky", orthanc_url=listener.url, service_password=password, config_dir=str(tmp_path)
    )
    audit = SecurityAudit.objects.create(deployment=deployment)
    # Orthanc answers 401 to the portal's own account: stored as an info finding, then the checks go on.
    security_audit_run(audit.pk)
    audit.refresh_from_db()
    assert audit.state == "done"
    assert password not in json.dumps(audit.findings)
    assert listener.requests, "the task, not the page, asks Orthanc"

    from deployments.security.runs import mask, secrets_of

    assert mask(f"GET {listener.url}/?p={password} failed", secrets_of(deployment)).endswith("?p=•••••• failed")


def test_the_audit_command_stores_its_result_for_the_page(orthanc_factory, transactional_db, client, viewer_user):
    deployment = orthanc_factory().save_deployment()

    result = run_command(deployment.slug)

    assert result.returncode == 0, result.stderr + result.stdout
    audit = SecurityAudit.objects.get(deployment=deployment)
    assert audit.source == SecurityAudit.Source.COMMAND and audit.state == "done" and audit.live
    assert "execute-script-not-tested" in {f["id"] for f in audit.findings}
    client.force_login(viewer_user)
    html = client.get(reverse("deployments:security", args=[deployment.slug])).content.decode()
    assert 'data-id="execute-script-not-tested"' in html
    assert "manage.py audit_deployment)" in html


def test_an_inline_audit_without_live_checks_does_not_replace_the_live_result(db, tmp_path):
    deployment = Deployment.objects.create(
        name="Quiet",
        slug="quiet",
        orthanc_url="http://127.0.0.1:9",
        service_password=strong(),
        config_dir=str(tmp_path),
    )
    security_audit_inline(deployment, live=False)
    audit = SecurityAudit.objects.get(deployment=deployment)
    assert audit.state == "done" and not audit.live
    assert not any(f["part"] == "live" for f in audit.findings)
