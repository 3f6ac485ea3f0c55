"""Two clinic sites and the centre as a real network of hosts: network namespaces and veth links
made by the test, the central Redis (TLS, an ACL user per agent) in one, each site's Orthanc and
agent in its own. A site's
link is cut: its changes wait and the Sites page says so, the other site goes on; the link comes
back: what waited applies in order, once. Then the same with the central Redis restarted.

The database stays the suite's own: SQLite, reached by the agents through the file system (the
namespaces separate the network, not the disk), or the suite's PostgreSQL on this machine's
loopback, which a forwarder offers at 127.0.0.1 inside each site's namespace (conftest.py). The
agent's PostgreSQL role is tested on its own (test_agent_setup.py).
"""

import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from deployments.agent_setup import agent_username
from deployments.agents import reachability, send_heartbeats
from deployments.models import ConfigRevision
from portal.models import AuditEntry, Job
from tests.conftest import wait_for

from .conftest import CentralRedis, make_certificates

pytestmark = pytest.mark.orthanc

PUSH = "deployments.deployment_push"


def _start_orthanc_in(network, site, instance):
    """The site's Orthanc runs in the site's namespace, where its agent reaches it on loopback."""
    service = instance.service
    service.run_dir.mkdir(parents=True, exist_ok=True)
    with open(service.log_file, "ab") as log:
        proc = subprocess.Popen(
            [*network.prefix(site), django_settings.ORTHANC_BINARY, str(service.config_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"}, start_new_session=True,
        )  # fmt: skip
    # `ip netns exec` becomes Orthanc: the pid is Orthanc's, which the agent's LocalService stops.
    service.pid_file.write_text(str(proc.pid))
    wait_for(
        lambda: b"Orthanc has started" in service.log_file.read_bytes() or proc.poll() is not None,
        timeout=30,
        message=f"site {site}'s Orthanc",
    )
    assert proc.poll() is None, service.log_file.read_text(errors="replace")[-2000:]


class Sites:
    """The centre and two sites, each with its Orthanc and its agent, on the test's network."""

    def __init__(self, network, orthanc_factory, agent_factory, portal_broker, tmp_path, client):
        self.network, self.agent_factory, self.client = network, agent_factory, client
        binds = [network.addr[("central", peer)] for peer in ("root", "a", "b")]
        # Everyone reaches the central Redis over TLS, its certificate naming its address on each link.
        self.certs = make_certificates(tmp_path / "tls", *binds)
        self.central = CentralRedis(
            tmp_path / "central-redis", bind=binds, tls=self.certs, prefix=network.prefix("central")
        )
        self.central.start()
        portal_broker(self.central.url(), ca_file=self.certs["ca"])
        self.deployment, self.agent, self.setup = {}, {}, {}
        for site in ("a", "b"):
            instance = orthanc_factory(slug=f"site-{site}", start=False)
            self.deployment[site] = instance.save_deployment()
            _start_orthanc_in(network, site, instance)
            self.setup[site] = self.central.add_agent(f"site-{site}")
            self.start_agent(site)

    def start_agent(self, site):
        setup = self.setup[site]
        # The site reaches the centre at the central end of its own link.
        broker = self.central.url(
            agent_username(setup.slug), setup.redis_password, host=self.network.addr[("central", site)]
        )
        assert broker.startswith("rediss://")
        self.agent[site] = self.agent_factory(setup, broker, prefix=self.network.prefix(site), ca_file=self.certs["ca"])

    def stop(self):
        self.central.stop()

    def change(self, site, aet):
        """A staff member adds a modality on the site's page: the model and its audit entry, a
        pending revision, and its push queued on the site's queue."""
        deployment = self.deployment[site]
        before = set(deployment.revisions.values_list("pk", flat=True))
        response = self.client.post(
            reverse("deployments:modality_create", args=[deployment.slug]),
            {"name": aet, "aet": aet, "host": "127.0.0.1", "port": 104, "manufacturer": "Generic",
             "allow_echo": "on", "timeout": 0, "charset": "ISO_IR 192"},
        )  # fmt: skip
        assert response.status_code == 302, response.content.decode()[-2000:]
        return deployment.revisions.exclude(pk__in=before).get()

    def audited_once(self, site, aet):
        entries = AuditEntry.objects.filter(deployment_id=self.deployment[site].pk, action=AuditEntry.Action.CREATE)
        return entries.filter(object_repr__contains=aet).count() == 1

    def jobs(self, site):
        return Job.objects.filter(kind=PUSH, queue=self.deployment[site].queue).order_by("pk")

    def settled(self, site):
        return not self.jobs(site).filter(state__in=[Job.State.PENDING, Job.State.RUNNING]).exists()

    def modalities_written(self, site):
        config = Path(self.deployment[site].config_dir)
        written = {}
        for path in config.glob("*.json"):
            written.update(json.loads(path.read_text()).get("DicomModalities", {}))
        return set(written)

    def reachable(self, site):
        deployment = self.deployment[site]
        deployment.refresh_from_db()
        return reachability(deployment)[0] == "reachable"

    def beat(self, until, timeout, message):
        """What the central beat does every AGENT_HEARTBEAT_EVERY seconds, until ``until()``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            send_heartbeats()
            if until():
                return
            time.sleep(django_settings.AGENT_HEARTBEAT_EVERY)
        raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture
def sites(network, orthanc_factory, agent_factory, portal_broker, tmp_path, settings, admin_client):
    # A minute between heartbeats in the field; a second here, unreachable after four.
    settings.AGENT_HEARTBEAT_EVERY = 1
    settings.AGENT_UNREACHABLE_AFTER = timedelta(seconds=4)
    built = Sites(network, orthanc_factory, agent_factory, portal_broker, tmp_path, admin_client)
    try:
        yield built
    finally:
        built.stop()


def _sites_page_rows(client):
    response = client.get(reverse("sites"))
    assert response.status_code == 200
    page = response.content.decode()
    rows = {}
    for site in ("a", "b"):
        start = page.index(f'id="site-site-{site}"')
        rows[site] = page[start : page.index("</tr>", start)]
    return rows


def _assert_waited_then_applied_once_in_order(sites, site, revisions):
    """Every change that waited: the newest applied, the older superseded by it (a push applies the
    newest pending revision), each push job run once by the site's own agent."""
    for revision in revisions:
        revision.refresh_from_db()
    *older, newest = revisions
    assert newest.state == ConfigRevision.State.APPLIED, newest.error
    for revision in older:
        assert revision.state in (ConfigRevision.State.SUPERSEDED, ConfigRevision.State.APPLIED), revision.error
    applied = [r.finished_at for r in revisions if r.state == ConfigRevision.State.APPLIED]
    assert applied == sorted(applied), "revisions applied out of order"
    jobs = list(sites.jobs(site))
    assert all(job.state == Job.State.SUCCEEDED and job.attempts == 1 for job in jobs), [
        (job.pk, job.state, job.attempts, job.message) for job in jobs
    ]
    # A delivery of a job already run (a message put back after its acknowledgement was lost on
    # the cut link) is ignored: attempts stays at one.


def test_a_cut_off_site_waits_and_shows_unreachable_while_the_other_works_then_applies_everything_once_in_order(
    sites, network, admin_client
):
    sites.beat(
        lambda: all("never seen" not in row for row in _sites_page_rows(admin_client).values()),
        timeout=30,
        message="both agents' first heartbeat",
    )
    first = {site: sites.change(site, f"FIRST_{site.upper()}") for site in "ab"}
    wait_for(lambda: sites.settled("a") and sites.settled("b"), timeout=60, message="the first push of each site")
    for site in "ab":
        first[site].refresh_from_db()
        assert first[site].state == ConfigRevision.State.APPLIED, first[site].error

    sites.beat(lambda: sites.reachable("a"), timeout=30, message="site a reachable before its link is cut")
    network.cut("a")
    waiting = [sites.change("a", "WAIT_ONE"), sites.change("a", "WAIT_TWO")]
    elsewhere = sites.change("b", "B_WHILE_A_IS_CUT")
    wait_for(lambda: sites.settled("b"), timeout=60, message="site b's push while site a is cut off")
    elsewhere.refresh_from_db()
    assert elsewhere.state == ConfigRevision.State.APPLIED, elsewhere.error
    assert "B_WHILE_A_IS_CUT" in sites.modalities_written("b")

    # After its heartbeat lapses, the Sites page says so for site a only.
    sites.beat(
        lambda: "unreachable since" in _sites_page_rows(admin_client)["a"],
        timeout=30,
        message="site a shown unreachable",
    )
    rows = _sites_page_rows(admin_client)
    assert "unreachable since" not in rows["b"]
    assert "has not answered for 4 seconds" in admin_client.get(reverse("sites")).content.decode()
    # Its changes waited: nothing of them reached its Orthanc's folder, its jobs are still queued.
    assert not {"WAIT_ONE", "WAIT_TWO"} & sites.modalities_written("a")
    for revision in waiting:
        revision.refresh_from_db()
        assert revision.state == ConfigRevision.State.PENDING
    assert sites.jobs("a").filter(state=Job.State.PENDING).count() == 2

    network.restore("a")
    wait_for(lambda: sites.settled("a"), timeout=120, message="site a's waiting pushes after its link is back")
    _assert_waited_then_applied_once_in_order(sites, "a", [first["a"], *waiting])
    assert {"FIRST_A", "WAIT_ONE", "WAIT_TWO"} <= sites.modalities_written("a")
    assert all(sites.audited_once("a", aet) for aet in ("FIRST_A", "WAIT_ONE", "WAIT_TWO"))
    assert sites.audited_once("b", "B_WHILE_A_IS_CUT")
    sites.beat(
        lambda: "unreachable since" not in _sites_page_rows(admin_client)["a"],
        timeout=60,
        message="site a seen again",
    )


def test_the_central_redis_restarted_while_a_site_is_cut_off_loses_none_of_its_waiting_changes(
    sites, network, admin_client
):
    first = {site: sites.change(site, f"FIRST_{site.upper()}") for site in "ab"}
    wait_for(lambda: sites.settled("a") and sites.settled("b"), timeout=60, message="the first push of each site")

    sites.beat(lambda: sites.reachable("a"), timeout=30, message="site a reachable before its link is cut")
    network.cut("a")
    waiting = [sites.change("a", "BEFORE_RESTART")]
    # The central Redis goes down and comes back (its append-only file keeps the queues and
    # the ACL file the agents' users) while site a cannot see it.
    sites.central.stop()
    sites.central.start()
    waiting.append(sites.change("a", "AFTER_RESTART"))
    elsewhere = sites.change("b", "B_AFTER_RESTART")
    wait_for(lambda: sites.settled("b"), timeout=90, message="site b's push after the restart")
    elsewhere.refresh_from_db()
    assert elsewhere.state == ConfigRevision.State.APPLIED, elsewhere.error
    sites.beat(
        lambda: "unreachable since" in _sites_page_rows(admin_client)["a"],
        timeout=30,
        message="site a shown unreachable",
    )
    assert "unreachable since" not in _sites_page_rows(admin_client)["b"]
    assert sites.jobs("a").filter(state=Job.State.PENDING).count() == 2

    network.restore("a")
    wait_for(lambda: sites.settled("a"), timeout=180, message="site a's waiting pushes after its link is back")
    _assert_waited_then_applied_once_in_order(sites, "a", [first["a"], *waiting])
    assert {"FIRST_A", "BEFORE_RESTART", "AFTER_RESTART"} <= sites.modalities_written("a")
    assert all(sites.audited_once("a", aet) for aet in ("FIRST_A", "BEFORE_RESTART", "AFTER_RESTART"))
    sites.beat(
        lambda: "unreachable since" not in _sites_page_rows(admin_client)["a"],
        timeout=60,
        message="site a seen again",
    )
