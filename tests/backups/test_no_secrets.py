"""No file on an rsync target holds an Orthanc password in clear: the configuration files that
hold them are left out of the snapshot (the portal keeps them encrypted and renders them again)."""

from pathlib import Path

import pytest

from deployments.backups.models import BackupRun
from tests.backups.conftest import upload_studies

pytestmark = pytest.mark.orthanc


def test_an_rsync_snapshot_keeps_the_configuration_but_no_orthanc_password_in_clear(backup_setup):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=1)
    live = Path(setup.deployment.config_dir) / "credentials.json"
    password = setup.deployment.service_password.encode()
    assert password in live.read_bytes(), "the live credentials.json holds the password the test looks for"

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    snapshot = setup.target / run.snapshot
    assert (snapshot / "config" / "orthanc.json").is_file()
    assert not (snapshot / "config" / "credentials.json").exists()
    for path in setup.sshd.root.rglob("*"):
        if path.is_file():
            assert password not in path.read_bytes(), f"{path} holds an Orthanc password in clear"
