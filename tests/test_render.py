"""The renderer: pure, deterministic, every key in one file. Golden files in tests/golden/
(regenerate with UPDATE_GOLDEN=1 after an intended change, and read the diff; a change to
deployments/worklist_server.py changes the probe in access.lua, which digests every file)."""

import datetime
import json
import os
from pathlib import Path

import pytest

from deployments.lua import lua_string
from deployments.models import Deployment, Modality, OrthancUser
from deployments.render import file_mode, masked, render_deployment

GOLDEN = Path(__file__).resolve().parent / "golden"
TODAY = datetime.date(2026, 11, 22)


def _deployment(**fields):
    return Deployment(
        name="Golden clinic",
        slug="golden",
        orthanc_url="http://127.0.0.1:8042",
        service_username="portal",
        service_password="portal-service-secret-0123",
        config_dir="/srv/orthanc/config",
        storage_dir="/srv/orthanc/storage",
        worklists_dir="/srv/orthanc/worklists",
        **fields,
    )


def _render(**fields):
    users = [
        OrthancUser(username="reader", password="reader-secret-0123456789", role="viewer"),
        OrthancUser(username="gone", password="x" * 24, role="admin", expires_on=datetime.date(2026, 1, 1)),
    ]
    modalities = [Modality(name="US1", aet="US_ROOM_1", host="192.168.1.20", port=104, local_aet="PACS1", timeout=30)]
    return render_deployment(
        _deployment(**fields), users, modalities, plugins_dir="/usr/share/orthanc/plugins", today=TODAY
    )


@pytest.mark.parametrize("name", ["orthanc.json", "credentials.json", "access.lua"])
def test_the_rendered_files_equal_the_golden_files(name):
    files = _render()
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_bytes(files[name])
    assert files[name].decode() == golden.read_text()


def test_rendering_twice_gives_the_same_bytes():
    assert _render() == _render()


def test_every_top_level_key_is_in_exactly_one_file():
    files = _render(
        index_backend="postgresql",
        pg_host="db",
        pg_database="orthanc",
        pg_user="orthanc",
        pg_password="pg-secret-0123456789",
    )
    seen = {}
    for name, data in files.items():
        if name.endswith(".json"):
            for key in json.loads(data):
                assert key not in seen, f"{key} in {seen.get(key)} and {name}"
                seen[key] = name
    assert seen["PostgreSQL"] == "postgresql.json"
    assert seen["RegisteredUsers"] == "credentials.json"
    assert "libOrthancPostgreSQLIndex.so" in json.loads(files["orthanc.json"])["Plugins"][-1]


def test_an_expired_user_is_left_out_and_the_portal_account_is_always_in():
    users = json.loads(_render()["credentials.json"])["RegisteredUsers"]

    assert set(users) == {"portal", "reader"}


def test_the_preview_masks_every_password():
    files = masked(
        _render(
            index_backend="postgresql", pg_host="db", pg_database="o", pg_user="o", pg_password="pg-secret-0123456789"
        )
    )

    text = "".join(files.values())
    for secret in ("portal-service-secret-0123", "reader-secret-0123456789", "pg-secret-0123456789"):
        assert secret not in text


def test_lua_strings_escape_every_byte_that_could_end_the_string():
    assert lua_string('a"b') == '"a\\034b"'
    assert lua_string("]]") == '"\\093\\093"'
    assert lua_string("Ł") == '"\\197\\129"'


def test_imported_keys_the_portal_does_not_model_are_written_back_unchanged():
    files = _render(extra_config={"HttpTimeout": 90, "UserMetadata": {"Sample": 1024}})

    main = json.loads(files["orthanc.json"])
    assert main["HttpTimeout"] == 90 and main["UserMetadata"] == {"Sample": 1024}


def test_the_worklists_are_served_by_the_portals_script_in_orthancs_python_plugin():
    files = _render()
    config = json.loads(files["orthanc.json"])
    assert config["Plugins"] == ["/usr/share/orthanc/plugins/libOrthancPython.so"]
    assert config["PythonScript"] == "/srv/orthanc/config/portal_worklists.py"
    assert config["Worklists"] == {"Enable": True, "Database": "/srv/orthanc/worklists"}
    source = Path(__file__).resolve().parent.parent / "deployments" / "worklist_server.py"
    assert files["portal_worklists.py"] == source.read_bytes()
    assert file_mode("portal_worklists.py") == 0o644


def test_the_classic_worklist_plugin_is_loaded_instead_when_chosen():
    files = _render(worklist_server="classic")
    config = json.loads(files["orthanc.json"])
    assert config["Plugins"] == ["/usr/share/orthanc/plugins/libModalityWorklists.so"]
    assert "PythonScript" not in config and "portal_worklists.py" not in files
    assert config["Worklists"]["Database"] == "/srv/orthanc/worklists"


def test_without_worklists_neither_plugin_nor_script_is_loaded():
    files = _render(worklists_enabled=False)
    config = json.loads(files["orthanc.json"])
    assert config["Plugins"] == [] and "PythonScript" not in config and "portal_worklists.py" not in files
