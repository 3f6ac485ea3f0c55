"""``make run``'s last step, ``manage.py runportal``, with its output to a pipe (a log file, a
service manager): the banner shows at once, and the demo Orthanc answers on loopback only."""

import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import requests

from tests.conftest import ROOT, free_port, wait_for


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _status(url):
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


def read_until(proc, wanted, timeout):
    """Lines of ``proc``'s stdout until one contains ``wanted``; fails after ``timeout`` seconds.
    A thread reads the pipe: a select() on it misses lines already taken into the file's buffer."""
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()
        threading.Thread(target=lambda: [proc.lines.put(line) for line in proc.stdout], daemon=True).start()
    lines, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = proc.lines.get(timeout=left)
        except queue.Empty:
            break
        lines.append(line)
        if wanted in line:
            return lines
    raise AssertionError(f"{wanted!r} not printed within {timeout} s; got:\n{''.join(lines)}")


def test_runportal_prints_its_banner_at_once_to_a_pipe_and_the_demo_orthanc_is_loopback_only(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY")}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="1",
        PORTAL_VAR_DIR=str(var),
        # Its own Redis (runportal starts one where none answers), not the suite's.
        CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
        MPPS_PORT=str(free_port()),
        HL7_PORT=str(free_port()),
    )
    env.pop("PYTHONUNBUFFERED", None)  # the case under test: Python's own buffering of a pipe
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        lines = read_until(proc, "The portal runs at", timeout=60)
        lines += read_until(proc, "Press Ctrl-C", timeout=5)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in banner
        assert "First Admin: user 'admin', password '" in banner
        assert f"on 127.0.0.1:{env['MPPS_PORT']}" in next(line for line in lines if line.startswith("MPPS SCP:"))
        wait_for(lambda: _listening(int(env["MPPS_PORT"])), timeout=30, message="the MPPS SCP listening")
        assert f"HL7 listener (MLLP): 127.0.0.1:{env['HL7_PORT']}" in banner
        # The listener is one of the children: it accepts the practice system's connections.
        wait_for(lambda: _listening(int(env["HL7_PORT"])), timeout=30, message="the HL7 listener")

        config = json.loads((var / "demo" / "config" / "orthanc.json").read_text())
        # Orthanc has no option to bind its HTTP or DICOM server to one address (before
        # HttpBindAddresses, after 1.12.7): the demo refuses other hosts instead.
        assert config["RemoteAccessAllowed"] is False
        assert config["DicomCheckModalityHost"] is True
        assert not any(v for k, v in config.items() if k.startswith("DicomAlwaysAllow"))
        assert {m["Host"] for m in config["DicomModalities"].values()} == {"127.0.0.1"}
        url = next(line.split()[2] for line in lines if line.startswith("Demo Orthanc:"))
        # Up, on loopback (401: it asks for a login). The first backup may be stopping it for a few
        # seconds right now, for its copy of the index.
        wait_for(lambda: _status(f"{url}/system") == 401, timeout=30, message="the demo Orthanc answering 401")
        assert "A first backup of the demo to " in banner
        # The newcomer's first backup (to the local-disk target under var/) and its drill, within minutes.
        deadline, runs = time.monotonic() + 180, []
        while time.monotonic() < deadline:
            with sqlite3.connect(var / "portal.sqlite3", timeout=10) as db:
                runs = db.execute("SELECT state, drill_state, error, drill_message FROM backups_backuprun").fetchall()
            if runs and runs[0][1] in ("passed", "failed") or runs and runs[0][0] == "failed":
                break
            time.sleep(1)
        assert runs and runs[0][:2] == ("succeeded", "passed"), runs
        assert (var / "demo" / "backup-disk" / ".orthanc-portal-target").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)  # runportal stops every child it started
        proc.wait(60)
    try:
        requests.get(f"{url}/system", timeout=2)
        raise AssertionError("the demo Orthanc still answers after runportal stopped")
    except requests.ConnectionError:
        pass
