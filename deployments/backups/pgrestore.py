"""A PostgreSQL index dump (index/orthanc.pgdump, from pgdump.py) loaded back into a database.

The drill loads it into a throwaway database on the deployment's own PostgreSQL server, with a
throwaway Orthanc over it and the snapshot's storage, and compares what that Orthanc holds with
the manifest; the database is dropped afterwards. A restore loads it into a new database while
Orthanc still runs, then, with Orthanc stopped, swaps the names: the current database is renamed
aside (never dropped) and the loaded one takes its name. Both need the deployment's PostgreSQL
account to be allowed to create databases (CREATEDB) and, for the swap, to own the index database.
"""

import os
import secrets
import subprocess  # nosec B404: PostgreSQL's client programs from argument lists
from contextlib import contextmanager
from pathlib import Path

DUMP = Path("index") / "orthanc.pgdump"
MAINTENANCE_DB = "postgres"


class PgRestoreError(Exception):
    pass


def _env(deployment):
    return {
        **os.environ,
        "PGPASSWORD": deployment.pg_password,
        "PGSSLMODE": "require" if deployment.pg_tls else "prefer",
        "PGCONNECT_TIMEOUT": "15",
    }


def _connection(deployment):
    return ["-h", deployment.pg_host, "-p", str(deployment.pg_port), "-U", deployment.pg_user]


def _run(deployment, command, what, timeout=3600):
    proc = subprocess.run(  # nosec B603: fixed programs, argument lists, no shell
        command, capture_output=True, text=True, env=_env(deployment), check=False, timeout=timeout
    )
    if proc.returncode != 0:
        raise PgRestoreError(f"{what} failed: {proc.stderr.strip()[-500:] or proc.returncode}")
    return proc.stdout


def scratch_name(deployment, kind):
    # PostgreSQL names are at most 63 bytes; the suffix makes each one new.
    return f"{deployment.pg_database[:40]}_{kind}_{secrets.token_hex(4)}"


def create_database(deployment, name):
    _run(deployment, ["createdb", *_connection(deployment), "-T", "template0", "--", name], f"creating database {name}")


def drop_database(deployment, name):
    _run(deployment, ["dropdb", *_connection(deployment), "--if-exists", "--", name], f"dropping database {name}")


def load_dump(deployment, dump: Path, name):
    """pg_restore into the empty database ``name``; the first error stops it (a partial index is no index)."""
    if not dump.is_file():
        raise PgRestoreError(f"the snapshot holds no PostgreSQL dump ({DUMP})")
    _run(
        deployment,
        ["pg_restore", *_connection(deployment), "--no-owner", "--no-privileges", "--exit-on-error",
         "-d", name, str(dump)],
        f"pg_restore of {dump.name} into {name}",
    )  # fmt: skip


def quoted(name):
    return '"' + name.replace('"', '""') + '"'


def rename_database(deployment, old, new):
    sql = f"ALTER DATABASE {quoted(old)} RENAME TO {quoted(new)}"
    _run(deployment, ["psql", *_connection(deployment), "-d", MAINTENANCE_DB, "-v", "ON_ERROR_STOP=1", "-c", sql],
         f"renaming database {old} to {new}")  # fmt: skip


@contextmanager
def throwaway_database(deployment, dump: Path):
    """A new database holding the dump, dropped on leaving."""
    name = scratch_name(deployment, "drill")
    create_database(deployment, name)
    try:
        load_dump(deployment, dump, name)
        yield name
    finally:
        drop_database(deployment, name)


def check_restored_postgresql(scratch: Path, manifest: dict, like) -> list[str]:
    """The drill of a PostgreSQL snapshot: its dump in a throwaway database, a throwaway Orthanc over
    it and the restored storage, compared with the manifest (counts, study UIDs, MD5 of each file)."""
    from .drill import ThrowawayOrthanc, verify_md5
    from .manifest import compare, live_counts, study_uids

    with throwaway_database(like, scratch / DUMP) as database:
        with ThrowawayOrthanc(scratch, like, pg_database=database) as client:
            return compare(manifest, live_counts(client), study_uids(client)) + verify_md5(client)


def swap(service, deployment, storage: Path, staging: Path, stamp) -> list[str]:
    """Restore a PostgreSQL deployment from ``staging`` (a fetched snapshot). The dump is loaded into
    a new database while Orthanc still runs; with Orthanc stopped, the live database and storage
    folder are renamed aside and the restored ones take their names. Rolls back on failure.
    Returns what was kept aside."""
    from .control import ensure_running

    live = deployment.pg_database
    loaded = scratch_name(deployment, "restore")
    before = f"{live[:30]}_before_restore_{stamp}"
    storage_aside = storage.with_name(f"{storage.name}.before-restore-{stamp}")
    create_database(deployment, loaded)
    try:
        load_dump(deployment, staging / DUMP, loaded)
    except Exception:
        drop_database(deployment, loaded)
        raise
    undo = []  # done in reverse on failure
    service.stop()
    try:
        rename_database(deployment, live, before)
        undo.append(lambda: rename_database(deployment, before, live))
        rename_database(deployment, loaded, live)
        undo.append(lambda: rename_database(deployment, live, loaded))
        if storage.exists():
            storage.rename(storage_aside)
            undo.append(lambda: storage_aside.rename(storage))
        (staging / "storage").rename(storage)
        # A restored folder in the way of the rollback is kept aside too, never deleted.
        undo.append(lambda: storage.rename(storage.with_name(f"{storage.name}.failed-restore-{stamp}")))
        ensure_running(service, attempts=1, timeout=60)
    except Exception:
        service.stop()
        for step in reversed(undo):
            step()
        ensure_running(service)
        raise
    return [f"database {before}", str(storage_aside)]
