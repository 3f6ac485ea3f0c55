"""The portal's worklist server (deployments/worklist_server.py, run by Orthanc's Python plugin).

It must answer exactly what Orthanc's classic worklists plugin answers for the same folder, and
it must never serve a file as it was before a change."""

import datetime
import time
from pathlib import Path

import pytest
from django.utils import timezone
from pydicom.dataset import Dataset

from tests.worklists.conftest import add_stations, cfind, make_entry
from worklists.cfind import find, worklist_query
from worklists.dicom import entry_bytes, entry_dataset
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync

pytestmark = pytest.mark.orthanc


def _two_servers(orthanc_factory):
    """The classic plugin and the portal's server, both serving one folder."""
    indexed = orthanc_factory(slug="indexed", start=False)
    classic = orthanc_factory(slug="classic", start=False, worklist_server="classic")
    classic.deployment.worklists_dir = indexed.deployment.worklists_dir
    for instance in (indexed, classic):
        add_stations(instance)
        instance.write_config()
        instance.start()
    indexed.save_deployment()
    return indexed, classic


def _foreign_files(folder: Path, entry, today):
    """Worklist files another program wrote, in the shapes the preselection must not misread."""
    two_steps = entry_dataset(entry)
    two_steps.AccessionNumber = "F-TWO-STEPS"
    first = two_steps.ScheduledProcedureStepSequence[0]
    first.ScheduledProcedureStepStartDate = (today + datetime.timedelta(days=5)).strftime("%Y%m%d")
    second = Dataset()
    second.update(first)
    second.ScheduledProcedureStepStartDate = today.strftime("%Y%m%d")
    second.ScheduledStationAETitle = "US2"
    two_steps.ScheduledProcedureStepSequence.append(second)
    two_steps.save_as(folder / "ris-two-steps.wl", enforce_file_format=True)

    no_date = entry_dataset(entry)
    no_date.AccessionNumber = "F-NO-DATE"
    del no_date.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate
    no_date.save_as(folder / "ris-no-date.WL", enforce_file_format=True)

    lower = entry_dataset(entry)
    lower.AccessionNumber = "f-lower"
    lower.ScheduledProcedureStepSequence[0].ScheduledStationAETitle = "us1"
    lower.save_as(folder / "ris-lower.wl", enforce_file_format=True)

    (folder / "ris-half-written.wl").write_bytes(entry_bytes(entry)[:300])
    (folder / "notes.txt").write_text("not a worklist")


def test_the_portal_server_answers_exactly_what_the_classic_plugin_answers(orthanc_factory, transactional_db):
    indexed, classic = _two_servers(orthanc_factory)
    d = indexed.deployment
    today = timezone.localdate()
    days = [today + datetime.timedelta(days=n) for n in (-1, 0, 0, 1, 3)]
    for n, day in enumerate(days):
        for station in ("US1", "US2"):
            make_entry(d, family=f"Name{n}", given=station, day=day, station=station, accession=f"A{n}-{station}")
    make_entry(d, family="Martin", accession="a-lowercase")
    worklist_sync(d.pk)
    template = make_entry(d, accession="TEMPLATE", day=today)
    _foreign_files(Path(d.worklist_folder), template, today)

    day = today.strftime("%Y%m%d")
    later = (today + datetime.timedelta(days=3)).strftime("%Y%m%d")
    queries = [
        {},
        {"date": day},
        {"date": f"{day}-{later}"},
        {"date": f"{day}-"},
        {"date": f"-{day}"},
        {"station_aet": "US1"},
        {"station_aet": "us1"},
        {"station_aet": "US*"},
        {"station_aet": "US2", "date": day},
        {"accession": "A1-US1"},
        {"accession": "A*"},
        {"accession": "A-LOWERCASE"},
        {"accession": "F-TWO-STEPS", "date": day},
        {"patient_name": "NAME*"},
        {"modality": "US", "date": day},
        {"date": "20000101"},
    ]
    checked = 0
    for query in queries:
        for calling in ("US1", "US2"):
            expected = sorted(a.AccessionNumber for a in cfind(classic, calling=calling, **query))
            got = sorted(a.AccessionNumber for a in cfind(indexed, calling=calling, **query))
            assert got == expected, (query, calling)
            checked += len(expected)
    # A query without a scheduled step sequence at all.
    bare = worklist_query()
    del bare.ScheduledProcedureStepSequence
    answers = {
        name: sorted(
            a.AccessionNumber for a in find("127.0.0.1", i.deployment.dicom_port, i.deployment.dicom_aet, "US1", bare)
        )
        for name, i in (("classic", classic), ("indexed", indexed))
    }
    assert answers["indexed"] == answers["classic"]
    assert checked > 50 and "F-TWO-STEPS" in answers["classic"]


def test_a_changed_file_is_never_answered_as_it_was(wl_orthanc):
    d = wl_orthanc.deployment
    folder = Path(d.worklist_folder)
    entry = make_entry(d, accession="CHANGE-ME", description="Before")
    worklist_sync(d.pk)
    template = make_entry(d, accession="RIS-AAAA")
    WorklistEntry.objects.filter(pk=template.pk).update(status=WorklistEntry.Status.CANCELLED)
    foreign = entry_dataset(template)
    foreign.save_as(folder / "ris.wl", enforce_file_format=True)
    assert sorted(a.AccessionNumber for a in cfind(wl_orthanc)) == ["CHANGE-ME", "RIS-AAAA"]

    # At once, in the same clock tick as the query if it happens: the same size, edited in place.
    foreign.AccessionNumber = "RIS-BBBB"
    foreign.save_as(folder / "ris.wl", enforce_file_format=True)
    assert sorted(a.AccessionNumber for a in cfind(wl_orthanc)) == ["CHANGE-ME", "RIS-BBBB"]

    # Once the folder has settled, the server answers from memory: changes must still show.
    time.sleep(2.5)
    assert sorted(a.AccessionNumber for a in cfind(wl_orthanc)) == ["CHANGE-ME", "RIS-BBBB"]
    foreign.AccessionNumber = "RIS-CCCC"
    foreign.save_as(folder / "ris.wl", enforce_file_format=True)
    # Edited in place, the folder itself unchanged: only the check of foreign files sees it.
    assert sorted(a.AccessionNumber for a in cfind(wl_orthanc)) == ["CHANGE-ME", "RIS-CCCC"]
    entry.requested_procedure_description = "After!"
    entry.save()
    worklist_sync(d.pk)
    answers = {a.AccessionNumber: a for a in cfind(wl_orthanc)}
    assert sorted(answers) == ["CHANGE-ME", "RIS-CCCC"]
    assert answers["CHANGE-ME"].RequestedProcedureDescription == "After!"

    time.sleep(2.5)
    (folder / "ris.wl").unlink()
    make_entry(d, accession="NEW-ONE")
    worklist_sync(d.pk)
    assert sorted(a.AccessionNumber for a in cfind(wl_orthanc)) == ["CHANGE-ME", "NEW-ONE"]
