"""BorgBackup over SSH: the only module that speaks to a Borg repository.

The repository is encrypted client-side (repokey): the target stores ciphertext only, so the
Orthanc passwords in the configuration never reach it in clear. The deployment's key is confined on
the target by a forced command, ``borg serve --append-only --restrict-to-path <folder>``: the
Orthanc host can add archives but not erase history (a delete is only logical and leaves every
segment in place; the target's administrator can roll it back).

borg runs from argument lists; the passphrase and the SSH command reach it through the environment
of its own process only. SSH rides the pinned, authenticated connection of ``ssh.Session``.
"""

import json
import os
import secrets
import shlex
import subprocess  # nosec B404: argument lists only
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from portal.files import atomic_write

from .ssh import SSH, Session

BORG = "borg"
ENCRYPTION = "repokey"


class BorgError(Exception):
    """A sentence for the staff about what went wrong with the Borg repository."""


# Written into a local-disk target's folder at set-up: its absence means the disk is not there.
MARKER = ".orthanc-portal-target"


def check_local_target(schedule):
    """Refuse, before anything is written, a local-disk target whose disk is not there: an
    unplugged disk leaves an empty folder on the root disk, which a backup would fill."""
    folder = Path(schedule.remote_folder)
    if schedule.mount_point:
        if not os.path.ismount(schedule.mount_point):
            raise BorgError(
                f"the backup disk is not mounted at {schedule.mount_point}: plug it in or mount it, then run again "
                "(nothing was written)"
            )
        mount = Path(schedule.mount_point).resolve()
        if folder.resolve() != mount and mount not in folder.resolve().parents:
            raise BorgError(f"the backup folder {folder} is not on the disk mounted at {mount}")
    if not (folder / MARKER).is_file():
        raise BorgError(
            f"{folder} has no {MARKER}: the backup disk is unplugged, or it is not the disk set up for this "
            "schedule (Test connection sets up a new disk); nothing was written"
        )


def setup_local_target(schedule) -> str:
    """Set a disk up as this schedule's target: the folder and its marker (only on a mounted disk
    when a mount point is configured)."""
    if schedule.mount_point and not os.path.ismount(schedule.mount_point):
        raise BorgError(f"the backup disk is not mounted at {schedule.mount_point}: plug it in or mount it first")
    folder = Path(schedule.remote_folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = folder / MARKER
    if not marker.exists():
        atomic_write(marker, f"orthanc-portal backup target of schedule {schedule.pk}\n".encode(), mode=0o600)
    return f"{folder} is set up as the backup target"


def serve_command(schedule) -> str:
    # The folder is validated (letters, digits and . _ - + @ / only): nothing here is shell syntax.
    return f"borg serve --append-only --restrict-to-path {schedule.target_folder}"


def authorized_keys_line(schedule, public_key) -> str:
    """The exact line to paste into the target user's ~/.ssh/authorized_keys."""
    return f'command="{serve_command(schedule)}",restrict {public_key}'


def ensure_passphrase(schedule) -> str:
    """The repository's passphrase, made once and kept encrypted at rest (Fernet field)."""
    from .models import BackupSchedule

    if not schedule.borg_passphrase:
        # Made once, whatever stale copy of the schedule asks: a second passphrase would lock us out.
        BackupSchedule.objects.filter(pk=schedule.pk, borg_passphrase="").update(
            borg_passphrase=secrets.token_urlsafe(32)
        )
        schedule.refresh_from_db(fields=["borg_passphrase", "borg_key", "borg_key_exported_at"])
    return schedule.borg_passphrase


# borg's report of an unexpected error ends with its version and environment: not the reason.
NOISE = ("Borg: ", "PID: ", "sys.argv: ", "SSH_ORIGINAL_COMMAND: ", "Platform: ", "Linux: ", "Traceback", "  ")


def reason(stderr, n=3):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    lines = [line.removeprefix("Remote: ").removeprefix("Borg server: ") for line in lines]
    lines = [line for line in lines if not line.startswith(NOISE) and not line.startswith("File ")]
    return "\n".join(lines[-n:])


class Repository:
    """The schedule's Borg repository for the length of a ``with`` block (one SSH connection)."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.session = None if schedule.is_local else Session(schedule)

    def __enter__(self):
        if self.session is None:
            check_local_target(self.schedule)
        else:
            self.session.__enter__()
        return self

    def __exit__(self, *exc):
        if self.session is not None:
            self.session.__exit__(*exc)

    @property
    def url(self):
        s = self.schedule
        if s.is_local:
            return s.target_folder
        host = f"[{s.host}]" if ":" in s.host else s.host
        return f"ssh://{host}{s.target_folder}"

    def _env(self):
        s = self.schedule
        base = Path(settings.VAR_DIR) / "borg" / f"schedule-{s.pk}"  # cache and security records
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(base),
            "BORG_BASE_DIR": str(base),
            "BORG_REPO": self.url,
            "BORG_PASSPHRASE": ensure_passphrase(s),
            # Never answer borg's questions with yes: a moved or unencrypted repository is an error.
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
        }
        if self.session is not None:
            env["BORG_RSH"] = shlex.join([SSH, *self.session._client_options()])
        return env

    def run(self, *args, cwd=None, timeout=3600, warnings_ok=False) -> str:
        if self.session is not None:
            self.session._alive()
        try:
            proc = subprocess.run(  # nosec B603: argument list; secrets in the environment only
                [BORG, *args],
                env=self._env(),
                cwd=cwd,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BorgError("borg is not installed on the Orthanc host: apt-get install borgbackup") from exc
        except subprocess.TimeoutExpired as exc:
            raise BorgError(f"borg {args[0]} did not finish within {timeout} s") from exc
        if proc.returncode == 0 or (proc.returncode == 1 and warnings_ok):
            return proc.stdout
        self.stderr = proc.stderr
        what = "warned" if proc.returncode == 1 else "failed"
        raise BorgError(f"borg {args[0]} {what} on {self.url}: {reason(proc.stderr) or proc.returncode}")

    # ------------------------------------------------------------------ repository

    def ensure(self):
        """Make the encrypted repository on the first run, and keep its key (encrypted) in the portal."""
        try:
            self.run("info", "--json", timeout=300)
        except BorgError as exc:
            if "does not exist" not in str(exc) and "is not a valid repository" not in str(exc):
                raise
            self.run("init", f"--encryption={ENCRYPTION}", "--make-parent-dirs", timeout=300)
        if not self.schedule.borg_key:
            self.schedule.borg_key = self.run("key", "export", timeout=300)
            self.schedule.save(update_fields=["borg_key"])

    def archives(self) -> list[str]:
        return [a["name"] for a in json.loads(self.run("list", "--json", timeout=300))["archives"]]

    def create(self, name, paths, cwd, excludes=(), comment="") -> dict:
        out = self.run(
            "create",
            "--json",
            "--compression=lz4",
            # borg expands {placeholders} in a comment: braces doubled are kept as they are.
            "--comment=" + comment.replace("{", "{{").replace("}", "}}"),
            *(f"--exclude={pattern}" for pattern in excludes),
            f"::{name}",
            *paths,
            cwd=cwd,
        )
        return json.loads(out)["archive"]["stats"]

    def comment(self, name) -> str:
        return json.loads(self.run("info", "--json", f"::{name}", timeout=300))["archives"][0]["comment"]

    def extract(self, name, into: Path, paths=()):
        self.run("extract", "--numeric-ids", f"::{name}", *paths, cwd=into)


def try_login(schedule) -> dict:
    """Test connection: the key is accepted by the forced ``borg serve`` and the repository opens
    (or does not exist yet: the first run makes it)."""
    try:
        if schedule.is_local:
            try:
                check_local_target(schedule)
            except BorgError:
                setup_local_target(schedule)  # Test connection of a local disk sets it up
        with Repository(schedule) as repo:
            repo.run("info", "--json", timeout=120)
        return {"ok": True, "free": None}
    except BorgError as exc:
        if "does not exist" in str(exc):
            return {"ok": True, "free": None, "note": "the repository does not exist yet: the first run makes it"}
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # an SshError from the connection
        return {"ok": False, "error": str(exc)}


def export_key(schedule) -> str:
    """The repository key, given to the admin once for safekeeping (with the passphrase, it opens
    the repository when the portal is lost). A second export is refused."""
    from .models import BackupSchedule

    if not schedule.borg_key:
        raise BorgError("the repository has no key yet: it is made by the first backup run")
    if not BackupSchedule.objects.filter(pk=schedule.pk, borg_key_exported_at__isnull=True).update(
        borg_key_exported_at=timezone.now()
    ):
        raise BorgError(f"the repository key was already exported on {schedule.borg_key_exported_at:%Y-%m-%d %H:%M}")
    return f"{schedule.borg_key.strip()}\nPassphrase: {schedule.borg_passphrase}\n"
