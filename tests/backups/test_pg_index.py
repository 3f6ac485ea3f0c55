"""A PostgreSQL index, end to end against a real PostgreSQL cluster and Orthanc with its PostgreSQL
plugin: backed up hot, drilled in a throwaway database under a throwaway Orthanc, restored."""

import os
import subprocess

import pytest

from deployments.backups.drill import backup_verify
from deployments.backups.manifest import study_uids
from deployments.backups.models import BackupRun
from deployments.backups.restore import backup_restore
from tests.backups.conftest import upload_studies

pytestmark = pytest.mark.orthanc


def databases(pg):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg["port"]), "-U", pg["user"], "-d", "postgres", "-At",
         "-c", "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1"],
        capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": pg["password"]},
    ).stdout  # fmt: skip
    return out.split()


@pytest.fixture
def pg_setup(postgres_server, backup_setup):
    pg = postgres_server
    setup = backup_setup(
        slug="pgclinic",
        orthanc_fields={
            "index_backend": "postgresql", "pg_host": "127.0.0.1", "pg_port": pg["port"], "pg_user": pg["user"],
            "pg_password": pg["password"], "pg_database": pg["database"], "pg_tls": False,
        },
    )  # fmt: skip
    return setup, pg


def test_a_postgresql_snapshot_is_drilled_in_a_throwaway_database_and_orthanc_which_are_gone_afterwards(pg_setup):
    setup, pg = pg_setup
    uids = upload_studies(setup.orthanc.client(), studies=2, per_study=2)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error + run.log_tail
    before = databases(pg)

    drilled = backup_verify(run.pk)

    assert drilled.drill_state == BackupRun.Drill.PASSED, drilled.drill_message
    assert drilled.drill_message.startswith("restorable: 2 studies and 4 instances match the manifest")
    assert databases(pg) == before  # the throwaway database was dropped
    assert sorted(study_uids(setup.orthanc.client())) == sorted(uids)  # the live Orthanc untouched


def test_a_damaged_postgresql_dump_fails_the_drill_by_name_and_leaves_no_database_behind(pg_setup):
    setup, pg = pg_setup
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    dump = setup.target / run.snapshot / "index" / "orthanc.pgdump"
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    before = databases(pg)

    drilled = backup_verify(run.pk)

    assert drilled.drill_state == BackupRun.Drill.FAILED
    assert "pg_restore of orthanc.pgdump" in drilled.drill_message, drilled.drill_message
    assert databases(pg) == before


def test_a_postgresql_deployment_is_restored_with_equal_study_uids_and_its_old_database_kept_aside(pg_setup):
    setup, pg = pg_setup
    client = setup.orthanc.client()
    uids = upload_studies(client, studies=2, per_study=2)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    later = upload_studies(client, studies=1, per_study=1, patient="LATER")  # after the snapshot
    assert sorted(study_uids(client)) == sorted(uids + later)

    summary = backup_restore(run.pk)

    client = setup.orthanc.client()
    assert sorted(study_uids(client)) == sorted(uids)
    assert client.statistics()["CountInstances"] == 4
    kept = [name for name in databases(pg) if name.startswith(f"{pg['database']}_before_restore_")]
    assert len(kept) == 1 and f"database {kept[0]}" in summary
    assert not [name for name in databases(pg) if "_restore_" in name and name not in kept]
    # The data before the restore is still there, in the database kept aside.
    count = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg["port"]), "-U", pg["user"], "-d", kept[0], "-At",
         "-c", "SELECT count(*) FROM resources WHERE resourcetype = 1"],
        capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": pg["password"]},
    ).stdout.strip()  # fmt: skip
    assert count == "3"  # studies (resource type 1) before the restore: two of the snapshot and the later one
