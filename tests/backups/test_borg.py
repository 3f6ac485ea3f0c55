"""The Borg target against a real sshd, real borg and a real Orthanc: an encrypted repository that
the Orthanc host's key can add to but not erase."""

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deployments.backups.borg import BorgError, Repository, export_key
from deployments.backups.drill import backup_verify
from deployments.backups.models import BackupRun, BackupSchedule
from tests.backups.conftest import upload_studies
from tests.conftest import require_binary

pytestmark = pytest.mark.orthanc


@pytest.fixture
def borg_setup(backup_setup):
    require_binary("borg", "borgbackup")
    setup = backup_setup(kind=BackupSchedule.Kind.BORG)
    # The target holds only the confined line the portal shows.
    setup.sshd.authorized_keys.write_text(setup.schedule.authorized_keys_line() + "\n")
    return setup


def checksums(root: Path):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("index")
    }


def target_files(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_authorized_keys_line_confines_the_key_to_an_append_only_borg_serve_of_the_repository(borg_setup):
    line = borg_setup.schedule.authorized_keys_line()

    folder = borg_setup.schedule.target_folder
    assert line.startswith(f'command="borg serve --append-only --restrict-to-path {folder}",restrict ssh-ed25519 ')


def test_borg_first_run_no_change_run_drill_and_restore_keep_study_uids_and_checksums(borg_setup):
    setup = borg_setup
    client = setup.orthanc.client()
    uids = upload_studies(client, studies=3, per_study=4, size=256)
    storage = Path(setup.deployment.storage_dir)
    before = checksums(storage)

    first = setup.run()

    assert first.state == BackupRun.State.SUCCEEDED, (first.error, first.log_tail)
    assert first.instances == 12 and first.studies == 3
    assert 0 < first.downtime < 5 and setup.orthanc.service.is_running()
    assert first.bytes_transferred > 0

    second = setup.run()

    assert second.state == BackupRun.State.SUCCEEDED, (second.error, second.log_tail)
    assert second.previous == first.snapshot and second.snapshot > first.snapshot
    # Deduplicated: the unchanged storage is not stored again (only the index copy's changed chunks).
    assert second.bytes_transferred < min(first.bytes_transferred, 0.05 * setup.storage_bytes()), (
        second.bytes_transferred,
        first.bytes_transferred,
        setup.storage_bytes(),
    )
    with Repository(setup.schedule) as repo:
        assert repo.archives() == [first.snapshot, second.snapshot]

    drilled = backup_verify(first.pk)

    assert drilled.drill_state == BackupRun.Drill.PASSED, drilled.drill_message
    assert "restorable: 3 studies and 12 instances match the manifest" in drilled.drill_message

    gone = client.get_json("/studies")[0]
    client.request("DELETE", f"/studies/{gone}")
    upload_studies(client, studies=1, per_study=1, patient="LATE")
    call_command("restore_backup", f"{setup.deployment.slug}/{second.snapshot}", "--yes")

    restored = sorted(
        s["MainDicomTags"]["StudyInstanceUID"] for s in client.get_json("/studies", params={"expand": ""})
    )
    assert restored == sorted(uids)
    assert checksums(storage) == before


def test_with_the_orthanc_hosts_key_rm_rf_and_borg_delete_are_refused_and_every_archive_stays_recoverable(borg_setup):
    setup = borg_setup
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    runs = [setup.run(), setup.run()]
    assert all(r.state == BackupRun.State.SUCCEEDED for r in runs), [r.error for r in runs]
    repo_dir = setup.target
    files_before = target_files(repo_dir)

    with Repository(setup.schedule) as repo:
        # A shell command over the key runs the forced borg serve instead, which deletes nothing.
        ssh = subprocess.run(
            ["ssh", *repo.session._client_options(), "127.0.0.1", "rm", "-rf", str(repo_dir)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert repo_dir.exists() and target_files(repo_dir).keys() >= files_before.keys(), ssh.stderr
        with pytest.raises(BorgError) as refused:
            repo.run("delete", "--force", "--force")  # the whole repository
        assert "is in append-only mode" in str(refused.value)
        # An archive's delete is only logical in append-only mode: no segment is removed or changed,
        # so the target's administrator can roll it back.
        repo.run("delete", f"::{runs[0].snapshot}")
        repo.run("compact")  # does nothing in append-only mode
        after = target_files(repo_dir)
    for name, data in files_before.items():
        if name.startswith("data/"):
            assert after.get(name) == data, f"segment {name} changed or vanished"
    # The target's administrator rolls the deletion back (Borg's documented recovery): drop the
    # segments written since, and the index files, which borg rebuilds from the segments.
    for name in after.keys() - files_before.keys():
        if name.startswith("data/"):
            (repo_dir / name).unlink()
    for path in repo_dir.iterdir():
        if path.name.split(".")[0] in ("index", "hints", "integrity"):
            path.unlink()
    passphrase = BackupSchedule.objects.get(pk=setup.schedule.pk).borg_passphrase
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo_dir.parent), "BORG_PASSPHRASE": passphrase}
    env["BORG_BASE_DIR"] = str(repo_dir.parent / "admin-borg")
    listed = subprocess.run(
        ["borg", "list", "--short", str(repo_dir)], env=env, capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == [r.snapshot for r in runs]


def test_no_file_on_the_borg_target_holds_an_orthanc_password_in_clear(borg_setup):
    setup = borg_setup
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    secrets = [setup.deployment.service_password.encode()]
    secrets += [u.password.encode() for u in setup.deployment.orthanc_users.all() if u.password]
    config = Path(setup.deployment.config_dir) / "credentials.json"
    assert secrets[0] in config.read_bytes(), "the live credentials.json holds the password the test looks for"

    for name, data in target_files(setup.target).items():
        for secret in secrets:
            assert secret not in data, f"{name} holds an Orthanc password in clear"


def test_the_repository_key_is_kept_encrypted_exported_once_and_opens_the_repository_without_the_portal(
    borg_setup, capsys, tmp_path
):
    setup = borg_setup
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    schedule = BackupSchedule.objects.get(pk=setup.schedule.pk)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT borg_key, borg_passphrase FROM backups_backupschedule WHERE id = %s", [schedule.pk])
        raw_key, raw_passphrase = cursor.fetchone()
    assert "BORG_KEY" in schedule.borg_key and "BORG_KEY" not in raw_key
    assert schedule.borg_passphrase not in raw_passphrase

    call_command("export_borg_key", str(schedule.pk))

    exported = capsys.readouterr().out
    assert schedule.borg_key.strip() in exported and schedule.borg_passphrase in exported
    with pytest.raises(CommandError, match="already exported"):
        call_command("export_borg_key", str(schedule.pk))
    with pytest.raises(BorgError, match="already exported"):
        export_key(BackupSchedule.objects.get(pk=schedule.pk))
    # The exported key with the passphrase opens the repository without the portal.
    key_file = tmp_path / "borg.key"
    key_file.write_text(schedule.borg_key)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BORG_BASE_DIR": str(tmp_path / "elsewhere")}
    env["BORG_PASSPHRASE"] = schedule.borg_passphrase
    repo_dir = setup.target
    config = repo_dir / "config"
    config.write_text(re.sub(r"(?m)^key = .*$", "key = ", config.read_text()))  # the target lost its copy
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(["borg", "list", str(repo_dir)], env=env, capture_output=True, check=True)
    subprocess.run(["borg", "key", "import", str(repo_dir), str(key_file)], env=env, capture_output=True, check=True)
    listed = subprocess.run(["borg", "list", "--short", str(repo_dir)], env=env, capture_output=True, text=True)
    assert listed.stdout.split() == [run.snapshot]
