"""End-to-end integrity: each snapshot's manifest carries Orthanc's own MD5 of every attachment,
each run checks what it wrote on the target (rsync's MD5 of each file it sent, which the target
checked on writing; a rotating sample of the hard-linked files read back), and a file damaged in
an older snapshot (same size, same time: rsync's quick check cannot see it) is not carried on as
a hard link but sent again and named."""

import hashlib
import json
import os

import pytest

from deployments.backups.models import BackupRun
from tests.backups.conftest import upload_studies

pytestmark = pytest.mark.orthanc


def md5(path):
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def manifest_of(setup, run):
    return json.loads((setup.target / run.snapshot / "manifest.json").read_text())


def damage_in_place(path):
    """Flip the last byte, keeping size and modification time (bit rot, or a careless tool)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_the_manifest_carries_orthanc_s_md5_of_every_attachment_and_the_run_verifies_them(backup_setup):
    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=1, per_study=3)

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    manifest = manifest_of(setup, run)
    checksums = manifest["checksums"]
    recorded = {
        client.request("GET", f"/instances/{i}/attachments/dicom/md5").text.strip()
        for i in client.get_json("/instances")
    }
    assert set(checksums.values()) >= recorded and len(recorded) == 3
    for rel, want in checksums.items():
        assert md5(setup.target / run.snapshot / "storage" / rel) == want
    assert manifest["verified"] is True and manifest["damaged_before"] == []
    assert "verified 3 storage files against Orthanc's MD5" in run.log_tail


@pytest.mark.parametrize("changed", [False, True], ids=["nothing-changed", "a-new-study"])
def test_a_file_damaged_in_the_previous_snapshot_is_sent_again_and_the_run_names_it(backup_setup, mailoutbox, changed):
    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=1, per_study=3)
    first = setup.run()
    checksums = manifest_of(setup, first)["checksums"]
    victim = sorted(checksums)[0]
    damaged = setup.target / first.snapshot / "storage" / victim
    damage_in_place(damaged)
    if changed:
        upload_studies(client, studies=1, per_study=1, patient="N")

    second = setup.run()

    assert second.state == BackupRun.State.SUCCEEDED, second.error
    assert second.downtime > 0 if changed else second.downtime == 0.0
    fresh = setup.target / second.snapshot / "storage" / victim
    assert md5(fresh) == checksums[victim]  # the right bytes, not the damaged ones
    assert fresh.stat().st_ino != damaged.stat().st_ino
    assert md5(damaged) != checksums[victim]  # the older snapshot is left as it is, and named
    assert f"DAMAGED on the target in snapshot {first.snapshot}, sent again: {victim}" in second.log_tail
    assert manifest_of(setup, second)["damaged_before"] == [victim]
    others = [rel for rel in checksums if rel != victim]
    for rel in others:  # the intact files are still hard links
        assert (setup.target / second.snapshot / "storage" / rel).stat().st_ino == (
            setup.target / first.snapshot / "storage" / rel
        ).stat().st_ino
    [mail] = [m for m in mailoutbox if "DAMAGED" in m.subject]
    assert victim in mail.body


def test_rsync_s_checksum_of_each_file_it_sends_is_the_md5_of_that_file_so_a_first_run_reads_nothing_back(
    backup_setup, tmp_path
):
    from pathlib import Path

    from deployments.backups.run import sent_log
    from deployments.backups.ssh import Session

    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=3)
    storage = Path(setup.deployment.storage_dir)
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "storage").symlink_to(storage)
    setup.target.mkdir(parents=True, exist_ok=True)

    with Session(setup.schedule) as ssh, sent_log(stage) as (options, read):
        ssh.rsync([f"{stage}/"], ssh.remote("probe/"), ["-L", "--exclude=/storage/index*", *options])
        sent = read()

    files = sorted(
        str(p.relative_to(stage))
        for p in (stage / "storage").rglob("*")
        if p.is_file() and not p.name.startswith("index")
    )
    assert sorted(name for name, _ in sent) == files and len(files) == 3
    for name, sum_sent in sent:  # what the run compares with Orthanc's MD5 instead of reading the copy back
        assert sum_sent == md5(stage / name) == md5(setup.target / "probe" / name)

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    assert (
        "verified 3 storage files against Orthanc's MD5 (the 3 sent and 0 of the 0 hard-linked in turn; "
        "0 read back on the target, the others by rsync's MD5 of what it sent)"
    ) in run.log_tail


def test_a_file_in_orthanc_s_storage_that_no_longer_matches_orthanc_s_md5_fails_the_run_and_is_named(backup_setup):
    from pathlib import Path

    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=3)
    storage = Path(setup.deployment.storage_dir)
    victim = sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file() and "-" in p.name)[0]
    damage_in_place(storage / victim)  # rsync sends these bytes, and its MD5 of them is not Orthanc's

    run = setup.run()

    assert run.state == BackupRun.State.FAILED
    assert run.error == (
        "storage files in Orthanc's own storage differ from the MD5 Orthanc recorded for them "
        f"(rsync read and sent other bytes): {victim}"
    )
    assert setup.snapshots() == []  # no snapshot holds the bad copy as good


def inodes(setup, run):
    storage = setup.target / run.snapshot / "storage"
    return {str(p.relative_to(storage)): p.stat().st_ino for p in storage.rglob("*") if p.is_file()}


def test_a_run_checks_every_file_it_sent_and_reads_back_in_turn_a_sample_of_the_hard_linked_ones(
    backup_setup, settings
):
    settings.BACKUP_VERIFY_SAMPLE = 2
    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=1, per_study=3)
    first = setup.run()
    upload_studies(client, studies=1, per_study=2, patient="N")

    second = setup.run()

    assert second.state == BackupRun.State.SUCCEEDED, second.error
    before, after = inodes(setup, first), inodes(setup, second)
    written = sorted(rel for rel, ino in after.items() if before.get(rel) != ino)  # not hard links: sent
    record = manifest_of(setup, second)["verify"]
    assert len(written) == 2 and record["sent"] == 2 and record["linked"] == 3 and len(record["sampled"]) == 2
    assert not set(record["sampled"]) & set(written)
    assert (
        "verified 4 storage files against Orthanc's MD5 (the 2 sent and 2 of the 3 hard-linked in turn; "
        "2 read back on the target, the others by rsync's MD5 of what it sent)"
    ) in second.log_tail
    assert manifest_of(setup, second)["verified"] is True
    assert not list(setup.target.rglob(".portal-sent-*"))  # rsync's list of what it sent stays local


def test_with_nothing_changed_damage_in_a_hard_linked_file_is_found_when_the_rotating_sample_reaches_it(
    backup_setup, settings, mailoutbox
):
    settings.BACKUP_VERIFY_SAMPLE = 2
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=5)
    first = setup.run()
    files = sorted(manifest_of(setup, first)["checksums"])
    victim = files[2]  # past the first sample (files 0 and 1), in the second (files 2 and 3)
    damage_in_place(setup.target / first.snapshot / "storage" / victim)

    second = setup.run()

    assert manifest_of(setup, second)["verify"]["sampled"] == files[:2]
    assert "DAMAGED" not in second.log_tail  # not read this time: carried on as a hard link
    assert inodes(setup, second)[victim] == inodes(setup, first)[victim]
    assert "verified 2 storage files against Orthanc's MD5 (the 0 sent and 2 of the 5 hard-linked in turn; 2 read" in (
        second.log_tail
    )

    third = setup.run()

    assert third.state == BackupRun.State.SUCCEEDED, third.error
    assert manifest_of(setup, third)["verify"]["sampled"] == files[2:4]
    assert f"DAMAGED on the target in snapshot {second.snapshot}, sent again: {victim}" in third.log_tail
    assert md5(setup.target / third.snapshot / "storage" / victim) == manifest_of(setup, first)["checksums"][victim]
    assert manifest_of(setup, third)["damaged_before"] == [victim]
    fourth = setup.run()
    assert manifest_of(setup, fourth)["verify"]["sampled"] == [files[4], files[0]]  # round again from the start


def test_restore_of_a_damaged_snapshot_refuses_names_the_file_and_changes_nothing_until_the_loss_is_accepted(
    backup_setup, capsys
):
    from pathlib import Path

    from django.core.management import CommandError, call_command

    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=2, per_study=2)
    run = setup.run()
    checksums = manifest_of(setup, run)["checksums"]
    victim = sorted(checksums)[-1]
    damage_in_place(setup.target / run.snapshot / "storage" / victim)
    storage = Path(setup.deployment.storage_dir)
    before = sorted(p.name for p in storage.parent.iterdir())

    with pytest.raises(CommandError) as refused:
        call_command("restore_backup", f"{setup.deployment.slug}/{run.snapshot}", "--yes")

    message = str(refused.value)
    assert f"snapshot {run.snapshot} is damaged" in message and victim in message and "Nothing was changed" in message
    assert sorted(p.name for p in storage.parent.iterdir()) == before  # nothing moved aside, no staging left
    assert client.statistics()["CountInstances"] == 4

    call_command("restore_backup", f"{setup.deployment.slug}/{run.snapshot}", "--yes", "--accept-loss", victim)

    assert any(p.name.startswith("storage.before-restore-") for p in storage.parent.iterdir())
    assert f"damaged files accepted as lost: {victim}" in capsys.readouterr().out


def test_a_web_restore_of_a_damaged_snapshot_names_the_losses_and_goes_on_only_with_them_ticked_for_that_snapshot(
    backup_setup, admin_client, admin_user
):
    import re
    from html import unescape
    from pathlib import Path

    from django.test import Client
    from django.urls import reverse

    from deployments.backups.tasks import backup_restore_task
    from portal.models import Job

    setup = backup_setup()
    client = setup.orthanc.client()
    upload_studies(client, studies=2, per_study=2)
    run = setup.run()
    checksums = manifest_of(setup, run)["checksums"]
    damaged, missing = sorted(checksums)[:2]
    damage_in_place(setup.target / run.snapshot / "storage" / damaged)
    (setup.target / run.snapshot / "storage" / missing).unlink()
    storage = Path(setup.deployment.storage_dir)
    before = sorted(p.name for p in storage.parent.iterdir())
    url = reverse("backups:run_restore", args=[run.pk])

    def work(job):  # the worker's part, in this process: the task claims the job's row and runs it
        backup_restore_task(job.pk)
        job.refresh_from_db()
        return job

    def page():
        return unescape(admin_client.get(url).content.decode())

    assert "I accept losing" not in page()  # nothing known yet: the pre-check runs in the restore job
    assert admin_client.post(url, {"confirm": "clinic", "snapshot": run.snapshot}).status_code == 302
    refused = work(Job.objects.get())
    assert refused.state == Job.State.FAILED
    assert damaged in refused.message and missing in refused.message and "Nothing was changed" in refused.message
    assert sorted(p.name for p in storage.parent.iterdir()) == before
    assert client.statistics()["CountInstances"] == 4

    shown = page()
    assert f"<li><code>{damaged}</code></li>" in shown and f"<li><code>{missing}</code></li>" in shown
    assert f"I accept losing these 2 files: {damaged}, {missing}" in shown
    digest = re.search(r'name="losses" value="([0-9a-f]+)"', shown).group(1)
    ticked = {"confirm": "clinic", "snapshot": run.snapshot, "losses": digest, "accept_losses": "on"}
    refusals = [
        ({**ticked, "accept_losses": ""}, "Tick the box to accept losing them"),
        (
            {**ticked, "snapshot": "20200101T000000Z"},
            f"This form was for snapshot 20200101T000000Z, not {run.snapshot}",
        ),
        ({**ticked, "losses": "0" * 32}, "The list of damaged files changed since this page was shown"),
    ]
    for data, reason in refusals:
        answer = admin_client.post(url, data)
        assert answer.status_code == 200 and reason in unescape(answer.content.decode()), reason
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(url, ticked).status_code == 403
    assert Job.objects.count() == 1  # none of these queued a restore
    assert sorted(p.name for p in storage.parent.iterdir()) == before

    assert admin_client.post(url, ticked).status_code == 302
    done = work(Job.objects.exclude(pk=refused.pk).get())

    assert done.state == Job.State.SUCCEEDED, done.message
    assert f"damaged files accepted as lost: {damaged}, {missing}" in done.message
    assert any(p.name.startswith("storage.before-restore-") for p in storage.parent.iterdir())
    assert client.statistics()["CountInstances"] == 4  # the index is whole; two of its files are lost


def test_retention_never_deletes_the_newest_verified_snapshot_while_newer_ones_are_not_verified(backup_setup):
    keep_nothing = {"keep_last": 0, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    setup = backup_setup(**keep_nothing)  # retention alone would keep only the newest
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)
    verified = setup.run()
    assert manifest_of(setup, verified)["verified"] is True
    setup.schedule.include_storage = False  # snapshots without the images: nothing to read back
    setup.schedule.save()

    unverified = setup.run()

    assert unverified.state == BackupRun.State.SUCCEEDED, unverified.error
    assert manifest_of(setup, unverified)["verified"] is False
    assert setup.snapshots() == [verified.snapshot, unverified.snapshot]
    assert f"keeping {verified.snapshot}, the newest verified snapshot" in unverified.log_tail

    setup.schedule.include_storage = True
    setup.schedule.save()
    upload_studies(setup.orthanc.client(), studies=1, per_study=1, patient="N")
    latest = setup.run()

    assert manifest_of(setup, latest)["verified"] is True
    assert setup.snapshots() == [latest.snapshot]  # a newer verified one: the older ones may go
