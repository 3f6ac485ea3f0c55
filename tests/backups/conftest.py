"""Fixtures of the backup tests: a real sshd on 127.0.0.1 as the backup target, and a real
Orthanc holding real DICOM instances, wired to a schedule that points at that sshd."""

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from deployments.backups.keys import ensure_identity
from deployments.backups.models import BackupSchedule
from deployments.backups.run import backup_run, backup_start
from deployments.backups.ssh import keyscan
from tests.conftest import free_port, require_binary
from tests.dicomfiles import make_instance
from tests.pgcluster import started_for_test

SSHD = "/usr/sbin/sshd"


class SshServer:
    """sshd -D -e -f <own config>: throwaway host key, key-only login, its own authorized_keys."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.root = base / "target"
        self.root.mkdir(parents=True)
        self.authorized_keys = base / "authorized_keys"
        self.authorized_keys.write_text("")
        self.authorized_keys.chmod(0o600)
        self.host_key = base / "host_ed25519_key"
        self.config = base / "sshd_config"
        self.log = base / "sshd.log"
        self.proc = None
        self.new_host_key()
        self.config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PidFile none",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    # pytest's tmp folders are not laid out the way sshd's strict checks want.
                    "StrictModes no",
                    "MaxStartups 50",
                    "MaxSessions 50",
                    "",
                ]
            )
        )

    def new_host_key(self):
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)

    def fingerprint(self):
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", f"{self.host_key}.pub"], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[1]

    def authorize(self, line):
        with open(self.authorized_keys, "a") as f:
            f.write(line + "\n")

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd exited at start:\n{self.log.read_text()}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"sshd did not listen on {self.port}:\n{self.log.read_text()}", pytrace=False)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def sshd(tmp_path):
    require_binary(SSHD, "openssh-server")
    require_binary("ssh", "openssh-client")
    require_binary("rsync", "rsync")
    require_binary("/usr/bin/rrsync", "rsync")  # the forced command of every rsync target
    # The Debian package creates it at boot (systemd tmpfiles); a container may lack it.
    if not Path("/run/sshd").is_dir():
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError:
            pytest.fail("sshd needs /run/sshd: run 'mkdir -p -m 0755 /run/sshd' as root", pytrace=False)
    server = SshServer(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


def prepare_target(sshd, schedule):
    """What the target's administrator does: the line the schedule's page shows goes into
    authorized_keys, so every test runs with the key confined (rrsync for an rsync target); an rsync
    target's folder is made beforehand (rrsync cannot make the folder it confines to)."""
    if schedule.kind == BackupSchedule.Kind.RSYNC:
        Path(schedule.target_folder).mkdir(parents=True, exist_ok=True)
    line = schedule.authorized_keys_line()
    if line:
        sshd.authorize(line)


def upload_studies(client, studies=2, per_study=3, size=64, patient="P"):
    """Real DICOM instances into a real Orthanc; returns the study UIDs."""
    from pydicom.uid import generate_uid

    uids = []
    for s in range(studies):
        study_uid = generate_uid()
        series_uid = generate_uid()
        for n in range(per_study):
            client.upload(
                make_instance(
                    patient_id=f"{patient}{s}",
                    study_uid=study_uid,
                    series_uid=series_uid,
                    instance_number=n + 1,
                    size=size,
                )
            )
        uids.append(study_uid)
    return uids


class BackupSetup:
    def __init__(self, orthanc, sshd, deployment, schedule):
        self.orthanc, self.sshd, self.deployment, self.schedule = orthanc, sshd, deployment, schedule

    @property
    def target(self) -> Path:
        return Path(self.schedule.target_folder)

    def snapshots(self):
        if not self.target.exists():
            return []
        return sorted(p.name for p in self.target.iterdir())

    def run(self):
        run = backup_start(self.schedule.pk)
        assert run is not None
        return backup_run(run.pk)

    def storage_bytes(self):
        storage = Path(self.deployment.storage_dir)
        return sum(p.stat().st_size for p in storage.rglob("*") if p.is_file() and not p.name.startswith("index"))


@pytest.fixture
def backup_setup(orthanc_factory, sshd, db, tmp_path):
    """A started Orthanc saved as a deployment, its key authorized on the sshd, a schedule with
    the sshd's host key pinned (as Test connection + confirm leave it)."""

    def make(remote_folder=None, slug="clinic", orthanc_fields=None, **schedule_fields):
        orthanc = orthanc_factory(slug=slug, **(orthanc_fields or {}))
        deployment = orthanc.save_deployment()
        ensure_identity(deployment)
        key = keyscan("127.0.0.1", sshd.port)[0]
        from deployments.backups.keys import fingerprint

        schedule = BackupSchedule.objects.create(
            deployment=deployment,
            name="Nightly to the test target",
            host="127.0.0.1",
            port=sshd.port,
            user=getpass.getuser(),
            remote_folder=str(remote_folder or sshd.root / "backups"),
            host_key=key,
            host_key_fingerprint=fingerprint(key),
            **schedule_fields,
        )
        prepare_target(sshd, schedule)
        return BackupSetup(orthanc, sshd, deployment, schedule)

    return make


@pytest.fixture(autouse=True)
def alert_recipients(settings):
    settings.ADMINS_EMAILS = ["it@clinic.test"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def postgres_server():
    """A throwaway PostgreSQL cluster for Orthanc's PostgreSQL index."""
    if not Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so").exists():
        pytest.fail("Orthanc's PostgreSQL plugin is missing: apt-get install orthanc-postgresql", pytrace=False)
    cluster = started_for_test("orthanc", password=True, prefix="portal-test-pg-")
    try:
        cluster.create_db("orthanc")
        yield {"port": cluster.port, "user": "orthanc", "password": cluster.password, "database": "orthanc"}
    finally:
        cluster.remove()
