"""SSH and rsync to a backup target: the only module that talks to the target.

Every program runs from an argument list, never a local shell. One connection per session: a
ControlMaster authenticates with the deployment's key, written 0600 into a private temporary
folder and deleted as soon as the master is up; rsync (and borg) calls then ride that connection.
The target's host key is pinned and checked strictly (StrictHostKeyChecking=yes).

On an rsync target the key's authorized_keys line forces rrsync, confined to the schedule's folder:
the portal runs no shell command there, only rsync, with paths relative to that folder (listing,
reading a manifest, checksums, deletions are all rsync). A session refuses a key that still opens a
shell: the relative paths would then land in the user's home.
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
# Debian's rsync package ships it (12 and 13). -no-lock: the portal reads a target while a run writes
# it (a drill, the sample check, Test connection, the run's own listing and checksum streams); the
# lock would refuse them, and rrsync itself calls its lock a convenience, not a security control.
RRSYNC = "/usr/bin/rrsync"
# A shell prints it back; rrsync refuses it as "does not run rsync".
PROBE = "orthanc-portal-confinement-probe"
# What the portal's probe folder is called while Test connection checks that the folder is writable.
WRITE_PROBE = ".orthanc-portal-write-test"
# Names the portal deletes on a target: one path component, no rsync wildcard.
DELETABLE_RE = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._+@-]+$")
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


class NotConfined(SshError):
    pass


def rrsync_command(schedule) -> str:
    # The folder is validated (letters, digits and . _ - + @ / only): nothing here is shell syntax.
    return f"{RRSYNC} -no-lock {schedule.target_folder}"


def authorized_keys_line(schedule, public_key) -> str:
    """The exact line for the target user's ~/.ssh/authorized_keys: the key runs rsync, confined to
    the schedule's folder, and nothing else."""
    return f'command="{rrsync_command(schedule)}",restrict {public_key}'


def folder_missing(schedule) -> SshError:
    return SshError(
        f"the folder {schedule.target_folder} does not exist on the backup target {schedule.host}:{schedule.port}: "
        f"create it there as {schedule.user} (mkdir -p {schedule.target_folder}); the key is confined to it and "
        "cannot create it"
    )


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
    if "Restricted directory does not exist" in stderr:
        return folder_missing(schedule)
    if "rrsync error:" in stderr:  # before the "connection unexpectedly closed" that follows it
        line = next(x for x in stderr.splitlines() if "rrsync error:" in x)
        return SshError(f"the backup target {label} refused the request (rrsync): {line.split('error:', 1)[1].strip()}")
    if "Permission denied (publickey" in stderr:
        return SshError(
            f"{label} refused the deployment's SSH key for user {schedule.user}: add the authorized_keys line "
            "shown on the schedule's page to that user's ~/.ssh/authorized_keys"
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
            if not self.schedule.is_borg:
                self._check_confined()
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

    def _check_confined(self):
        """The key must reach rrsync confined to the schedule's folder, not a shell: a shell would
        echo the probe back (and every relative path would land in the user's home)."""
        s = self.schedule
        try:
            proc = subprocess.run(  # nosec B603: argument list, fixed remote words
                [SSH, *self._client_options(), s.host, "echo", PROBE],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TargetUnreachable(f"the backup target {s.host}:{s.port} did not answer within 60 s") from exc
        if PROBE in proc.stdout:
            raise NotConfined(
                f"the deployment's key opens a shell on {s.host}:{s.port} for {s.user}: nothing is written until it is "
                "confined. Replace its line in that user's ~/.ssh/authorized_keys by the one shown on the schedule's "
                f"page: {authorized_keys_line(s, '<key>')}"
            )
        if "does not run rsync" in proc.stderr:
            return  # rrsync answered, and refused the shell command
        if "Restricted directory does not exist" in proc.stderr:
            raise folder_missing(s)
        if proc.returncode == 255:  # ssh's own failure (the connection), not the forced command's
            raise classify(proc.stderr, s)
        raise NotConfined(
            f"the deployment's key on {s.host}:{s.port} does not run rrsync confined to {s.target_folder} "
            f"({_last_lines(proc.stderr, 2) or 'no answer'}): put the line shown on the schedule's page into "
            f"{s.user}'s ~/.ssh/authorized_keys"
        )

    # ------------------------------------------------------------------ rsync through rrsync

    def remote(self, path="") -> str:
        """``path`` relative to the confined folder ("" is the folder itself); rrsync reads a
        leading / as that folder too, which is how --link-dest names a snapshot."""
        host = self.schedule.host
        return f"[{host}]:{path}" if ":" in host else f"{host}:{path}"

    def _rsync(self, args, timeout=None, ok=(0,)):
        self._alive()
        rsh = shlex.join([SSH, *self._client_options()])
        try:
            proc = subprocess.run(  # nosec B603: argument list
                [RSYNC, "--timeout=120", "-e", rsh, *map(str, args)],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SshError(f"rsync did not finish within {timeout:.0f} s") from exc
        if proc.returncode not in ok:
            raise classify(proc.stderr or f"rsync exited with status {proc.returncode}", self.schedule)
        return proc

    def rsync(self, sources, destination, options=(), timeout=None) -> dict:
        """rsync -a with --stats; returns the parsed statistics. Sources/destination are local
        paths or ``self.remote(path)``."""
        bwlimit = [f"--bwlimit={self.schedule.bandwidth_limit}"] if self.schedule.bandwidth_limit else []
        args = ["-a", "--numeric-ids", "--stats", *bwlimit, *options, *sources, destination]
        return parse_stats(self._rsync(args, timeout=timeout).stdout)

    def listing(self, path="", filters=(), recursive=False, timeout=300) -> list[tuple[str, str]]:
        """(kind, name) of what ``path`` holds on the target, names relative to it; kind is the
        first letter of the mode ("d", "-", "l")."""
        out = self._rsync(
            ["--list-only", *(["-r"] if recursive else []), *filters, self.remote(path)], timeout=timeout
        ).stdout
        entries = []
        for line in out.splitlines():
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[4] != ".":
                entries.append((parts[0][0], parts[4]))
        return entries

    def read(self, path, timeout=300) -> bytes | None:
        """One file of the target (rsync into a private temporary folder); None when it is not there."""
        with tempfile.TemporaryDirectory(prefix="portal-read-") as tmp:
            proc = self._rsync(["-t", self.remote(path), f"{tmp}/"], timeout=timeout, ok=range(256))
            if proc.returncode == 0:
                return (Path(tmp) / Path(path).name).read_bytes()
        # rsync's own "link_stat … failed", or rrsync's refusal to open a path that is not there.
        missing = ("link_stat", "post-realpath open failed")
        if "No such file or directory" in proc.stderr and any(m in proc.stderr for m in missing):
            return None
        raise classify(proc.stderr or f"rsync exited with status {proc.returncode}", self.schedule)

    def delete(self, names, under="", timeout=3600):
        """Remove the folders ``names`` directly under ``under`` on the target: an rsync of an empty
        folder with --delete, its filters selecting exactly those folders (everything else is
        excluded, so protected)."""
        for name in names:
            if not DELETABLE_RE.match(name):
                raise ValueError(f"not a folder name the portal deletes: {name!r}")
        if not names:
            return
        with tempfile.TemporaryDirectory(prefix="portal-empty-") as empty:
            # -r without -a: the folder's own mode and time stay as they are.
            self._rsync(
                ["-r", "--delete", *(f"--include=/{n}/***" for n in names), "--exclude=*", f"{empty}/",
                 self.remote(f"{under}/" if under else "")],
                timeout=timeout,
            )  # fmt: skip

    def md5s(self, folder, names, timeout=3600) -> dict[str, str]:
        """MD5 of the files ``names`` (relative to ``folder``), computed on the target: a dry-run
        rsync --checksum (MD5) into an empty folder sends the file list with each file's checksum
        and no data. A file that is missing or unreadable there is absent from the result."""
        with (
            tempfile.TemporaryDirectory(prefix="portal-empty-") as empty,
            tempfile.NamedTemporaryFile("w", prefix="portal-names-") as listing,
        ):
            listing.write("".join(f"{n}\n" for n in names))
            listing.flush()
            # 23: some files were not there; they are simply not in the sums.
            out = self._rsync(
                ["-r", "--dry-run", "--checksum", "--checksum-choice=md5", "--out-format=%i %C %n",
                 f"--files-from={listing.name}", self.remote(f"{folder}/"), f"{empty}/"],
                timeout=timeout,
                ok=(0, 23),
            ).stdout  # fmt: skip
        return parse_checksums(out)

    def snapshot_folders(self) -> tuple[set[str], set[str]]:
        """(folders with a manifest.json, folders without) at the top of the confined folder. A
        snapshot's manifest is written last: a folder without one is unfinished."""
        entries = self.listing("", ["--include=/*/", "--include=/*/manifest.json", "--exclude=*"], recursive=True)
        folders = {n for kind, n in entries if kind == "d" and "/" not in n}
        finished = {n.split("/")[0] for kind, n in entries if kind == "-" and n.count("/") == 1}
        return folders & finished, folders - finished

    def remove_unfinished(self, names) -> list[str]:
        """Remove those of ``names`` that are unfinished (no manifest.json); a finished one stays."""
        _, unfinished = self.snapshot_folders()
        doomed = sorted(n for n in names if n in unfinished)
        self.delete(doomed)
        return doomed

    def check_writable(self):
        """A probe folder written and removed again, through rrsync like every run."""
        with tempfile.TemporaryDirectory(prefix="portal-probe-") as tmp:
            (Path(tmp) / WRITE_PROBE).mkdir()
            (Path(tmp) / WRITE_PROBE / "probe").write_text("orthanc-portal\n")
            self._rsync(["-r", f"{tmp}/{WRITE_PROBE}", self.remote()], timeout=120)
        self.delete([WRITE_PROBE])


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


def parse_checksums(out) -> dict[str, str]:
    """rsync's "%i %C %n" lines of regular files: {name: MD5}."""
    sums = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0][1:2] == "f" and re.fullmatch(r"[0-9a-f]{32}", parts[1]):
            sums[parts[2]] = parts[1]
    return sums


def offered_key(schedule) -> dict:
    """What Test connection shows before pinning: the preferred host key and its fingerprint."""
    keys = keyscan(schedule.host, schedule.port)
    key = keys[0]
    return {
        "key": key,
        "fingerprint": fingerprint(key),
        "changed": bool(schedule.host_key) and schedule.host_key not in keys,
    }
