"""The site agent's broker user, found by experiment and kept honest here: a real Redis 7 with ACL
users, real Celery workers consuming one queue each, plain and over TLS."""

import hashlib
import stat
import subprocess

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from deployments.agent_setup import agent_username, limited_tables, site_condition
from deployments.agents import send_heartbeats
from deployments.models import Deployment
from tests.conftest import require_binary, wait_for

from .conftest import CentralRedis, make_certificates


def _site(slug):
    return Deployment.objects.create(name=f"Clinic {slug}", slug=slug, orthanc_url="http://127.0.0.1:1")


def _seen(deployment):
    deployment.refresh_from_db()
    return deployment.agent_seen_at


def test_an_agent_runs_its_own_sites_tasks_and_cannot_touch_another_sites_queue(
    central_redis_factory, agent_factory, portal_broker
):
    central = central_redis_factory()
    north, south = _site("north"), _site("south")
    setup_north = central.add_agent("north")
    central.add_agent("south")
    portal_broker(central.url())
    agent_factory(setup_north, central.url(agent_username("north"), setup_north.redis_password))

    before = timezone.now()
    send_heartbeats()
    wait_for(lambda: _seen(north), timeout=20, message="north's agent to answer its heartbeat")
    assert _seen(north) >= before
    # South has no agent running: its heartbeat waits in its own queue, which north's agent never read.
    assert _seen(south) is None
    admin = central.client()
    assert admin.llen("deployment.south") == 1
    assert admin.llen("deployment.north") == 0
    # Late acknowledgement went through north's own unacked keys, now empty, not the shared ones.
    assert not admin.exists("unacked", "unacked_index")

    as_north = central.client(agent_username("north"), setup_north.redis_password)
    for command in (
        ("LRANGE", "deployment.south", 0, -1),
        ("LPUSH", "deployment.south", "forged"),
        ("BRPOP", "deployment.south", 1),
        ("DEL", "deployment.south"),
        ("SMEMBERS", "_kombu.binding.deployment.south"),
        ("HGETALL", "unacked"),
        ("HGETALL", "unacked.deployment.south"),
        ("LPUSH", "portal", "forged"),
        ("PUBLISH", "/0.celery.pidbox", "forged"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("ACL", "LIST"),
        ("CONFIG", "GET", "*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_north.execute_command(*command)
    assert admin.llen("deployment.south") == 1
    # Every command the agent itself sent was allowed: Redis logged no denial of north's worker.
    denied = [e for e in admin.execute_command("ACL", "LOG") if e[b"username"] == b"agent-north"]
    # Redis groups repeated denials of one object into one entry with a count.
    assert sum(e[b"count"] for e in denied) == 13, denied  # exactly the thirteen refusals above


def test_an_agent_reaches_the_central_redis_over_tls_with_the_ca_file_only(
    central_redis_factory, agent_factory, portal_broker, tmp_path
):
    certs = make_certificates(tmp_path / "tls", "127.0.0.1")
    central = central_redis_factory(tls=certs)
    north = _site("north")
    setup = central.add_agent("north")
    portal_broker(central.url(), ca_file=certs["ca"])
    broker = central.url(agent_username("north"), setup.redis_password)
    assert broker.startswith("rediss://")
    agent_factory(setup, broker, ca_file=certs["ca"])

    send_heartbeats()
    wait_for(lambda: _seen(north), timeout=20, message="north's agent to answer over TLS")
    # Without the CA, the central Redis's certificate is refused.
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(broker, socket_connect_timeout=2).ping()
    # And plain Redis is not spoken on the TLS port.
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(broker.replace("rediss://", "redis://"), socket_connect_timeout=2, socket_timeout=2).ping()


def test_site_agent_setup_writes_private_files_with_the_agents_credentials(db, tmp_path, settings):
    _site("north")
    call_command(
        "site_agent_setup", "north", "--out", str(tmp_path), "--broker-host", "portal.example",
        "--broker-port", "6380", "--ca-file", "/etc/orthanc-portal/redis-ca.pem", "--db-host", "db.example",
    )  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"agent-north.env", "agent-north.redis", "agent-north.acl", "agent-north.sql"}
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    env = dict(line.split("=", 1) for line in (tmp_path / "agent-north.env").read_text().splitlines() if "=" in line)
    assert env["PORTAL_AGENT_QUEUE"] == "deployment.north"
    assert env["CELERY_BROKER_URL"].startswith("rediss://agent-north:")
    assert env["CELERY_BROKER_URL"].endswith("@portal.example:6380/0")
    assert env["CELERY_BROKER_SSL_CA"] == "/etc/orthanc-portal/redis-ca.pem"
    assert env["DATABASE_URL"].startswith("postgres://agent_north:")
    assert env["FIELD_ENCRYPTION_KEY"] == settings.FIELD_ENCRYPTION_KEY
    password = env["CELERY_BROKER_URL"].split(":")[2].split("@")[0]
    # The ACL lines carry the password's hash, never the password.
    for name in ("agent-north.redis", "agent-north.acl"):
        text = (tmp_path / name).read_text()
        assert password not in text
        assert "~deployment.north" in text and "~deployment.south" not in text
    sql = (tmp_path / "agent-north.sql").read_text()
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "deployments_deployment" TO "agent_north";' in sql
    assert "auth_user" not in sql and "django_session" not in sql
    # Each table it may write holds its site's rows only (row-level security), in one transaction.
    pk = Deployment.objects.get(slug="north").pk
    assert sql.splitlines()[1] == "BEGIN;" and sql.splitlines()[-1] == "COMMIT;"
    for table, condition in (
        ("deployments_deployment", f"id = {pk}"),
        ("worklists_patient", f"deployment_id = {pk}"),
        ("portal_job", "queue = 'deployment.north'"),
        ("portal_auditentry", f"deployment_id = {pk}"),
    ):
        assert f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY;' in sql
        assert f'DROP POLICY IF EXISTS "agent_north" ON "{table}";' in sql
        assert (
            f'CREATE POLICY "agent_north" ON "{table}" TO "agent_north" USING ({condition}) WITH CHECK ({condition});'
        ) in sql
    # An entry it writes may name only its own site's patient and station.
    assert (
        f'ON "worklists_worklistentry" TO "agent_north" USING (deployment_id = {pk}) WITH CHECK (deployment_id = {pk}'
        ' AND ("worklists_worklistentry"."patient_id" IS NULL OR EXISTS (SELECT FROM "worklists_patient"'
    ) in sql
    assert "FORCE" not in sql  # the portal's role owns the tables and keeps seeing every row
    assert 'ON "django_content_type" ENABLE' not in sql


def test_a_table_granted_to_agents_must_say_which_site_its_rows_belong_to():
    """A table without a deployment_id is refused rather than granted whole to every site's agent."""
    with pytest.raises(ValueError, match="django_session has no deployment_id"):
        site_condition("django_session", 1, "deployment.north")
    assert set(limited_tables()) >= {"deployments_deployment", "worklists_patient", "portal_job", "portal_auditentry"}


def test_the_written_acl_lines_are_what_redis_cli_and_the_aclfile_of_a_real_redis_accept(db, tmp_path):
    """redis-cli reads quoted arguments with \\x escapes; an aclfile is split on spaces and reads
    none: each file must give Redis the same user."""
    for slug in ("north", "south"):
        _site(slug)
        call_command("site_agent_setup", slug, "--out", str(tmp_path), "--broker-host", "c", "--db-host", "c")
    central = CentralRedis(tmp_path / "redis")
    digest = hashlib.sha256(central.admin_password.encode()).hexdigest()
    (central.folder / "users.acl").write_text(
        f"user default on #{digest} ~* &* +@all\n" + (tmp_path / "agent-south.acl").read_text()
    )
    central.start()
    try:
        cli = require_binary("redis-cli", "redis-tools")
        subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(central.port), "--no-auth-warning", "-a", central.admin_password],
            input=(tmp_path / "agent-north.redis").read_bytes(), check=True, capture_output=True,
        )  # fmt: skip
        admin = central.client()
        north, south = (admin.acl_getuser(f"agent-{slug}") for slug in ("north", "south"))
        assert north["keys"] and north["keys"] == [k.replace("south", "north") for k in south["keys"]]
        assert "~deployment.north\x06\x16*" in north["keys"]  # the priority lists, raw separator
        assert north["commands"] == south["commands"]
        assert north["channels"] == south["channels"] == []
    finally:
        central.stop()
