"""SSH and rsync to a backup target: the only module that talks to the target.

Every program runs from an argument list, never a local shell. One connection per session: a
ControlMaster authenticates with the deployment's key, written 0600 into a private temporary
folder and deleted as soon as the master is up; ssh and rsync calls then ride that connection.
The target's host key is pinned and checked strictly (StrictHostKeyChecking=yes).
"""

import re
import shlex
import shutil
import subprocess  # nosec B404: argument lists only
import tempfile
import time
from pathlib import Path

from portal.files import atomic_write

from .keys import fingerprint

SSH, RSYNC, KEYSCAN = "ssh", "rsync", "ssh-keyscan"
# The pinned key is filed under this alias, so the check holds whatever spelling the address has.
ALIAS = "portal-backup-target"
KEY_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
UNREACHABLE = (
    "Connection refused",
    "Connection timed out",
    "No route to host",
    "Could not resolve hostname",
    "Network is unreachable",
    "Connection closed",
    "Connection reset",
    "Broken pipe",
    "connection unexpectedly closed",
)


class SshError(Exception):
    """A sentence for the staff about what went wrong with the target."""


class HostKeyChanged(SshError):
    pass


class HostKeyNotPinned(SshError):
    pass


class TargetUnreachable(SshError):
    pass


class TargetDiskFull(SshError):
    pass


def _last_lines(text, n=6):
    return "\n".join(line for line in text.strip().splitlines()[-n:])


def classify(stderr: str, schedule) -> SshError:
    label = f"{schedule.host}:{schedule.port}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
        return HostKeyChanged(
            f"host key changed: {label} no longer presents the pinned key {schedule.host_key_fingerprint}. "
            "The backup is refused. If the server was reinstalled, check its new fingerprint with its "
            "administrator and pin it again with Test connection."
        )
    if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
        return TargetDiskFull(f"the backup target's disk is full (No space left on device) at {label}")
    if "Permission denied (publickey" in stderr:
        return SshError(
            f"{label} refused the deployment's SSH key for user {schedule.user}: add the authorized_keys line "
            "shown on the deployment's backup key page to that user's ~/.ssh/authorized_keys"
        )
    if "command not found" in stderr and "rsync" in stderr:
        return SshError(f"rsync is not installed on the backup target {label}")
    for pattern in UNREACHABLE:
        if pattern in stderr:
            return TargetUnreachable(f"cannot reach the backup target {label}: {_last_lines(stderr, 2)}")
    return SshError(f"the backup target {label} answered with an error: {_last_lines(stderr)}")


def keyscan(host, port, timeout=5) -> list[str]:
    """The host keys the server offers, as '<type> <base64>' lines, preferred type first."""
    try:
        proc = subprocess.run(  # nosec B603: fixed program, validated host and port
            [KEYSCAN, "-T", str(timeout), "-p", str(port), host],
            capture_output=True,
            text=True,
            timeout=timeout * 3 + 5,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TargetUnreachable(f"{host}:{port} did not answer within {timeout} s") from exc
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append(f"{parts[1]} {parts[2]}")
    if not keys:
        raise TargetUnreachable(
            f"no SSH server answered at {host}:{port}: {_last_lines(proc.stderr, 2) or 'no host key'}"
        )
    order = {t: i for i, t in enumerate(KEY_PREFERENCE)}
    return sorted(keys, key=lambda k: order.get(k.split()[0], 99))


def host_key_algorithms(key_line):
    kind = key_line.split()[0]
    return "rsa-sha2-512,rsa-sha2-256" if kind == "ssh-rsa" else kind


class Session:
    """One authenticated connection to a schedule's target for the length of a ``with`` block."""

    def __init__(self, schedule, connect_timeout=10):
        self.schedule = schedule
        if not schedule.host_key:
            raise HostKeyNotPinned(
                f"the host key of {schedule.host}:{schedule.port} is not pinned yet: use Test connection "
                "on the schedule's page, check the fingerprint and pin it"
            )
        self.identity = getattr(schedule.deployment, "backup_identity", None)
        if self.identity is None:
            raise SshError(f"{schedule.deployment} has no backup SSH key yet: create it on the backup key page")
        self.connect_timeout = connect_timeout
        self.dir = None
        self.master = None

    # ------------------------------------------------------------------ connection

    def _options(self):
        s = self.schedule
        return [
            "-F", "/dev/null",
            "-p", str(s.port),
            "-l", s.user,
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlias={ALIAS}",
            "-o", f"HostKeyAlgorithms={host_key_algorithms(s.host_key)}",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", f"ControlPath={self.dir / 'cm'}",
        ]  # fmt: skip

    def _client_options(self):
        return [*self._options(), "-o", "ControlMaster=no"]

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="portal-ssh-"))  # 0700: ours alone
        try:
            self._connect()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _connect(self):
        atomic_write(self.dir / "known_hosts", f"{ALIAS} {self.schedule.host_key}\n".encode(), mode=0o600)
        key = self.dir / "id_ed25519"
        atomic_write(key, self.identity.private_key.encode(), mode=0o600)
        log_path = self.dir / "master.log"
        try:
            with open(log_path, "wb") as log:
                self.master = subprocess.Popen(  # nosec B603: argument list, validated values
                    [SSH, *self._options(), "-i", str(key), "-o", "ControlMaster=yes", "-N", self.schedule.host],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            deadline = time.monotonic() + self.connect_timeout + 5
            while not (self.dir / "cm").exists():
                if self.master.poll() is not None:
                    raise classify(log_path.read_text(errors="replace"), self.schedule)
                if time.monotonic() > deadline:
                    raise TargetUnreachable(
                        f"cannot reach the backup target {self.schedule.host}:{self.schedule.port}: "
                        f"no connection within {self.connect_timeout} s"
                    )
                time.sleep(0.02)
        finally:
            key.unlink(missing_ok=True)  # the master has authenticated: the key is no longer needed on disk

    def __exit__(self, *exc):
        self._cleanup()

    def _cleanup(self):
        if self.master is not None and self.master.poll() is None:
            self.master.terminate()
            try:
                self.master.wait(5)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait(5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _alive(self):
        if self.master is None or self.master.poll() is not None:
            text = (self.dir / "master.log").read_text(errors="replace") if self.dir else ""
            error = classify(text, self.schedule) if text.strip() else None
            raise TargetUnreachable(
                f"the SSH connection to {self.schedule.host}:{self.schedule.port} was lost"
                + (f": {error}" if error else "")
            )

    # ------------------------------------------------------------------ commands

    def run(self, *args, timeout=120, input=None) -> str:
        """Run one remote command; each argument is quoted for the remote shell."""
        return self.run_all([args], timeout=timeout, input=input)

    def run_all(self, commands, timeout=120, input=None, check=True):
        """Run remote commands in one round trip, joined by && (the first failure stops the rest).
        Every argument is quoted: nothing from a form reaches the remote shell as syntax.
        Returns stdout; with ``check=False``, (stdout, the error as an SshError or None)."""
        self._alive()
        script = " && ".join(" ".join(shlex.quote(str(a)) for a in args) for args in commands)
        try:
            proc = subprocess.run(  # nosec B603: argument list; remote arguments quoted above
                [SSH, *self._client_options(), self.schedule.host, script],
                capture_output=True,
                input=input if input is not None else b"",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TargetUnreachable(f"the backup target did not finish '{commands[0][0]}' within {timeout} s") from exc
        stderr, stdout = proc.stderr.decode(errors="replace"), proc.stdout.decode(errors="replace")
        error = None
        if proc.returncode != 0:
            error = classify(stderr or f"{commands[-1][0]} exited with status {proc.returncode}", self.schedule)
        if not check:
            return stdout, error
        if error:
            raise error
        return stdout

    def free_bytes(self, path) -> int | None:
        lines = self.run("df", "-Pk", "--", path).splitlines()
        try:
            return int(lines[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            return None

    def remote(self, path) -> str:
        host = self.schedule.host
        return f"[{host}]:{path}" if ":" in host else f"{host}:{path}"

    def rsync(self, sources, destination, options=(), timeout=None) -> dict:
        """rsync -a with --stats; returns the parsed statistics. Sources/destination are local
        paths or ``self.remote(path)``."""
        self._alive()
        rsh = shlex.join([SSH, *self._client_options()])
        bwlimit = [f"--bwlimit={self.schedule.bandwidth_limit}"] if self.schedule.bandwidth_limit else []
        command = [RSYNC, "-a", "--numeric-ids", "--stats", "--timeout=120", "-e", rsh, *bwlimit, *options]
        try:
            proc = subprocess.run(  # nosec B603: argument list
                [*command, *map(str, sources), str(destination)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SshError(f"rsync did not finish within {timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise classify(proc.stderr or f"rsync exited with status {proc.returncode}", self.schedule)
        return parse_stats(proc.stdout)


def _number(text, label):
    match = re.search(rf"^{label}: ([\d,]+)", text, re.M)
    return int(match.group(1).replace(",", "")) if match else 0


def parse_stats(text) -> dict:
    files = re.search(r"^Number of files: [\d,]+ \((?:[^)]*?)reg: ([\d,]+)", text, re.M)
    return {
        "files": int(files.group(1).replace(",", "")) if files else 0,
        "size": _number(text, "Total file size"),
        "transferred_files": _number(text, "Number of regular files transferred"),
        "wire_bytes": _number(text, "Total bytes sent") + _number(text, "Total bytes received"),
    }


def offered_key(schedule) -> dict:
    """What Test connection shows before pinning: the preferred host key and its fingerprint."""
    keys = keyscan(schedule.host, schedule.port)
    key = keys[0]
    return {
        "key": key,
        "fingerprint": fingerprint(key),
        "changed": bool(schedule.host_key) and schedule.host_key not in keys,
    }
