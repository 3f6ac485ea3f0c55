"""Backup runs against a real sshd and a real Orthanc holding real DICOM instances."""

import json
import subprocess
from pathlib import Path

import pytest
from django.core import mail

from deployments.backups.models import BackupRun
from deployments.service import LocalService, ServiceError
from tests.backups.conftest import upload_studies
from tests.conftest import installed_orthanc_version

pytestmark = pytest.mark.orthanc


def storage_tree(root: Path):
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def test_first_run_is_full_and_a_second_unchanged_run_sends_under_one_percent_and_hard_links_every_file(backup_setup):
    setup = backup_setup()
    uids = upload_studies(setup.orthanc.client(), studies=4, per_study=10, size=384)
    storage_bytes = setup.storage_bytes()

    first = setup.run()

    assert first.state == BackupRun.State.SUCCEEDED, first.error
    assert first.bytes_transferred >= storage_bytes
    assert 0 < first.downtime < 5
    assert setup.orthanc.service.is_running()
    snap1 = setup.target / first.snapshot
    manifest = json.loads((snap1 / "manifest.json").read_text())
    assert manifest["counts"]["instances"] == 40 and manifest["counts"]["studies"] == 4
    assert sorted(manifest["study_uids"]) == sorted(uids)
    assert manifest["orthanc_version"] == installed_orthanc_version()
    files1 = storage_tree(snap1 / "storage")
    inodes1 = {rel: p.stat().st_ino for rel, p in files1.items()}
    index1 = (snap1 / "index" / "index").stat().st_ino
    assert {k: p.stat().st_size for k, p in files1.items()} == manifest["storage"]
    assert len(files1) == 40
    assert (snap1 / "index" / "index").stat().st_size > 0
    assert (snap1 / "config" / "orthanc.json").exists()

    second = setup.run()

    assert second.state == BackupRun.State.SUCCEEDED, second.error
    assert second.previous == first.snapshot
    assert second.bytes_transferred < 0.01 * storage_bytes, (second.bytes_transferred, storage_bytes)
    files2 = storage_tree(setup.target / second.snapshot / "storage")
    assert files2.keys() == files1.keys()
    for rel, path in files2.items():
        assert path.stat().st_ino == inodes1[rel], f"{rel} is a copy, not a hard link to the first snapshot's file"
    # Both were taken within the hour: the default policy keeps the last ten, so both stay.
    assert second.pruned == []
    assert setup.snapshots() == [first.snapshot, second.snapshot]
    # Nothing changed in Orthanc: the first snapshot's index is still exact, so Orthanc was not stopped.
    assert second.downtime == 0.0
    assert (setup.target / second.snapshot / "index" / "index").stat().st_ino == index1


def test_a_change_since_the_previous_snapshot_stops_orthanc_again_for_a_fresh_index(backup_setup):
    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=1, per_study=2)
    first = setup.run()
    upload_studies(client, studies=1, per_study=1)
    # Left by killed runs: a snapshot folder without its manifest, and a .partial of an older portal.
    (setup.target / "20260101T000000Z" / "storage").mkdir(parents=True)
    (setup.target / "20260102T000000Z.partial" / "storage").mkdir(parents=True)

    second = setup.run()

    assert second.state == BackupRun.State.SUCCEEDED, second.error
    assert 0 < second.downtime < 5
    assert setup.snapshots() == [first.snapshot, second.snapshot]  # the unfinished leftovers are gone
    assert second.previous == first.snapshot  # an unfinished folder is never taken for a snapshot
    manifest = json.loads((setup.target / second.snapshot / "manifest.json").read_text())
    assert manifest["counts"]["instances"] == 3 and manifest["last_change"] > 0
    assert second.instances == 3 and first.instances == 2


def test_an_index_that_cannot_be_linked_from_the_previous_snapshot_is_never_left_as_stand_ins_orthanc_stops_instead(
    backup_setup,
):
    import os

    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    first = setup.run()
    old_index = setup.target / first.snapshot / "index" / "index"
    os.utime(old_index, ns=(old_index.stat().st_atime_ns, old_index.stat().st_mtime_ns + 10**9))  # touched there

    second = setup.run()  # nothing changed in Orthanc: it tries to link the first snapshot's index

    assert second.state == BackupRun.State.SUCCEEDED, second.error
    assert f"the index of {first.snapshot} could not be linked" in second.log_tail
    assert second.downtime > 0  # Orthanc was stopped for a fresh copy
    index = setup.target / second.snapshot / "index" / "index"
    assert index.read_bytes()[:16] == b"SQLite format 3\x00"  # the real index, not a stand-in of zeros
    assert index.stat().st_ino != old_index.stat().st_ino
    manifest = json.loads((setup.target / second.snapshot / "manifest.json").read_text())
    assert manifest["index_files"]["index"] == index.stat().st_size
    assert manifest["index_mtimes"]["index"] == index.stat().st_mtime_ns


def assert_no_partial_and_intact(setup, earlier):
    names = setup.snapshots()
    assert [n for n in names if not (setup.target / n / "manifest.json").is_file()] == [], names
    assert names == [earlier.snapshot]
    manifest = json.loads((setup.target / earlier.snapshot / "manifest.json").read_text())
    files = storage_tree(setup.target / earlier.snapshot / "storage")
    assert {k: p.stat().st_size for k, p in files.items()} == manifest["storage"]


def test_sshd_stopped_fails_the_run_clearly_and_orthanc_runs_and_earlier_snapshots_stay(backup_setup):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=2, per_study=2)
    first = setup.run()
    assert first.state == BackupRun.State.SUCCEEDED, first.error
    setup.sshd.stop()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)

    second = setup.run()

    assert second.state == BackupRun.State.FAILED
    assert "cannot reach the backup target 127.0.0.1" in second.error
    assert "Connection refused" in second.error
    assert second.downtime is None  # it failed before Orthanc was touched
    assert setup.orthanc.service.is_running()
    assert setup.orthanc.client().statistics()["CountInstances"] == 6
    assert_no_partial_and_intact(setup, first)
    assert len(mail.outbox) == 1 and "Backup FAILED" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["it@clinic.test"]


def test_a_changed_host_key_refuses_the_backup(backup_setup):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    first = setup.run()
    assert first.state == BackupRun.State.SUCCEEDED, first.error
    setup.sshd.stop()
    setup.sshd.new_host_key()  # the "server" was reinstalled, or someone sits in between
    setup.sshd.start()

    second = setup.run()

    assert second.state == BackupRun.State.FAILED
    assert second.error.startswith("host key changed: 127.0.0.1:")
    assert setup.schedule.host_key_fingerprint in second.error
    assert setup.orthanc.service.is_running()
    assert_no_partial_and_intact(setup, first)


class StopRefused(LocalService):
    def stop(self, timeout=15.0):
        raise ServiceError("the service manager refused to stop Orthanc (injected fault)")


class StartFailsOnce(LocalService):
    failures_left = 1

    def start(self, wait=20.0):
        if StartFailsOnce.failures_left:
            StartFailsOnce.failures_left -= 1
            raise ServiceError("Orthanc exited with status 255 at start (injected fault)")
        return super().start(wait)


@pytest.mark.parametrize(
    ("service_class", "message"),
    [
        (StopRefused, "Orthanc did not stop: the service manager refused"),
        (StartFailsOnce, "did not start again at the first attempt"),
    ],
)
def test_orthanc_failing_to_stop_or_start_in_the_window_fails_the_run_restarts_orthanc_and_alerts(
    backup_setup, monkeypatch, service_class, message
):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    StartFailsOnce.failures_left = 1
    monkeypatch.setattr("deployments.backups.control.service_for", lambda d: service_class.for_deployment(d))

    run = setup.run()

    assert run.state == BackupRun.State.FAILED
    assert message in run.error
    assert setup.orthanc.service.is_running()
    assert setup.orthanc.client().statistics()["CountInstances"] == 2
    assert run.downtime is not None
    assert "--- Orthanc log ---" in run.log_tail
    assert setup.snapshots() == []  # no snapshot, and no unfinished folder left behind
    assert len(mail.outbox) == 1
    assert "Backup FAILED" in mail.outbox[0].subject and message in mail.outbox[0].body


@pytest.fixture
def small_disk(sshd):
    """A 1 MiB tmpfs as the target folder: a real "No space left on device"."""
    folder = sshd.root / "small-disk"
    folder.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.fail(f"mounting a small tmpfs needs root (CAP_SYS_ADMIN): {proc.stderr.strip()}", pytrace=False)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_target_disk_fails_the_run_removes_the_partial_and_keeps_earlier_snapshots(backup_setup, small_disk):
    setup = backup_setup(remote_folder=small_disk)
    upload_studies(setup.orthanc.client(), studies=1, per_study=2, size=32)
    first = setup.run()
    assert first.state == BackupRun.State.SUCCEEDED, first.error
    upload_studies(setup.orthanc.client(), studies=1, per_study=5, size=512)  # 1.3 MB more: does not fit

    second = setup.run()

    assert second.state == BackupRun.State.FAILED
    assert "disk is full (No space left on device)" in second.error
    assert setup.orthanc.service.is_running()
    assert_no_partial_and_intact(setup, first)


def test_a_postgresql_index_is_dumped_hot_without_stopping_orthanc(postgres_server, backup_setup):
    pg = postgres_server
    setup = backup_setup(
        slug="pgclinic",
        orthanc_fields={
            "index_backend": "postgresql", "pg_host": "127.0.0.1", "pg_port": pg["port"], "pg_user": pg["user"],
            "pg_password": pg["password"], "pg_database": pg["database"], "pg_tls": False,
        },
    )  # fmt: skip
    uids = upload_studies(setup.orthanc.client(), studies=2, per_study=2)
    pid = setup.orthanc.service.pid()

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error + run.log_tail
    assert run.downtime is None
    assert setup.orthanc.service.pid() == pid  # never stopped
    snapshot = setup.target / run.snapshot
    dump = snapshot / "index" / "orthanc.pgdump"
    listing = subprocess.run(["pg_restore", "-l", str(dump)], capture_output=True, text=True, check=True).stdout
    assert "TABLE public resources" in listing.lower() or "table data public resources" in listing.lower(), listing
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["index_backend"] == "postgresql" and sorted(manifest["study_uids"]) == sorted(uids)
    assert len(manifest["storage"]) == 4


def test_the_bandwidth_limit_slows_the_copy_to_the_configured_rate(backup_setup):
    setup = backup_setup(bandwidth_limit=200)  # KiB/s
    upload_studies(setup.orthanc.client(), studies=1, per_study=4, size=384)  # about 600 KB of storage
    expected = setup.storage_bytes() / (200 * 1024)

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    bulk = next(line for line in run.log_tail.splitlines() if "bulk copy" in line)
    assert run.duration > 0.8 * expected, (run.duration, expected, bulk)
