"""The worklist server's rules, without Orthanc: how it reads a query and a file, which files it
may leave out of a query (never one Orthanc would answer), and how its index follows the folder.
Its answers through a real Orthanc are in test_worklist_server.py."""

import io
import os
import time

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from deployments.worklist_server import (
    Index,
    _in_orthanc,
    _keys_of,
    date_bounds,
    exact,
    file_keys,
    first_step,
    may_match,
    query_keys,
    study_keys,
    worklist_keys,
)


def test_date_query_forms_are_read_as_bounds_and_other_forms_are_left_to_orthanc():
    assert date_bounds("20261122") == ("20261122", "20261122")
    assert date_bounds("20261120-20261125") == ("20261120", "20261125")
    assert date_bounds("20261122-") == ("20261122", None)
    assert date_bounds("-20261122") == (None, "20261122")
    for other in ("", "-", "*", "2026.11.22", "2026112220261123", "20261122\\20261123", "202611"):
        assert date_bounds(other) is None, other


def test_the_preselection_never_drops_a_file_whose_keys_match():
    file = ("20261122", "US1", "ACC-1")
    for query in [
        {},
        {"0040,0100": [{"0040,0002": "20261122", "0040,0001": "US1"}]},
        {"0040,0100": [{"0040,0002": "20261101-20261130", "0040,0001": "us1 "}]},
        {"0040,0100": [{"0040,0002": "-20261122"}], "0008,0050": "acc-1"},
        {"0040,0100": [{"0040,0001": "US*"}], "0008,0050": "ACC*"},
        {"0040,0100": [{"0040,0002": "20261122-"}], "0008,0050": "ACC-1"},
        {"0040,0100": []},
    ]:
        assert may_match(file, query_keys(query)), query
    for query in [
        {"0040,0100": [{"0040,0002": "20261123"}]},
        {"0040,0100": [{"0040,0002": "-20261121"}]},
        {"0040,0100": [{"0040,0001": "US2"}]},
        {"0008,0050": "ACC-2"},
    ]:
        assert not may_match(file, query_keys(query)), query
    # A file whose keys could not be read always goes to Orthanc's matcher.
    assert may_match(None, query_keys({"0008,0050": "ACC-2"}))
    # A file without a date or station cannot be told apart here either.
    assert may_match(file_keys({"0008,0050": "ACC-1"}), query_keys({"0040,0100": [{"0040,0002": "20261123"}]}))


# ---------------------------------------------------------------- reading queries and files


def test_a_query_key_asks_for_one_value_only_without_wildcards_or_several_values():
    assert exact(" us1 ") == "US1"
    assert exact("Acc-1") == "ACC-1"
    for any_value in ("", None, "  ", "US*", "U?1", "*", "?"):
        assert exact(any_value) == "", any_value
    # A backslash makes a multi-value query: ACC-1\ACC-2 matches files of either, so neither is dropped.
    assert exact("ACC-1\\ACC-2") == ""
    assert may_match(("20261122", "US1", "ACC-1"), query_keys({"0008,0050": "ACC-1\\ACC-2"}))
    assert may_match(("20261122", "US1", "ACC-2"), query_keys({"0040,0100": [{"0040,0001": "US2\\US1"}]}))
    assert date_bounds(" 20261122 ") == ("20261122", "20261122")


def test_the_first_scheduled_step_is_read_and_anything_else_counts_as_none():
    assert first_step({"0040,0100": [{"0040,0001": "US1"}, {"0040,0001": "US2"}]}) == {"0040,0001": "US1"}
    for other in (
        {},
        {"0040,0100": []},
        {"0040,0100": ["text"]},
        {"0040,0100": {"0040,0001": "US1"}},
        {"0040,0100": None},
    ):
        assert first_step(other) == {}, other


def test_a_file_gives_its_date_station_and_accession_trimmed_and_upper_cased():
    worklist = {"0008,0050": " acc-7 ", "0040,0100": [{"0040,0002": " 20261122 ", "0040,0001": " us1 "}]}
    assert file_keys(worklist) == ("20261122", "US1", "ACC-7")
    assert file_keys({"0040,0100": [{"0040,0002": "2026-11-22"}]}) == ("", "", "")
    assert file_keys({"0040,0100": [{"0040,0002": "2026112"}]})[0] == ""
    assert file_keys({"0008,0050": None, "0040,0100": [{"0040,0002": None, "0040,0001": None}]}) == ("", "", "")
    assert query_keys({"0008,0050": "acc-7", "0040,0100": [{"0040,0002": "20261122-", "0040,0001": "us1"}]}) == (
        ("20261122", None),
        "US1",
        "ACC-7",
    )
    assert query_keys({}) == (None, "", "")


def test_each_preselection_rule_drops_a_file_only_when_its_own_key_differs():
    file = ("20261122", "US1", "ACC-1")
    assert not may_match(file, (("20261123", None), "", ""))  # before the range
    assert not may_match(file, ((None, "20261121"), "", ""))  # after it
    assert may_match(file, (("20261122", "20261122"), "", ""))  # the range's own ends count
    assert may_match(file, ((None, None), "", ""))
    assert not may_match(file, (None, "US2", ""))
    assert not may_match(file, (None, "", "ACC-2"))
    assert may_match(file, (None, "US1", "ACC-1"))
    # A file without the key is never dropped for it.
    assert may_match(("", "", ""), (("20261123", "20261124"), "US2", "ACC-2"))
    assert may_match(None, (("20261123", "20261124"), "US2", "ACC-2"))


def test_the_keys_of_a_file_with_several_steps_are_left_to_orthanc_but_its_study_is_known():
    one = {"0020,000d": " 1.2.3 ", "0008,0050": "ACC-1", "0040,0100": [{"0040,0002": "20261122"}]}
    assert worklist_keys(one) == (("20261122", "", "ACC-1"), ("1.2.3", "ACC-1"))
    two = {**one, "0040,0100": [{"0040,0002": "20261122"}, {"0040,0002": "20261123"}]}
    assert worklist_keys(two) == (None, ("1.2.3", "ACC-1"))
    assert study_keys({"0020,000d": ["not", "text"]}) == ("", "")
    assert study_keys({}) == ("", "")


def test_outside_orthanc_no_file_can_be_read_and_no_study_is_stored():
    assert _keys_of(b"DICM") == (None, None)  # Orthanc's parser is not here: left to its matcher
    assert _in_orthanc("") is False
    assert _in_orthanc("1.2.3") is False


# ---------------------------------------------------------------- the index of the folder


def short_json(data):
    """What Orthanc's DicomBufferToJson(SHORT) gives for the keys read here, made with pydicom."""
    ds = pydicom.dcmread(io.BytesIO(data))  # a Part 10 file, as Orthanc's parser wants it

    def convert(dataset):
        out = {}
        for element in dataset:
            key = f"{element.tag.group:04x},{element.tag.element:04x}"
            out[key] = [convert(item) for item in element.value] if element.VR == "SQ" else str(element.value)
        return out

    return convert(ds)


def read_keys(data):
    try:
        return worklist_keys(short_json(data))
    except Exception:  # noqa: BLE001 - like Orthanc's parser: an unreadable file has no keys
        return None, None


def wl(accession, study_uid, date="20261122", station="US1"):
    ds = Dataset()
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid
    step = Dataset()
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledStationAETitle = station
    ds.ScheduledProcedureStepSequence = [step]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    ds.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


PORTAL = "portal-0f8fad5b-d9cb-469f-a165-70867728950{}.wl"


def settle(folder):
    """Make the folder and its files look older than SETTLE_SECONDS, as without any recent change."""
    old = time.time() - 60
    for path in [folder, *folder.iterdir()]:
        os.utime(path, (old, old), follow_symlinks=False)


def accessions(snapshot):
    return sorted(pydicom.dcmread(io.BytesIO(data)).AccessionNumber for _sig, data, _k, _s in snapshot)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / PORTAL.format(1)).write_bytes(wl("P-1", "1.1"))
    (tmp_path / PORTAL.format(2)).write_bytes(wl("P-2", "1.2"))
    (tmp_path / "ris.wl").write_bytes(wl("RIS-1", "9.1"))
    (tmp_path / "OTHER.WL").write_bytes(wl("RIS-2", "9.2"))
    (tmp_path / "notes.txt").write_bytes(b"not a worklist")
    (tmp_path / "sub.wl").mkdir()
    os.symlink(tmp_path / "ris.wl", tmp_path / "link.wl")
    os.symlink(tmp_path / "gone", tmp_path / "dangling.wl")
    return tmp_path


def test_the_index_holds_every_regular_wl_file_with_its_keys(folder):
    index = Index(str(folder), keys_of=read_keys)
    files = index.snapshot()
    assert accessions(files) == ["P-1", "P-2", "RIS-1", "RIS-1", "RIS-2"]  # the link is read like the classic plugin
    by_accession = {k[2]: (k, s) for _sig, _d, k, s in files}
    assert by_accession["P-1"] == (("20261122", "US1", "P-1"), ("1.1", "P-1"))
    assert by_accession["RIS-1"] == (("20261122", "US1", "RIS-1"), None)  # a foreign file closes nothing
    assert sorted(index.foreign) == ["OTHER.WL", "link.wl", "ris.wl"]
    assert index.study_keys == {"1.1", "P-1", "1.2", "P-2"}


def test_a_settled_folder_is_not_listed_again_and_the_portal_s_files_are_not_read_again(folder):
    index = Index(str(folder), keys_of=read_keys)
    settle(folder)
    index.snapshot()
    # Edited in place (never done by the portal, which renames): not seen while the folder is unchanged.
    portal = folder / PORTAL.format(1)
    stamp = portal.stat()
    portal.write_bytes(wl("P-X", "1.1"))
    os.utime(portal, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.utime(folder, (time.time() - 60, time.time() - 60))
    assert "P-X" not in accessions(index.snapshot())
    # Replaced by rename, as the portal does: the folder changed, the file is read again.
    (folder / "new.tmp").write_bytes(wl("P-Y", "1.1"))
    os.replace(folder / "new.tmp", portal)
    assert "P-Y" in accessions(index.snapshot())


def test_a_foreign_file_edited_in_place_is_read_again_and_one_removed_is_dropped(folder):
    index = Index(str(folder), keys_of=read_keys)
    settle(folder)
    index.snapshot()
    ris = folder / "ris.wl"
    folder_times = folder.stat()
    ris.write_bytes(wl("RIS-3", "9.1"))  # in place, the folder's mtime unchanged
    os.utime(folder, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))
    assert accessions(index.snapshot()).count("RIS-3") == 2  # the file and the link to it
    (folder / "OTHER.WL").unlink()
    os.utime(folder, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))
    assert "RIS-2" not in accessions(index.snapshot())


def test_a_recently_changed_folder_is_listed_at_every_query(folder):
    index = Index(str(folder), keys_of=read_keys)
    index.snapshot()  # the folder was made just now
    before = folder.stat()
    (folder / PORTAL.format(3)).write_bytes(wl("P-3", "1.3"))
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))  # as at the last listing: one clock tick
    assert "P-3" in accessions(index.snapshot())
    # The same in a settled folder waits for the folder to change.
    settle(folder)
    index.snapshot()
    before = folder.stat()
    (folder / PORTAL.format(5)).write_bytes(wl("P-5", "1.5"))
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "P-5" not in accessions(index.snapshot())


def test_a_recent_foreign_file_is_read_again_even_with_the_same_size_and_time(folder):
    index = Index(str(folder), keys_of=read_keys)
    ris = folder / "ris.wl"
    index.snapshot()
    stamp = ris.stat()
    ris.write_bytes(wl("RIS-9", "9.1"))  # same length as RIS-1, same mtime: one clock tick
    os.utime(ris, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert "RIS-9" in accessions(index.snapshot())


def test_a_file_that_cannot_be_read_is_left_out(folder):
    index = Index(str(folder), keys_of=read_keys)
    (folder / PORTAL.format(4)).mkdir()  # a folder named like ours: not a regular file
    assert len(index.snapshot()) == 5
    assert index._read(str(folder / "missing.wl"), (folder / "ris.wl").stat(), None, True) is None


def test_a_portal_file_leaves_the_answers_when_its_study_arrives_by_uid_or_accession(folder):
    index = Index(str(folder), keys_of=read_keys)
    index.snapshot()
    index.study_arrived("1.1", "")
    assert accessions(index.snapshot()) == ["P-2", "RIS-1", "RIS-1", "RIS-2"]
    index.study_arrived("other-uid", "P-2")
    assert accessions(index.snapshot()) == ["RIS-1", "RIS-1", "RIS-2"]
    # A study that is no portal file's, or a foreign file's, changes nothing.
    index.study_arrived("9.1", "RIS-2")
    assert accessions(index.snapshot()) == ["RIS-1", "RIS-1", "RIS-2"]
    assert index.arrived == {"1.1", "P-2"}
    # When the portal removes the file, the study is forgotten.
    (folder / PORTAL.format(1)).unlink()
    index.snapshot()
    assert index.arrived == {"P-2"}


def test_after_a_restart_the_files_whose_study_orthanc_holds_are_hidden_once_its_index_is_open(folder):
    stored = {"1.2"}
    asked = []

    def in_orthanc(uid):
        asked.append(uid)
        return uid in stored

    index = Index(str(folder), in_orthanc=in_orthanc, keys_of=read_keys)
    assert "P-2" in accessions(index.snapshot())  # Orthanc's index is not open while plugins load
    assert asked == []
    index.open_index()
    assert accessions(index.snapshot()) == ["P-1", "RIS-1", "RIS-1", "RIS-2"]
    assert sorted(asked) == ["1.1", "1.2"]  # by StudyInstanceUID only, each once
    index.snapshot()
    assert sorted(asked) == ["1.1", "1.2"]
    assert Index(str(folder)).in_orthanc("1.2") is False  # without Orthanc: nothing stored


def test_a_file_is_parsed_once_and_again_only_when_it_changed(folder):
    parsed = []

    def counting(data):
        parsed.append(data)
        return read_keys(data)

    index = Index(str(folder), keys_of=counting)
    settle(folder)
    index.snapshot()
    assert len(parsed) == 5  # every regular .wl file, the link's target read through the link too
    for _ in range(3):
        index.snapshot()
    assert len(parsed) == 5  # a settled folder: nothing parsed again, foreign files only looked at
    ris = folder / "ris.wl"
    stamp = ris.stat()
    ris.write_bytes(wl("RIS-8", "9.1"))  # in place, same size, its time put back: a recent change
    os.utime(ris, ns=(stamp.st_atime_ns, time.time_ns()))
    assert accessions(index.snapshot()).count("RIS-8") == 2
    assert len(parsed) == 7  # the file and the link to it


def test_a_foreign_file_gone_does_not_stop_the_check_of_the_others(folder):
    for link in ("link.wl", "dangling.wl"):
        (folder / link).unlink()
    (folder / "third.wl").write_bytes(wl("RIS-3", "9.3"))
    index = Index(str(folder), keys_of=read_keys)
    settle(folder)
    index.snapshot()
    gone, *others = index.foreign
    folder_times = folder.stat()

    def edit(name, accession):
        stamp = (folder / name).stat()
        (folder / name).write_bytes(wl(accession, "9.1"))
        os.utime(folder / name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
        os.utime(folder, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))

    # The check that finds the first one gone goes on with the others...
    (folder / gone).unlink()
    edit(others[0], "RIS-7")
    shown = accessions(index.snapshot())
    assert gone not in index.files and "RIS-7" in shown
    # ...and so do the next ones, though the list of foreign names still has it.
    edit(others[1], "RIS-8")
    assert "RIS-8" in accessions(index.snapshot())


def test_a_foreign_file_changed_twice_in_one_clock_tick_is_read_again(folder):
    index = Index(str(folder), keys_of=read_keys)
    settle(folder)
    index.snapshot()
    ris, folder_times = folder / "ris.wl", folder.stat()
    tick = time.time_ns()
    ris.write_bytes(wl("RIS-5", "9.1"))
    os.utime(ris, ns=(tick, tick))
    os.utime(folder, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))
    assert "RIS-5" in accessions(index.snapshot())
    ris.write_bytes(wl("RIS-6", "9.1"))  # same size, same time: only its recent change tells
    os.utime(ris, ns=(tick, tick))
    assert "RIS-6" in accessions(index.snapshot())


def test_a_portal_file_that_cannot_be_read_is_served_to_orthanc_s_matcher_as_it_is(folder):
    (folder / PORTAL.format(7)).write_bytes(b"half written")
    index = Index(str(folder), keys_of=read_keys)
    records = {data: (keys, study) for _sig, data, keys, study in index.snapshot()}
    assert records[b"half written"] == (None, None)


def test_a_file_is_looked_up_in_orthanc_by_its_study_uid_whatever_its_accession(folder):
    (folder / PORTAL.format(8)).write_bytes(wl("", "1.8"))  # no accession number
    (folder / PORTAL.format(9)).write_bytes(wl("P-9", ""))  # no study UID
    asked = []

    def in_orthanc(uid):
        asked.append(uid)
        return uid == "1.8"

    index = Index(str(folder), in_orthanc=in_orthanc, keys_of=read_keys)
    index.open_index()
    assert sorted(asked) == ["1.1", "1.2", "1.8"]
    assert "P-9" in accessions(index.snapshot()) and len(index.snapshot()) == 6


def test_a_study_that_arrives_before_the_folder_could_be_read_changes_nothing(tmp_path):
    index = Index(str(tmp_path / "not-yet"), keys_of=read_keys)
    with pytest.raises(OSError):
        index.snapshot()
    index.study_arrived("1.1", "P-1")  # Orthanc stores an image while the folder is missing
    assert index.arrived == set()


def test_only_the_studies_of_portal_files_are_remembered_as_arrived(folder):
    index = Index(str(folder), keys_of=read_keys)
    settle(folder)
    index.snapshot()
    index.study_arrived("9.1", "RIS-2")  # a foreign file's study
    index.study_arrived("", "")
    assert index.arrived == set()
    index.study_arrived("", "P-1")
    assert index.arrived == {"P-1"}
