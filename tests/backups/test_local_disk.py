"""The local-disk target (a mounted USB disk or NAS folder): a Borg repository on the disk, and a
run that refuses to start, writing nothing, when the disk is not there."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from deployments.backups.borg import MARKER, setup_local_target
from deployments.backups.drill import backup_verify
from deployments.backups.models import BackupRun, BackupSchedule
from tests.backups.conftest import upload_studies
from tests.conftest import require_binary

pytestmark = pytest.mark.orthanc
# A real mount point on every machine the suite runs on (the Debian matrix bind-mounts it too).
MOUNTED = "/dev/shm"


def every_file_under(root: Path):
    return sorted(str(p) for p in root.rglob("*"))


@pytest.fixture
def disk():
    require_binary("borg", "borgbackup")
    assert os.path.ismount(MOUNTED), f"{MOUNTED} is not a mount point here: mount a tmpfs there"
    folder = Path(tempfile.mkdtemp(prefix="portal-test-disk-", dir=MOUNTED))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_local_disk_target_takes_a_first_and_a_no_change_run_and_passes_a_drill(backup_setup, disk):
    setup = backup_setup(kind=BackupSchedule.Kind.LOCAL, remote_folder=str(disk / "backups"), mount_point=MOUNTED)
    setup_local_target(setup.schedule)
    upload_studies(setup.orthanc.client(), studies=2, per_study=2)

    first, second = setup.run(), setup.run()

    assert first.state == BackupRun.State.SUCCEEDED, (first.error, first.log_tail)
    assert second.state == BackupRun.State.SUCCEEDED, (second.error, second.log_tail)
    assert second.bytes_transferred < first.bytes_transferred
    assert (disk / "backups" / MARKER).is_file() and (disk / "backups" / "clinic" / "config").is_file()
    drilled = backup_verify(second.pk)
    assert drilled.drill_state == BackupRun.Drill.PASSED, drilled.drill_message
    assert "restorable: 2 studies and 4 instances match the manifest" in drilled.drill_message


def test_an_unmounted_disk_fails_the_run_with_the_reason_and_writes_nothing_on_the_root_disk(backup_setup, tmp_path):
    unplugged = tmp_path / "media" / "usb-backup"  # the empty folder an unplugged disk leaves behind
    unplugged.mkdir(parents=True)
    setup = backup_setup(
        kind=BackupSchedule.Kind.LOCAL, remote_folder=str(unplugged / "orthanc"), mount_point=str(unplugged)
    )
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    before = every_file_under(tmp_path / "media")

    run = setup.run()

    assert run.state == BackupRun.State.FAILED
    assert run.error == (
        f"the backup disk is not mounted at {unplugged}: plug it in or mount it, then run again (nothing was written)"
    )
    assert every_file_under(tmp_path / "media") == before
    assert setup.orthanc.service.is_running()


def test_a_disk_without_its_marker_fails_the_run_with_the_reason_and_writes_nothing(backup_setup, disk):
    # No mount point configured: the marker written at set-up is the proof that the disk is there.
    folder = disk / "nas-share"
    setup = backup_setup(kind=BackupSchedule.Kind.LOCAL, remote_folder=str(folder))
    setup_local_target(setup.schedule)
    (folder / MARKER).unlink()  # another disk, or the share not mounted: its folder lacks the marker
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    before = every_file_under(disk)

    run = setup.run()

    assert run.state == BackupRun.State.FAILED
    assert run.error.startswith(f"{folder} has no {MARKER}: the backup disk is unplugged, or it is not the disk set up")
    assert every_file_under(disk) == before


def test_the_form_saves_a_local_disk_without_host_refuses_an_ssh_target_without_one_and_pages_say_how_each_is_kept(
    admin_client, db
):
    from html import unescape

    from django.urls import reverse

    from deployments.backups.keys import ensure_identity
    from deployments.models import Deployment
    from tests.backups.test_schedules import field_errors, form_data

    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip
    url = reverse("backups:schedule_create")

    refused = admin_client.post(url, form_data(deployment, kind="borg", host="", user=""))

    assert field_errors(refused) == {
        "host": "Enter the target host: an SSH target needs it.",
        "user": "Enter the SSH user: an SSH target needs it.",
    }
    local = form_data(deployment, kind="local", host="", user="", remote_folder="/media/usb", mount_point="/media")
    assert admin_client.post(url, local).status_code == 302
    borg = form_data(deployment, kind="borg", name="Off-site", remote_folder="/srv/borg")
    assert admin_client.post(url, borg).status_code == 302

    disk = BackupSchedule.objects.get(kind="local")
    page = unescape(admin_client.get(disk.get_absolute_url()).content.decode())
    assert "local disk /media/usb/clinic" in page and "a disk is mounted at <code>/media</code>" in page
    assert "Host key" not in page
    offsite = BackupSchedule.objects.get(kind="borg")
    identity = ensure_identity(deployment)
    page = unescape(admin_client.get(offsite.get_absolute_url()).content.decode())
    line = f'command="borg serve --append-only --restrict-to-path /srv/borg/clinic",restrict {identity.public_key}'
    assert line in page
    assert "The portal never prunes this repository" in page
