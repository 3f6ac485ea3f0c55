"""What the rendered users, roles and DICOM permissions mean to a real Orthanc (Debian package)."""

import subprocess

import pytest
import requests

from deployments.models import Modality, OrthancUser
from tests.conftest import OrthancInstance, require_binary
from tests.dicomfiles import make_instance

pytestmark = pytest.mark.orthanc

ROLES = ["admin", "operator", "viewer", "uploader"]
PASSWORD = "Long-enough-pa55word-{}"


@pytest.fixture(scope="module")
def role_orthanc(tmp_path_factory):
    require_binary("/usr/sbin/Orthanc", "orthanc")
    # Lua and file writes over REST on, so that only the generated filter stands between a
    # non-admin and /tools/execute-script or an export.
    instance = OrthancInstance(
        tmp_path_factory.mktemp("roles"), execute_lua_enabled=True, rest_api_write_to_file_system_enabled=True
    )
    for role in ROLES:
        instance.users.append(OrthancUser(username=f"{role}1", password=PASSWORD.format(role), role=role))
    instance.write_config()
    instance.start()
    # Something to read, change and delete.
    instance.study = instance.client().upload(make_instance(patient_id="ROLE1"))
    yield instance
    instance.stop()


def _call(instance, role, method, path, **kwargs):
    auth = (f"{role}1", PASSWORD.format(role))
    return requests.request(method, f"{instance.url}{path}", auth=auth, timeout=10, **kwargs).status_code


# (method, path, body) → the roles allowed; everyone else gets 403.
CASES = [
    ("GET", "/system", None, {"admin", "operator", "viewer"}),
    ("GET", "/patients", None, {"admin", "operator", "viewer"}),
    ("POST", "/tools/find", {"Level": "Study", "Query": {}}, {"admin", "operator"}),
    ("POST", "/tools/execute-script", "print(1)", {"admin"}),
    ("POST", "//tools//execute-script", "print(1)", {"admin"}),
    ("PUT", "/patients/{patient}/protected", "1", {"admin", "operator"}),
    ("POST", "/instances", "DICOM", {"admin", "operator", "uploader"}),
    ("POST", "/instances/{instance}/export", "{export}", {"admin"}),
    ("DELETE", "/instances/{instance}", None, {"admin"}),
]


@pytest.mark.parametrize("method, path, body, allowed", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_each_role_may_do_exactly_what_its_role_allows(role_orthanc, method, path, body, allowed):
    ids = {"patient": role_orthanc.study["ParentPatient"], "instance": role_orthanc.study["ID"]}
    path = path.format(**ids)
    if body == "{export}":
        body = str(role_orthanc.base / "export.dcm")
    for role in ROLES:
        data = make_instance(patient_id="UP1") if body == "DICOM" else body
        kwargs = {"json": data} if isinstance(data, dict) else {"data": data}
        if role in allowed and method == "DELETE":
            continue  # only the last allowed role deletes, below
        status = _call(role_orthanc, role, method, path, **kwargs)
        if role in allowed:
            # Allowed by the filter: Orthanc answers (an error of its own is fine, never 401/403).
            assert status not in (401, 403), f"{role} {method} {path}: {status}"
        else:
            assert status == 403, f"{role} {method} {path}: {status} (expected 403)"
    if method == "DELETE":
        assert _call(role_orthanc, "admin", method, path) == 200


def test_an_unknown_user_gets_401_and_a_wrong_password_too(role_orthanc):
    assert requests.get(f"{role_orthanc.url}/system", auth=("mallory", "x" * 20), timeout=5).status_code == 401
    assert requests.get(f"{role_orthanc.url}/system", auth=("viewer1", "wrong-password"), timeout=5).status_code == 401


def test_an_inactive_or_expired_user_is_not_written_and_gets_401(orthanc_factory):
    import datetime

    instance = orthanc_factory(start=False)
    instance.users += [
        OrthancUser(username="gone", password=PASSWORD.format("g"), role="admin", is_active=False),
        OrthancUser(username="old", password=PASSWORD.format("o"), role="admin", expires_on=datetime.date(2020, 1, 1)),
    ]
    instance.write_config()
    instance.start()

    for name, pw in (("gone", PASSWORD.format("g")), ("old", PASSWORD.format("o"))):
        assert requests.get(f"{instance.url}/system", auth=(name, pw), timeout=5).status_code == 401


TRICKY = [
    ('quo"te', "pa\"ss'word-1234567890"),
    ("back\\slash", "pass\\word\\1234567890"),
    ("br]]acket", "]]..--[[ pass 1234567890"),
    ("Łukasiewicz", "hasło-Śmiały-żółć-12345"),
    ('inj"];os.exit(1)--', '"); os.exit(1) --[['),
]


def test_usernames_and_passwords_with_quotes_backslashes_brackets_and_letters_round_trip(orthanc_factory):
    instance = orthanc_factory(start=False)
    for username, password in TRICKY:
        instance.users.append(OrthancUser(username=username, password=password, role="viewer"))
    instance.write_config()
    instance.start()

    for username, password in TRICKY:
        auth = (username.encode("utf-8"), password.encode("utf-8"))
        get = requests.get(f"{instance.url}/system", auth=auth, timeout=5)
        delete = requests.delete(f"{instance.url}/patients/none", auth=auth, timeout=5)
        assert get.status_code == 200, f"{username!r}: {get.status_code}"
        assert delete.status_code == 403, f"{username!r} is a viewer: {delete.status_code}"


# ------------------------------------------------------------------ DICOM permissions


def _echo(instance, calling_aet):
    echoscu = require_binary("echoscu", "dcmtk")
    done = subprocess.run(
        [
            echoscu,
            "-v",
            "-aet",
            calling_aet,
            "-aec",
            instance.deployment.dicom_aet,
            "127.0.0.1",
            str(instance.deployment.dicom_port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # echoscu exits 0 even when Orthanc aborts the association after accepting it.
    return "Received Echo Response (Success)" in done.stdout + done.stderr


def _find_worklist(instance, calling_aet):
    findscu = require_binary("findscu", "dcmtk")
    done = subprocess.run(
        [
            findscu,
            "-W",
            "-aet",
            calling_aet,
            "-aec",
            instance.deployment.dicom_aet,
            "-k",
            "PatientName=*",
            "127.0.0.1",
            str(instance.deployment.dicom_port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode == 0 and "Refused" not in done.stderr and "Failed" not in done.stderr, done.stderr


@pytest.fixture
def dicom_orthanc(orthanc_factory):
    instance = orthanc_factory(start=False, dicom_always_allow_echo=False, dicom_always_allow_find_worklist=False)
    instance.modalities += [
        Modality(name="ECHO_OK", aet="ECHO_OK", host="127.0.0.1", port=104, allow_echo=True, allow_find_worklist=True),
        Modality(
            name="ECHO_NO", aet="ECHO_NO", host="127.0.0.1", port=105, allow_echo=False, allow_find_worklist=False
        ),
    ]
    instance.write_config()
    instance.start()
    return instance


def test_c_echo_is_allowed_only_to_a_known_modality_with_echo_allowed(dicom_orthanc):
    assert _echo(dicom_orthanc, "ECHO_OK")
    assert not _echo(dicom_orthanc, "ECHO_NO")
    assert not _echo(dicom_orthanc, "STRANGER")


def test_worklist_queries_are_allowed_only_to_modalities_with_allow_find_worklist(dicom_orthanc):
    ok, err = _find_worklist(dicom_orthanc, "ECHO_OK")
    assert ok, err
    assert not _find_worklist(dicom_orthanc, "ECHO_NO")[0]
    assert not _find_worklist(dicom_orthanc, "STRANGER")[0]
