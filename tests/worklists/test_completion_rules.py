"""Completion, rule by rule: which entry a received study moves and how far, when an entry is a
no-show, and how the poll reads a real Orthanc's changes feed (one Orthanc for the module, studies
uploaded over REST). The machine's own C-STORE and C-FIND are in test_completion.py and
test_prompt_close.py."""

import datetime
import os
import time

import pytest
from django.utils import timezone

from deployments.models import Deployment
from deployments.orthanc import OrthancClient, OrthancError
from portal.models import AuditEntry
from tests.conftest import OrthancInstance, free_port, require_binary
from tests.dicomfiles import make_instance
from tests.worklists.conftest import files_in, make_entry
from worklists import completion
from worklists.completion import mark_no_shows, study_arrived, worklist_completion
from worklists.models import WorklistEntry, WorklistState
from worklists.sync import worklist_sync

Status = WorklistEntry.Status


def audit_of(entry):
    return list(AuditEntry.objects.filter(object_id=str(entry.pk)).order_by("pk").values_list("summary", flat=True))


# ---------------------------------------------------------------- a received study, matched


def test_a_study_moves_the_entry_it_matches_by_accession_or_study_uid_and_only_that_one(wl_deployment):
    by_accession = make_entry(wl_deployment, accession="ACC-A")
    by_uid = make_entry(wl_deployment, accession="ACC-B")
    untouched = make_entry(wl_deployment, accession="ACC-C")

    assert study_arrived(wl_deployment, "ACC-A", "9.9.9", stable=False) == by_accession
    assert study_arrived(wl_deployment, "", by_uid.study_instance_uid, stable=False) == by_uid
    assert study_arrived(wl_deployment, "NOPE", "8.8.8", stable=False) is None
    assert study_arrived(wl_deployment, "", "", stable=False) is None

    for entry in (by_accession, by_uid, untouched):
        entry.refresh_from_db()
    assert (by_accession.status, by_uid.status, untouched.status) == (
        Status.IN_PROGRESS,
        Status.IN_PROGRESS,
        Status.SCHEDULED,
    )
    assert by_accession.study_arrived_at is not None and untouched.study_arrived_at is None
    assert audit_of(by_accession) == ["Orthanc received the study"]
    audit = AuditEntry.objects.get(object_id=str(by_accession.pk))
    assert audit.changes["status"] == ["SCHEDULED", "IN_PROGRESS"]


def test_a_study_of_another_deployment_or_a_closed_entry_moves_nothing(wl_deployment):
    other = Deployment.objects.create(
        name="Other", slug="other", orthanc_url="http://127.0.0.1:9", service_password="x" * 24
    )
    make_entry(wl_deployment, accession="ACC-X")
    for status in (Status.COMPLETED, Status.CANCELLED, Status.DISCONTINUED):
        make_entry(wl_deployment, accession=f"X-{status}", status=status)
        assert study_arrived(wl_deployment, f"X-{status}", "", stable=True) is None
    assert study_arrived(other, "ACC-X", "", stable=False) is None
    assert WorklistEntry.objects.get(accession_number="ACC-X").status == Status.SCHEDULED


def test_the_stable_study_completes_the_entry_and_the_first_image_time_is_kept(wl_deployment):
    entry = make_entry(wl_deployment, accession="ACC-S")
    study_arrived(wl_deployment, "ACC-S", "", stable=False)
    entry.refresh_from_db()
    first = entry.study_arrived_at
    time.sleep(0.01)
    study_arrived(wl_deployment, "ACC-S", "", stable=False)  # another image: nothing changes
    entry.refresh_from_db()
    assert (entry.status, entry.study_arrived_at) == (Status.IN_PROGRESS, first)
    assert audit_of(entry) == ["Orthanc received the study"]

    study_arrived(wl_deployment, "ACC-S", "", stable=True)
    entry.refresh_from_db()
    assert (entry.status, entry.study_arrived_at) == (Status.COMPLETED, first)
    assert audit_of(entry) == ["Orthanc received the study", "the study is complete in Orthanc (stable)"]


def test_a_stable_study_seen_first_starts_and_completes_the_entry_at_once(wl_deployment):
    entry = make_entry(wl_deployment, accession="ACC-F")
    study_arrived(wl_deployment, "ACC-F", "", stable=True)
    entry.refresh_from_db()
    assert entry.status == Status.COMPLETED and entry.study_arrived_at is not None
    assert audit_of(entry) == ["Orthanc received the study", "the study is complete in Orthanc (stable)"]


def test_an_entry_already_started_by_the_front_desk_records_its_first_image(wl_deployment):
    entry = make_entry(wl_deployment, accession="ACC-P", status=Status.IN_PROGRESS)
    study_arrived(wl_deployment, "ACC-P", "", stable=False)
    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS and entry.study_arrived_at is not None
    assert audit_of(entry) == []


def test_a_no_show_whose_study_arrives_after_all_comes_back_as_arrived_then_started(wl_deployment):
    entry = make_entry(wl_deployment, accession="ACC-N", status=Status.NO_SHOW)
    study_arrived(wl_deployment, "ACC-N", "", stable=False)
    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS
    assert audit_of(entry) == ["the study arrived after the entry was marked no-show", "Orthanc received the study"]


# ---------------------------------------------------------------- no-shows


def test_no_show_starts_at_the_end_of_the_day_plus_the_grace_in_local_time(wl_deployment, settings):
    settings.WORKLISTS_NO_SHOW_GRACE_HOURS = 3
    day = datetime.date(2026, 3, 2)
    late = make_entry(wl_deployment, day=day)
    arrived = make_entry(wl_deployment, day=day, status=Status.ARRIVED)
    started = make_entry(wl_deployment, day=day, status=Status.IN_PROGRESS)
    tomorrow = make_entry(wl_deployment, day=day + datetime.timedelta(days=1))
    midnight = timezone.make_aware(datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time()))

    assert mark_no_shows(wl_deployment, now=midnight + datetime.timedelta(hours=3, seconds=-1)) == 0
    assert mark_no_shows(wl_deployment, now=midnight + datetime.timedelta(hours=3)) == 2
    statuses = dict(WorklistEntry.objects.values_list("accession_number", "status"))
    assert statuses[late.accession_number] == statuses[arrived.accession_number] == Status.NO_SHOW
    assert (statuses[started.accession_number], statuses[tomorrow.accession_number]) == (
        Status.IN_PROGRESS,
        Status.SCHEDULED,
    )
    assert audit_of(late) == ["not started by the end of the day and the grace period"]
    assert mark_no_shows(wl_deployment, now=midnight + datetime.timedelta(hours=4)) == 0


def test_no_shows_are_marked_in_their_own_deployment_only(wl_deployment):
    other = Deployment.objects.create(
        name="Other", slug="other-ns", orthanc_url="http://127.0.0.1:9", service_password="x" * 24
    )
    theirs = make_entry(other, day=datetime.date(2026, 3, 1))
    ours = make_entry(wl_deployment, day=datetime.date(2026, 3, 1))
    assert mark_no_shows(wl_deployment, now=timezone.make_aware(datetime.datetime(2026, 3, 5, 12))) == 1
    assert WorklistEntry.objects.get(pk=ours.pk).status == Status.NO_SHOW
    assert WorklistEntry.objects.get(pk=theirs.pk).status == Status.SCHEDULED


def test_the_grace_defaults_to_two_hours(wl_deployment, settings):
    del settings.WORKLISTS_NO_SHOW_GRACE_HOURS
    day = datetime.date(2026, 3, 2)
    make_entry(wl_deployment, day=day)
    midnight = timezone.make_aware(datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time()))
    assert mark_no_shows(wl_deployment, now=midnight + datetime.timedelta(hours=1, minutes=59)) == 0
    assert mark_no_shows(wl_deployment, now=midnight + datetime.timedelta(hours=2)) == 1


def test_no_shows_are_marked_a_thousand_at_a_time(wl_deployment):
    patient = make_entry(wl_deployment, day=datetime.date(2026, 3, 1)).patient
    WorklistEntry.objects.bulk_create(
        [
            WorklistEntry(
                deployment=wl_deployment,
                patient=patient,
                accession_number=f"BULK{n}",
                study_instance_uid=f"1.2.826.0.1.3680043.8.498.9{n}",
                scheduled_date=datetime.date(2026, 3, 1),
                scheduled_time=datetime.time(9),
                station_aet="US1",
            )
            for n in range(1000)
        ]
    )
    now = timezone.make_aware(datetime.datetime(2026, 3, 5, 12))
    assert mark_no_shows(wl_deployment, now=now) == 1000
    assert mark_no_shows(wl_deployment, now=now) == 1


# ---------------------------------------------------------------- the poll of a real Orthanc


@pytest.fixture(scope="module")
def feed_orthanc(tmp_path_factory):
    require_binary("/usr/sbin/Orthanc", "orthanc")
    instance = OrthancInstance(
        tmp_path_factory.mktemp("feed"), slug="feed", extra_config={"StableAge": 1, "UserMetadata": {"Sample": 1024}}
    )
    instance.write_config()
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def fed(feed_orthanc, transactional_db, tmp_path):
    """A deployment row on the module's Orthanc, its state at Orthanc's newest change."""
    return _fed_on(feed_orthanc, tmp_path)


@pytest.fixture
def quiet_fed(orthanc_factory, transactional_db, tmp_path):
    """The same on an Orthanc of its own with the default StableAge (60 s): no Stable* change of
    this or an earlier test's studies falls between the test's own changes, whose exact order the
    test counts on (with StableAge 1 and a slower database they did, and the pages shifted)."""
    return _fed_on(orthanc_factory(slug="quiet"), tmp_path)


def _fed_on(orthanc_instance, tmp_path):
    source = orthanc_instance.deployment
    folder = tmp_path / "worklists"
    folder.mkdir()
    d = Deployment.objects.create(
        name="Feed clinic",
        slug=f"feed{os.getpid()}{time.monotonic_ns()}"[:50],
        orthanc_url=source.orthanc_url,
        service_username=source.service_username,
        service_password=source.service_password,
        config_dir=source.config_dir,
        worklists_dir=str(folder),
    )
    client = OrthancClient.for_deployment(d, timeout=10)
    WorklistState.objects.create(deployment=d, last_change_seq=client.get_json("/changes", params={"last": ""})["Last"])
    d.client = client
    return d


def _wait_stable(client, study_id, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_json(f"/studies/{study_id}").get("IsStable"):
            return
        time.sleep(0.2)
    raise AssertionError("the study did not become stable")


@pytest.mark.orthanc
def test_the_poll_starts_the_entries_of_new_studies_removes_their_files_and_keeps_its_place(fed):
    by_accession = make_entry(fed, accession="POLL-A")
    by_uid = make_entry(fed, accession="POLL-B")
    waiting = make_entry(fed, accession="POLL-C")
    worklist_sync(fed.pk)
    fed.client.upload(make_instance(patient_id="PA", accession="POLL-A"))
    fed.client.upload(make_instance(patient_id="PB", study_uid=by_uid.study_instance_uid))
    fed.client.upload(make_instance(patient_id="PZ", accession="NOBODY"))
    last = fed.client.get_json("/changes", params={"last": ""})["Last"]
    start = WorklistState.objects.get(deployment=fed).last_change_seq

    result = worklist_completion(fed.pk)

    assert result["matched"] == 2 and result["no_show"] == 0 and result["last_seq"] == last
    assert result["changes"] == last - start == 12  # instance, series, study, patient of three uploads
    state = WorklistState.objects.get(deployment=fed)
    assert (state.last_change_seq, state.last_poll_error) == (last, "")
    assert state.last_poll_at is not None
    for entry in (by_accession, by_uid, waiting):
        entry.refresh_from_db()
    assert (by_accession.status, by_uid.status, waiting.status) == (
        Status.IN_PROGRESS,
        Status.IN_PROGRESS,
        Status.SCHEDULED,
    )
    assert files_in(fed) == [waiting.file_name]  # the sync at the end took them out

    again = worklist_completion(fed.pk)
    assert again == {"changes": 0, "matched": 0, "no_show": 0, "last_seq": last}


@pytest.mark.orthanc
def test_the_stable_study_completes_its_entry_at_the_next_poll(fed):
    entry = make_entry(fed, accession="POLL-S")
    study = fed.client.upload(make_instance(patient_id="PS", accession="POLL-S"))["ParentStudy"]
    _wait_stable(fed.client, study)
    worklist_completion(fed.pk)
    entry.refresh_from_db()
    assert entry.status == Status.COMPLETED


@pytest.mark.orthanc
def test_the_poll_reads_the_feed_page_by_page(fed, monkeypatch):
    monkeypatch.setattr(completion, "PAGE", 3)
    entries = [make_entry(fed, accession=f"PAGE-{n}") for n in range(4)]
    for n in range(4):
        fed.client.upload(make_instance(patient_id=f"PP{n}", accession=f"PAGE-{n}"))
    last = fed.client.get_json("/changes", params={"last": ""})["Last"]

    result = worklist_completion(fed.pk)

    assert (result["matched"], result["last_seq"]) == (4, last)
    assert all(WorklistEntry.objects.get(pk=e.pk).status == Status.IN_PROGRESS for e in entries)


@pytest.mark.orthanc
def test_an_orthanc_whose_feed_restarted_is_read_from_its_start(fed):
    entry = make_entry(fed, accession="POLL-R")
    fed.client.upload(make_instance(patient_id="PR", accession="POLL-R"))
    WorklistState.objects.filter(deployment=fed).update(last_change_seq=10**9)  # beyond Orthanc's Last
    last = lambda: fed.client.get_json("/changes", params={"last": ""})["Last"]  # noqa: E731
    before = last()
    result = worklist_completion(fed.pk)
    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS
    # Read to Orthanc's newest change; a Stable* change of this module's Orthanc (StableAge 1) may
    # come in meanwhile.
    assert before <= result["last_seq"] <= last()


@pytest.mark.orthanc
def test_a_study_deleted_before_the_poll_is_skipped(fed):
    entry = make_entry(fed, accession="POLL-D")
    study = fed.client.upload(make_instance(patient_id="PD", accession="POLL-D"))["ParentStudy"]
    fed.client.request("DELETE", f"/studies/{study}")
    result = worklist_completion(fed.pk)
    entry.refresh_from_db()
    assert (entry.status, result["matched"]) == (Status.SCHEDULED, 0)
    assert result["last_seq"] == WorklistState.objects.get(deployment=fed).last_change_seq


def test_an_orthanc_that_does_not_answer_is_recorded_and_the_no_shows_are_marked_anyway(wl_deployment):
    url = f"http://127.0.0.1:{free_port()}"
    Deployment.objects.filter(pk=wl_deployment.pk).update(orthanc_url=url)
    late = make_entry(wl_deployment, day=timezone.localdate() - datetime.timedelta(days=5))
    WorklistState.objects.create(deployment=wl_deployment, last_change_seq=42)

    with pytest.raises(OrthancError) as error:
        worklist_completion(wl_deployment.pk)

    state = WorklistState.objects.get(deployment=wl_deployment)
    assert str(error.value) == state.last_poll_error == f"Orthanc at {url} is unreachable (ConnectionError)"
    assert state.last_change_seq == 42 and state.last_poll_at is not None
    late.refresh_from_db()
    assert late.status == Status.NO_SHOW


@pytest.mark.orthanc
def test_a_folder_the_sync_cannot_reach_fails_the_poll_with_the_sync_s_reason(fed):
    make_entry(fed, accession="POLL-F")
    fed.client.upload(make_instance(patient_id="PF", accession="POLL-F"))
    os.rmdir(fed.worklists_dir)
    with pytest.raises(OrthancError, match="does not exist"):
        worklist_completion(fed.pk)
    assert WorklistEntry.objects.get(accession_number="POLL-F").status == Status.IN_PROGRESS


@pytest.mark.orthanc
def test_only_new_and_stable_study_changes_move_entries(fed):
    entry = make_entry(fed, accession="POLL-M")
    study = fed.client.upload(make_instance(patient_id="PM", accession="POLL-M"))["ParentStudy"]
    assert worklist_completion(fed.pk)["matched"] == 1
    # Another change of the same study (its metadata): read, and nothing to match.
    fed.client.request("PUT", f"/studies/{study}/metadata/Sample", data="x")
    assert worklist_completion(fed.pk) == {
        "changes": 1,
        "matched": 0,
        "no_show": 0,
        "last_seq": fed.client.get_json("/changes", params={"last": ""})["Last"],
    }
    entry.refresh_from_db()
    assert entry.status == Status.IN_PROGRESS


@pytest.mark.orthanc
def test_a_study_gone_when_the_poll_asks_for_it_is_skipped_and_other_errors_are_raised(fed):
    # Orthanc drops the changes of a deleted study: the poll meets a 404 only in a race, asked here.
    assert completion._handle_study(fed, fed.client, {"ID": "no-such-study", "ChangeType": "NewStudy"}) == 0
    down = OrthancClient(f"http://127.0.0.1:{free_port()}", "x", "y", timeout=2)
    with pytest.raises(OrthancError):
        completion._handle_study(fed, down, {"ID": "no-such-study", "ChangeType": "NewStudy"})


@pytest.mark.orthanc
def test_a_study_without_an_accession_number_matches_by_its_uid_only(fed):
    import io

    import pydicom

    by_accession = make_entry(fed, accession="XXXX")
    by_uid = make_entry(fed, accession="POLL-U")
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_id="PU", study_uid=by_uid.study_instance_uid)))
    del ds.AccessionNumber
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    fed.client.upload(out.getvalue())
    assert worklist_completion(fed.pk)["matched"] == 1
    by_accession.refresh_from_db()
    by_uid.refresh_from_db()
    assert (by_uid.status, by_accession.status) == (Status.IN_PROGRESS, Status.SCHEDULED)


def _two_study_pages_failing_at_the_second(deployment, monkeypatch, count, error):
    """``count`` uploads, one page each (an upload makes four changes); the poll's handling of the
    second study raises ``error``. Returns (the feed's position before, the changes handled)."""
    monkeypatch.setattr(completion, "PAGE", 4)
    for n in range(count):
        make_entry(deployment, accession=f"MID-{n}")
        deployment.client.upload(make_instance(patient_id=f"PM{n}", accession=f"MID-{n}"))
    start = WorklistState.objects.get(deployment=deployment).last_change_seq
    handle, calls = completion._handle_study, []

    def failing_on_the_second_study(deployment, client, change):
        calls.append(change["Seq"])
        if len(calls) == 2:
            raise error
        return handle(deployment, client, change)

    monkeypatch.setattr(completion, "_handle_study", failing_on_the_second_study)
    with pytest.raises(type(error)):
        worklist_completion(deployment.pk)
    monkeypatch.setattr(completion, "_handle_study", handle)
    return start, calls


@pytest.mark.orthanc
def test_each_page_read_is_recorded_so_a_poll_that_fails_midway_resumes_after_it(quiet_fed, monkeypatch):
    start, _ = _two_study_pages_failing_at_the_second(quiet_fed, monkeypatch, 3, RuntimeError("the worker died"))
    assert WorklistState.objects.get(deployment=quiet_fed).last_change_seq == start + 4  # the first page
    assert worklist_completion(quiet_fed.pk)["matched"] == 2


@pytest.mark.orthanc
def test_a_long_error_of_orthanc_fits_its_column(fed, monkeypatch):
    make_entry(fed, accession="POLL-L")
    fed.client.upload(make_instance(patient_id="PL", accession="POLL-L"))

    def failing(deployment, client, change):
        raise OrthancError("Orthanc answered 500: " + "details " * 60)  # Orthanc's own Details can be long

    monkeypatch.setattr(completion, "_handle_study", failing)
    with pytest.raises(OrthancError) as error:
        worklist_completion(fed.pk)
    assert WorklistState.objects.get(deployment=fed).last_poll_error == str(error.value)[:300]
    assert len(str(error.value)) > 300


@pytest.mark.orthanc
def test_an_orthanc_error_midway_through_a_page_keeps_the_changes_read_before_it(quiet_fed, monkeypatch):
    error = OrthancError("Orthanc stopped answering")
    start, calls = _two_study_pages_failing_at_the_second(quiet_fed, monkeypatch, 2, error)
    # Each upload's changes: instance, series, study, patient; the second study is change 7.
    assert calls == [start + 3, start + 7]
    assert WorklistState.objects.get(deployment=quiet_fed).last_change_seq == start + 6
