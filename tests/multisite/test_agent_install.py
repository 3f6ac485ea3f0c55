"""The two ways to install a site agent, read as data (no Docker engine or systemd runs here): the
compose profile and the systemd unit run the worker the README and agent_setup.worker_command say,
with the env file site_agent_setup writes; the agent's healthcheck asks its heartbeat."""

import configparser
import os
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.core.management import call_command
from django.utils import timezone

from deployments.agent_setup import worker_command
from deployments.models import Deployment
from tests.conftest import ROOT, test_database_url
from tests.test_compose import read_env_file, services, settings_env_names

UNIT = ROOT / "docker" / "systemd" / "orthanc-portal-agent@.service"
# What distinguishes an agent's worker from the central one: one queue, no broadcast.
AGENT_FLAGS = {"--without-gossip", "--without-mingle", "--without-heartbeat"}


def test_the_compose_site_agent_runs_only_its_sites_queue_from_the_same_image_with_the_generated_env_file():
    agent, worker = services()["site-agent"], services()["worker"]
    assert agent["profiles"] == ["site-agent"]
    assert agent["image"] == worker["image"]
    assert agent["env_file"] == ["agent.env"]
    command = agent["command"]
    assert command[:3] == ["celery", "--app=portal", "worker"]
    assert "--queues=deployment.${DEPLOYMENT_SLUG:?set DEPLOYMENT_SLUG in .env}" in command
    assert AGENT_FLAGS <= set(command)
    assert not [arg for arg in command if arg.startswith("--queues=portal")]
    # It writes the same folders the central worker of a single-host install writes.
    assert agent["volumes"] == worker["volumes"]
    assert "site-agent" not in str(services()["orthanc"].get("depends_on", {}))


def test_the_systemd_unit_runs_the_agents_worker_command_with_the_env_file_of_its_site():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["EnvironmentFile"] == "/etc/orthanc-portal/agent-%i.env"
    args = shlex.split(service["ExecStart"])
    assert Path(args[0]).name == "celery"
    expected = worker_command("deployment.%i")[1:]
    assert args[1 : 1 + len(expected)] == expected
    assert AGENT_FLAGS <= set(args)
    assert service["Restart"] == "always"


def test_the_generated_env_file_alone_gives_the_production_settings_of_an_agent(db, tmp_path):
    Deployment.objects.create(name="North", slug="north", orthanc_url="http://127.0.0.1:1")
    call_command("site_agent_setup", "north", "--out", str(tmp_path), "--broker-host", "c", "--db-host", "c",
                 "--ca-file", "/etc/orthanc-portal/ca.pem")  # fmt: skip
    values = read_env_file(tmp_path / "agent-north.env")
    assert set(values) - settings_env_names() == set()
    # With nothing but that file (production: DEBUG=0), the settings load as an agent's.
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['unacked_key'], s.CELERY_WORKER_ENABLE_REMOTE_CONTROL, "
        "s.CELERY_BROKER_USE_SSL['ssl_ca_certs'], s.DEBUG)"
    )
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path)}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env={**env, **values}, capture_output=True, text=True, timeout=60
    )
    assert loaded.stdout.split() == ["unacked.deployment.north", "False", "/etc/orthanc-portal/ca.pem", "False"], (
        loaded.stderr[-2000:]
    )


def test_the_agents_healthcheck_is_healthy_while_its_heartbeat_is_recent(transactional_db):
    north = Deployment.objects.create(name="North", slug="north", orthanc_url="http://127.0.0.1:1")
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PORTAL_AGENT_QUEUE": "deployment.north", "DEBUG": "1"}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    check = [sys.executable, str(ROOT / "docker" / "portal" / "agent_healthcheck.py")]

    def healthy():
        return subprocess.run(check, env=env, capture_output=True, timeout=60).returncode == 0

    assert not healthy()  # never seen
    Deployment.objects.filter(pk=north.pk).update(agent_seen_at=timezone.now())
    assert healthy()
    Deployment.objects.filter(pk=north.pk).update(agent_seen_at=timezone.now() - timedelta(hours=1))
    assert not healthy()
