"""The importer reads a configuration as one of the Orthanc release it is for: that release's
defaults fill the absent keys, and a value it refuses is refused before anything is written."""

import shutil

import pytest

from deployments.importer import ConfigImportError, import_path, import_texts
from tests.conftest import installed_orthanc_version

from .test_importer import DEBIAN, make_deployment, rendered_config

# What Debian 13's /etc/orthanc/orthanc.json (Orthanc 1.12.7) sets that Debian 12's does not.
DEBIAN_13_EXCERPT = """{
  // Possible values are "2008", "2017c", "2021b" (new in Orthanc 1.8.2), and "2023b" (new in Orthanc 1.12.1)
  "DeidentifyLogs" : true,
  "DeidentifyLogsDicomVersion" : "2023b",
  "RestApiWriteToFileSystemEnabled": false,
  "KeepAliveTimeout" : 1,
  "ReadOnly" : false,
}"""


def lines(result):
    return [str(line) for line in result.lines]


def test_debian_13s_log_edition_is_imported_for_an_orthanc_that_accepts_it(db):
    deployment = make_deployment(last_version="1.12.7")

    result = import_texts(deployment, {"orthanc.json": DEBIAN_13_EXCERPT})

    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == "2023b"
    assert rendered_config(deployment)["DeidentifyLogsDicomVersion"] == "2023b"
    assert (
        lines(result)[0]
        == "note: read as a configuration of Orthanc 1.12.7: its defaults fill the keys that are absent"
    )
    assert deployment.extra_config["KeepAliveTimeout"] == 1  # newer keys are kept as they are


def test_debian_13s_log_edition_is_refused_for_an_orthanc_that_would_not_start_with_it(db):
    deployment = make_deployment(last_version="1.10.1")

    with pytest.raises(ConfigImportError) as err:
        import_texts(deployment, {"orthanc.json": DEBIAN_13_EXCERPT})

    assert str(err.value) == (
        "DeidentifyLogsDicomVersion: \"2023b\": Orthanc 1.10.1 refuses '2023b' and would not start "
        "(accepted from Orthanc 1.12.1 on)"
    )
    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == "2021b"


def test_an_unknown_version_imports_the_edition_with_a_warning_and_says_which_defaults_it_assumed(db):
    deployment = make_deployment()  # never reached: no version recorded

    result = import_texts(deployment, {"orthanc.json": DEBIAN_13_EXCERPT})

    text = lines(result)
    assert text[0] == (
        "note: Orthanc's version is not known (the portal has not reached it yet): the defaults of Orthanc "
        "1.10.1, the oldest supported release, fill the keys that are absent"
    )
    assert 'warning: DeidentifyLogsDicomVersion = "2023b" needs Orthanc 1.12.1 or later' in text
    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == "2023b"


@pytest.mark.parametrize(("version", "default"), [("1.10.1", "2021b"), ("1.12.0", "2021b"), ("1.12.7", "2023b")])
def test_an_absent_log_edition_gets_the_default_of_the_release_the_import_is_for(db, version, default):
    deployment = make_deployment(last_version=version)

    result = import_texts(deployment, {"orthanc.json": '{"Name": "Clinic"}'})

    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == default
    line = f'default: DeidentifyLogsDicomVersion not set: the default of Orthanc {version} "{default}" imported'
    assert line in lines(result)


def test_the_version_given_to_the_import_wins_over_the_one_last_seen(db):
    deployment = make_deployment(last_version="1.10.1")

    import_texts(deployment, {"orthanc.json": DEBIAN_13_EXCERPT}, version="1.12.7")

    deployment.refresh_from_db()
    assert deployment.deidentify_logs_dicom_version == "2023b"


def test_the_installed_orthancs_stock_configuration_imports_for_its_own_version(db, tmp_path):
    if not (DEBIAN / "orthanc.json").exists():
        pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
    folder = tmp_path / "etc-orthanc"
    shutil.copytree(DEBIAN, folder)
    version = installed_orthanc_version()
    deployment = make_deployment(last_version=version)

    result = import_path(deployment, folder)

    assert lines(result)[0].startswith(f"note: read as a configuration of Orthanc {version}")
    assert not [line for line in lines(result) if "DeidentifyLogsDicomVersion" in line and "needs" in line]
