"""Restore drills in a throwaway Orthanc, and restores into the deployment, from real snapshots."""

import json
import tempfile
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command

from deployments.backups.drill import backup_verify
from deployments.backups.models import BackupRun
from tests.backups.conftest import upload_studies

pytestmark = pytest.mark.orthanc


def test_a_drill_passes_on_a_good_snapshot_and_fails_on_one_with_a_truncated_storage_file(
    backup_setup, monkeypatch, tmp_path
):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=3, per_study=2, size=128)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    # Its own temporary folder: other drills on this machine may be running meanwhile.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    good = backup_verify(run.pk)

    assert good.drill_state == BackupRun.Drill.PASSED, good.drill_message
    assert "restorable: 3 studies and 6 instances match the manifest" in good.drill_message
    assert not mail.outbox
    victim = next(p for p in (setup.target / run.snapshot / "storage").rglob("*") if p.is_file())
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)

    bad = backup_verify(run.pk)

    assert bad.drill_state == BackupRun.Drill.FAILED
    rel = str(victim.relative_to(setup.target / run.snapshot / "storage"))
    assert f"storage file {rel} is {size // 2} bytes, the manifest says {size}" in bad.drill_message
    assert "its stored file fails Orthanc's MD5 check" in bad.drill_message
    assert len(mail.outbox) == 1 and "Restore drill FAILED" in mail.outbox[0].subject
    assert not list(tmp_path.glob("portal-drill-*")), "the scratch folder is removed"


def test_restore_brings_back_the_exact_studies_of_the_snapshot_even_one_deleted_since(backup_setup, capsys):
    setup = backup_setup()
    client = setup.orthanc.client()
    uids = upload_studies(client, studies=3, per_study=2)
    run = setup.run()
    assert run.state == BackupRun.State.SUCCEEDED, run.error
    gone = next(
        s
        for s in client.get_json("/studies", params={"expand": ""})
        if s["MainDicomTags"]["StudyInstanceUID"] == uids[0]
    )
    client.request("DELETE", f"/studies/{gone['ID']}")
    later = upload_studies(client, studies=1, per_study=1, patient="LATE")
    assert client.statistics()["CountStudies"] == 3

    call_command("restore_backup", f"{setup.deployment.slug}/{run.snapshot}", "--yes")

    restored = sorted(
        s["MainDicomTags"]["StudyInstanceUID"] for s in client.get_json("/studies", params={"expand": ""})
    )
    assert restored == sorted(uids)
    assert later[0] not in restored
    assert client.statistics()["CountInstances"] == 6
    # The data it replaced was moved aside, not deleted: the late study's file is still there.
    storage = Path(setup.deployment.storage_dir)
    aside = [p for p in storage.parent.iterdir() if p.name.startswith("storage.before-restore-")]
    assert len(aside) == 1 and (aside[0] / "index").exists()
    assert "restored snapshot" in capsys.readouterr().out
    from portal.models import AuditEntry

    entry = AuditEntry.objects.get(object_type="backups.backuprun")
    assert entry.source == "command" and entry.summary.startswith(f"restored snapshot {run.snapshot}")
    assert not [p for p in storage.parent.iterdir() if p.name.startswith(".restore-")]
    manifest = json.loads((setup.target / run.snapshot / "manifest.json").read_text())
    assert sorted(manifest["study_uids"]) == restored


def test_run_backup_and_verify_backup_commands_print_the_result_and_fails_with_one_line_on_an_unknown_snapshot(
    backup_setup, capsys
):
    from django.core.management.base import CommandError

    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    call_command("run_backup", str(setup.schedule.pk))
    run = BackupRun.objects.get()
    assert f"snapshot {run.snapshot_path}: " in capsys.readouterr().out

    call_command("verify_backup", run.snapshot)

    assert "restorable: 1 studies and 1 instances" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no successful backup run or snapshot named '20990101T000000Z'"):
        call_command("verify_backup", "20990101T000000Z")
