"""The agent's PostgreSQL role, as manage.py site_agent_setup writes it, in a real PostgreSQL with
the portal's schema: the site's work goes through (heartbeat, job rows, the render of a push, a
worklist sync with its audit entries), who may log in and the audit log stay out of reach, and
row-level security keeps each site's agent to its own site's rows."""

import os
import subprocess
import sys
import textwrap
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from deployments.agent_setup import (
    AGENT_PARENT_LINKS,
    agent_username,
    limited_tables,
    site_condition,
    table_rights,
)
from tests.conftest import ROOT, require_binary, wait_for


def _manage(database_url, *args, code=None, check=True, env=None):
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings",
           **(env or {})}  # fmt: skip
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


# One row of every table limited to a site, for each of two sites (as the portal writes them).
TWO_SITES = """
from datetime import date, time
from deployments.backups.keys import make_identity
from deployments.backups.models import BackupRun, BackupSchedule
from deployments.models import Adoption, ConfigRevision, Deployment, Modality, OrthancUser, PushLogin, SecurityAudit
from portal import audit
from portal.models import AuditEntry, Job
from worklists.interfaces.hl7.models import Hl7Mapping, Hl7Order, Hl7Outbound
from worklists.models import Patient, WorklistEntry, WorklistState

for slug in ("north", "south"):
    site = Deployment.objects.create(name=slug, slug=slug, orthanc_url="http://127.0.0.1:1", config_dir=f"/tmp/{slug}")
    Modality.objects.create(deployment=site, name="US1", aet="US1", host="10.0.0.1")
    OrthancUser.objects.create(deployment=site, username="reader", password=f"secret of {slug}")
    ConfigRevision.objects.create(deployment=site, number=1)
    SecurityAudit.objects.create(deployment=site)
    Adoption.objects.create(deployment=site)
    PushLogin.objects.create(deployment=site, token=f"token of {slug}")
    patient = Patient.objects.create(deployment=site, patient_id="P1", family_name=f"Doe of {slug}")
    entry = WorklistEntry.objects.create(deployment=site, patient=patient, accession_number=f"A-{slug}",
                                         study_instance_uid=f"1.2.3.{site.pk}", scheduled_date=date.today(),
                                         scheduled_time=time(9), station_aet="US1")
    WorklistState.objects.get_or_create(deployment=site)
    Job.objects.create(kind="deployments.deployment_push", target_id=site.pk, queue=site.queue)
    audit.record(None, AuditEntry.Action.ACTION, site, summary=f"made {slug}")
    make_identity(site)
    schedule = BackupSchedule.objects.create(deployment=site, name="Nightly", host="127.0.0.1", user="backup",
                                             remote_folder="/srv/backups")
    BackupRun.objects.create(schedule=schedule, state=BackupRun.State.SUCCEEDED, snapshot="20260101T020000")
    mapping = Hl7Mapping.objects.create(deployment=site, sending_application=f"PRAXIS-{slug}")
    Hl7Order.objects.create(mapping=mapping, placer_number=f"O-{slug}", entry=entry)
    Hl7Outbound.objects.create(mapping=mapping, deployment=site, entry=entry, order_key=f"{mapping.pk}:O-{slug}",
                               entry_status="SCHEDULED", order_status="SC", raw=b"", state="DELIVERED")
"""


def _apply(cluster, script, database):
    """Run a written agent-<slug>.sql as the cluster's superuser, as psql would at the centre."""
    psql = require_binary("psql", "postgresql-client")
    return subprocess.run(
        [psql, "-v", "ON_ERROR_STOP=1", "-q", "-h", "127.0.0.1", "-p", str(cluster["port"]), "-U", "portal",
         "-d", database, "-f", str(script)],
        env={**os.environ, "PGPASSWORD": cluster["password"]}, capture_output=True, text=True,
    )  # fmt: skip


def _agent_url(folder, slug):
    env = (folder / f"agent-{slug}.env").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in env if line.startswith("DATABASE_URL="))


def _count(conn, table, where=None):
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(table), where or sql.SQL("true"))
    return conn.execute(query).fetchone()[0]


def _two_sites_with_agents(cluster, folder):
    """North and south in a database owned by ``portal_owner``, the portal's role, neither a
    superuser nor BYPASSRLS: the owner is not subject to row-level security (no FORCE), which is
    what keeps the portal seeing all. Both agents' scripts applied; north's set up twice (a second
    run replaces its password and policies). Returns the portal's DATABASE_URL."""
    port = cluster["port"]
    with psycopg.connect(cluster["url"], autocommit=True) as su:
        su.execute("CREATE ROLE portal_owner LOGIN PASSWORD 'owner-pw'")
        su.execute("CREATE ROLE outsider")
        su.execute("CREATE DATABASE clinics OWNER portal_owner")
    owner_url = f"postgres://portal_owner:owner-pw@127.0.0.1:{port}/clinics"
    _manage(owner_url, "migrate", "--noinput")
    _manage(owner_url, "shell", code=TWO_SITES)
    setup = ("--out", str(folder), "--broker-host", "c", "--db-host", "127.0.0.1", "--db-port", str(port),
             "--db-name", "clinics")  # fmt: skip
    for slug in ("north", "south", "north"):
        _manage(owner_url, "site_agent_setup", slug, *setup)
        applied = _apply(cluster, folder / f"agent-{slug}.sql", "clinics")
        assert applied.returncode == 0, applied.stderr
    return owner_url


def test_an_agents_role_sees_and_changes_only_its_own_sites_rows_and_the_portal_still_sees_all(
    postgres_cluster, tmp_path
):
    owner_url = _two_sites_with_agents(postgres_cluster, tmp_path)
    owner = psycopg.connect(owner_url, autocommit=True)
    agent = psycopg.connect(_agent_url(tmp_path, "north"), autocommit=True)
    assert owner.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() == (
        False,
    )
    ids = dict(owner.execute("SELECT slug, id FROM deployments_deployment").fetchall())
    north = {table: site_condition(table, ids["north"], "deployment.north") for table in limited_tables()}
    south = {table: site_condition(table, ids["south"], "deployment.south") for table in limited_tables()}
    rights = table_rights()
    denied = pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied")
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security")
    theirs = {}
    for table in limited_tables():
        name = sql.Identifier(table)
        flags = owner.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = %s", [table]
        ).fetchone()
        assert flags == (True, False), table
        own, theirs[table] = _count(owner, table, north[table]), _count(owner, table, south[table])
        assert own >= 1 and theirs[table] >= 1, table
        # The portal's role sees every site's rows; north's agent its own only.
        assert _count(owner, table) == own + theirs[table], table
        assert _count(agent, table) == own, table
        if "SELECT" not in rights[table]:
            continue  # insert-only for agents: no UPDATE, nor SELECT of the column naming the site
        # South's rows by their ids (a condition naming south's parent rows would find none as the
        # agent whatever the table's own policy: the parent's policy hides them).
        south_ids = sql.Literal(
            [r[0] for r in owner.execute(sql.SQL("SELECT id FROM {} WHERE {}").format(name, south[table]))]
        )
        assert _count(agent, table, sql.SQL("id = ANY({})").format(south_ids)) == 0, table
        for right, statement in (
            ("UPDATE", sql.SQL("UPDATE {} SET id = id WHERE id = ANY({})")),
            ("DELETE", sql.SQL("DELETE FROM {} WHERE id = ANY({})")),
        ):
            if right in rights[table]:
                assert agent.execute(statement.format(name, south_ids)).rowcount == 0, table
            else:
                with denied:
                    agent.execute(statement.format(name, south_ids))
        if "UPDATE" not in rights[table]:
            continue
        mine = sql.SQL("UPDATE {} SET id = id WHERE {}").format(name, north[table])
        assert agent.execute(mine).rowcount == own, table
        # Nor move one of its rows to south, directly or through the parent row it belongs to.
        if table in AGENT_PARENT_LINKS:
            column, parent = AGENT_PARENT_LINKS[table]
            target = owner.execute(
                sql.SQL("SELECT min(id) FROM {} WHERE {}").format(sql.Identifier(parent), south[parent])
            )
            move = sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
                name, sql.Identifier(column), sql.Literal(target.fetchone()[0]), north[table]
            )
        elif table not in ("deployments_deployment", "portal_job"):
            move = sql.SQL("UPDATE {} SET deployment_id = {} WHERE {}").format(
                name, sql.Literal(ids["south"]), north[table]
            )
        else:
            continue
        with refused:
            agent.execute(move)

    # Nor can it add a row of south's: a copy of one, under a new id, is refused.
    for table in limited_tables():
        name = sql.Identifier(table)
        row = owner.execute(
            sql.SQL("SELECT row_to_json(t) FROM {} t WHERE {} LIMIT 1").format(name, south[table])
        ).fetchone()[0]
        row["id"] += 1000
        insert = sql.SQL("INSERT INTO {t} SELECT * FROM json_populate_record(NULL::{t}, %s)").format(t=name)
        with refused if "INSERT" in rights[table] else denied:
            agent.execute(insert, [psycopg.types.json.Json(row)])
        assert _count(owner, table, south[table]) == theirs[table], table

    # Nor tie a row of its own to another site's: foreign keys are checked without row-level
    # security, the policy checks that an entry's patient and station are the site's.
    entry = owner.execute(
        "SELECT row_to_json(e) FROM worklists_worklistentry e WHERE deployment_id = %s", [ids["north"]]
    ).fetchone()[0]
    patients = dict(owner.execute("SELECT deployment_id, id FROM worklists_patient").fetchall())
    stations = dict(owner.execute("SELECT deployment_id, id FROM deployments_modality").fetchall())
    insert = "INSERT INTO worklists_worklistentry SELECT * FROM json_populate_record(NULL::worklists_worklistentry, %s)"

    def copy(n, patient, station):
        """North's entry under a new id and new unique values, naming this patient and station."""
        unique = {"id": entry["id"] + 100 + n, "accession_number": f"F{n}", "study_instance_uid": f"1.9.{n}"}
        changed = {**unique, "uuid": str(uuid.uuid4()), "patient_id": patient, "station_id": station}
        return [psycopg.types.json.Json({**entry, **changed})]

    for n, (patient, station) in enumerate(
        ((patients[ids["south"]], None), (patients[ids["north"]], stations[ids["south"]]))
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            agent.execute(insert, copy(n, patient, station))
    agent.execute(insert, copy(9, patients[ids["north"]], stations[ids["north"]]))
    agent.close()
    owner.close()

    # The script refuses to turn row-level security on when the portal's role does not own the
    # tables: that role would see none of their rows.
    from deployments.agent_setup import postgres_sql

    (tmp_path / "outsider.sql").write_text(postgres_sql("north", "pw", "clinics", ids["north"], portal_role="outsider"))
    refused = _apply(postgres_cluster, tmp_path / "outsider.sql", "clinics")
    assert refused.returncode != 0 and "does not own the tables" in refused.stderr, refused.stderr


def test_a_real_agent_under_its_role_runs_its_heartbeat_and_cannot_mark_another_site(
    postgres_cluster, tmp_path, central_redis_factory, agent_factory, portal_broker
):
    from deployments.tasks import agent_heartbeat_task

    owner_url = _two_sites_with_agents(postgres_cluster, tmp_path)
    central = central_redis_factory()
    setup = central.add_agent("north")
    portal_broker(central.url())
    agent = agent_factory(
        setup,
        central.url(agent_username("north"), setup.redis_password),
        env={"DATABASE_URL": _agent_url(tmp_path, "north")},
    )
    with psycopg.connect(owner_url, autocommit=True) as owner:
        ids = dict(owner.execute("SELECT slug, id FROM deployments_deployment").fetchall())

        def seen(slug):
            query = "SELECT agent_seen_at FROM deployments_deployment WHERE slug = %s"
            return owner.execute(query, [slug]).fetchone()[0]

        # South's heartbeat on north's queue (a forged message), then north's: one worker runs
        # them in order; the first finds no row it may change.
        agent_heartbeat_task.apply_async((ids["south"],), queue="deployment.north")
        agent_heartbeat_task.apply_async((ids["north"],), queue="deployment.north")
        wait_for(lambda: seen("north"), timeout=30, message="north's agent to record its heartbeat")
        assert seen("south") is None
    assert "permission denied" not in agent.output() and "Traceback" not in agent.output(), agent.output()[-3000:]
