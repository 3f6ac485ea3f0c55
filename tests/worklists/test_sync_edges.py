"""The folder sync at its edges: the first and last day of the active window, a folder it cannot
write (read-only, full), what it leaves in the folder and what it reports."""

import datetime
import os
import subprocess
import time
from pathlib import Path

import pytest
from django.utils import timezone

from tests.worklists.conftest import files_in, make_entry
from worklists import sync
from worklists.models import WorklistEntry, WorklistState
from worklists.sync import SyncError, SyncResult, active_filter, active_window, scan_folder, worklist_sync

Status = WorklistEntry.Status
TODAY = datetime.date(2026, 3, 1)
DAY = datetime.timedelta(days=1)


def state_of(deployment):
    return WorklistState.objects.get(deployment=deployment)


# ---------------------------------------------------------------- the active window


def test_the_window_runs_from_yesterday_to_thirty_days_ahead_by_default(settings):
    del settings.WORKLISTS_WINDOW_DAYS_BEFORE, settings.WORKLISTS_WINDOW_DAYS_AFTER
    assert active_window(TODAY) == (datetime.date(2026, 2, 28), datetime.date(2026, 3, 31))
    settings.WORKLISTS_WINDOW_DAYS_BEFORE, settings.WORKLISTS_WINDOW_DAYS_AFTER = 3, 7
    assert active_window(TODAY) == (datetime.date(2026, 2, 26), datetime.date(2026, 3, 8))
    assert active_window() == (timezone.localdate() - 3 * DAY, timezone.localdate() + 7 * DAY)


def test_the_first_and_last_day_of_the_window_are_in_the_folder_and_the_days_beside_them_not(wl_deployment):
    before, first, last, after = (
        make_entry(wl_deployment, day=TODAY + n * DAY, accession=name)
        for n, name in ((-2, "BEFORE"), (-1, "FIRST"), (30, "LAST"), (31, "AFTER"))
    )
    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert files_in(wl_deployment) == sorted([first.file_name, last.file_name])
    assert result.written == 2
    active = WorklistEntry.objects.filter(active_filter(TODAY)).values_list("accession_number", flat=True)
    assert sorted(active) == ["FIRST", "LAST"]
    for entry in (before, after):
        entry.refresh_from_db()
        assert entry.sync_label == ("removed", "outside the active window") or not entry.in_folder

    # A day later the first day has left the window and the day after the last has entered it.
    result = worklist_sync(wl_deployment.pk, today=TODAY + DAY)
    assert files_in(wl_deployment) == sorted([last.file_name, after.file_name])
    assert (result.written, result.removed) == (1, 1)
    first.refresh_from_db()
    assert not first.in_folder and first.sync_state == WorklistEntry.SyncState.REMOVED


def test_a_narrower_window_from_the_settings_is_followed(wl_deployment, settings):
    settings.WORKLISTS_WINDOW_DAYS_BEFORE, settings.WORKLISTS_WINDOW_DAYS_AFTER = 0, 0
    yesterday, today, tomorrow = (make_entry(wl_deployment, day=TODAY + n * DAY) for n in (-1, 0, 1))
    worklist_sync(wl_deployment.pk, today=TODAY)
    assert files_in(wl_deployment) == [today.file_name]


def test_only_active_statuses_are_in_the_folder(wl_deployment):
    entries = {status: make_entry(wl_deployment, day=TODAY, status=status) for status in Status.values}
    worklist_sync(wl_deployment.pk, today=TODAY)
    active = {entries[s].file_name for s in (Status.SCHEDULED, Status.ARRIVED, Status.IN_PROGRESS)}
    assert set(files_in(wl_deployment)) == active


# ---------------------------------------------------------------- a folder that cannot be written


def _mount_tmpfs(folder, options):
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {done.stderr.strip()}", pytrace=False)


def _umount(folder):
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_folder(wl_deployment):
    """The worklist folder on a 64 KiB tmpfs: a real "No space left on device"."""
    folder = Path(wl_deployment.worklist_folder)
    _mount_tmpfs(folder, "size=64k,mode=0755")
    yield folder
    _umount(folder)


@pytest.fixture
def read_only_folder(wl_deployment):
    """The worklist folder on a tmpfs that can be switched to read-only (root writes through a
    chmod, not through a read-only mount)."""
    folder = Path(wl_deployment.worklist_folder)
    _mount_tmpfs(folder, "size=1m,mode=0755")

    def read_only(on=True):
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, capture_output=True)

    yield read_only
    _umount(folder)


def test_a_full_folder_marks_the_entries_that_could_not_be_written_and_the_next_sync_writes_them(
    wl_deployment, small_folder
):
    kept = make_entry(wl_deployment, day=TODAY, accession="KEPT")
    worklist_sync(wl_deployment.pk, today=TODAY)
    filler = small_folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:  # fill the disk to the last page
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    waiting = [make_entry(wl_deployment, day=TODAY, accession=f"FULL-{n}") for n in range(3)]

    result = worklist_sync(wl_deployment.pk, today=TODAY)

    message = "cannot write the file: No space left on device"
    assert sorted(result.errors) == [f"FULL-{n}: {message}" for n in range(3)]
    assert result.written == 0
    for entry in waiting:
        entry.refresh_from_db()
        assert (entry.sync_state, entry.sync_error, entry.in_folder) == ("error", message, False)
        assert entry.sync_label == ("error", f"error: {message}")
        assert entry.synced_revision != entry.revision
    assert state_of(wl_deployment).last_sync_error == "; ".join(result.errors)
    assert files_in(wl_deployment) == [kept.file_name]  # the file written before is untouched
    assert [n for n in os.listdir(small_folder) if n.endswith(".tmp")] == []
    kept.refresh_from_db()
    assert kept.sync_label == ("in-list", "in the machine's list")

    filler.unlink()
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    assert (result.written, result.errors) == (3, [])
    for entry in waiting:
        entry.refresh_from_db()
        assert entry.sync_label == ("in-list", "in the machine's list") and entry.sync_error == ""
    assert state_of(wl_deployment).last_sync_error == ""


def test_a_read_only_folder_is_an_error_on_the_state_and_the_entries_wait(wl_deployment, read_only_folder):
    written = make_entry(wl_deployment, day=TODAY, accession="WRITTEN")
    worklist_sync(wl_deployment.pk, today=TODAY)
    read_only_folder(True)
    waiting = make_entry(wl_deployment, day=TODAY, accession="WAITING")

    with pytest.raises(SyncError, match="Read-only file system") as error:
        worklist_sync(wl_deployment.pk, today=TODAY)

    assert str(error.value).startswith(f"Cannot write in the worklist folder {wl_deployment.worklist_folder}")
    state = state_of(wl_deployment)
    assert state.last_sync_error == str(error.value)
    waiting.refresh_from_db()
    assert not waiting.in_folder and waiting.sync_label[1] != "in the machine's list"
    written.refresh_from_db()
    assert written.sync_label == ("in-list", "in the machine's list")  # its file is still there

    read_only_folder(False)
    assert worklist_sync(wl_deployment.pk, today=TODAY).written == 1
    assert state_of(wl_deployment).last_sync_error == ""


def test_an_entry_the_encoder_refuses_is_an_error_and_the_others_are_written(wl_deployment, monkeypatch):
    good = make_entry(wl_deployment, day=TODAY, accession="GOOD")
    bad = make_entry(wl_deployment, day=TODAY, accession="BAD")
    encode = sync.entry_bytes

    def refusing(entry):
        if entry.accession_number == "BAD":
            raise ValueError("not encodable")
        return encode(entry)

    monkeypatch.setattr(sync, "entry_bytes", refusing)
    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert result.errors == ["BAD: cannot render: not encodable"]
    assert files_in(wl_deployment) == [good.file_name]
    bad.refresh_from_db()
    assert (bad.sync_state, bad.sync_error, bad.in_folder) == ("error", "cannot render: not encodable", False)


# ---------------------------------------------------------------- what the sync reports


def test_the_summary_names_each_count_and_leaves_out_the_zero_ones():
    assert (
        SyncResult(files=3, written=1, seconds=0.0123).summary()
        == "3 files in the folder, 1 written, 0 removed in 12 ms"
    )
    full = SyncResult(
        files=5,
        written=2,
        removed=1,
        done_by_orthanc=1,
        orphans_removed=2,
        foreign=["a.wl"],
        errors=["x", "y"],
        seconds=1.5,
    )
    assert full.summary() == (
        "5 files in the folder, 2 written, 1 removed, 1 removed by Orthanc (done), 2 orphans removed, "
        "1 foreign .wl files left alone, 2 errors in 1500 ms"
    )


def test_the_state_records_the_last_sync(wl_deployment, tmp_path):
    folder = Path(wl_deployment.worklist_folder)
    (folder / "ris.wl").write_bytes(b"foreign")
    make_entry(wl_deployment, day=TODAY)
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    state = state_of(wl_deployment)
    assert state.last_sync_summary == result.summary()
    assert (state.folder_files, state.foreign_files, state.last_sync_error) == (2, ["ris.wl"], "")
    assert state.last_sync_at is not None and abs((timezone.now() - state.last_sync_at).total_seconds()) < 60


def test_the_folder_scan_tells_ours_foreign_and_leftover_files_apart(tmp_path):
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    names = {
        f"portal-{uuid}.wl": "ours",
        f"portal-{uuid}.WL": "foreign",  # not our suffix, but a worklist file to Orthanc
        f"portal-{uuid}x.wl": "foreign",  # one character too long for ours
        f".portal-{uuid}.wl.k3j4.tmp": "temp",
        f".portal-{uuid}.wl.tmp": "none",  # not the shape of our temporary files
        "ris.wl": "foreign",
        "notes.txt": "none",
        ".portal-sync.lock": "none",
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.wl").mkdir()  # not a file
    ours, foreign, temps = scan_folder(tmp_path)
    assert ours == {uuid: f"portal-{uuid}.wl"}
    assert foreign == sorted(n for n, kind in names.items() if kind == "foreign")
    assert temps == [f".portal-{uuid}.wl.k3j4.tmp"]


def test_a_missing_folder_names_the_folder_and_what_to_do(wl_deployment):
    os.rmdir(wl_deployment.worklist_folder)
    with pytest.raises(SyncError) as error:
        worklist_sync(wl_deployment.pk)
    expected = (
        f"The worklist folder {wl_deployment.worklist_folder} does not exist: "
        "create it on the Orthanc host (owned by Orthanc)."
    )
    assert str(error.value) == expected
    assert state_of(wl_deployment).last_sync_error == expected


def test_a_file_orthanc_removed_is_recorded_as_done_in_full_and_audited(wl_deployment):
    from portal.models import AuditEntry

    entry = make_entry(wl_deployment, day=TODAY, status=Status.ARRIVED)
    second = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    (Path(wl_deployment.worklist_folder) / second.file_name).unlink()
    # A revision the sync has not written (set behind its back) and an old error: both settled.
    WorklistEntry.objects.filter(pk=entry.pk).update(revision=7, sync_error="an old error")
    (Path(wl_deployment.worklist_folder) / entry.file_name).unlink()
    before = timezone.now()

    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert result.done_by_orthanc == 2
    entry.refresh_from_db()
    assert (entry.status, entry.in_folder, entry.synced_revision, entry.needs_sync) == (
        Status.COMPLETED,
        False,
        7,
        False,
    )
    assert (entry.sync_state, entry.sync_error) == (WorklistEntry.SyncState.REMOVED, "")
    assert before <= entry.synced_at <= timezone.now()
    audit = AuditEntry.objects.get(object_id=str(entry.pk))
    assert audit.summary == "Orthanc removed the worklist file: taken as done"
    assert audit.actor is None and audit.action == AuditEntry.Action.ACTION
    assert audit.changes["status"] == ["ARRIVED", "COMPLETED"]


# ---------------------------------------------------------------- counts, timestamps and races


def _files_on_disk(deployment):
    return len([n for n in os.listdir(deployment.worklist_folder) if n.lower().endswith(".wl")])


def test_each_file_written_removed_or_left_is_counted_and_the_total_is_what_is_on_disk(wl_deployment):
    folder = Path(wl_deployment.worklist_folder)
    kept = [make_entry(wl_deployment, day=TODAY) for _ in range(2)]
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    assert (result.written, result.files) == (2, 2) == (2, _files_on_disk(wl_deployment))
    cancelled = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    cancelled.transition(Status.CANCELLED)
    cancelled.save()
    for entry in kept:
        entry.notes = "only the notes"
        entry.save()
    for n in range(2):
        (folder / f"portal-00000000-0000-4000-8000-00000000000{n}.wl").write_bytes(b"orphan")
        (folder / f".portal-00000000-0000-4000-8000-00000000000{n}.wl.x{n}.tmp").write_bytes(b"half")
    (folder / "ris.wl").write_bytes(b"foreign")

    result = worklist_sync(wl_deployment.pk, today=TODAY, full=True)

    assert (result.orphans_removed, result.temp_removed, result.unchanged, result.removed) == (2, 2, 2, 1)
    assert result.files == _files_on_disk(wl_deployment) == 3  # the two kept and the foreign one
    for entry in kept:
        entry.refresh_from_db()
        assert entry.sync_label == ("in-list", "in the machine's list")


def test_the_time_of_the_last_write_is_recorded_on_each_entry(wl_deployment):
    entry = make_entry(wl_deployment, day=TODAY)
    before = timezone.now()
    worklist_sync(wl_deployment.pk, today=TODAY)
    entry.refresh_from_db()
    assert before <= entry.synced_at <= timezone.now()


def test_a_change_on_the_first_or_last_day_of_the_window_rewrites_the_file(wl_deployment):
    first = make_entry(wl_deployment, day=TODAY - DAY, description="Before")
    last = make_entry(wl_deployment, day=TODAY + 30 * DAY, description="Before")
    worklist_sync(wl_deployment.pk, today=TODAY)
    for entry in (first, last):
        entry.requested_procedure_description = "After"
        entry.save()
    assert worklist_sync(wl_deployment.pk, today=TODAY).written == 2
    for entry in (first, last):
        assert b"After" in (Path(wl_deployment.worklist_folder) / entry.file_name).read_bytes()


def test_a_changed_entry_whose_file_orthanc_removed_is_written_again_not_taken_as_done(wl_deployment):
    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    (Path(wl_deployment.worklist_folder) / entry.file_name).unlink()
    entry.requested_procedure_description = "Corrected"
    entry.save()

    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert (result.done_by_orthanc, result.written) == (0, 1)
    entry.refresh_from_db()
    assert entry.status == Status.SCHEDULED and entry.in_folder


def test_a_file_written_by_a_sync_that_died_before_recording_it_is_kept(wl_deployment):
    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    WorklistEntry.objects.filter(pk=entry.pk).update(in_folder=False)  # the record never made it

    worklist_sync(wl_deployment.pk, today=TODAY)

    assert files_in(wl_deployment) == [entry.file_name]
    entry.refresh_from_db()
    assert entry.in_folder


def test_a_closed_entry_whose_file_is_already_gone_is_only_marked_removed(wl_deployment):
    from portal.models import AuditEntry

    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    entry.transition(Status.CANCELLED)
    entry.save()
    (Path(wl_deployment.worklist_folder) / entry.file_name).unlink()

    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert (result.done_by_orthanc, result.files) == (0, 0)
    entry.refresh_from_db()
    assert (entry.status, entry.in_folder) == (Status.CANCELLED, False)
    assert not AuditEntry.objects.filter(object_id=str(entry.pk), summary__contains="taken as done").exists()


def test_more_than_a_batch_of_changes_outside_the_window_are_all_forgotten(wl_deployment):
    patient = make_entry(wl_deployment, day=TODAY).patient
    far = TODAY + 90 * DAY
    WorklistEntry.objects.bulk_create(
        [
            WorklistEntry(
                deployment=wl_deployment,
                patient=patient,
                accession_number=f"FAR{n}",
                study_instance_uid=f"1.2.826.0.1.3680043.8.498.8{n}",
                scheduled_date=far,
                scheduled_time=datetime.time(9),
                station_aet="US1",
            )
            for n in range(2 * sync.BATCH + 1)
        ]
    )
    worklist_sync(wl_deployment.pk, today=TODAY)
    assert not WorklistEntry.objects.filter(scheduled_date=far, needs_sync=True).exists()


def test_a_file_someone_else_removes_during_the_sync_does_not_fail_it(wl_deployment, monkeypatch):
    """Orthanc's newer worklist plugin deletes a file when its study arrives, at any moment."""
    scan = sync.scan_folder
    phantom = "00000000-0000-4000-8000-0000000000aa"

    def with_a_file_gone_since(folder):
        ours, foreign, temps = scan(folder)
        return {**ours, phantom: f"portal-{phantom}.wl"}, foreign, [*temps, f".portal-{phantom}.wl.gone.tmp"]

    monkeypatch.setattr(sync, "scan_folder", with_a_file_gone_since)
    result = worklist_sync(wl_deployment.pk, today=TODAY, full=True)
    assert (result.orphans_removed, result.temp_removed, result.errors) == (1, 1, [])


def test_a_failed_flush_of_the_whole_batch_marks_every_entry_of_it(wl_deployment, monkeypatch):
    entries = [make_entry(wl_deployment, day=TODAY) for _ in range(2)]

    def failing(folder, files, mode=0o644):
        raise OSError("the disk went away: " + "x" * 400)

    monkeypatch.setattr(sync, "atomic_write_many", failing)
    result = worklist_sync(wl_deployment.pk, today=TODAY)

    assert len(result.errors) == 2 and result.written == 0
    for entry in entries:
        entry.refresh_from_db()
        assert entry.sync_state == "error" and entry.sync_error.startswith("cannot write the file: the disk went away")
        assert len(entry.sync_error) == 300


def test_a_long_render_error_is_cut_to_the_column_and_does_not_stop_the_entries_after_it(wl_deployment, monkeypatch):
    bad = make_entry(wl_deployment, day=TODAY, accession="BAD-FIRST")
    good = make_entry(wl_deployment, day=TODAY, accession="GOOD-AFTER")
    encode = sync.entry_bytes

    def refusing(entry):
        if entry.accession_number == "BAD-FIRST":
            raise ValueError("y" * 400)
        return encode(entry)

    monkeypatch.setattr(sync, "entry_bytes", refusing)
    worklist_sync(wl_deployment.pk, today=TODAY)
    bad.refresh_from_db()
    assert bad.sync_error == ("cannot render: " + "y" * 400)[:300]
    assert files_in(wl_deployment) == [good.file_name]


def test_the_pause_after_writing_is_only_the_fault_injection_of_its_setting(wl_deployment, settings):
    del settings.WORKLISTS_SYNC_PAUSE_AFTER_WRITE
    make_entry(wl_deployment, day=TODAY)
    started = time.monotonic()
    worklist_sync(wl_deployment.pk, today=TODAY)
    assert time.monotonic() - started < 0.8
    settings.WORKLISTS_SYNC_PAUSE_AFTER_WRITE = 0
    make_entry(wl_deployment, day=TODAY)
    started = time.monotonic()
    worklist_sync(wl_deployment.pk, today=TODAY)
    assert time.monotonic() - started < 0.8
    settings.WORKLISTS_SYNC_PAUSE_AFTER_WRITE = 1.0
    started = time.monotonic()
    worklist_sync(wl_deployment.pk, today=TODAY)  # nothing to write: no pause
    assert time.monotonic() - started < 0.8
    make_entry(wl_deployment, day=TODAY)
    started = time.monotonic()
    worklist_sync(wl_deployment.pk, today=TODAY)
    assert time.monotonic() - started >= 1.0


def _long_folder(wl_deployment, tmp_path):
    """A worklist folder whose path makes the error sentence longer than its 300-character column
    (the path itself at 250 characters, within its own column of 255)."""
    folder = tmp_path / ("f" * (250 - len(str(tmp_path)) - len("/worklists") - 1)) / "worklists"
    assert len(str(folder)) == 250
    folder.mkdir(parents=True)
    from deployments.models import Deployment

    Deployment.objects.filter(pk=wl_deployment.pk).update(worklists_dir=str(folder))
    wl_deployment.refresh_from_db()
    return folder


def test_a_missing_folder_with_a_long_path_fits_its_error_column_and_the_time_is_recorded(wl_deployment, tmp_path):
    folder = _long_folder(wl_deployment, tmp_path)
    folder.rmdir()
    before = timezone.now()
    with pytest.raises(SyncError) as error:
        worklist_sync(wl_deployment.pk)
    state = state_of(wl_deployment)
    assert len(str(error.value)) > 300 and state.last_sync_error == str(error.value)[:300]
    assert before <= state.last_sync_at <= timezone.now()


def test_a_read_only_folder_is_named_with_the_system_s_reason_and_the_time_is_recorded(wl_deployment, read_only_folder):
    read_only_folder(True)
    before = timezone.now()
    with pytest.raises(SyncError) as error:
        worklist_sync(wl_deployment.pk, today=TODAY)
    assert (
        str(error.value)
        == f"Cannot write in the worklist folder {wl_deployment.worklist_folder}: Read-only file system."
    )
    state = state_of(wl_deployment)
    assert before <= state.last_sync_at <= timezone.now()


def test_the_lock_file_is_readable_by_all_and_the_sync_reports_its_real_duration(wl_deployment):
    import stat

    make_entry(wl_deployment, day=TODAY)
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    lock = Path(wl_deployment.worklist_folder) / sync.LOCK_NAME
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644
    assert 0 < result.seconds < 30


def test_a_long_list_of_errors_fits_the_state_s_column(wl_deployment, monkeypatch):
    for _ in range(3):
        make_entry(wl_deployment, day=TODAY)

    def failing(folder, files, mode=0o644):
        raise OSError("the disk went away: " + "x" * 400)

    monkeypatch.setattr(sync, "atomic_write_many", failing)
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    assert state_of(wl_deployment).last_sync_error == "; ".join(result.errors)[:300]
    assert len(state_of(wl_deployment).last_sync_error) == 300


def test_more_than_a_batch_of_written_files_are_all_recorded(wl_deployment):
    patient = make_entry(wl_deployment, day=TODAY).patient
    WorklistEntry.objects.bulk_create(
        [
            WorklistEntry(
                deployment=wl_deployment,
                patient=patient,
                accession_number=f"MANY{n}",
                study_instance_uid=f"1.2.826.0.1.3680043.8.498.7{n}",
                scheduled_date=TODAY,
                scheduled_time=datetime.time(9),
                station_aet="US1",
            )
            for n in range(2 * sync.BATCH + 1)
        ]
    )
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    assert result.written == 2 * sync.BATCH + 2
    assert not WorklistEntry.objects.filter(in_folder=False).exists()


def test_a_removed_entry_is_recorded_in_full(wl_deployment):
    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    entry.transition(Status.CANCELLED)
    entry.save()
    WorklistEntry.objects.filter(pk=entry.pk).update(sync_error="an old error")
    before = timezone.now()

    worklist_sync(wl_deployment.pk, today=TODAY)

    entry.refresh_from_db()
    assert (entry.in_folder, entry.synced_revision, entry.needs_sync) == (False, entry.revision, False)
    assert (entry.sync_state, entry.sync_error) == (WorklistEntry.SyncState.REMOVED, "")
    assert before <= entry.synced_at <= timezone.now()


def test_a_file_to_remove_that_orthanc_removed_meanwhile_does_not_fail_the_sync(wl_deployment, monkeypatch):
    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    entry.transition(Status.CANCELLED)
    entry.save()
    scan = sync.scan_folder

    def listed_then_gone(folder):
        listing = scan(folder)
        (Path(folder) / entry.file_name).unlink()  # gone between the listing and the removal
        return listing

    monkeypatch.setattr(sync, "scan_folder", listed_then_gone)
    result = worklist_sync(wl_deployment.pk, today=TODAY)
    assert (result.removed, result.errors) == (1, [])


def test_a_vanished_file_and_an_orphan_at_the_same_moment_wait_for_the_full_sync(wl_deployment):
    folder = Path(wl_deployment.worklist_folder)
    entry = make_entry(wl_deployment, day=TODAY)
    worklist_sync(wl_deployment.pk, today=TODAY)
    (folder / entry.file_name).unlink()  # Orthanc took it...
    orphan = folder / "portal-00000000-0000-4000-8000-0000000000bb.wl"
    orphan.write_bytes(b"left over")  # ...while another file appeared: as many files as expected

    quick = worklist_sync(wl_deployment.pk, today=TODAY)
    assert (quick.done_by_orthanc, quick.orphans_removed) == (0, 0) and orphan.exists()

    full = worklist_sync(wl_deployment.pk, today=TODAY, full=True)
    assert (full.done_by_orthanc, full.orphans_removed) == (1, 1) and not orphan.exists()


def test_a_read_only_folder_with_a_long_path_fits_its_error_column(wl_deployment, tmp_path):
    folder = _long_folder(wl_deployment, tmp_path)
    _mount_tmpfs(folder, "size=1m,mode=0755")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        with pytest.raises(SyncError) as error:
            worklist_sync(wl_deployment.pk, today=TODAY)
    finally:
        _umount(folder)
    assert len(str(error.value)) > 300
    assert state_of(wl_deployment).last_sync_error == str(error.value)[:300]
