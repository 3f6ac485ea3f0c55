"""The imported Debian default configuration, rendered by the portal, runs in the real Orthanc."""

import shutil

import pytest

from deployments.importer import import_path
from deployments.render import file_mode, render_for
from portal.files import atomic_write

from .test_importer import DEBIAN


def test_the_imported_debian_configuration_runs_in_the_real_orthanc(orthanc_factory, db, tmp_path):
    if not (DEBIAN / "orthanc.json").exists():
        pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
    instance = orthanc_factory(start=False)
    deployment = instance.save_deployment()
    folder = tmp_path / "etc-orthanc"
    shutil.copytree(DEBIAN, folder)
    # Only the ports and folders change, so that the test runs beside anything else; comments stay.
    text = (folder / "orthanc.json").read_text()
    for old, new in (
        ('"HttpPort" : 8042', f'"HttpPort" : {deployment.http_port}'),
        ('"DicomPort" : 4242', f'"DicomPort" : {deployment.dicom_port}'),
        ('"/var/lib/orthanc/db-v6"', f'"{deployment.storage_dir}"'),
    ):
        assert old in text
        text = text.replace(old, new)
    (folder / "orthanc.json").write_text(text)

    import_path(deployment, folder)
    deployment.refresh_from_db()
    for name, data in render_for(deployment).items():
        atomic_write(f"{deployment.config_dir}/{name}", data, mode=file_mode(name))
    instance.start()

    client = instance.client()
    system = client.system()
    assert (system["Name"], system["DicomAet"], system["DicomPort"]) == ("Orthanc", "ORTHANC", deployment.dicom_port)
    assert client.request("GET", "/dicom-web/studies").status_code == 200  # the DICOMweb plugin came along
    plugins = client.get_json("/plugins")
    assert "dicom-web" in plugins and "serve-folders" not in plugins  # the portal loads its plugins by name
