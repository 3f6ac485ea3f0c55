"""A snapshot into a Borg repository, and its way back (for drills and restores).

Each archive holds the same snapshot as an rsync target's folder: the configuration, the storage
files, the index (a copy made while Orthanc is stopped, or a pg_dump) and manifest.json. borg
stores the folders under their own paths; the archive's comment names them, so a fetch lays the
archive out as storage/, index/, config/ and manifest.json like an rsync snapshot.

The repository is append-only for the Orthanc host: retention (pruning) is not done from here.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from .borg import Repository
from .control import WindowError, run_stopped, service_of
from .guardian import Guard
from .manifest import index_inside_storage, is_index_file, orthanc_facts, storage_files, storage_paths
from .pgdump import pg_dump
from .run import Snapshotter, new_snapshot_name, stop_window_seconds
from .validators import is_snapshot_name

STAGE = "portal-snapshot"


def _connection(repo):
    session = repo.session  # None for a local disk
    return {"ssh_dir": session.dir, "master_pid": session.master.pid} if session else {}


class BorgSnapshotter(Snapshotter):
    def execute(self):
        s, d = self.schedule, self.deployment
        sqlite = s.include_index and d.index_backend == d.IndexBackend.SQLITE
        if sqlite:
            self.service = service_of(d)
        storage, index = storage_paths(d)
        skip_index = index_inside_storage(d)
        with (
            Repository(s) as repo,
            tempfile.TemporaryDirectory(prefix="portal-borg-") as tmp,
            # Outlives this process: restarts Orthanc and cleans up if the run dies in the stop window.
            Guard(self.run, **_connection(repo), temp_dirs=[tmp]) as guard,
        ):
            self.guard = guard
            self.note(f"connected to {repo.url}")
            repo.ensure()
            previous = max((n for n in repo.archives() if is_snapshot_name(n)), default="")
            name = new_snapshot_name(previous)
            stage = Path(tmp) / STAGE
            stage.mkdir()
            facts = orthanc_facts(d) if (s.include_index or s.include_storage) else {}
            files = storage_files(storage, skip_index) if s.include_storage and not sqlite else {}
            if sqlite:

                def window(deadline):
                    # Inside the stop: a local copy of the index and the list of storage files.
                    (stage / "index").mkdir()
                    for n in sorted(n for n in os.listdir(index) if is_index_file(n)):
                        shutil.copy2(index / n, stage / "index" / n)
                    return storage_files(storage, skip_index) if s.include_storage else {}

                self.note("stopping Orthanc for the index copy")
                try:
                    files, self.run.downtime = run_stopped(
                        self.service, window, stop_window_seconds(), guard=self.guard
                    )
                except WindowError as exc:
                    self.run.downtime = exc.downtime
                    raise
                self.note(f"Orthanc answers again after {self.run.downtime:.2f} s of downtime")
            elif s.include_index:
                pg_dump(d, stage)
            index_files = (
                {p.name: p.stat().st_size for p in sorted((stage / "index").iterdir())}
                if (stage / "index").exists()
                else {}
            )
            manifest = {
                **facts,
                "snapshot_started": self.run.started_at.isoformat(),
                "index_backend": d.index_backend,
                "includes": {"index": s.include_index, "storage": s.include_storage, "config": s.include_config},
                "storage": files,
                "index_files": index_files,
            }
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            roots = {"stage": str(stage)}
            if s.include_storage:
                roots["storage"] = str(storage)
            if s.include_config:
                roots["config"] = str(Path(d.config_dir).resolve())
            # A storage file deleted between the listing and the read makes borg warn: the run fails.
            excludes = [f"{storage}/index", f"{storage}/index-*"] if skip_index and s.include_storage else []
            comment = json.dumps({k: v.lstrip("/") for k, v in roots.items()})
            stats = repo.create(name, list(roots.values()), cwd="/", excludes=excludes, comment=comment)
        self.wire += stats["deduplicated_size"]
        self.run.files = stats["nfiles"]
        self.run.snapshot_size = stats["original_size"]
        self.run.patients = facts.get("counts", {}).get("patients")
        self.run.studies = facts.get("counts", {}).get("studies")
        self.run.instances = facts.get("counts", {}).get("instances")
        self.run.orthanc_version = facts.get("orthanc_version", "")
        self.run.config_revision = facts.get("config_revision")
        self.run.previous, self.run.snapshot = previous, name
        self.run.pruned = []
        self.note(f"archive {name} complete: {stats['deduplicated_size']} new bytes of {stats['original_size']}")
        self.run.save()


def fetch_archive(run, into: Path, config=False) -> dict:
    """Extract an archive into ``into`` laid out as an rsync snapshot; returns files and bytes."""
    raw = into / ".borg"
    raw.mkdir(mode=0o700)
    try:
        with Repository(run.schedule) as repo:
            roots = json.loads(repo.comment(run.snapshot))
            wanted = [roots[k] for k in ("stage", "storage", *(("config",) if config else ())) if k in roots]
            repo.extract(run.snapshot, raw, wanted)
        for key in ("storage", "config"):
            if key in roots and (key == "storage" or config):
                (raw / roots[key]).rename(into / key)
        for item in (raw / roots["stage"]).iterdir():
            item.rename(into / item.name)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    files = size = 0
    for folder in ("storage", "index"):
        for p in (into / folder).rglob("*") if (into / folder).exists() else ():
            if p.is_file():
                files, size = files + 1, size + p.stat().st_size
    return {"files": files, "size": size}
