"""The PostgreSQL index of a deployment, dumped hot (pg_dump needs no stop of Orthanc)."""

import os
import subprocess  # nosec B404: pg_dump from an argument list
from pathlib import Path


def pg_dump(deployment, folder: Path) -> Path:
    """Dump the index into ``folder/index/orthanc.pgdump`` (custom format); returns ``folder/index``."""
    d = deployment
    index = folder / "index"
    index.mkdir(mode=0o700)
    env = {**os.environ, "PGPASSWORD": d.pg_password, "PGSSLMODE": "require" if d.pg_tls else "prefer"}
    command = ["pg_dump", "-Fc", "-h", d.pg_host, "-p", str(d.pg_port), "-U", d.pg_user]
    proc = subprocess.run(  # nosec B603: fixed program, argument list
        [*command, "-f", str(index / "orthanc.pgdump"), d.pg_database],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {proc.stderr.strip()[-500:]}")
    return index
