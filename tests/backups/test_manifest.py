"""What a snapshot's manifest says: the storage files and their sizes (a real folder), Orthanc's
counts, version, last change and study UIDs (a real Orthanc), and how a restored Orthanc or
folder is compared with it."""

import os
import socket
import time
from pathlib import Path

import pytest

from deployments.backups.manifest import (
    applied_revision,
    attachment_checksums,
    compare,
    compare_files,
    damaged_files,
    index_inside_storage,
    is_index_file,
    last_change,
    live_counts,
    md5_of,
    orthanc_facts,
    storage_files,
    storage_paths,
    storage_rel,
    study_uids,
)
from deployments.models import ConfigRevision, Deployment
from deployments.orthanc import OrthancClient, OrthancError
from tests.conftest import installed_orthanc_version
from tests.dicomfiles import make_instance

# ---------------------------------------------------------------- the storage folder


def test_the_storage_folder_defaults_beside_the_configuration_and_the_index_defaults_inside_it(tmp_path):
    d = Deployment(config_dir=str(tmp_path / "site" / "config"), storage_dir="", index_dir="")
    storage, index = storage_paths(d)
    assert storage == index == (tmp_path / "site" / "storage").resolve()
    assert index_inside_storage(d)
    d.storage_dir = str(tmp_path / "data" / ".." / "store")
    d.index_dir = str(tmp_path / "db")
    assert storage_paths(d) == ((tmp_path / "store").resolve(), (tmp_path / "db").resolve())
    assert not index_inside_storage(d)
    d.index_dir = str(tmp_path / "store" / ".")
    assert index_inside_storage(d)


def test_orthanc_s_index_files_are_told_by_their_name():
    for name in ("index", "index-wal", "index-journal", "index-shm"):
        assert is_index_file(name), name
    for name in ("indexes", "index.bak", "my-index", "Index", "", "ab"):
        assert not is_index_file(name), name


def test_storage_files_lists_every_file_with_its_size_and_leaves_out_the_index_at_the_root(tmp_path):
    (tmp_path / "ab" / "cd").mkdir(parents=True)
    (tmp_path / "ab" / "cd" / "0001").write_bytes(b"x" * 10)
    (tmp_path / "ab" / "cd" / "0002").write_bytes(b"")
    (tmp_path / "ab" / "index").write_bytes(b"y" * 3)  # not at the root: a storage file
    (tmp_path / "index").write_bytes(b"z" * 7)
    (tmp_path / "index-wal").write_bytes(b"w")
    (tmp_path / "top").write_bytes(b"t" * 2)
    os.symlink("top", tmp_path / "link")  # the link's own size, not its target's

    assert storage_files(tmp_path, skip_index=True) == {
        "ab/cd/0001": 10,
        "ab/cd/0002": 0,
        "ab/index": 3,
        "link": 3,
        "top": 2,
    }
    with_index = storage_files(tmp_path, skip_index=False)
    assert (with_index["index"], with_index["index-wal"]) == (7, 1)
    # Folder by folder from the top, names sorted: the same order every time.
    assert list(with_index) == ["index", "index-wal", "link", "top", "ab/index", "ab/cd/0001", "ab/cd/0002"]


def test_a_restored_folder_is_compared_file_by_file_and_the_list_is_kept_short(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "b").write_bytes(b"1")
    manifest = {"storage": {"a": 5, "b": 2, "c": 1}}
    assert compare_files(manifest, tmp_path) == [
        "storage file b is 1 bytes, the manifest says 2",
        "storage file c is missing",
    ]
    assert compare_files({"storage": {"a": 5}}, tmp_path) == []
    assert compare_files({}, tmp_path) == []
    many = {"storage": {f"gone-{n}": 1 for n in range(8)}}
    problems = compare_files(many, tmp_path)
    assert problems == [f"storage file gone-{n} is missing" for n in range(5)] + ["… and 3 more storage files differ"]
    assert len(compare_files({"storage": {f"gone-{n}": 1 for n in range(5)}}, tmp_path)) == 5
    six = compare_files({"storage": {f"gone-{n}": 1 for n in range(6)}}, tmp_path)
    assert six[-1] == "… and 1 more storage files differ"


def test_a_restored_orthanc_is_compared_by_counts_and_study_uids():
    manifest = {
        "counts": {"patients": 2, "studies": 3, "series": 4, "instances": 9},
        "study_uids": ["1.1", "1.2", "1.3", "1.4", "1.5"],
    }
    same = {"patients": 2, "studies": 3, "instances": 9}
    assert compare(manifest, same, ["1.5", "1.4", "1.3", "1.2", "1.1"]) == []
    assert compare(manifest, {"patients": 1, "studies": 3, "instances": 8}, manifest["study_uids"]) == [
        "patients: manifest 2, restored 1",
        "instances: manifest 9, restored 8",
    ]
    assert compare(manifest, same, ["1.1", "1.9", "1.8", "1.7", "1.6", "1.0"]) == [
        "4 studies missing, e.g. 1.2, 1.3, 1.4",
        "5 studies not in the manifest, e.g. 1.0, 1.6, 1.7",
    ]


# ---------------------------------------------------------------- a real Orthanc


def test_applied_revision_is_the_newest_applied_one(db):
    d = Deployment.objects.create(name="R", slug="r", orthanc_url="http://127.0.0.1:9", service_password="x" * 24)
    assert applied_revision(d) is None
    for number, state in ((1, "applied"), (2, "applied"), (3, "failed"), (4, "pending")):
        ConfigRevision.objects.create(deployment=d, number=number, state=state)
    other = Deployment.objects.create(name="O", slug="o", orthanc_url="http://127.0.0.1:9", service_password="x" * 24)
    ConfigRevision.objects.create(deployment=other, number=9, state="applied")
    assert applied_revision(d) == 2


@pytest.mark.orthanc
def test_the_facts_of_a_live_orthanc_are_its_counts_version_last_change_and_study_uids(orthanc_deployment):
    client = OrthancClient.for_deployment(orthanc_deployment, timeout=10)
    empty = orthanc_facts(orthanc_deployment)
    assert empty["counts"] == {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    assert empty["study_uids"] == [] and empty["last_change"] == 0

    client.upload(make_instance(patient_id="P1", study_uid="1.2.3.9", series_uid="1.2.3.9.1"))
    client.upload(make_instance(patient_id="P1", study_uid="1.2.3.9", series_uid="1.2.3.9.1", instance_number=2))
    client.upload(make_instance(patient_id="P1", study_uid="1.2.3.9", series_uid="1.2.3.9.2"))
    client.upload(make_instance(patient_id="P2", study_uid="1.2.3.10", series_uid="1.2.3.10.1"))
    ConfigRevision.objects.create(deployment=orthanc_deployment, number=7, state="applied")

    facts = orthanc_facts(orthanc_deployment, timeout=30)

    assert facts["deployment"] == orthanc_deployment.slug
    assert facts["orthanc_version"] == installed_orthanc_version()
    assert facts["counts"] == {"patients": 2, "studies": 2, "series": 3, "instances": 4}
    assert facts["study_uids"] == ["1.2.3.10", "1.2.3.9"]  # sorted as text
    assert facts["config_revision"] == 7
    changes = client.get_json("/changes", params={"limit": 1000})["Changes"]
    assert facts["last_change"] == max(c["Seq"] for c in changes) == last_change(client)
    assert live_counts(client) == {"patients": 2, "studies": 2, "instances": 4}
    assert study_uids(client) == ["1.2.3.10", "1.2.3.9"]
    # Beyond Orthanc's first page of changes (100), the newest is still the newest.
    for n in range(100):
        client.upload(make_instance(patient_id="P3", study_uid="1.2.3.11", series_uid="1.2.3.11.1", instance_number=n))
    changes = client.get_json("/changes", params={"limit": 1000})["Changes"]
    assert len(changes) > 100 and last_change(client) == max(c["Seq"] for c in changes)


def test_the_storage_of_a_deployment_folder_is_read_through_the_same_paths(tmp_path):
    d = Deployment(config_dir=str(tmp_path / "config"), storage_dir=str(tmp_path / "storage"), index_dir="")
    storage, index = storage_paths(d)
    Path(storage).mkdir()
    (Path(storage) / "index").write_bytes(b"db")
    (Path(storage) / "f1").write_bytes(b"abc")
    assert storage_files(storage, skip_index=index_inside_storage(d)) == {"f1": 3}


def test_a_hung_orthanc_fails_the_facts_within_the_timeout_given(db):
    """A server that accepts the connection and never answers (an Orthanc stuck on its disk)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        d = Deployment(orthanc_url=f"http://127.0.0.1:{hung.getsockname()[1]}", service_password="x" * 24)
        started = time.monotonic()
        with pytest.raises(OrthancError, match="did not answer within 1 s"):
            orthanc_facts(d, timeout=1)
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- integrity: Orthanc's own MD5s


def test_a_storage_file_is_found_under_the_first_two_pairs_of_its_uuid():
    assert storage_rel("0a1b2c3d-4e5f-6789-abcd-ef0123456789") == "0a/1b/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def test_rsync_s_checksum_lines_are_read_for_regular_files_only_and_names_may_hold_spaces():
    from deployments.backups.ssh import parse_checksums

    text = (
        "cd+++++++++                                  ab/\n"
        ">f+++++++++ d41d8cd98f00b204e9800998ecf8427e ab/cd/abcd-1\n"
        ">f+++++++++ 0cc175b9c0f1b6a831c399e269772661 ab/cd/with two  spaces\n"
        "cL+++++++++                                  ab/link -> elsewhere\n"
        "not a line of rsync\n"
        "\n"
    )
    assert parse_checksums(text) == {
        "ab/cd/abcd-1": "d41d8cd98f00b204e9800998ecf8427e",
        "ab/cd/with two  spaces": "0cc175b9c0f1b6a831c399e269772661",
    }
    assert parse_checksums("") == {}


def test_damaged_files_are_those_whose_md5_differs_or_that_are_missing_sorted():
    recorded = {"b/2": "22", "a/1": "11", "c/3": "33"}
    assert damaged_files(recorded, {"a/1": "11", "b/2": "XX", "extra": "00"}) == ["b/2", "c/3"]
    assert damaged_files(recorded, dict(recorded)) == []


def test_the_md5_of_a_file_is_read_in_chunks_and_equals_the_md5_of_all_its_bytes(tmp_path):
    import hashlib

    big = tmp_path / "big"
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one chunk
    big.write_bytes(data)
    assert md5_of(big) == hashlib.md5(data).hexdigest()  # noqa: S324 - compared with Orthanc's choice
    (tmp_path / "empty").write_bytes(b"")
    assert md5_of(tmp_path / "empty") == "d41d8cd98f00b204e9800998ecf8427e"


@pytest.mark.orthanc
def test_orthanc_s_index_records_the_md5_of_each_stored_file(orthanc):
    client = orthanc.client()
    for n in range(2):
        client.upload(make_instance(patient_id=f"I{n}", size=64))
    client.session.close()
    orthanc.stop()  # the index is read while Orthanc is stopped
    storage = Path(orthanc.deployment.storage_dir)

    checksums = attachment_checksums(storage / "index")

    on_disk = {rel: size for rel, size in storage_files(storage, skip_index=True).items()}
    assert set(checksums) == set(on_disk) and len(checksums) >= 2  # the DICOM files and their JSON summaries
    for rel, md5 in checksums.items():
        assert md5_of(storage / rel) == md5
    assert damaged_files(checksums, {rel: md5_of(storage / rel) for rel in checksums}) == []


@pytest.mark.orthanc
def test_an_orthanc_that_keeps_no_md5_gives_nothing_to_check(orthanc_factory):
    instance = orthanc_factory(extra_config={"StoreMD5ForAttachments": False})
    instance.client().upload(make_instance(patient_id="NOMD5", size=32))
    instance.stop()
    assert attachment_checksums(Path(instance.deployment.storage_dir) / "index") == {}
