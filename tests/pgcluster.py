"""Throwaway PostgreSQL clusters for the tests and benchmarks that need a server of their own (an
agent's restricted role, Orthanc's PostgreSQL index, a restart under load): initdb in a temporary
folder, run as the postgres user on a free loopback port, removed afterwards."""

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from deployments.ports import free_port

MISSING = "PostgreSQL is missing: apt-get install postgresql (make system-packages-test)"


class Cluster:
    """``user`` is the cluster's superuser; with ``password`` it signs in by SCRAM, else loopback is trusted."""

    def __init__(self, user, password=False, prefix="portal-pg-", options=()):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not bins:
            raise RuntimeError(MISSING)
        self.bindir = Path(bins[-1]).parent
        owner = pwd.getpwnam("postgres")
        self.as_pg = {"user": owner.pw_uid, "group": owner.pw_gid}
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.user, self.port, self.proc, self.options = user, free_port(), None, list(options)
        self.password = secrets.token_urlsafe(16) if password else ""
        auth = ["--auth=trust"]
        if self.password:
            (self.base / "pw").write_text(self.password)
            os.chown(self.base / "pw", owner.pw_uid, owner.pw_gid)
            auth = ["--auth=scram-sha-256", f"--pwfile={self.base / 'pw'}"]
        initdb = [self.bindir / "initdb", "-D", self.base / "data", "-U", user, *auth]
        subprocess.run(initdb, check=True, capture_output=True, **self.as_pg)

    def start(self, timeout=30):
        with open(self.base / "log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.bindir / "postgres", "-D", self.base / "data", "-p", str(self.port), "-k", self.base,
                 "-c", "listen_addresses=127.0.0.1", *self.options],
                stdout=log, stderr=log, **self.as_pg,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{(self.base / 'log').read_text()}")
            time.sleep(0.1)
        return self

    def ready(self):
        ping = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(ping, check=False).returncode == 0

    def create_db(self, name):
        env = {**os.environ, "PGPASSWORD": self.password}
        createdb = ["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name]
        subprocess.run(createdb, env=env, check=True)

    def url(self, database):
        password = f":{self.password}" if self.password else ""
        return f"postgres://{self.user}{password}@127.0.0.1:{self.port}/{database}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: open connections are cut, as in a restart
            self.proc.wait(30)

    def remove(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def started_for_test(user, **kwargs):
    """A started cluster, or the test fails with the reason and the setup step (no traceback)."""
    import pytest

    cluster = None
    try:
        cluster = Cluster(user, **kwargs)
        return cluster.start()
    except RuntimeError as error:
        if cluster:
            cluster.remove()
        pytest.fail(str(error), pytrace=False)
