"""Importing an existing Orthanc configuration: parsing, mapping, applying, and the round trip
through the renderer."""

import json
import shutil
from pathlib import Path

import pytest

from deployments.importer import ConfigImportError, import_path, import_texts, merge, parse_text, strip_comments
from deployments.models import Deployment, Modality, OrthancUser
from deployments.render import PLUGINS, render_for
from portal.models import AuditEntry

DEBIAN = Path("/etc/orthanc")


def make_deployment(slug="clinic", **fields):
    values = {
        "name": f"Clinic {slug}",
        "slug": slug,
        "orthanc_url": "http://127.0.0.1:8042",
        "service_password": "S3rvice-" + "x" * 20,
        "config_dir": f"/srv/{slug}/config",
    }
    return Deployment.objects.create(**{**values, **fields})


def rendered_config(deployment):
    """The rendered files parsed and merged, as Orthanc would read the folder."""
    files = render_for(deployment)
    merged = {}
    for name, data in files.items():
        if name.endswith(".json"):
            for key, value in json.loads(data).items():
                assert key not in merged, f"{key} rendered into two files"
                merged[key] = value
    return merged


def orthanc_modality(entry):
    """A DicomModalities entry as Orthanc understands it (array form and absent Allow* = true)."""
    if isinstance(entry, list):
        entry = dict(zip(("AET", "Host", "Port", "Manufacturer"), entry, strict=False))
    flags = [
        "AllowEcho",
        "AllowFind",
        "AllowFindWorklist",
        "AllowGet",
        "AllowMove",
        "AllowStore",
        "AllowStorageCommitment",
    ]
    return {
        "AET": entry["AET"],
        "Host": entry["Host"],
        "Port": int(entry["Port"]),
        "Manufacturer": entry.get("Manufacturer", "Generic"),
        "LocalAet": entry.get("LocalAet", ""),
        "Timeout": entry.get("Timeout", 0),
        **{f: entry.get(f, True) for f in flags},
    }


# Plugin sections whose unmodelled sub-keys the importer keeps in extra_config[section], for
# render.py to merge back; see test_unmodelled_keys_inside_plugin_sections_are_written_back.
MERGED_SECTIONS = ("DicomWeb", "Worklists")


def assert_equivalent(original, rendered, service_username="portal", strict_sections=True):
    """Every imported key is present after rendering with the same value. The portal owns
    Plugins, LuaScripts and PythonScript (it loads its plugins by name, its access filter and
    its worklist server), and adds its own account to RegisteredUsers."""
    for key, value in original.items():
        if key in ("Plugins", "LuaScripts", "PythonScript", "PythonVerbose"):
            continue
        if key in MERGED_SECTIONS and not strict_sections:
            assert key in rendered, f"{key} lost in the round trip"
            assert rendered[key].items() <= value.items(), f"{key}: {rendered[key]!r} not within {value!r}"
            continue
        assert key in rendered, f"{key} lost in the round trip"
        if key == "RegisteredUsers":
            assert {k: v for k, v in rendered[key].items() if k != service_username} == value
        elif key == "DicomModalities":
            assert {n: orthanc_modality(e) for n, e in rendered[key].items()} == {
                n: orthanc_modality(e) for n, e in value.items()
            }
        else:
            assert rendered[key] == value, f"{key}: {rendered[key]!r} != {value!r}"


# ---------------------------------------------------------------- parsing


def test_comments_are_removed_but_strings_holding_comment_marks_survive():
    text = r"""{
      // a line comment
      "Url": "http://peer.example:8042//x", /* a block
      comment over lines */ "Quoted": "say \"//\" and /* this */",
      "List": [1, 2, /* trailing comma follows */ ],
    }"""
    data, warnings = parse_text(text, "orthanc.json")
    assert data == {"Url": "http://peer.example:8042//x", "Quoted": 'say "//" and /* this */', "List": [1, 2]}
    assert warnings == []
    # Line and column stay where they were, so errors point into the original file.
    assert strip_comments(text).count("\n") == text.count("\n")


def test_malformed_json_names_the_file_line_and_column():
    text = '{\n  // fine\n  "HttpPort": 8042\n  "DicomPort": 4242\n}'
    with pytest.raises(ConfigImportError) as err:
        parse_text(text, "orthanc.json")
    assert str(err.value) == "orthanc.json: line 4, column 3: Expecting ',' delimiter"


def test_an_unclosed_block_comment_is_reported_where_it_starts():
    with pytest.raises(ConfigImportError, match=r"^x.json: line 2, column 3: a /\* comment is never closed$"):
        parse_text('{\n  /* never closed\n  "a": 1 }', "x.json")


def test_a_key_defined_twice_in_one_file_keeps_the_last_value_with_a_warning():
    data, warnings = parse_text('{"LimitFindResults": 5, "LimitFindResults": 7}', "o.json")
    assert data == {"LimitFindResults": 7}
    assert warnings == ["o.json: LimitFindResults is defined twice; the last value is used, as Orthanc does"]


def test_a_key_defined_in_two_files_of_a_folder_is_refused():
    with pytest.raises(ConfigImportError) as err:
        merge({"a.json": '{"HttpPort": 8042}', "b.json": '{"HttpPort": 8043}'})
    assert str(err.value) == "HttpPort is defined in both a.json and b.json: Orthanc refuses to start with that"


def test_a_file_nested_absurdly_deep_is_refused_with_one_line():
    with pytest.raises(ConfigImportError, match="^x.json: nested too deeply"):
        parse_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}", "x.json")


def test_a_top_level_that_is_not_an_object_is_refused():
    with pytest.raises(ConfigImportError, match="must hold one JSON object"):
        parse_text("[1, 2]", "x.json")


# ---------------------------------------------------------------- the Debian default configuration


@pytest.fixture
def debian_folder(tmp_path):
    if not (DEBIAN / "orthanc.json").exists():
        pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
    folder = tmp_path / "etc-orthanc"
    shutil.copytree(DEBIAN, folder)
    return folder


def test_debian_default_configuration_imports_and_renders_back_equivalent(db, debian_folder):
    deployment = make_deployment()
    original, _, _ = merge({p.name: p.read_text() for p in debian_folder.glob("*.json")})
    assert {"DicomWeb", "Worklists", "ServeFolders", "RegisteredUsers"} <= original.keys()  # every file read

    result = import_path(deployment, debian_folder)

    deployment.refresh_from_db()
    assert deployment.name == "Orthanc"
    assert deployment.dicomweb_enabled and not deployment.worklists_enabled
    assert deployment.limit_find_results == 0 and deployment.default_encoding == "Latin1"
    assert deployment.extra_config["ServeFolders"] == {}
    rendered = rendered_config(deployment)
    assert_equivalent(original, rendered, strict_sections=False)
    assert deployment.extra_config["DicomWeb"] == {
        "EnableWado": True,
        "WadoRoot": "/wado",
        "Host": "localhost",
        "Ssl": False,
    }
    assert any(p.endswith(PLUGINS["dicomweb"]) for p in rendered["Plugins"])
    text = "\n".join(map(str, result.lines))
    assert 'imported: DicomAet = "ORTHANC" (orthanc.json)' in text
    assert (
        "kept: 1 key(s) of serve-folders.json not modelled by the portal, written back unchanged: ServeFolders" in text
    )
    assert 'replaced: Plugins ["/usr/share/orthanc/plugins/"]' in text


def test_unmodelled_keys_inside_plugin_sections_are_written_back(db, debian_folder):
    deployment = make_deployment()
    original, _, _ = merge({p.name: p.read_text() for p in debian_folder.glob("*.json")})
    import_path(deployment, debian_folder)
    deployment.refresh_from_db()
    assert_equivalent(original, rendered_config(deployment))


def test_importing_the_folder_a_deployment_uses_names_the_files_the_first_push_moves_aside(db, debian_folder):
    deployment = make_deployment(config_dir=str(debian_folder))
    lines = [str(line) for line in import_path(deployment, debian_folder).lines]
    moved = [line for line in lines if "the first push moves it into" in line]
    assert [line.split(" in ")[0] for line in moved] == [
        "note: dicomweb.json",
        "note: python.json",
        "note: serve-folders.json",
        "note: worklists.json",
    ]
    assert lines[-1] == "note: nothing was pushed: review the users and settings, then make the first push"


def test_import_then_reimport_changes_nothing_more(db, debian_folder):
    deployment = make_deployment()
    import_path(deployment, debian_folder)
    deployment.refresh_from_db()
    first = rendered_config(deployment)
    import_path(deployment, debian_folder)
    deployment.refresh_from_db()
    assert rendered_config(deployment) == first


# ---------------------------------------------------------------- users and modalities


CONFIG = """{
  "Name": "Radiology",
  "RemoteAccessAllowed": true, "AuthenticationEnabled": true, "SslEnabled": true,
  "SslCertificate": "certs/orthanc.pem",
  "DicomCheckModalityHost": true,
  "RegisteredUsers": { "radiologist": "Xq7-long-and-random-Pa55", "alice": "bob" },
  "DicomModalities": {
    "us1": [ "US1", "192.168.1.20", 104 ],
    "us2": [ "US2", "192.168.1.21", "11112", "GE" ],
    "ws": { "AET": "WS", "Host": "workstation.local", "Port": 4000, "AllowStore": false,
            "AllowTranscoding": false, "LocalAet": "PACS", "Timeout": 30 }
  },
  "PostgreSQL": { "EnableIndex": true, "EnableStorage": false, "Host": "db.clinic", "Port": 5433,
                  "Database": "orthanc", "Username": "orthanc", "Password": "pg-S3cret", "EnableSsl": true,
                  "Lock": false },
  "Plugins": [ "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so" ],
  "Worklists": { "Enable": true, "Database": "/var/lib/orthanc/worklists", "FilterIssuerAet": true },
  "Peers": { "π-peer": [ "https://peer.example/orthanc//", "u", "p\\"q" ] }
}"""


def test_users_and_modalities_are_imported_with_orthancs_defaults(db):
    deployment = make_deployment(config_dir="/etc/orthanc")
    result = import_texts(deployment, {"orthanc.json": CONFIG})

    users = {u.username: u for u in OrthancUser.objects.filter(deployment=deployment)}
    assert set(users) == {"radiologist", "alice"}
    assert users["radiologist"].password == "Xq7-long-and-random-Pa55"
    assert {u.role for u in users.values()} == {"admin"}
    mods = {m.name: m for m in Modality.objects.filter(deployment=deployment)}
    assert (mods["us1"].aet, mods["us1"].host, mods["us1"].port, mods["us1"].manufacturer) == (
        "US1",
        "192.168.1.20",
        104,
        "Generic",
    )
    assert mods["us1"].allow_find and mods["us1"].allow_move and mods["us1"].allow_storage_commitment
    assert (mods["us2"].port, mods["us2"].manufacturer) == (11112, "GE")
    assert not mods["ws"].allow_store and mods["ws"].allow_echo
    assert (mods["ws"].local_aet, mods["ws"].timeout) == ("PACS", 30)
    deployment.refresh_from_db()
    assert deployment.ssl_certificate == "/etc/orthanc/certs/orthanc.pem"
    assert deployment.index_backend == "postgresql" and deployment.pg_password == "pg-S3cret"
    assert (deployment.pg_host, deployment.pg_port, deployment.pg_tls) == ("db.clinic", 5433, True)
    assert deployment.worklists_enabled is False  # its plugin is not in Plugins

    lines = [str(line) for line in result.lines]
    assert "critical: user alice has a default or weak password: rotate it before remote access" in lines
    assert "warning: modality ws: AllowTranscoding not modelled by the portal, not written back" in lines
    assert "warning: PostgreSQL: Lock not modelled by the portal, not written back" in lines
    assert "warning: modality ws: host workstation.local is not an IP address while host checking is on" in lines
    assert [str(c) for c in result.critical] == [
        "critical: user alice has a default or weak password: rotate it before remote access"
    ]

    rendered = rendered_config(deployment)
    assert rendered["Peers"] == {"π-peer": ["https://peer.example/orthanc//", "u", 'p"q']}
    assert rendered["RegisteredUsers"]["alice"] == "bob"
    pg = rendered["PostgreSQL"]
    assert (pg["Host"], pg["Port"], pg["Password"], pg["EnableSsl"]) == ("db.clinic", 5433, "pg-S3cret", True)
    assert {n: orthanc_modality(e) for n, e in rendered["DicomModalities"].items()}["us2"] == orthanc_modality(
        ["US2", "192.168.1.21", 11112, "GE"]
    )


def test_every_change_of_an_import_is_audited(db):
    deployment = make_deployment()
    import_texts(deployment, {"orthanc.json": CONFIG})
    entries = AuditEntry.objects.all()
    assert entries.filter(object_type="deployments.deployment", summary__startswith="Imported").count() == 1
    assert entries.filter(object_type="deployments.orthancuser", action="create").count() == 2
    assert entries.filter(object_type="deployments.modality", action="create").count() == 3
    # No password reaches the audit trail.
    assert "Xq7-long" not in json.dumps(list(entries.values_list("changes", flat=True)))


def test_a_reimport_replaces_users_and_modalities_and_keeps_existing_roles(db):
    deployment = make_deployment()
    import_texts(deployment, {"orthanc.json": CONFIG})
    OrthancUser.objects.filter(username="radiologist").update(role="viewer")
    smaller = '{"RegisteredUsers": {"radiologist": "An0ther-long-Passw0rd"}, "DicomModalities": {"us1": ["US1", "192.168.1.20", 104]}}'
    result = import_texts(deployment, {"orthanc.json": smaller})
    users = {u.username: u for u in OrthancUser.objects.filter(deployment=deployment)}
    assert list(users) == ["radiologist"] and users["radiologist"].role == "viewer"
    assert users["radiologist"].password == "An0ther-long-Passw0rd"
    assert list(Modality.objects.filter(deployment=deployment).values_list("name", flat=True)) == ["us1"]
    lines = [str(line) for line in result.lines]
    assert "replaced: user alice removed: not in the imported configuration" in lines
    assert "replaced: modality ws removed: not in the imported configuration" in lines
    assert AuditEntry.objects.filter(action="delete", object_type="deployments.modality").count() == 2


# ---------------------------------------------------------------- bad input: one line, nothing written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"RegisteredUsers": {"dr:who": "Long-enough-passw0rd"}}',
            "RegisteredUsers: user \"dr:who\": \"dr:who\": A username cannot contain ':' (no ':', spaces or control characters).",
        ),
        (
            '{"LimitFindResults": 200000}',
            "LimitFindResults: 200000: Ensure this value is less than or equal to 100000.",
        ),
        ('{"DicomPort": 70000}', "DicomPort: 70000: A port is between 1 and 65535."),
        ('{"HttpPort": "8042"}', 'HttpPort: expected a whole number, found "8042"'),
        ('{"DicomAet": "SEVENTEEN_LETTERS"}', 'DicomAet: "SEVENTEEN_LETTERS": An AE title is 1 to 16 characters'),
        (
            '{"DicomModalities": {"us": ["US\\\\1", "10.0.0.1", 104]}}',
            'DicomModalities.us.aet: "US\\\\1": An AE title is 1 to 16',
        ),
        (
            '{"DicomModalities": {"us": ["US", "10.0.0.1", 0]}}',
            "DicomModalities.us.port: 0: A port is between 1 and 65535.",
        ),
        (
            '{"DicomModalities": {"a": ["US", "10.0.0.1", 104], "b": ["US", "10.0.0.1", 104]}}',
            "DicomModalities.b: same AET, host and port as a",
        ),
        (
            '{"PostgreSQL": {"EnableIndex": true, "EnableStorage": true}, "Plugins": ["/x/libOrthancPostgreSQLIndex.so"]}',
            "PostgreSQL.EnableStorage is true",
        ),
        (
            '{"RegisteredUsers": {"amy": 12345678901}}',
            'RegisteredUsers: the password of "amy": expected a string, found another kind of value (not shown',
        ),
        ('{"HttpPort": 4242}', "HttpPort and DicomPort are both 4242: Orthanc cannot start so"),
        ('{"Plugins": [42]}', "Plugins: expected a string, found 42"),
        ('{"DefaultEncoding": "Klingon"}', "DefaultEncoding: \"Klingon\": Value 'Klingon' is not a valid choice."),
    ],
)
def test_bad_input_gives_one_clear_line_and_changes_nothing(db, tmp_path, text, message):
    deployment = make_deployment(limit_find_results=100, config_dir=str(tmp_path))
    before = AuditEntry.objects.count()
    with pytest.raises(ConfigImportError) as err:
        import_texts(deployment, {"orthanc.json": text})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
    deployment.refresh_from_db()
    assert deployment.limit_find_results == 100 and deployment.name == "Clinic clinic"
    assert AuditEntry.objects.count() == before
    assert not OrthancUser.objects.exists() and not Modality.objects.exists()
    assert list(tmp_path.iterdir()) == []  # an import never writes to the configuration folder


def test_remote_access_without_authentication_is_imported_as_a_critical_finding(db):
    deployment = make_deployment()
    result = import_texts(deployment, {"orthanc.json": '{"RemoteAccessAllowed": true, "AuthenticationEnabled": false}'})
    assert [line.text for line in result.critical] == [
        "remote access is on without authentication: anyone on the network can read and delete"
    ]
    deployment.refresh_from_db()
    assert deployment.remote_access_allowed and not deployment.authentication_enabled


def test_a_name_taken_by_another_deployment_is_refused(db):
    make_deployment("other", name="Radiology")
    deployment = make_deployment()
    with pytest.raises(ConfigImportError, match="^Name: Deployment with this Name already exists."):
        import_texts(deployment, {"orthanc.json": '{"Name": "Radiology"}'})


def test_an_active_worklist_plugin_is_imported_with_its_folder(db):
    deployment = make_deployment()
    text = """{
      "Plugins": ["/usr/share/orthanc/plugins/libModalityWorklists.so"],
      "Worklists": {"Enable": true, "Database": "/srv/worklists", "FilterIssuerAet": true}
    }"""
    result = import_texts(deployment, {"worklists.json": text})
    deployment.refresh_from_db()
    assert deployment.worklists_enabled and deployment.worklists_dir == "/srv/worklists"
    assert deployment.extra_config == {"Worklists": {"FilterIssuerAet": True}}
    assert not deployment.dicomweb_enabled  # no DICOMweb library in Plugins
    rendered = rendered_config(deployment)
    assert rendered["Worklists"]["Database"] == "/srv/worklists" and rendered["Worklists"]["Enable"] is True
    assert any(p.endswith(PLUGINS["worklists"]) for p in rendered["Plugins"])
    assert 'imported: Worklists: plugin on, folder "/srv/worklists"' in [str(line) for line in result.lines]
    # FilterIssuerAet is an option of the classic plugin: it stays the worklist server.
    assert deployment.worklist_server == "classic" and "PythonScript" not in rendered


def test_a_plain_worklist_section_is_served_by_the_portals_server_and_a_foreign_python_script_is_reported(db):
    deployment = make_deployment()
    text = """{
      "Plugins": ["/usr/share/orthanc/plugins"],
      "Worklists": {"Enable": true, "Database": "/srv/worklists"},
      "PythonScript": "/etc/orthanc/clinic.py"
    }"""
    result = import_texts(deployment, {"orthanc.json": text})
    deployment.refresh_from_db()
    assert deployment.worklist_server == "indexed" and "PythonScript" not in deployment.extra_config
    rendered = rendered_config(deployment)
    assert rendered["PythonScript"].endswith("/portal_worklists.py")
    lines = [str(line) for line in result.lines]
    assert any("/etc/orthanc/clinic.py" in line and line.startswith("warning") for line in lines), lines
