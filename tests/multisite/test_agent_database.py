"""The agent's PostgreSQL role, as manage.py site_agent_setup writes it, in a real PostgreSQL with
the portal's schema: the site's work goes through (heartbeat, job rows, the render of a push, a
worklist sync with its audit entries), who may log in and the audit log stay out of reach."""

import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

from tests.conftest import ROOT, require_binary


def _manage(database_url, *args, code=None, check=True):
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    env.pop("PORTAL_AGENT_QUEUE", None)
    command = [sys.executable, "manage.py", *args]
    if code is not None:
        command += ["-c", textwrap.dedent(code)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_agents_database_role_does_its_sites_work_and_reads_no_accounts(postgres_cluster, tmp_path):
    psql = require_binary("psql", "postgresql-client")
    central = postgres_cluster["url"]
    _manage(central, "migrate", "--noinput")
    worklists = tmp_path / "worklists"
    worklists.mkdir()
    _manage(
        central,
        "shell",
        code=f"""
        from django.contrib.auth.models import User
        from deployments.models import Deployment
        User.objects.create_user("ada", password="x")
        Deployment.objects.create(name="North", slug="north", orthanc_url="http://127.0.0.1:1",
                                  worklists_dir={str(worklists)!r}, config_dir={str(tmp_path / "config")!r})
        """,
    )
    _manage(central, "site_agent_setup", "north", "--out", str(tmp_path), "--broker-host", "c", "--db-host", "127.0.0.1",
            "--db-port", str(postgres_cluster["port"]))  # fmt: skip
    server = urlsplit(central)
    subprocess.run(
        [psql, "-v", "ON_ERROR_STOP=1", "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U", "portal", "-d", "portal",
         "-f", str(tmp_path / "agent-north.sql")],
        env={**os.environ, "PGPASSWORD": postgres_cluster["password"]}, check=True, capture_output=True,
    )  # fmt: skip
    agent_url = next(
        line.split("=", 1)[1]
        for line in (tmp_path / "agent-north.env").read_text().splitlines()
        if line.startswith("DATABASE_URL=")
    )
    assert agent_url.startswith("postgres://agent_north:")

    # What the agent's tasks do, as the agent's role.
    work = _manage(
        agent_url,
        "shell",
        code="""
        from datetime import date
        from deployments.agents import heartbeat
        from deployments.models import Deployment
        from deployments.render import render_for
        from portal import jobs
        from portal.models import Job
        from worklists.sync import worklist_sync

        north = Deployment.objects.get(slug="north")
        heartbeat(north.pk)
        job = Job.objects.create(kind="deployments.deployment_push", target_id=north.pk, queue=north.queue)
        assert jobs.claim(job.pk)
        jobs.finish(job.pk, Job.State.SUCCEEDED, "done")
        files = render_for(north)
        result = worklist_sync(north.pk, full=True)
        # What a sync that closes an entry, a completion or a restore records.
        from portal import audit
        from portal.models import AuditEntry
        audit.record(None, AuditEntry.Action.ACTION, north, summary="restored by the agent")
        print("WORK DONE", sorted(files), result)
        """,
    )
    assert "WORK DONE" in work.stdout, work.stderr[-3000:]

    # What it has no business with: accounts, sessions, tokens, site access, the audit log's content.
    for query in (
        "SELECT count(*) FROM auth_user",
        "SELECT count(*) FROM django_session",
        "SELECT count(*) FROM portal_apitoken",
        "SELECT count(*) FROM portal_siteaccess",
        "SELECT summary FROM portal_auditentry",
        "UPDATE auth_user SET is_superuser = true",
        "CREATE TABLE intruder (id int)",
    ):
        denied = _manage(
            agent_url,
            "shell",
            code=f"""
            from django.db import connection
            with connection.cursor() as cursor:
                cursor.execute({query!r})
            """,
            check=False,
        )
        assert denied.returncode != 0 and "permission denied" in denied.stderr, (query, denied.stderr[-1500:])
