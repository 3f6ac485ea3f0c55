"""What a snapshot holds: counts, study UIDs, storage files and sizes, Orthanc version, config revision."""

import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from deployments.models import ConfigRevision
from deployments.orthanc import OrthancClient

INDEX_PREFIX = "index"  # Orthanc's SQLite index and its companions (index-wal, index-journal…)


def storage_paths(deployment):
    storage = Path(deployment.storage_dir or Path(deployment.config_dir).parent / "storage").resolve()
    index = Path(deployment.index_dir).resolve() if deployment.index_dir else storage
    return storage, index


def index_inside_storage(deployment):
    storage, index = storage_paths(deployment)
    return storage == index


def is_index_file(name):
    return name == INDEX_PREFIX or name.startswith(INDEX_PREFIX + "-")


def storage_files(storage: Path, skip_index: bool) -> dict[str, int]:
    """relative path → size of every storage file (the index files at the root left out)."""
    files = {}
    for folder, dirs, names in os.walk(storage):
        dirs.sort()
        rel_folder = os.path.relpath(folder, storage)
        for name in sorted(names):
            if skip_index and rel_folder == "." and is_index_file(name):
                continue
            path = os.path.join(folder, name)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            files[rel] = os.lstat(path).st_size
    return files


def storage_rel(uuid):
    """Where Orthanc's file storage keeps an attachment: <uuid[0:2]>/<uuid[2:4]>/<uuid>."""
    return f"{uuid[:2]}/{uuid[2:4]}/{uuid}"


def attachment_checksums(index_file: Path) -> dict[str, str]:
    """Storage path → MD5 of the stored file, as Orthanc's SQLite index records it (the hash of
    the bytes on disk: compressed ones when Orthanc compresses). Read only while Orthanc is stopped."""
    with closing(sqlite3.connect(f"{index_file.resolve().as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT uuid, compressedMD5 FROM AttachedFiles").fetchall()
    return {storage_rel(uuid): md5 for uuid, md5 in rows if uuid and md5}


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # Orthanc's own choice of hash: compared, not trusted for secrecy
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def damaged_files(checksums: dict[str, str], sums: dict[str, str]) -> list[str]:
    """The storage files whose MD5 (``sums``, as read back) differs from Orthanc's record, or that
    are missing, sorted."""
    return sorted(rel for rel, md5 in checksums.items() if sums.get(rel) != md5)


def study_uids(client) -> list[str]:
    studies = client.get_json("/studies", params={"expand": ""})
    return sorted(s.get("MainDicomTags", {}).get("StudyInstanceUID", s["ID"]) for s in studies)


def orthanc_facts(deployment, timeout=120) -> dict:
    """The live counts, version and study UIDs, asked right before the copy."""
    client = OrthancClient.for_deployment(deployment, timeout=timeout)
    try:
        return _facts(deployment, client)
    finally:
        # An open keep-alive connection slows Orthanc's stop, which comes right after.
        client.session.close()


def applied_revision(deployment):
    """The number of the deployment's newest applied configuration revision, if any."""
    return (
        ConfigRevision.objects.filter(deployment=deployment, state=ConfigRevision.State.APPLIED)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )


def last_change(client):
    """The sequence number of Orthanc's newest change (new, modified or deleted resource)."""
    return client.get_json("/changes", params={"last": ""}).get("Last")


def _facts(deployment, client):
    stats = client.statistics()
    seq = last_change(client)
    revision = applied_revision(deployment)
    return {
        "deployment": deployment.slug,
        "orthanc_version": client.system().get("Version", ""),
        "last_change": seq,
        "config_revision": revision,
        "counts": {
            "patients": stats["CountPatients"],
            "studies": stats["CountStudies"],
            "series": stats["CountSeries"],
            "instances": stats["CountInstances"],
        },
        "study_uids": study_uids(client),
    }


def compare(manifest: dict, counts: dict, uids: list[str]) -> list[str]:
    """Differences between a manifest and what an Orthanc holds; empty when they agree."""
    problems = []
    for key in ("patients", "studies", "instances"):
        want, got = manifest["counts"][key], counts[key]
        if want != got:
            problems.append(f"{key}: manifest {want}, restored {got}")
    want_uids, got_uids = set(manifest["study_uids"]), set(uids)
    missing, extra = sorted(want_uids - got_uids), sorted(got_uids - want_uids)
    if missing:
        problems.append(f"{len(missing)} studies missing, e.g. {', '.join(missing[:3])}")
    if extra:
        problems.append(f"{len(extra)} studies not in the manifest, e.g. {', '.join(extra[:3])}")
    return problems


def compare_files(manifest: dict, storage: Path) -> list[str]:
    problems = []
    for rel, size in manifest.get("storage", {}).items():
        path = storage / rel
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"storage file {rel} is missing")
            continue
        if actual != size:
            problems.append(f"storage file {rel} is {actual} bytes, the manifest says {size}")
    if len(problems) > 5:
        problems = [*problems[:5], f"… and {len(problems) - 5} more storage files differ"]
    return problems


def live_counts(client) -> dict:
    stats = client.statistics()
    return {"patients": stats["CountPatients"], "studies": stats["CountStudies"], "instances": stats["CountInstances"]}
