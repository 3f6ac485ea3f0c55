"""The rsync target's key is confined by a forced rrsync to the schedule's folder: with the Orthanc
host's key (the deployment's own), a shell command on the target is refused and a path outside the
folder is out of reach. The sshd of these tests holds exactly the line the portal shows."""

import getpass
import hashlib
import subprocess
from html import unescape
from pathlib import Path

import pytest
from django.urls import reverse

from deployments.backups.keys import ensure_identity, fingerprint
from deployments.backups.models import BackupRun, BackupSchedule
from deployments.backups.ssh import NotConfined, Session, SshError, keyscan
from deployments.models import Deployment
from tests.backups.conftest import prepare_target, upload_studies

REFUSED = "rrsync error: SSH_ORIGINAL_COMMAND does not run rsync"


class DeploymentKey:
    """ssh and rsync with the deployment's private key, as an intruder on the Orthanc host has it."""

    def __init__(self, schedule, folder: Path):
        self.schedule = schedule
        self.key = folder / "stolen_key"
        self.key.write_text(schedule.deployment.backup_identity.private_key)
        self.key.chmod(0o600)

    def ssh_options(self):
        return [
            "-F", "/dev/null", "-i", str(self.key), "-p", str(self.schedule.port), "-l", self.schedule.user,
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def ssh(self, *command):
        return subprocess.run(
            ["ssh", *self.ssh_options(), "127.0.0.1", *command],
            capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60, check=False,
        )  # fmt: skip

    def rsync(self, *args):
        rsh = " ".join(["ssh", *self.ssh_options()])
        return subprocess.run(
            ["rsync", "-e", rsh, *map(str, args)],
            capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60, check=False,
        )  # fmt: skip


def tree(root: Path):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.orthanc
def test_with_the_orthanc_host_s_key_rm_ls_and_cat_on_the_target_are_refused_and_every_snapshot_is_still_there(
    backup_setup, tmp_path
):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    first = setup.run()
    upload_studies(setup.orthanc.client(), studies=1, per_study=1, patient="N")
    second = setup.run()
    assert first.state == second.state == BackupRun.State.SUCCEEDED, (first.error, second.error)
    folder = setup.target
    before = tree(folder)
    assert f"{second.snapshot}/manifest.json" in before and len(before) > 10
    stolen = DeploymentKey(setup.schedule, tmp_path)

    attempts = [
        stolen.ssh("rm", "-rf", str(folder)),
        stolen.ssh("rm", "-rf", f"{folder}/{first.snapshot}", f"{folder}/{second.snapshot}"),
        stolen.ssh("ls", "-la", str(folder)),
        stolen.ssh("cat", f"{folder}/{second.snapshot}/manifest.json"),
        stolen.ssh(f"rm -rf {folder}; true"),
        stolen.ssh("sh", "-c", f"rm -rf {folder}"),
    ]

    for proc in attempts:
        assert proc.returncode != 0, proc
        assert REFUSED in proc.stderr, proc.stderr
        assert proc.stdout == ""  # no listing, no manifest: nothing ran
    assert setup.snapshots() == [first.snapshot, second.snapshot]
    assert tree(folder) == before


@pytest.fixture
def schedule(db, sshd):
    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip
    ensure_identity(deployment)
    key = keyscan("127.0.0.1", sshd.port)[0]
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="NAS", host="127.0.0.1", port=sshd.port, user=getpass.getuser(),
        remote_folder=str(sshd.root / "backups"), host_key=key, host_key_fingerprint=fingerprint(key),
    )  # fmt: skip
    prepare_target(sshd, schedule)
    return schedule


def test_a_path_outside_the_folder_is_refused_by_rrsync_and_what_lies_there_is_neither_read_nor_deleted(
    schedule, sshd, tmp_path
):
    outside = sshd.root / "backups" / "other-clinic"  # the next folder up holds another deployment's files
    outside.mkdir()
    (outside / "secret.txt").write_text("not for this key\n")
    stolen = DeploymentKey(schedule, tmp_path)
    empty, fetched = tmp_path / "empty", tmp_path / "fetched"
    empty.mkdir()
    fetched.mkdir()

    up = stolen.rsync("-r", "--list-only", "127.0.0.1:../")
    deleting = stolen.rsync("-r", "--delete", f"{empty}/", "127.0.0.1:../other-clinic/")
    absolute = stolen.rsync("-a", f"127.0.0.1:{outside}/secret.txt", f"{fetched}/")

    for proc in (up, deleting):
        assert proc.returncode != 0 and "rrsync error: do not use .. in arg" in proc.stderr, proc.stderr
    # An absolute path is read inside the folder (rrsync anchors it there), where no such file is.
    assert absolute.returncode != 0 and "No such file or directory" in absolute.stderr, absolute.stderr
    assert "not for this key" not in up.stdout
    assert list(fetched.iterdir()) == []
    assert (outside / "secret.txt").read_text() == "not for this key\n"
    with Session(schedule) as ssh:  # the portal's own calls are held to the folder the same way
        with pytest.raises(SshError, match=r"refused the request \(rrsync\): do not use \.\."):
            ssh.read("../other-clinic/secret.txt")
        assert ssh.read(f"{outside}/secret.txt") is None


def test_the_schedule_page_shows_the_exact_forced_rrsync_line_the_target_holds(admin_client, schedule, sshd):
    public_key = schedule.deployment.backup_identity.public_key
    folder = f"{sshd.root}/backups/clinic"
    line = f'command="/usr/bin/rrsync -no-lock {folder}",restrict {public_key}'

    page = unescape(admin_client.get(reverse("backups:schedule", args=[schedule.pk])).content.decode())

    assert f'id="rsync-authorized-keys-line">{line}</pre>' in page
    assert f"mkdir -p {folder}" in page
    assert sshd.authorized_keys.read_text() == line + "\n"  # every backup test runs with this line


def test_a_key_that_still_opens_a_shell_is_refused_before_anything_is_written(admin_client, schedule, sshd):
    # The line of portal versions before rrsync: the key could run anything.
    sshd.authorized_keys.write_text(f"restrict {schedule.deployment.backup_identity.public_key}\n")

    with pytest.raises(NotConfined, match="opens a shell"):
        with Session(schedule):
            pass
    page = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert 'id="login-error"' in page and "opens a shell" in page
    assert f'command="/usr/bin/rrsync -no-lock {schedule.target_folder}",restrict <key>' in page
    assert list(Path(schedule.target_folder).iterdir()) == []


def test_test_connection_names_a_missing_folder_and_how_to_make_it(admin_client, schedule, sshd):
    Path(schedule.target_folder).rmdir()

    page = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert 'id="login-error"' in page
    assert f"the folder {schedule.target_folder} does not exist on the backup target" in page
    assert f"(mkdir -p {schedule.target_folder})" in page


def test_only_an_unfinished_snapshot_folder_is_removed_and_the_deletion_touches_nothing_else(schedule):
    folder = Path(schedule.target_folder)
    for name in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        (folder / name / "storage" / "ab").mkdir(parents=True)
        (folder / name / "storage" / "ab" / "file").write_text(name)
    (folder / "20260102T000000Z" / "manifest.json").write_text("{}")  # finished: its manifest came last
    (folder / "notes.txt").write_text("the administrator's\n")

    with Session(schedule) as ssh:
        finished, unfinished = ssh.snapshot_folders()
        removed = ssh.remove_unfinished(["20260101T000000Z", "20260102T000000Z"])
        with pytest.raises(ValueError, match="not a folder name"):
            ssh.delete(["*"])

    assert finished == {"20260102T000000Z"} and unfinished == {"20260101T000000Z", "20260103T000000Z"}
    assert removed == ["20260101T000000Z"]
    assert sorted(p.name for p in folder.iterdir()) == ["20260102T000000Z", "20260103T000000Z", "notes.txt"]
    assert (folder / "20260103T000000Z" / "storage" / "ab" / "file").read_text() == "20260103T000000Z"
