"""Shared set-up for the benchmarks: a throwaway portal database and real servers on free ports."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.ports import free_port  # noqa: E402, F401  (the benchmarks import it from here)
from tests.pgcluster import Cluster  # noqa: E402


def setup_django(name, database_url=None, var=None):
    """A fresh portal database (SQLite under a temporary folder, or ``database_url``), migrated."""
    var = var or Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ.update(
        {
            "DEBUG": "1",
            "PORTAL_VAR_DIR": str(var),
            "DATABASE_URL": database_url or f"sqlite:///{var / 'bench.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return var


def start_postgres():
    """A throwaway PostgreSQL (the production database of the compose file) trusting loopback
    connections; (cluster, DATABASE_URL)."""
    try:
        cluster = Cluster("portal", prefix="bench-pg-").start()
    except RuntimeError as error:
        raise SystemExit(str(error)) from None
    cluster.create_db("bench")
    return cluster, cluster.url("bench")


def start_redis(folder):
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url
        except redis.RedisError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def start_worker(queues, broker_url, log_path):
    env = {**os.environ, "CELERY_BROKER_URL": broker_url}
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the worker's lifetime
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "-Q",
            ",".join(queues),
            "--concurrency",
            "1",
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"ready." in Path(log_path).read_bytes():
            return proc
        time.sleep(0.1)
    raise SystemExit(f"the celery worker did not start: {Path(log_path).read_text()[-2000:]}")


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(label, seconds):
    ms = [s * 1000 for s in seconds]
    print(
        f"{label}: n={len(ms)} median={statistics.median(ms):.0f} ms p95={percentile(ms, 95):.0f} ms "
        f"min={min(ms):.0f} ms max={max(ms):.0f} ms",
        flush=True,
    )
