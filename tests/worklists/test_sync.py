"""The folder sync against a real folder (no Orthanc needed for these)."""

import datetime
import os
from pathlib import Path

from django.core.management import call_command
from django.utils import timezone

from tests.worklists.conftest import files_in, make_entry
from worklists.models import WorklistEntry, WorklistState
from worklists.sync import worklist_sync

Status = WorklistEntry.Status


def test_a_sync_writes_one_portal_file_per_active_entry_named_by_its_uuid(wl_deployment):
    entry = make_entry(wl_deployment)
    make_entry(wl_deployment, day=timezone.localdate() + datetime.timedelta(days=60))  # outside the window
    make_entry(wl_deployment, status=Status.CANCELLED)

    result = worklist_sync(wl_deployment.pk)

    assert files_in(wl_deployment) == [f"portal-{entry.uuid}.wl"]
    assert result.written == 1
    entry.refresh_from_db()
    assert entry.in_folder and entry.synced_revision == entry.revision
    assert entry.sync_label == ("in-list", "in the machine's list")


def test_a_second_sync_writes_nothing_and_one_change_among_many_rewrites_one_file(wl_deployment):
    entries = [make_entry(wl_deployment, at=f"{8 + i // 60:02d}:{i % 60:02d}") for i in range(120)]
    worklist_sync(wl_deployment.pk)
    folder = Path(wl_deployment.worklist_folder)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    again = worklist_sync(wl_deployment.pk)
    assert again.written == 0

    changed = entries[7]
    changed.requested_procedure_description = "Thyroid"
    changed.save()
    assert changed.sync_label[1] == "pending"
    result = worklist_sync(wl_deployment.pk)

    assert result.written == 1
    now = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    rewritten = [name for name in now if now[name] != mtimes.get(name)]
    assert rewritten == [changed.file_name]


def test_a_change_to_the_internal_notes_only_does_not_rewrite_the_file(wl_deployment):
    entry = make_entry(wl_deployment)
    worklist_sync(wl_deployment.pk)
    entry.notes = "patient prefers a female sonographer"
    entry.save()

    result = worklist_sync(wl_deployment.pk)

    assert (result.written, result.unchanged) == (0, 1)
    assert b"female" not in (Path(wl_deployment.worklist_folder) / entry.file_name).read_bytes()


def test_cancelled_and_completed_entries_leave_the_folder(wl_deployment):
    cancelled, completed, kept = make_entry(wl_deployment), make_entry(wl_deployment), make_entry(wl_deployment)
    worklist_sync(wl_deployment.pk)
    cancelled.transition(Status.CANCELLED)
    cancelled.save()
    completed.transition(Status.IN_PROGRESS)
    completed.transition(Status.COMPLETED)
    completed.save()

    result = worklist_sync(wl_deployment.pk)

    assert result.removed == 2
    assert files_in(wl_deployment) == [kept.file_name]
    cancelled.refresh_from_db()
    assert not cancelled.in_folder and cancelled.sync_label[1] == "not in the list"


def test_foreign_wl_files_are_left_alone_and_reported(wl_deployment):
    folder = Path(wl_deployment.worklist_folder)
    (folder / "from-the-ris.wl").write_bytes(b"not ours")
    (folder / "portal-notes.txt").write_bytes(b"not a worklist")
    lookalike = "portal-XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX.wl"  # our shape, not a UUID: not ours
    (folder / lookalike).write_bytes(b"someone else's")
    make_entry(wl_deployment)

    result = worklist_sync(wl_deployment.pk, full=True)

    assert (folder / "from-the-ris.wl").read_bytes() == b"not ours"
    assert (folder / lookalike).read_bytes() == b"someone else's"
    assert (folder / "portal-notes.txt").exists()
    assert sorted(result.foreign) == ["from-the-ris.wl", lookalike]
    assert result.files == 3
    assert WorklistState.objects.get(deployment=wl_deployment).foreign_files == result.foreign


def test_an_orphan_portal_file_and_a_leftover_temporary_file_are_removed(wl_deployment):
    folder = Path(wl_deployment.worklist_folder)
    orphan = folder / "portal-00000000-0000-4000-8000-000000000000.wl"
    orphan.write_bytes(b"left by a deleted entry")
    temp = folder / ".portal-00000000-0000-4000-8000-000000000001.wl.abc123.tmp"
    temp.write_bytes(b"half")

    result = worklist_sync(wl_deployment.pk)

    assert not orphan.exists() and not temp.exists()
    assert (result.orphans_removed, result.temp_removed) == (1, 1)


def test_a_file_orthanc_removed_itself_means_done_not_write_it_again(wl_deployment):
    entry = make_entry(wl_deployment)
    worklist_sync(wl_deployment.pk)
    os.unlink(Path(wl_deployment.worklist_folder) / entry.file_name)  # what newer plugins do on arrival

    result = worklist_sync(wl_deployment.pk)

    assert result.done_by_orthanc == 1
    assert files_in(wl_deployment) == []
    entry.refresh_from_db()
    assert entry.status == Status.COMPLETED and not entry.in_folder
    assert worklist_sync(wl_deployment.pk).written == 0


def test_path_characters_in_every_field_cannot_reach_a_file_name(wl_deployment):
    make_entry(wl_deployment, family="../../etc/passwd", given="..\\x", description="/tmp/evil.wl", patient_id="../P")

    worklist_sync(wl_deployment.pk)

    names = os.listdir(wl_deployment.worklist_folder)
    assert all(n.startswith(("portal-", ".portal-")) for n in names), names
    assert not any("passwd" in n or "evil" in n for n in names)


def test_the_management_command_syncs_one_deployment_or_fails_with_one_line(wl_deployment, capsys):
    make_entry(wl_deployment)

    call_command("sync_worklists", "folder")

    assert "folder: 1 files in the folder, 1 written" in capsys.readouterr().out
    import pytest
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No deployment with the slug 'nope'"):
        call_command("sync_worklists", "nope")


def test_a_missing_folder_is_an_error_on_the_state_and_nothing_is_written(wl_deployment):
    import pytest

    from worklists.sync import SyncError

    os.rmdir(wl_deployment.worklist_folder)
    make_entry(wl_deployment)
    with pytest.raises(SyncError, match="does not exist"):
        worklist_sync(wl_deployment.pk)
    assert "does not exist" in WorklistState.objects.get(deployment=wl_deployment).last_sync_error


def test_an_entry_beyond_the_window_is_written_when_the_window_reaches_it(wl_deployment):
    today = timezone.localdate()
    later = make_entry(wl_deployment, day=today + datetime.timedelta(days=45))

    assert worklist_sync(wl_deployment.pk, today=today).written == 0
    later.refresh_from_db()
    assert not later.needs_sync  # nothing to write yet: the dirty set stays small
    assert later.sync_label == ("removed", "outside the active window")

    result = worklist_sync(wl_deployment.pk, today=today + datetime.timedelta(days=20))

    assert result.written == 1
    assert files_in(wl_deployment) == [later.file_name]
    result = worklist_sync(wl_deployment.pk, today=today + datetime.timedelta(days=47))
    assert result.removed == 1 and files_in(wl_deployment) == []
