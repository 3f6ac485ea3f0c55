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
from deployments.render import MASK, file_mode, masked, probe_of, render_deployment, render_for
from tests.conftest import WORKLIST_SERVER

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
    assert files["portal_worklists.py"] == WORKLIST_SERVER.read_bytes()
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


def test_the_preview_shows_each_file_as_text_with_the_passwords_replaced_and_nothing_else_changed():
    files = _render(index_backend="postgresql", pg_host="db", pg_database="o", pg_user="o", pg_password="pg-s3cret")
    shown = masked(files)

    assert set(shown) == set(files)
    assert json.loads(shown["credentials.json"]) == {"RegisteredUsers": {"portal": MASK, "reader": MASK}}
    assert (
        shown["credentials.json"]
        == json.dumps(
            {"RegisteredUsers": {"portal": MASK, "reader": MASK}}, indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
    )
    pg = json.loads(files["postgresql.json"])
    pg["PostgreSQL"]["Password"] = MASK
    assert json.loads(shown["postgresql.json"]) == pg
    assert shown["postgresql.json"].endswith("\n") and MASK in shown["postgresql.json"]
    for name in ("orthanc.json", "access.lua", "portal_worklists.py"):
        assert shown[name] == files[name].decode("utf-8")


def test_a_saved_deployment_is_rendered_from_its_rows(db, settings):
    d = _deployment()
    d.save()
    OrthancUser.objects.create(deployment=d, username="reader", password="reader-secret-0123456789", role="viewer")
    Modality.objects.create(deployment=d, name="US1", aet="US_ROOM_1", host="192.168.1.20", port=104)

    files = render_for(d, today=TODAY)

    assert files == render_deployment(
        d,
        list(d.orthanc_users.all()),
        list(d.modalities.all()),
        plugins_dir=settings.ORTHANC_PLUGINS_DIR,
        today=TODAY,
    )
    assert set(json.loads(files["credentials.json"])["RegisteredUsers"]) == {"portal", "reader"}
    assert list(json.loads(files["orthanc.json"])["DicomModalities"]) == ["US1"]
    # The day decides who may log in: an account that expired since is left out of today's render.
    OrthancUser.objects.create(
        deployment=d, username="temp", password="x" * 24, role="viewer", expires_on=datetime.date(2001, 1, 1)
    )
    assert "temp" in json.loads(render_for(d, today=datetime.date(2000, 1, 1))["credentials.json"])["RegisteredUsers"]
    assert "temp" not in json.loads(render_for(d)["credentials.json"])["RegisteredUsers"]
    plugins = json.loads(render_for(d, today=TODAY, plugins_dir="/opt/plugins")["orthanc.json"])["Plugins"]
    assert plugins == ["/opt/plugins/libOrthancPython.so"]
    default = json.loads(files["orthanc.json"])["Plugins"]
    assert default == [f"{settings.ORTHANC_PLUGINS_DIR}/libOrthancPython.so"]


def test_https_names_its_certificate_and_plain_http_names_none():
    config = json.loads(_render(ssl_enabled=True, ssl_certificate="/etc/orthanc/tls.pem")["orthanc.json"])
    assert (config["SslEnabled"], config["SslCertificate"]) == (True, "/etc/orthanc/tls.pem")
    assert "SslCertificate" not in json.loads(_render()["orthanc.json"])


def test_dicomweb_loads_its_plugin_and_sections_keep_the_keys_an_import_kept():
    files = _render(
        dicomweb_enabled=True,
        dicomweb_root="/dicom-web/",
        extra_config={
            "DicomWeb": {"Ssl": True, "Enable": False, "Root": "/old/"},
            "Worklists": {"FilterIssuerAet": True, "Database": "/old/worklists"},
        },
    )
    config = json.loads(files["orthanc.json"])
    assert config["Plugins"] == [
        "/usr/share/orthanc/plugins/libOrthancPython.so",
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    ]
    # The portal's own keys win over what the import kept; the others stay.
    assert config["DicomWeb"] == {"Ssl": True, "Enable": True, "Root": "/dicom-web/"}
    assert config["Worklists"] == {"FilterIssuerAet": True, "Enable": True, "Database": "/srv/orthanc/worklists"}
    assert "DicomWeb" not in json.loads(_render()["orthanc.json"])
    fresh = json.loads(_render(dicomweb_enabled=True, dicomweb_root="/dw/")["orthanc.json"])  # nothing imported
    assert fresh["DicomWeb"] == {"Enable": True, "Root": "/dw/"}


def test_the_postgresql_index_is_configured_in_its_own_secret_file():
    files = _render(
        index_backend="postgresql",
        pg_host="db.clinic",
        pg_port=6432,
        pg_database="orthanc",
        pg_user="orthanc_user",
        pg_password="pg-secret-0123456789",
        pg_tls=True,
    )
    assert json.loads(files["postgresql.json"]) == {
        "PostgreSQL": {
            "EnableIndex": True,
            "EnableStorage": False,  # the images stay in the storage folder, backed up by rsync
            "Host": "db.clinic",
            "Port": 6432,
            "Database": "orthanc",
            "Username": "orthanc_user",
            "Password": "pg-secret-0123456789",
            "EnableSsl": True,
        }
    }
    assert file_mode("postgresql.json") == 0o600 and file_mode("orthanc.json") == 0o644
    assert "postgresql.json" not in _render()


def test_the_plugins_are_found_in_debian_s_folder_unless_told_otherwise():
    files = render_deployment(_deployment(), today=TODAY)
    assert json.loads(files["orthanc.json"])["Plugins"] == ["/usr/share/orthanc/plugins/libOrthancPython.so"]


def test_the_probe_is_read_back_from_the_rendered_filter():
    files = _render()
    (line,) = [x for x in files["access.lua"].decode().splitlines() if x.startswith("local probe = ")]
    assert probe_of(files) == line.split('"')[1] and len(probe_of(files)) == 32
    assert probe_of({}) == ""
    assert probe_of({"access.lua": b"-- no probe here\n"}) == ""
    # The probe changes with any change to any file.
    assert probe_of(_render(dicom_port=4343)) != probe_of(files)
