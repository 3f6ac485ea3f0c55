"""What the rendered users, roles and DICOM permissions mean to a real Orthanc (Debian package)."""

import subprocess

import pytest
import requests

from deployments.models import Modality, OrthancUser
from tests import orthanc_roles
from tests.conftest import OrthancInstance, require_binary

pytestmark = pytest.mark.orthanc

PASSWORD = orthanc_roles.PASSWORD


@pytest.fixture(scope="module")
def role_orthanc(tmp_path_factory):
    require_binary("/usr/sbin/Orthanc", "orthanc")
    # Lua and file writes over REST on, so that only the generated filter stands between a
    # non-admin and /tools/execute-script or an export.
    instance = OrthancInstance(
        tmp_path_factory.mktemp("roles"), execute_lua_enabled=True, rest_api_write_to_file_system_enabled=True
    )
    instance.users += orthanc_roles.users()
    instance.write_config()
    instance.start()
    yield orthanc_roles.Session(instance).prepare()
    instance.stop()


@pytest.mark.parametrize("route", orthanc_roles.ROUTES, ids=[r.id for r in orthanc_roles.ROUTES])
def test_each_role_reaches_exactly_the_routes_its_role_allows(role_orthanc, route):
    assert role_orthanc.check(route) == []


def test_the_push_probe_answers_yes_only_to_this_very_configuration(role_orthanc):
    assert role_orthanc.check_probe() == []


def test_a_viewer_finds_a_study_by_post_and_a_role_the_filter_does_not_know_reads_nothing(role_orthanc):
    session = role_orthanc
    found = session.http.post(
        f"{session.url}/tools/find", json=orthanc_roles.FIND, auth=orthanc_roles.auth("viewer"), timeout=10
    )
    assert found.status_code == 200 and session.ids["study"] in found.json()
    looked_up = session.http.post(
        f"{session.url}/tools/lookup", data="ROLE1", auth=orthanc_roles.auth("viewer"), timeout=10
    )
    assert session.ids["patient"] in [r["ID"] for r in looked_up.json()]
    assert session.call("auditor", "GET", "/system") == 403


def test_without_authentication_no_request_has_a_user_and_the_filter_refuses_all(orthanc_factory):
    instance = orthanc_factory(authentication_enabled=False)
    assert orthanc_roles.check_anonymous(instance.url) == []


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
