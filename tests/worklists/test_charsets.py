"""Each machine gets the letters the front desk typed, in bytes it can read.

Orthanc sends every worklist answer in its one DefaultEncoding, whatever the file or the query says,
so a deployment picks the encoding every querying station reads (deployments/charsets.py). Real
Orthanc with each worklist server, dcmtk's findscu and pynetdicom as a Latin-1 and a UTF-8 machine,
in the three layouts: all Latin-1, all UTF-8, mixed."""

import datetime
import subprocess
import tempfile
from pathlib import Path

import pydicom
import pytest
from django.urls import reverse
from django.utils import timezone

from deployments.models import Modality
from deployments.security import audit_deployment
from portal.tokens import token_create
from tests.conftest import free_port, require_binary
from tests.worklists.conftest import make_entry
from worklists.cfind import find, worklist_query
from worklists.sync import worklist_sync

UTF8, LATIN1 = Modality.Charset.UTF8, Modality.Charset.LATIN1
LAYOUTS = {
    "all-latin1": {"US2": LATIN1, "US3": LATIN1},
    "all-utf8": {"US1": UTF8, "US4": UTF8},
    "mixed": {"US1": UTF8, "US2": LATIN1},
}
CODEC = {UTF8: "utf-8", LATIN1: "latin-1"}


def _orthanc(orthanc_factory, layout, server):
    instance = orthanc_factory(slug=f"cs{layout.replace('-', '')}{server}", start=False, worklist_server=server)
    for aet, charset in LAYOUTS[layout].items():
        instance.modalities.append(
            Modality(name=aet.lower(), aet=aet, host="127.0.0.1", port=free_port(), charset=charset)
        )
    instance.write_config()
    instance.start()
    instance.save_deployment()
    return instance


def _schedule(api, deployment, aet, family, given, patient_id):
    body = {
        "deployment": deployment.slug,
        "patient": {"patient_id": patient_id, "family_name": family, "given_name": given},
        "scheduled_date": timezone.localdate().isoformat(),
        "scheduled_time": "10:00",
        "station_aet": aet,
    }
    return api.post(reverse("api:entry-list"), body, "application/json")


def findscu_names(instance, aet, charset):
    """As the machine ``aet`` with dcmtk: {accession: (SpecificCharacterSet, raw PatientName bytes)}."""
    d = instance.deployment
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                require_binary("findscu", "dcmtk"),
                "-W",
                "-X",
                "-od",
                out,
                "-aet",
                aet,
                "-aec",
                d.dicom_aet,
                "127.0.0.1",
                str(d.dicom_port),
                "-k",
                f"SpecificCharacterSet={charset}",
                "-k",
                "PatientName",
                "-k",
                "AccessionNumber",
                "-k",
                f"ScheduledProcedureStepSequence[0].ScheduledStationAETitle={aet}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        answers = [pydicom.dcmread(p) for p in sorted(Path(out).iterdir())]
        return {a.AccessionNumber: (a.get("SpecificCharacterSet", ""), _raw(a, 0x00100010)) for a in answers}


def pynetdicom_names(instance, aet, charset):
    """The same as the machine ``aet`` with pynetdicom."""
    d = instance.deployment
    answers = find("127.0.0.1", d.dicom_port, d.dicom_aet, aet, worklist_query(station_aet=aet, charset=charset))
    return {a.AccessionNumber: (a.get("SpecificCharacterSet", ""), _raw(a, 0x00100010)) for a in answers}


def _raw(dataset, tag):
    element = dataset.get_item(tag)
    value = element.value
    if not isinstance(value, bytes):  # already decoded by its label (pynetdicom's log): the same bytes back
        value = str(value).encode(CODEC.get(dataset.get("SpecificCharacterSet", ""), "ascii"))
    return value.rstrip(b" ")


@pytest.mark.orthanc
@pytest.mark.parametrize("server", ["indexed", "classic"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_station_receives_bytes_that_decode_to_the_letters_typed(
    orthanc_factory, transactional_db, scheduler_user, client, layout, server
):
    instance = _orthanc(orthanc_factory, layout, server)
    d = instance.deployment
    _, token = token_create(scheduler_user, "Practice system", timezone.now() + datetime.timedelta(days=1))
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    typed = {}
    for n, (aet, charset) in enumerate(LAYOUTS[layout].items()):
        response = _schedule(client, d, aet, "Müller", "Zoë", f"M{n}")
        assert response.status_code == 201, response.content
        typed[response.json()["accession_number"]] = "Müller^Zoë"
        polish = _schedule(client, d, aet, "Łukasiewicz", "Jan", f"L{n}")
        if charset == UTF8 and layout == "all-utf8":
            assert polish.status_code == 201, polish.content
            typed[polish.json()["accession_number"]] = "Łukasiewicz^Jan"
        else:  # Latin-1 cannot carry Ł: refused at entry, the letter named
            assert polish.status_code == 400
            assert "cannot show: Ł" in polish.json()["patient"]["family_name"][0]
    worklist_sync(d.pk)
    sent = {"all-latin1": "ISO_IR 100", "all-utf8": "ISO_IR 192", "mixed": "ISO_IR 100"}[layout]

    for aet, charset in LAYOUTS[layout].items():
        for names in (findscu_names(instance, aet, charset), pynetdicom_names(instance, aet, charset)):
            mine = {acc: names[acc] for acc in names if acc in typed}
            assert len(mine) == (2 if layout == "all-utf8" else 1), names
            for accession, (label, raw) in mine.items():
                assert label == sent
                # A Latin-1 machine reads Latin-1 whatever the label says; a UTF-8 one follows the label.
                assert raw.decode("latin-1" if charset == LATIN1 else CODEC[label]) == typed[accession]
    if layout != "all-utf8":
        latin = next(aet for aet, charset in LAYOUTS[layout].items() if charset == LATIN1)
        assert b"M\xfcller^Zo\xeb" in [raw for _, raw in findscu_names(instance, latin, "ISO_IR 100").values()]
    else:
        raws = [raw for _, raw in findscu_names(instance, "US1", "ISO_IR 192").values()]
        assert "Łukasiewicz^Jan".encode() in raws


@pytest.mark.orthanc
def test_orthanc_sends_its_one_default_encoding_whatever_the_file_or_the_query_says(
    orthanc_factory, transactional_db, orthanc_version
):
    """The fact the design stands on, asked of the installed Orthanc (1.10.1 and 1.12.7 alike)."""
    for encoding, label, expected in (
        ("Latin1", "ISO_IR 100", b"M\xfcller^Zo\xeb"),
        ("Utf8", "ISO_IR 192", "Müller^Zoë".encode()),
    ):
        instance = orthanc_factory(slug=f"enc{encoding.lower()}", start=False, default_encoding=encoding)
        instance.modalities.append(Modality(name="us2", aet="US2", host="127.0.0.1", port=free_port(), charset=LATIN1))
        instance.write_config()
        instance.start()
        d = instance.save_deployment()
        entry = make_entry(d, family="Müller", given="Zoë", station="US2", accession=f"F-{encoding}")
        from worklists.dicom import entry_dataset

        # The same entry as a Latin-1 file and as the portal's UTF-8 file.
        worklist_sync(d.pk)
        latin_file = entry_dataset(entry)
        latin_file.SpecificCharacterSet = "ISO_IR 100"
        latin_file.AccessionNumber = f"L-{encoding}"
        latin_file.save_as(Path(d.worklist_folder) / "latin1.wl", enforce_file_format=True)

        for query in ("ISO_IR 100", "ISO_IR 192"):
            answers = findscu_names(instance, "US2", query)
            assert sorted(answers) == sorted([f"F-{encoding}", f"L-{encoding}"]), (orthanc_version, answers)
            assert set(answers.values()) == {(label, expected)}, (orthanc_version, encoding, query, answers)
        instance.stop()


@pytest.mark.orthanc
def test_the_settings_page_and_the_audit_say_which_stations_are_served_correctly(
    orthanc_factory, transactional_db, admin_client
):
    instance = _orthanc(orthanc_factory, "mixed", "indexed")
    d = instance.deployment

    page = admin_client.get(reverse("deployments:edit", args=[d.slug])).content.decode()
    assert "Now: Latin-1 (this deployment sends Latin-1 because US2 shows only Latin-1)." in page
    assert "US1</span>: receives Latin-1 answers: names for it are limited to Latin-1 letters" in page
    assert "US2</span>: served correctly" in page
    modalities = admin_client.get(reverse("deployments:modalities")).content.decode()
    assert "names for it are limited to Latin-1 letters" in modalities

    findings = {f.id: f for f in audit_deployment(d, live=False)}
    assert "US2" in findings["worklist-stations-served"].what
    assert findings["worklist-station-limited"].what.startswith("US1 shows UTF-8 but receives Latin-1 answers")
    assert "worklist-station-misreads" not in findings

    d.default_encoding = "Utf8"  # forced: US2 would show MÃ¼ller
    d.save(update_fields=["default_encoding"])
    findings = {f.id: f for f in audit_deployment(d, live=False)}
    assert findings["worklist-station-misreads"].severity == "medium"
    assert "MÃ¼ller" in findings["worklist-station-misreads"].why


@pytest.mark.orthanc
def test_a_station_change_that_would_garble_scheduled_names_is_refused_naming_the_entries(
    orthanc_factory, transactional_db, admin_client
):
    instance = _orthanc(orthanc_factory, "all-utf8", "indexed")
    d = instance.deployment
    entry = make_entry(d, family="Łukasiewicz", given="Jan", station="US4", accession="PL-1")
    us4 = d.modalities.get(aet="US4")
    form = {
        "name": "us4",
        "aet": "US4",
        "host": "127.0.0.1",
        "port": us4.port,
        "manufacturer": "Generic",
        "allow_echo": "on",
        "allow_find_worklist": "on",
        "allow_store": "on",
        "timeout": 0,
        "charset": LATIN1,
    }

    refused = admin_client.post(reverse("deployments:modality_edit", args=[d.slug, us4.pk]), form)
    added = admin_client.post(
        reverse("deployments:modality_create", args=[d.slug]), {**form, "name": "old", "aet": "OLD", "port": 104}
    )

    for response in (refused, added):
        assert response.status_code == 200
        error = response.context["form"].errors["charset"][0]
        assert "PL-1" in error and "Ł" in error
    us4.refresh_from_db()
    assert us4.charset == UTF8 and not d.modalities.filter(aet="OLD").exists()
    assert entry.pk


def test_a_worklist_character_set_that_would_garble_scheduled_names_is_refused_beside_the_setting(
    admin_client, wl_deployment
):
    from tests.test_audit import NEW

    wl_deployment.modalities.update(charset=UTF8)  # every station reads UTF-8: Automatic sends UTF-8
    make_entry(wl_deployment, family="Łukasiewicz", given="Jan", station="US1", accession="PL-2")
    data = {
        **NEW,
        "name": wl_deployment.name,
        "slug": wl_deployment.slug,
        "orthanc_url": wl_deployment.orthanc_url,
        "config_dir": wl_deployment.config_dir,
        "worklists_dir": wl_deployment.worklists_dir,
        "dicom_check_modality_host": "",
    }
    url = reverse("deployments:edit", args=[wl_deployment.slug])

    refused = admin_client.post(url, {**data, "default_encoding": "Latin1"})
    kept = admin_client.post(url, {**data, "default_encoding": "auto"})

    error = refused.context["form"].errors["default_encoding"][0]
    assert "PL-2" in error and "Ł" in error
    assert kept.status_code == 302
    wl_deployment.refresh_from_db()
    assert wl_deployment.default_encoding == "auto" and wl_deployment.worklist_encoding() == "Utf8"
