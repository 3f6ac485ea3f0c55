"""/metrics: the bearer token (shown once, stored hashed, one at a time), the exposition, and a real
Prometheus from Debian scraping a live portal server and answering through its own query API."""

import subprocess
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from deployments.backups.models import BackupRun, BackupSchedule
from deployments.models import Deployment
from portal import metrics
from portal.models import AuditEntry, MetricsToken
from portal.tokens import digest_of
from tests.conftest import free_port, require_binary, wait_for
from worklists.models import WorklistState


def make_world(now):
    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
        last_state=Deployment.CheckState.UP, last_checked_at=now - timedelta(minutes=2),
    )  # fmt: skip
    Deployment.objects.create(
        name="Annex", slug="annex", orthanc_url="http://127.0.0.1:9", service_password="y" * 24,
        config_dir="/nonexistent/annex", service_kind=Deployment.ServiceKind.LOCAL,
        last_state=Deployment.CheckState.DOWN, last_checked_at=now - timedelta(minutes=1),
    )  # fmt: skip
    WorklistState.objects.create(deployment=deployment, last_sync_at=now - timedelta(seconds=90))
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="Nightly", host="nas", user="b", remote_folder="/srv",
        preset=BackupSchedule.Preset.HOURLY, minute="0", hour="*",
    )  # fmt: skip
    done = now - timedelta(minutes=30)
    for i, (snapshot, pruned) in enumerate(
        [("20261130T010000Z", now), ("20261130T020000Z", None), ("20261201T010000Z", None)]
    ):
        BackupRun.objects.create(
            schedule=schedule, state=BackupRun.State.SUCCEEDED, snapshot=snapshot, pruned_at=pruned,
            created_at=done - timedelta(hours=3 - i), finished_at=done - timedelta(hours=2 - i),
            duration=12.5, bytes_transferred=4096 * (i + 1), snapshot_size=10_000_000,
        )  # fmt: skip
    BackupRun.objects.create(schedule=schedule, state=BackupRun.State.FAILED, error="x", finished_at=None)
    return deployment, schedule


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.django_db
def test_metrics_need_the_bearer_token_not_a_session_and_a_wrong_or_replaced_token_gets_401(admin_client, client):
    url = reverse("metrics")
    assert client.get(url).status_code == 401
    assert admin_client.get(url).status_code == 401  # a signed-in admin without the token: still 401
    first_row, first = metrics.metrics_token_create()
    assert client.get(url, headers={"Authorization": f"Bearer {first}"}).status_code == 200
    for header in [f"Token {first}", f"Bearer {first}x", "Bearer ", "Bearer ocm_" + "a" * 500, first]:
        answer = client.get(url, headers={"Authorization": header})
        assert answer.status_code == 401 and b"Authorization: Bearer" in answer.content

    _, second = metrics.metrics_token_create()
    assert client.get(url, headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {second}"}).status_code == 200
    # Only the digest is kept, and only the newest token.
    assert list(MetricsToken.objects.values_list("digest", flat=True)) == [digest_of(second)]
    assert MetricsToken.objects.get().last_used_at is not None


@pytest.mark.django_db
def test_the_admin_gets_the_token_once_on_the_metrics_page_and_the_audit_names_only_its_prefix(admin_client):
    page = admin_client.get(reverse("metrics_token")).content.decode()
    assert "No token is set" in page
    answer = admin_client.post(reverse("metrics_token")).content.decode()
    row = MetricsToken.objects.get()
    token = answer.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert token.startswith(row.prefix + "_") and digest_of(token) == row.digest
    assert "credentials_file" in answer
    page = admin_client.get(reverse("metrics_token")).content.decode()
    assert token not in page and f"{row.prefix}_…" in page
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.CREATE).latest("id")
    assert token not in str(entry.__dict__) and row.digest not in str(entry.__dict__)


@pytest.mark.django_db
def test_the_exposition_holds_per_schedule_backup_facts_and_per_deployment_orthanc_up_and_worklist_lag(client):
    now = timezone.now()
    deployment, schedule = make_world(now)
    _, token = metrics.metrics_token_create()

    text = client.get(reverse("metrics"), headers={"Authorization": f"Bearer {token}"}).content.decode()

    newest = BackupRun.objects.filter(snapshot="20261201T010000Z").get()
    labels = {"deployment": "clinic", "schedule": "Nightly"}
    assert sample(text, "orthanc_portal_backup_last_success_timestamp_seconds", **labels) == pytest.approx(
        newest.finished_at.timestamp()
    )
    assert sample(text, "orthanc_portal_backup_last_success_duration_seconds", **labels) == 12.5
    assert sample(text, "orthanc_portal_backup_last_success_transferred_bytes", **labels) == 4096 * 3
    assert sample(text, "orthanc_portal_backup_last_success_snapshot_bytes", **labels) == 10_000_000
    assert sample(text, "orthanc_portal_backup_snapshots", **labels) == 2  # one of the three was pruned
    assert sample(text, "orthanc_portal_backup_period_seconds", **labels) == 3600
    assert sample(text, "orthanc_portal_backup_grace_seconds", **labels) == 900
    assert sample(text, "orthanc_portal_orthanc_up", deployment="clinic") == 1
    assert sample(text, "orthanc_portal_orthanc_up", deployment="annex") == 0
    assert 90 <= sample(text, "orthanc_portal_worklist_sync_lag_seconds", deployment="clinic") < 120
    assert sample(text, "orthanc_portal_worklist_sync_lag_seconds", deployment="annex") is None  # never synced


class Prometheus:
    def __init__(self, base, targets):
        """``targets``: {job name: (host:port, token)}."""
        binary = require_binary("prometheus", "prometheus")
        self.port = free_port()
        jobs = []
        for job, (target, token) in targets.items():
            (base / f"{job}.token").write_text(token)
            jobs.append(
                f"  - job_name: {job}\n"
                "    metrics_path: /metrics\n"
                "    scrape_interval: 1s\n"
                "    scrape_timeout: 1s\n"
                "    authorization:\n"
                "      type: Bearer\n"
                f"      credentials_file: {base / f'{job}.token'}\n"
                "    static_configs:\n"
                f"      - targets: ['{target}']\n"
            )
        (base / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n" + "".join(jobs))
        self.log = open(base / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        self.base = base
        wait_for(self._ready, timeout=30, message="Prometheus to be ready")

    def _ready(self):
        if self.proc.poll() is not None:
            pytest.fail(f"Prometheus stopped:\n{(self.base / 'prometheus.log').read_text()[-3000:]}", pytrace=False)
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def query(self, expr):
        answer = requests.get(f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": expr}, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    started = []

    def start(targets):
        started.append(Prometheus(tmp_path, targets))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def test_a_real_prometheus_scrapes_the_live_portal_with_the_token_and_its_query_api_returns_the_series(
    live_server, transactional_db, prometheus
):
    now = timezone.now()
    make_world(now)
    _, token = metrics.metrics_token_create()
    target = urlsplit(live_server.url).netloc

    server = prometheus({"portal": (target, token), "portal_wrong_token": (target, "ocm_00000000_not-the-token")})

    def scraped():
        return server.query('orthanc_portal_backup_last_success_timestamp_seconds{job="portal"}')

    result = wait_for(scraped, timeout=30, interval=0.5, message="the first scrape to arrive in Prometheus")
    newest = BackupRun.objects.filter(snapshot="20261201T010000Z").get()
    assert result[0]["metric"]["deployment"] == "clinic" and result[0]["metric"]["schedule"] == "Nightly"
    assert float(result[0]["value"][1]) == pytest.approx(newest.finished_at.timestamp())
    assert float(server.query('orthanc_portal_orthanc_up{job="portal",deployment="clinic"}')[0]["value"][1]) == 1
    assert float(server.query('orthanc_portal_backup_snapshots{job="portal"}')[0]["value"][1]) == 2
    lag = server.query('orthanc_portal_worklist_sync_lag_seconds{job="portal"}')
    assert lag and float(lag[0]["value"][1]) >= 90
    # The kind of rule an outside monitor alerts with: seconds since the last success, under period + grace.
    age = server.query(
        'time() - orthanc_portal_backup_last_success_timestamp_seconds{job="portal"}'
        " < orthanc_portal_backup_period_seconds + orthanc_portal_backup_grace_seconds"
    )
    assert age, "a last success 30 minutes ago is within an hourly schedule's period and grace"

    # The job with a wrong token is refused by the portal: Prometheus records it as down, with no series.
    def refused():
        up = server.query('up{job="portal_wrong_token"}')
        return up and up[0]["value"][1] == "0"

    wait_for(refused, timeout=15, interval=0.5, message="the wrong-token scrape to be recorded")
    assert server.query('orthanc_portal_backup_snapshots{job="portal_wrong_token"}') == []
