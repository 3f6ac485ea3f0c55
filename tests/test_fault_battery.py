"""The short fault battery: two rounds of each fault of bench/faults.py, through the same code.

The full battery (100 rounds of each) is `make faults`; this keeps every fault exercised by
`make test` and fails on any lost or duplicated intent, partial file or service left down.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAULTS = (
    "worker-kill-push", "worker-kill-sync", "worker-kill-backup", "redis-kill-saves", "redis-down-commit",
    "orthanc-killed", "orthanc-refuses", "orthanc-slow", "sshd-down", "disk-full", "pg-restart",
)  # fmt: skip


@pytest.mark.orthanc
def test_two_rounds_of_every_fault_lose_no_intent_and_apply_none_twice():
    if os.geteuid() != 0:
        pytest.fail("the fault battery mounts a tmpfs and runs PostgreSQL as postgres: run it as root", pytrace=False)
    # Its own PostgreSQL, Redis, Orthanc, sshd and workers: nothing of the test session's is shared.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_VAR_DIR")}
    env.update(FAULT_ROUNDS="2", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = done.stdout
    print(out)
    assert done.returncode == 0, out[-5000:] + done.stderr[-5000:]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in FAULTS}
    assert sorted(rows) == sorted(FAULTS), out
    for name, row in rows.items():
        rounds, lost, duplicated, bad = int(row[1]), int(row[5]), int(row[6]), int(row[7])
        assert (rounds, lost, duplicated, bad) == (2, 0, 0, 0), f"{name}: {' '.join(row)}"
