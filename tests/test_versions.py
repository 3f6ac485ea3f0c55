"""What each Orthanc release accepts (deployments/versions.py), and the same facts asked of the
real Orthanc the suite runs."""

import json
import subprocess
import urllib.request

import pytest
from django.conf import settings

from deployments.versions import OrthancVersion, parse_version
from tests.conftest import free_port, wait_for
from tests.dicomfiles import make_instance


@pytest.mark.parametrize(
    ("text", "number"),
    [("1.10.1", (1, 10, 1)), ("1.12.7", (1, 12, 7)), ("1.12.11", (1, 12, 11)), ("mainline", None), ("", None)],
)
def test_a_version_text_is_read_as_a_release_number(text, number):
    assert parse_version(text) == number


@pytest.mark.parametrize(
    ("text", "values", "default"),
    [
        ("1.10.1", ["2008", "2017c", "2021b"], "2021b"),
        ("1.12.0", ["2008", "2017c", "2021b"], "2021b"),
        ("1.12.1", ["2008", "2017c", "2021b", "2023b"], "2023b"),
        ("1.12.7", ["2008", "2017c", "2021b", "2023b"], "2023b"),
        ("", ["2008", "2017c", "2021b"], "2021b"),  # unknown: what every supported release accepts
    ],
)
def test_the_log_editions_and_their_default_follow_the_release(text, values, default):
    version = OrthancVersion.of(text)
    assert version.accepted_values("DeidentifyLogsDicomVersion") == values
    assert version.default("DeidentifyLogsDicomVersion") == default


def test_a_refused_value_says_which_release_refuses_it_and_from_which_it_is_accepted():
    assert OrthancVersion.of("1.10.1").refusal("DeidentifyLogsDicomVersion", "2023b") == (
        "Orthanc 1.10.1 refuses '2023b' and would not start (accepted from Orthanc 1.12.1 on)"
    )
    assert OrthancVersion.of("1.12.7").refusal("DeidentifyLogsDicomVersion", "2023b") == ""


@pytest.mark.parametrize(
    ("text", "labels", "changes_filter", "export_always"),
    [
        ("1.10.1", False, False, True),
        ("1.12.0", True, False, False),
        ("1.12.4", True, False, False),
        ("1.12.5", True, True, False),
        ("1.12.7", True, True, False),
    ],
)
def test_routes_and_options_follow_the_release(text, labels, changes_filter, export_always):
    version = OrthancVersion.of(text)
    assert version.has_labels == labels
    assert version.has_changes_type_filter() == changes_filter
    assert version.export_always_allowed == export_always


def test_the_changes_type_filter_also_needs_an_index_that_supports_it():
    version = OrthancVersion.of("1.12.7")
    assert version.has_changes_type_filter({"Capabilities": {"HasExtendedChanges": True}})
    assert not version.has_changes_type_filter({"Capabilities": {"HasExtendedChanges": False}})
    assert not version.has_changes_type_filter({})


# ---------------------------------------------------------------- the real Orthanc


def test_the_installed_orthanc_reports_the_version_its_binary_prints(orthanc, orthanc_version):
    assert parse_version(orthanc_version), f"Orthanc --version printed {orthanc_version!r}"
    assert orthanc.client().system()["Version"] == orthanc_version


def test_the_installed_orthanc_answers_the_labels_routes_as_its_release_says(orthanc, orthanc_version):
    status = orthanc.client().session.get(f"{orthanc.url}/tools/labels", auth=orthanc.auth, timeout=5).status_code
    assert (status == 200) == OrthancVersion.of(orthanc_version).has_labels, status


def test_the_installed_orthanc_filters_changes_by_type_as_its_release_and_index_say(orthanc, orthanc_version):
    client = orthanc.client()
    client.upload(make_instance(patient_id="V1"))
    everything = client.get_json("/changes", params={"limit": 100})["Changes"]
    studies = client.get_json("/changes", params={"limit": 100, "type": "NewStudy"})["Changes"]
    filtered = {c["ChangeType"] for c in studies} == {"NewStudy"} and len(studies) < len(everything)
    # Older releases ignore the argument and list every change: the portal must not rely on it there.
    assert filtered == OrthancVersion.of(orthanc_version).has_changes_type_filter(client.system())


def _orthanc_starts_with(tmp_path, config) -> bool:
    """Whether the installed Orthanc starts on this configuration (it exits at once when it refuses one)."""
    folder = tmp_path / "config"
    folder.mkdir()
    port = free_port()
    base = {"HttpPort": port, "DicomPort": free_port(), "StorageDirectory": str(tmp_path / "db"), "Plugins": []}
    (folder / "orthanc.json").write_text(json.dumps({**base, **config}))
    proc = subprocess.Popen(
        [settings.ORTHANC_BINARY, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def answers():
        if proc.poll() is not None:
            return "exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=1)  # noqa: S310
            return "up"
        except OSError:
            return None

    try:
        return wait_for(answers, timeout=20, message="Orthanc to start or exit") == "up"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("edition", ["2008", "2017c", "2021b", "2023b"])
def test_the_installed_orthanc_starts_exactly_with_the_log_editions_its_release_accepts(
    tmp_path, orthanc_version, edition
):
    accepted = edition in OrthancVersion.of(orthanc_version).accepted_values("DeidentifyLogsDicomVersion")
    config = {"DeidentifyLogs": True, "DeidentifyLogsDicomVersion": edition}
    assert _orthanc_starts_with(tmp_path, config) == accepted
