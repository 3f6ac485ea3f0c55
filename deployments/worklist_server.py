"""The portal's worklist server: a script for Orthanc's Python plugin, run inside Orthanc.

It serves the same ``*.wl`` folder as Orthanc's classic worklists plugin, and Orthanc's own
matcher still decides every answer (``WorklistIsMatch``). What changes is the cost of a query.
The classic plugin opens and parses every file at every C-FIND, about 40 µs a file here.
This script reads a file once and keeps it in memory with the few keys a machine always
sends: the scheduled date, the station's AE title and the accession number. A query then
parses only the files that can match those keys. The rules below may only ever keep a file
that Orthanc would drop, never drop one it would keep.

The index is refreshed without reading the files again:
- The portal replaces its files by rename, which changes the folder's mtime. A changed folder
  is listed again, and only the files whose inode, size or mtime changed are read again.
- A folder changed in the last two seconds is listed at every query: two renames in the same
  clock tick leave the same mtime.
- Files the portal did not write can be edited in place, so they are checked at every query,
  and read again while they changed in the last two seconds.

A portal file leaves the answers as soon as Orthanc stores the first image of its study (matched
by StudyInstanceUID or AccessionNumber, as the portal's completion matches), so the machine's list
shows the next patient at once; the portal removes the file at its next poll of Orthanc's changes.
The instance callback runs before Orthanc confirms the C-STORE, so no query after that sees the
entry. When a file is read, Orthanc's own index is asked whether its StudyInstanceUID arrived
(after a restart, say); never by accession number, which an older study may share.

Only the standard library: Orthanc's Python has none of the portal's packages. The module
also imports without Orthanc, so its pure functions can be tested on their own.
"""

import json
import os
import re
import stat
import threading
import time

try:
    import orthanc
except ImportError:  # imported by the portal's tests, not by Orthanc
    orthanc = None

PORTAL_FILE = re.compile(r"^portal-[0-9a-f-]{36}\.wl$")
SETTLE_SECONDS = 2.0
DATE = re.compile(r"^\d{8}$")
DATE_QUERY = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
WILDCARDS = set("*?\\")
STUDY_TAGS = ("0020,000d", "0008,0050")  # StudyInstanceUID, AccessionNumber (Orthanc's short JSON)


def date_bounds(value):
    """(low, high) of a DA query, None for either open end; None when the value is empty or
    a form this script does not read (the file is then left to Orthanc's matcher)."""
    value = (value or "").strip()
    match = DATE_QUERY.match(value)
    if not value or not match:
        return None
    low, dash, high = match.groups()
    if not dash:
        return (low, low) if low and not high else None
    return (low, high) if low or high else None


def exact(value):
    """The single value a query key asks for, upper-cased; '' means any value may match."""
    value = (value or "").strip()
    if not value or WILDCARDS & set(value):
        return ""
    return value.upper()


def first_step(dataset: dict) -> dict:
    """The first item of the Scheduled Procedure Step Sequence, in Orthanc's short JSON form."""
    steps = dataset.get("0040,0100")
    return steps[0] if isinstance(steps, list) and steps and isinstance(steps[0], dict) else {}


def query_keys(query: dict):
    """From a query in Orthanc's short JSON form: (date bounds, station AET, accession)."""
    step = first_step(query)
    return (
        date_bounds(step.get("0040,0002")),
        exact(step.get("0040,0001")),
        exact(query.get("0008,0050")),
    )


def file_keys(worklist: dict):
    """The same keys from a worklist file, for comparison with ``query_keys``."""
    step = first_step(worklist)
    date = (step.get("0040,0002") or "").strip()
    return (
        date if DATE.match(date) else "",
        (step.get("0040,0001") or "").strip().upper(),
        (worklist.get("0008,0050") or "").strip().upper(),
    )


def may_match(keys, wanted) -> bool:
    """False only when the file certainly does not match. A file with several procedure steps
    or keys this script cannot read (``keys`` is None) is always left to Orthanc's matcher."""
    if keys is None:
        return True
    bounds, station, accession = wanted
    low, high = bounds or (None, None)
    date, file_station, file_accession = keys
    if date and ((low and date < low) or (high and date > high)):
        return False
    if station and file_station and file_station != station:
        return False
    return not (accession and file_accession and file_accession != accession)


def _short_json(data: bytes) -> dict:
    return json.loads(
        orthanc.DicomBufferToJson(data, orthanc.DicomToJsonFormat.SHORT, orthanc.DicomToJsonFlags.NONE, 0)
    )


def study_keys(worklist: dict):
    """(StudyInstanceUID, AccessionNumber) of a worklist file, stripped; '' when absent."""
    values = (worklist.get(tag) for tag in STUDY_TAGS)
    return tuple(value.strip() if isinstance(value, str) else "" for value in values)


def worklist_keys(worklist: dict):
    """(preselection keys, study keys) of a worklist file in Orthanc's short JSON form; no
    preselection keys for a file with several procedure steps (Orthanc's matcher decides)."""
    steps = worklist.get("0040,0100")
    if isinstance(steps, list) and len(steps) > 1:
        return None, study_keys(worklist)
    return file_keys(worklist), study_keys(worklist)


def _keys_of(data: bytes):
    """(preselection keys or None, study keys or None) of a file's bytes."""
    try:
        worklist = _short_json(data)
    except Exception:  # noqa: BLE001 - a half-written or foreign file: Orthanc's matcher decides
        return None, None
    return worklist_keys(worklist)


def _in_orthanc(study_uid) -> bool:
    """Whether Orthanc's index holds a study with this StudyInstanceUID."""
    if not study_uid:
        return False
    try:
        return bool(orthanc.LookupStudy(study_uid))
    except Exception:  # noqa: BLE001 - Orthanc raises when it has no such study
        return False


class Index:
    def __init__(self, folder, in_orthanc=None, keys_of=None):
        self.folder = folder
        self.keys_of = keys_of or _keys_of  # the portal's tests read the files with pydicom instead
        self.files = {}  # name -> (signature, bytes, keys, study keys of a portal file or None)
        self.foreign = []  # names of the files the portal did not write
        self.folder_state = None
        self.lock = threading.Lock()
        self.in_orthanc = in_orthanc or (lambda study_uid: False)
        self.arrived = set()  # StudyInstanceUIDs and accession numbers of portal files whose study arrived
        self.study_keys = set()  # those of every portal file
        self.unchecked = set()  # StudyInstanceUIDs read but not yet looked up in Orthanc's index
        self.index_open = False  # Orthanc opens its index after loading the plugins

    def _read(self, path, st, old, foreign):
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        # The portal replaces its files by rename (a new inode). Another program may edit a file
        # in place twice within one clock tick: such a file is read again while it is recent.
        if old and old[0] == signature and not (foreign and time.time() - st.st_mtime < SETTLE_SECONDS):
            return old
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        keys, study = self.keys_of(data)
        if foreign:
            return (signature, data, keys, None)
        if study and study[0]:
            # Looked up at the next snapshot once Orthanc's index is open (not while the plugin loads).
            self.unchecked.add(study[0])
        return (signature, data, keys, study)

    def _list(self):
        files, foreign_names = {}, []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.name.lower().endswith(".wl"):
                    continue
                try:
                    st = entry.stat()  # follows a link, like the classic plugin
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    foreign = not PORTAL_FILE.match(entry.name)
                    record = self._read(entry.path, st, self.files.get(entry.name), foreign)
                    if record:
                        files[entry.name] = record
                        if foreign:
                            foreign_names.append(entry.name)
        self.foreign = foreign_names
        self.study_keys = {key for record in files.values() if record[3] for key in record[3] if key}
        self.arrived &= self.study_keys  # forget the studies whose files the portal removed
        return files

    def _recheck_foreign(self):
        for name in self.foreign:
            old = self.files.get(name)
            if old is None:
                continue
            path = os.path.join(self.folder, name)
            try:
                st = os.stat(path)
            except OSError:
                del self.files[name]
                continue
            record = self._read(path, st, old, foreign=True)
            if record:
                self.files[name] = record
            else:
                del self.files[name]

    def snapshot(self):
        """The files as they are now on disk, read only where they changed."""
        with self.lock:
            st = os.stat(self.folder)
            state = (st.st_ino, st.st_mtime_ns)
            if state != self.folder_state or time.time() - st.st_mtime < SETTLE_SECONDS:
                self.files = self._list()
                self.folder_state = state
            else:
                self._recheck_foreign()
            if self.index_open:
                self.arrived.update(uid for uid in self.unchecked & self.study_keys if self.in_orthanc(uid))
                self.unchecked.clear()
            return [r for r in self.files.values() if not (r[3] and self.arrived.intersection(r[3]))]

    def open_index(self):
        """Orthanc has started: the studies of the files read so far can be looked up."""
        self.index_open = True
        self.snapshot()

    def study_arrived(self, study_uid, accession):
        """Orthanc stored an image of this study: hide the portal files that schedule it."""
        with self.lock:
            self.arrived.update(key for key in (study_uid, accession) if key and key in self.study_keys)


def on_worklist(index, answers, query):
    try:
        wanted = query_keys(_short_json(query.WorklistGetDicomQuery()))
    except Exception:  # noqa: BLE001 - an unreadable query: every file goes to the matcher
        wanted = (None, "", "")
    for _signature, data, keys, _study in index.snapshot():
        if not may_match(keys, wanted):
            continue
        try:
            if query.WorklistIsMatch(data):
                answers.WorklistAddAnswer(query, data)
        except Exception:  # noqa: BLE001, S112 - the classic plugin skips an unreadable file too
            continue


def on_stored(index, dicom):
    try:
        tags = json.loads(
            dicom.GetInstanceAdvancedJson(orthanc.DicomToJsonFormat.SHORT, orthanc.DicomToJsonFlags.NONE, 256)
        )
    except Exception:  # noqa: BLE001 - never let the worklist get in the way of storing an image
        return
    index.study_arrived(*study_keys(tags))


def on_change(index, change):
    if change == orthanc.ChangeType.ORTHANC_STARTED:
        try:
            index.open_index()
        except OSError as exc:
            orthanc.LogError(f"portal worklist server: cannot read {index.folder}: {exc}")


def register():
    config = json.loads(orthanc.GetConfiguration())
    folder = (config.get("Worklists") or {}).get("Database")
    if not folder:
        orthanc.LogError("portal worklist server: Worklists.Database is not set; no worklist is served")
        return
    index = Index(folder, in_orthanc=_in_orthanc)
    try:
        files = len(index.snapshot())  # read now, so the first machine's query is not the slow one
    except OSError as exc:
        orthanc.LogError(f"portal worklist server: cannot read {folder} yet: {exc}")
        files = 0
    orthanc.RegisterWorklistCallback(lambda answers, query, issuer, called: on_worklist(index, answers, query))
    orthanc.RegisterOnStoredInstanceCallback(lambda dicom, instance_id: on_stored(index, dicom))
    orthanc.RegisterOnChangeCallback(lambda change, level, resource: on_change(index, change))
    orthanc.LogWarning(f"portal worklist server: serving {folder} ({files} files)")


if orthanc is not None:
    register()
