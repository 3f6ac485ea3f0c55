"""Heard when silent: healthchecks-compatible pings to a real HTTP server on loopback around real
backup runs (real sshd, real Orthanc), the alert recipients the schedule form requires, and what
the dashboard says when nobody would be told."""

import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.urls import reverse

from deployments.backups import alerts
from deployments.backups.models import BackupRun, BackupSchedule
from deployments.backups.validators import PING_URL_MAX
from deployments.models import Deployment
from tests.backups.conftest import upload_studies
from tests.backups.test_schedules import field_errors, form_data
from tests.conftest import free_port


class PingReceiver:
    """A healthchecks-like endpoint: records every request, and judges lateness as such a monitor
    does, from nothing but the pings it received and its own clock."""

    def __init__(self):
        self.pings = []
        received = self.pings

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                parts = urlsplit(self.path)
                received.append(
                    {"path": parts.path, "query": parse_qs(parts.query), "body": body, "at": datetime.now(UTC)}
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/ping/9f1c6a52-clinic-backup"

    def facts(self, ping):
        head = ping["body"].split("\n\n--- log tail ---", 1)[0]
        return dict(line.split("=", 1) for line in head.splitlines() if "=" in line)

    def late(self, now):
        """Late when no success or start came within period + grace of the last ping."""
        if not self.pings:
            return False  # a new check waits for its first ping
        last = self.pings[-1]
        facts = self.facts(last)
        allowed = timedelta(seconds=int(facts["period_seconds"]) + int(facts["grace_seconds"]))
        return now > last["at"] + allowed

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = PingReceiver()
    yield r
    r.stop()


def kinds(pings, base):
    return [p["path"].removeprefix(base) or "success" for p in pings]


@pytest.mark.orthanc
def test_a_run_pings_start_then_success_with_one_run_id_the_snapshot_and_the_log_tail(backup_setup, receiver):
    setup = backup_setup(ping_url=receiver.url)
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    base = urlsplit(receiver.url).path
    assert kinds(receiver.pings, base) == ["/start", "success"]
    start, success = receiver.pings
    assert start["query"]["rid"] == success["query"]["rid"]  # the monitor pairs them and measures the duration
    facts = receiver.facts(success)
    assert facts["snapshot"] == run.snapshot
    assert int(facts["bytes_transferred"]) == run.bytes_transferred > 0
    assert f"snapshot {run.snapshot} complete" in success["body"].split("--- log tail ---")[1]
    assert start["at"] <= success["at"]


@pytest.mark.orthanc
def test_a_failed_run_pings_fail_with_the_error_and_the_log_tail(backup_setup, receiver):
    setup = backup_setup(ping_url=receiver.url)
    BackupSchedule.objects.filter(pk=setup.schedule.pk).update(port=free_port())  # nothing listens there
    setup.schedule.refresh_from_db()

    run = setup.run()

    assert run.state == BackupRun.State.FAILED
    base = urlsplit(receiver.url).path
    assert kinds(receiver.pings, base) == ["/start", "/fail"]
    fail = receiver.pings[1]
    assert receiver.facts(fail)["error"] == " ".join(run.error.split())
    tail = fail["body"].split("--- log tail ---\n", 1)[1]
    assert tail.strip() and tail.strip() in run.log_tail.strip()


@pytest.mark.orthanc
def test_with_the_portal_stopped_the_monitor_hears_nothing_and_finds_the_schedule_late_from_the_pings_alone(
    backup_setup, receiver, admin_client
):
    setup = backup_setup(ping_url=receiver.url, preset=BackupSchedule.Preset.HOURLY, minute="0", hour="*")
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    last = receiver.pings[-1]

    # The portal stops here: no beat, no worker. The endpoint receives nothing more.
    time.sleep(2)
    assert receiver.pings[-1] is last and len(receiver.pings) == 2

    # Everything the monitor needs came in the pings: the crontab, its time zone, period and grace.
    facts = receiver.facts(last)
    assert facts["schedule"] == "0 * * * *"
    assert facts["period_seconds"] == "3600" and facts["grace_seconds"] == "900"
    assert facts["tz"]
    assert not receiver.late(last["at"] + timedelta(minutes=74))
    assert receiver.late(last["at"] + timedelta(minutes=75, seconds=1))

    # The admin sees the same values, to set up the outside check.
    page = admin_client.get(reverse("backups:schedule", args=[setup.schedule.pk])).content.decode()
    assert "set its check to cron <code>0 * * * *</code>" in page
    assert "1:00:00" in page and "grace 0:15:00" in page


@pytest.mark.django_db
def test_a_monitor_that_does_not_answer_never_changes_a_run_and_is_pinged_at_most_twice(settings):
    from deployments.backups import pings

    # A port where nothing listens: refused at once, on loopback.
    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="N", host="nas", user="b", remote_folder="/srv", ping_url=f"http://127.0.0.1:{free_port()}/x"
    )  # fmt: skip
    run = BackupRun.objects.create(schedule=schedule, state=BackupRun.State.SUCCEEDED)
    assert pings.run_finished(run) is False
    run.refresh_from_db()
    assert run.state == BackupRun.State.SUCCEEDED


def test_a_run_whose_worker_was_lost_pings_fail_when_the_reaper_closes_it(deployment, receiver, settings):
    from django.utils import timezone

    from deployments.backups.overdue import backups_reap_lost

    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="Nightly", host="nas", user="b", remote_folder="/srv", ping_url=receiver.url
    )
    started = timezone.now() - settings.JOB_LOST_AFTER - timedelta(minutes=1)
    run = BackupRun.objects.create(
        schedule=schedule, state=BackupRun.State.RUNNING, created_at=started, started_at=started
    )

    assert backups_reap_lost() == 1

    base = urlsplit(receiver.url).path
    assert kinds(receiver.pings, base) == ["/fail"]
    assert "the worker running this backup was lost" in receiver.facts(receiver.pings[0])["error"]
    assert receiver.pings[0]["query"]["rid"] == [pings_run_id(run)]


def pings_run_id(run):
    from deployments.backups.pings import run_id

    run.refresh_from_db()
    return run_id(run)


@pytest.fixture
def deployment(db):
    return Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"ping_url": "ftp://hc.example/ping/abc"}, "ping_url", "Enter an http:// or https:// URL"),
        ({"ping_url": "javascript:alert(1)"}, "ping_url", "Enter an http:// or https:// URL"),
        ({"ping_url": "https://hc.example/" + "a" * PING_URL_MAX}, "ping_url", f"at most {PING_URL_MAX} characters"),
        ({"ping_url": "https://user:pw@hc.example/ping/abc"}, "ping_url", "no user name or password"),
        ({"alert_emails": "it@clinic.test, not-an-address"}, "alert_emails", "Not an e-mail address: not-an-address"),
        ({"alert_emails": "a@b.ch," * 100}, "alert_emails", "at most 500 characters"),
    ],
)
def test_bad_ping_urls_and_addresses_are_refused_beside_their_field(admin_client, deployment, changes, field, message):
    response = admin_client.post(reverse("backups:schedule_create"), form_data(deployment, **changes))
    assert response.status_code == 200
    assert message in field_errors(response)[field]
    assert not BackupSchedule.objects.exists()


def test_a_schedule_nobody_would_hear_of_is_refused_until_it_has_a_recipient_or_a_ping_url(
    admin_client, deployment, settings
):
    settings.ADMINS_EMAILS = []
    url = reverse("backups:schedule_create")

    response = admin_client.post(url, form_data(deployment))
    assert "Nobody would be told" in field_errors(response)["alert_emails"]
    assert not BackupSchedule.objects.exists()

    response = admin_client.post(url, form_data(deployment, ping_url="https://hc-ping.com/5f0d1c2e"))
    assert response.status_code == 302
    response = admin_client.post(
        url, form_data(deployment, name="Second", remote_folder="/srv/b", alert_emails="it@c.test")
    )
    assert response.status_code == 302
    assert list(BackupSchedule.objects.values_list("ping_url", "alert_emails").order_by("name")) == [
        ("https://hc-ping.com/5f0d1c2e", ""),
        ("", "it@c.test"),
    ]


def test_the_dashboard_says_plainly_when_nobody_is_told_and_names_who_is(admin_client, deployment, settings):
    settings.ADMINS_EMAILS = []
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="Nightly", host="nas.clinic.example", user="backup", remote_folder="/srv/backups"
    )
    page = admin_client.get(reverse("backups:dashboard")).content.decode()
    assert "Nobody: no alert e-mail and no ping URL are configured" in page

    schedule.alert_emails = "it@clinic.test, boss@clinic.test"
    schedule.save()
    page = admin_client.get(reverse("backups:dashboard")).content.decode()
    assert "Nobody:" not in page
    assert "e-mail to it@clinic.test, boss@clinic.test" in page
    assert "no outside monitor" in page


def test_an_alert_goes_to_the_schedules_recipients_and_to_alert_emails_once_each(deployment, settings):
    settings.ADMINS_EMAILS = ["it@clinic.test"]
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="Nightly", host="nas", user="b", remote_folder="/srv",
        alert_emails="boss@clinic.test; it@clinic.test",
    )  # fmt: skip
    run = BackupRun.objects.create(schedule=schedule, state=BackupRun.State.FAILED, error="target full")

    assert alerts.run_failed(run) == 1
    assert mail.outbox[-1].to == ["it@clinic.test", "boss@clinic.test"]
