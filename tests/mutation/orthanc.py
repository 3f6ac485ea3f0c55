"""The worklist server's mutants that mutmut's own run left alive, judged inside a real Orthanc.

deployments/worklist_server.py runs in Orthanc's Python plugin. Part of it (the callbacks, the
calls into Orthanc) can only run there, and mutmut runs tests in its own process. So after
mutmut, each of its mutants of that file that no test killed is written out as a plain script
(mutmut's own mutant function put into the file as written) and loaded into one real Orthanc,
restarted for each mutant, beside Orthanc's classic worklist plugin serving the same folder:

- the log names the folder and how many files it serves;
- each query of ``QUERIES``, from each station, answers exactly what the classic plugin answers,
  less the entries whose study Orthanc already holds (a restart looks them up by study UID) or
  has just received (by study UID or by accession number: the prompt close);
- only for a mutant that passes all that: a missing ``Worklists.Database`` and a folder missing
  at start are logged, and the folder is served once it exists.

A mutant is killed when any of it differs. Run by tests/mutation/run.py after mutmut.
"""

import datetime
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

MODULE = "deployments/worklist_server.py"
ROOT = Path(__file__).resolve().parents[2]


def mutant_source(name):
    """The file as written with one function replaced by mutmut's mutant of it (its `mutmut apply`,
    without touching the file)."""
    import libcst as cst
    from mutmut.mutation.diff_apply import (
        find_top_level_function_or_method,
        read_functions_from_index,
        read_mutant_function,
        read_mutants_module,
        read_orig_module,
    )
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    function_name, _ = orig_function_and_class_names_from_key(name)
    original_module = read_orig_module(MODULE)
    original = find_top_level_function_or_method(original_module, function_name)
    functions = read_functions_from_index(name, MODULE)
    mutant = functions[1] if functions else read_mutant_function(read_mutants_module(MODULE), name)
    mutant = mutant.with_changes(name=cst.Name(function_name))
    return original_module.deep_replace(original, mutant).code


# ---------------------------------------------------------------- the folder and the queries


def _entry(accession, day, station="US1", study_uid=None):
    from worklists.models import WorklistEntry

    patient = SimpleNamespace(dicom_name=f"Name^{accession}", patient_id=f"P-{accession}", birth_date=None, sex="F")
    return SimpleNamespace(
        uuid=uuid.uuid5(uuid.NAMESPACE_URL, accession),
        accession_number=accession,
        referring_physician="",
        study_instance_uid=study_uid or f"2.25.{uuid.uuid5(uuid.NAMESPACE_DNS, accession).int}",
        requested_procedure_id="",
        requested_procedure_description="Abdomen",
        modality="US",
        station_aet=station,
        station_name="",
        scheduled_date=day,
        scheduled_time=datetime.time(9, 30),
        performing_physician="",
        status="SCHEDULED",
        DICOM_STATUS=WorklistEntry.DICOM_STATUS,
        patient=patient,
    )


def write_entry(folder, entry):
    from worklists.dicom import entry_bytes

    path = Path(folder) / f"portal-{entry.uuid}.wl"
    path.write_bytes(entry_bytes(entry))
    return path


def fill_folder(folder, today):
    from worklists.dicom import entry_dataset

    day = datetime.timedelta(days=1)
    for n, offset in enumerate((-1, 0, 0, 1, 3)):
        for station in ("US1", "US2"):
            write_entry(folder, _entry(f"A{n}-{station}", today + offset * day, station))
    write_entry(folder, _entry("a-lowercase", today))
    write_entry(folder, _entry("STORED", today, study_uid="1.2.826.0.1.3680043.8.498.777"))
    # Files of another program, in the shapes the preselection must not misread.
    foreign = entry_dataset(_entry("RIS-1", today))
    foreign.save_as(Path(folder) / "ris.wl", enforce_file_format=True)
    two = entry_dataset(_entry("F-TWO-STEPS", today))
    first = two.ScheduledProcedureStepSequence[0]
    first.ScheduledProcedureStepStartDate = (today + 5 * day).strftime("%Y%m%d")
    from pydicom.dataset import Dataset

    second = Dataset()
    second.update(first)
    second.ScheduledProcedureStepStartDate = today.strftime("%Y%m%d")
    second.ScheduledStationAETitle = "US2"
    two.ScheduledProcedureStepSequence.append(second)
    two.save_as(Path(folder) / "TWO.WL", enforce_file_format=True)
    # Files Orthanc's matcher cannot read, which it skips: not only at the end of the listing.
    for name in ("junk.wl", "aa-junk.wl", "mm-junk.wl", "zz-junk.wl"):
        (Path(folder) / name).write_bytes(b"not a DICOM file")
    half = (Path(folder) / "ris.wl").read_bytes()
    (Path(folder) / "half.wl").write_bytes(half[: len(half) // 2])
    (Path(folder) / "notes.txt").write_bytes(b"not a worklist")


def queries(today):
    day = today.strftime("%Y%m%d")
    later = (today + datetime.timedelta(days=3)).strftime("%Y%m%d")
    return [
        {},
        {"date": day},
        {"date": f"{day}-{later}"},
        {"date": f"{day}-"},
        {"date": f"-{day}"},
        {"date": "20000101"},
        {"station_aet": "US1"},
        {"station_aet": "us2"},
        {"station_aet": "US*"},
        {"station_aet": "US2\\US1"},
        {"station_aet": "US2", "date": day},
        {"accession": "A1-US1"},
        {"accession": "A1-US1\\A2-US2"},
        {"accession": "A*"},
        {"accession": "A-LOWERCASE"},
        {"accession": "F-TWO-STEPS", "date": day},
        {"patient_name": "NAME*"},
        {"modality": "US", "date": day},
    ]


# ---------------------------------------------------------------- the two Orthancs


class Servers:
    def __init__(self, base):
        from tests.conftest import OrthancInstance
        from tests.worklists.conftest import add_stations

        self.today = datetime.date.today()
        self.folder = base / "worklists"
        self.folder.mkdir(parents=True)
        fill_folder(self.folder, self.today)
        self.classic = OrthancInstance(base / "classic", slug="classic", worklist_server="classic")
        self.portal = OrthancInstance(base / "portal", slug="portal")
        for instance in (self.classic, self.portal):
            instance.deployment.worklists_dir = str(self.folder)
            add_stations(instance)
        self.classic.write_config()
        self.classic.start()
        self.arrivals = []

    def load(self, source, folder=None, database=True):
        """Restart the portal's Orthanc with this script; the log position before it."""
        import deployments.render

        self.kill(self.portal)
        self.portal.deployment.worklists_dir = str(folder or self.folder)
        original = deployments.render.worklist_script
        deployments.render.worklist_script = lambda: source.encode()
        try:
            self.portal.write_config()  # makes the worklist folder too
        finally:
            deployments.render.worklist_script = original
        if folder is not None:
            Path(folder).rmdir()  # missing at start
        config = Path(self.portal.deployment.config_dir) / "orthanc.json"
        if not database:
            settings = json.loads(config.read_text())
            del settings["Worklists"]["Database"]
            config.write_text(json.dumps(settings))
        log = self.portal.service.log_file
        mark = log.stat().st_size if log.exists() else 0
        self.portal.service.start(wait=20)
        return mark

    def log_since(self, mark, wait_for="", timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            with open(self.portal.service.log_file, "rb") as f:
                f.seek(mark)
                text = f.read().decode("utf-8", "replace")
            if wait_for in text or time.monotonic() > deadline:
                return text
            time.sleep(0.1)

    @staticmethod
    def kill(instance):
        pid = instance.service.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)  # the portal's data survives: SQLite recovers at the next start
        while instance.service._alive(pid):
            time.sleep(0.02)
        instance.service.pid_file.unlink(missing_ok=True)

    def answers(self, instance, calling="US1", **query):
        from worklists.cfind import find, worklist_query

        d = instance.deployment
        found = find("127.0.0.1", d.dicom_port, d.dicom_aet, calling, worklist_query(**query), timeout=5)
        return sorted(a.AccessionNumber for a in found)

    def upload(self, **kwargs):
        from tests.dicomfiles import make_instance

        self.portal.client().upload(make_instance(**kwargs))

    def stop(self):
        for instance in (self.classic, self.portal):
            self.kill(instance)


def line(text):
    """A whole line of the worklist server in Orthanc's log, after Orthanc's own prefix."""
    return f"] portal worklist server: {text}\n"


def _wl_files(folder):
    return sum(1 for p in Path(folder).iterdir() if p.name.lower().endswith(".wl") and p.is_file())


def check(servers, number):
    """What differs from the classic plugin, for the script now loaded: [] when nothing."""
    from worklists.cfind import CFindError

    for old in servers.arrivals:  # the previous mutant's
        old.unlink(missing_ok=True)
    by_uid = _entry(f"ARRIVE-U{number}", servers.today)
    by_accession = _entry(f"ARRIVE-A{number}", servers.today)
    servers.arrivals = [write_entry(servers.folder, by_uid), write_entry(servers.folder, by_accession)]
    mark = servers.load(servers.source)
    served = line(f"serving {servers.folder} ({_wl_files(servers.folder)} files)")
    if served not in servers.log_since(mark, served):
        return [f"the log does not say: {served.strip()}"]

    # What the classic plugin answers for the same folder (the station calling does not matter to
    # either: neither filters by the calling AE title).
    classic = {json.dumps(q, sort_keys=True): servers.answers(servers.classic, **q) for q in queries(servers.today)}

    def compare(hidden, label):
        for query in queries(servers.today):
            expected = [a for a in classic[json.dumps(query, sort_keys=True)] if a not in hidden]
            try:
                got = servers.answers(servers.portal, **query)
            except CFindError as exc:
                return [f"{label} {query}: {exc}"]
            if got != expected:
                return [f"{label} {query}: {got}, expected {expected}"]
        return []

    # After a restart, the entry whose study Orthanc holds is hidden once Orthanc has started.
    deadline = time.monotonic() + 5
    while "STORED" in servers.answers(servers.portal, date=servers.today.strftime("%Y%m%d")):
        if time.monotonic() > deadline:
            return ["the entry whose study Orthanc holds is still answered after the restart"]
        time.sleep(0.1)
    wrong = compare({"STORED"}, "after the restart")
    if wrong:
        return wrong
    servers.upload(patient_id="PU", study_uid=by_uid.study_instance_uid)
    servers.upload(patient_id="PA", accession=by_accession.accession_number)
    return compare({"STORED", by_uid.accession_number, by_accession.accession_number}, "after the arrivals")


def check_edges(servers, base, number):
    """A missing Worklists.Database, and a folder that appears only after the start."""
    mark = servers.load(servers.source, database=False)
    unset = line("Worklists.Database is not set; no worklist is served")
    if unset not in servers.log_since(mark, unset):
        return [f"the log does not say: {unset.strip()}"]
    later = base / f"later-{number}"
    mark = servers.load(servers.source, folder=later)
    log = servers.log_since(mark, f"cannot read {later}: ")
    missing = f"[Errno 2] No such file or directory: '{later}'"
    for text in (
        f"cannot read {later} yet: {missing}",
        f"serving {later} (0 files)",
        f"cannot read {later}: {missing}",
    ):
        if line(text) not in log:
            return [f"the log does not say: {line(text).strip()}"]
    later.mkdir()
    write_entry(later, _entry("LATE-1", servers.today))
    answers = servers.answers(servers.portal)
    if answers != ["LATE-1"]:
        return [f"a folder made after the start answers {answers}, expected ['LATE-1']"]
    return []


@dataclass
class Result:
    id: str
    status: str
    reason: str


def run(names, log=print):
    """Judge the mutmut mutants ``names`` of the worklist server; returns [Result]."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    from tests.conftest import require_binary

    require_binary("/usr/sbin/Orthanc", "orthanc")
    base = Path(tempfile.mkdtemp(prefix="portal-worklist-mutation-"))
    servers = Servers(base)
    results = []
    try:
        # The study of the STORED entry is in the portal's Orthanc before any mutant runs.
        servers.source = (ROOT / MODULE).read_text()
        servers.load(servers.source)
        servers.upload(patient_id="PS", study_uid="1.2.826.0.1.3680043.8.498.777")
        baseline = check(servers, 0) or check_edges(servers, base, 0)
        if baseline:
            raise SystemExit("the worklist server fails its own checks unmutated:\n  " + "\n  ".join(baseline))
        started = time.monotonic()
        for number, name in enumerate(names, 1):
            servers.source = mutant_source(name)
            try:
                wrong = check(servers, number) or check_edges(servers, base, number)
            except Exception as exc:  # noqa: BLE001 - Orthanc did not start or answer: killed
                wrong = [f"{type(exc).__name__}: {str(exc)[:200]}"]
            status = "killed" if wrong else "survived"
            results.append(Result(name, status, wrong[0] if wrong else ""))
            log(f"  {number}/{len(names)} {status:8} {name}")
        log(f"  {len(names)} worklist server mutants in Orthanc in {time.monotonic() - started:.0f} s")
    finally:
        servers.stop()
        shutil.rmtree(base, ignore_errors=True)
    return results


def main():
    import sys

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    meta = json.loads((ROOT / "mutants" / f"{MODULE}.meta").read_text())["exit_code_by_key"]
    names = sys.argv[1:] or [n for n, code in meta.items() if code not in (1, 3)]
    for r in run(names):
        if r.status != "killed":
            print(f"survived: {r.id}")


if __name__ == "__main__":
    main()
