"""Start, stop and check an Orthanc process: the deployment's service control.

``LocalService`` runs the Debian package's Orthanc binary as a detached process with a pid
file and a log file in a ``run/`` folder beside the configuration folder. It serves the local
demo deployment of ``make run``, the tests and single-host installs.
"""

import os
import shlex
import signal

# Fixed argument lists, never a shell.
import subprocess  # nosec B404
import time
from pathlib import Path

from django.conf import settings

from .orthanc import OrthancAuthFailed, OrthancClient, OrthancError


class ServiceError(Exception):
    pass


class LocalService:
    def __init__(self, config_dir, url=None, auth=("", ""), binary=None):
        self.config_dir = Path(config_dir)
        self.run_dir = self.config_dir.parent / "run"
        self.pid_file = self.run_dir / "orthanc.pid"
        self.log_file = self.run_dir / "orthanc.log"
        self.url = url
        self.auth = auth
        self.binary = binary or settings.ORTHANC_BINARY

    @classmethod
    def for_deployment(cls, deployment):
        return cls(
            deployment.config_dir, deployment.orthanc_url, (deployment.service_username, deployment.service_password)
        )

    def pid(self):
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        # A recycled pid that is not our Orthanc is not ours to signal.
        if b"Orthanc" not in cmdline or str(self.config_dir).encode() not in cmdline:
            return None
        return pid

    def is_running(self):
        return self.pid() is not None

    def start(self, wait=20.0):
        if self.is_running():
            return self.pid()
        if not Path(self.binary).exists():
            raise ServiceError(
                f"{self.binary} not found: install the Debian package with 'apt-get install orthanc' (make run does)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TCP_NODELAY": "1"}  # removes ~40 ms of Nagle delay per DICOM association
        with open(self.log_file, "ab") as log:
            # Fixed binary, argument is our own folder.
            proc = subprocess.Popen(  # nosec B603
                [self.binary, str(self.config_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        if wait:
            self.wait_until_up(proc, wait)
        return proc.pid

    def wait_until_up(self, proc=None, timeout=20.0):
        client = OrthancClient(self.url, *self.auth, timeout=1.0) if self.url else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(f"Orthanc exited with status {proc.returncode} at start:\n{self.log_tail()}")
            if proc is None and not self.is_running():
                raise ServiceError(f"Orthanc is not running:\n{self.log_tail()}")
            if client is None:
                return
            try:
                client.system()
                return
            except OrthancError:
                time.sleep(0.1)
        raise ServiceError(f"Orthanc did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout=15.0):
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, IndexError):
            return False
        return state != "Z"

    def restart(self):
        """Stop and start again without waiting: the caller waits for the configuration it wants."""
        self.stop()
        self.start(wait=0)

    def log_tail(self, lines=20):
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_mark(self):
        """Where the log ends now: ``log_since`` reads what was written after it."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.log_file, "rb") as log:
                log.seek(mark or 0)
                return log.read(1_000_000).decode(errors="replace")
        except FileNotFoundError:
            return ""


class CommandService:
    """Orthanc run by systemd, Docker or the clinic's own scripts: start and stop are commands
    (argument lists, never a shell); "running" means the REST API answers."""

    def __init__(self, start_argv, stop_argv, url, auth, log_argv=None):
        self.start_argv, self.stop_argv, self.log_argv = start_argv, stop_argv, log_argv
        self.url, self.auth = url, auth

    @classmethod
    def for_deployment(cls, d):
        url, auth = d.orthanc_url, (d.service_username, d.service_password)
        if d.service_kind == d.ServiceKind.SYSTEMD:
            unit = d.service_name
            return cls(
                ["systemctl", "start", unit],
                ["systemctl", "stop", unit],
                url,
                auth,
                ["journalctl", "-u", unit, "-n", "20", "--no-pager"],
            )
        if d.service_kind == d.ServiceKind.DOCKER:
            name = d.service_name
            return cls(
                ["docker", "start", name], ["docker", "stop", name], url, auth, ["docker", "logs", "--tail", "20", name]
            )
        return cls(shlex.split(d.start_command), shlex.split(d.stop_command), url, auth)

    def _run(self, argv, timeout=60):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # nosec B603
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"{argv[0]} failed: {exc}") from exc
        if done.returncode:
            raise ServiceError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def is_running(self):
        try:
            OrthancClient(self.url, *self.auth, timeout=2).system()
            return True
        except OrthancAuthFailed:
            return True  # it answers, only not to the portal's account (yet)
        except OrthancError:
            return False

    def start(self, wait=30.0):
        self._run(self.start_argv)
        if wait:
            self.wait_until_up(timeout=wait)

    def stop(self, timeout=30.0):
        self._run(self.stop_argv, timeout=timeout)

    def wait_until_up(self, proc=None, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.2)
        raise ServiceError(f"Orthanc did not answer within {timeout:.0f} s after start")

    def restart(self):
        self.stop()
        self.start(wait=0)

    def log_tail(self, lines=20):
        if not self.log_argv:
            return ""
        try:
            return self._run(self.log_argv, timeout=10)
        except ServiceError as exc:
            return str(exc)

    def log_mark(self):
        return None  # journalctl and docker logs give the last lines only

    def log_since(self, mark):
        return self.log_tail()


def service_for(deployment):
    """The deployment's service control, or None when the portal cannot start or stop it."""
    kinds = deployment.ServiceKind
    if deployment.service_kind == kinds.LOCAL:
        return LocalService.for_deployment(deployment)
    if deployment.service_kind in (kinds.SYSTEMD, kinds.DOCKER, kinds.COMMANDS):
        return CommandService.for_deployment(deployment)
    return None
