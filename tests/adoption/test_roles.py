"""Roles that never grow on import: each user's role is read from the old Lua request filter when
its meaning is certain; otherwise the user is imported with the least-privileged role, without
access, and named for the admin to decide."""

import pytest

from deployments.importer import import_texts
from deployments.importer.luafilter import read_filter
from deployments.lua import render_filter
from deployments.models import Deployment, OrthancUser

from .conftest import GET_ONLY_FILTER

CONFIG = """{
  "AuthenticationEnabled": true,
  "LuaScripts": ["/etc/orthanc/filter.lua"],
  "RegisteredUsers": {"admin": "Adm1n-long-Passw0rd", "alice": "Al1ce-long-Passw0rd", "scanner": "Sc4nner-long-Passw0rd"}
}"""


def roles_of(script, *users):
    reading = read_filter({"filter.lua": script})
    return {user: (r.role, r.is_active, r.decide) for user in users for r in [reading.role_for(user)]}


def test_the_orthanc_books_get_only_filter_makes_viewers_and_keeps_its_admin():
    assert roles_of(GET_ONLY_FILTER, "admin", "alice") == {
        "admin": ("admin", True, False),
        "alice": ("viewer", True, False),
    }


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # no DELETE for anyone but the boss: operators
        (
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
            '  if username == "boss" then return true end\n'
            '  return method ~= "DELETE" and uri ~= "/tools/execute-script" and uri ~= "/instances/portal-probe/export"\n'
            "end",
            {"boss": ("admin", True, False), "alice": ("operator", True, False)},
        ),
        # a table of uploaders, who may only store images; the others read
        (
            'local uploaders = { scanner = true, ["us-room-2"] = true }\n'
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
            "  if uploaders[username] then return method == 'POST' and uri == '/instances' end\n"
            "  return method == 'GET'\n"
            "end",
            {"scanner": ("uploader", True, False), "alice": ("viewer", True, False)},
        ),
        # GET and POST everywhere: a viewer, with the POSTs named for the admin
        (
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
            "  return method == 'GET' or method == 'POST'\nend",
            {"alice": ("viewer", True, True)},
        ),
        # nothing at all: no access, as before
        (
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders) return false end",
            {"alice": ("uploader", False, False)},
        ),
        # GET on one route only: no portal role is that narrow
        (
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
            "  return method == 'GET' and uri == '/system'\nend",
            {"alice": ("uploader", False, True)},
        ),
        # a branch that ends without an answer refuses (Orthanc reports a Lua error)
        (
            "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
            "  if username == 'alice' then if method == 'PUT' then return true end end\n"
            "  return method == 'GET'\nend",
            {"alice": ("viewer", True, True), "bob": ("viewer", True, False)},
        ),
        # Lua's precedence: `not method == "GET"` is `(not method) == "GET"`, always false
        (
            "function IncomingHttpRequestFilter(m, u, i, user, h)\n  if not m == 'GET' then return false end\n"
            "  return true\nend",
            {"alice": ("admin", True, False)},
        ),
    ],
)
def test_recognised_filters_give_the_most_privileged_role_within_what_they_allowed(script, expected):
    assert roles_of(script, *expected) == expected


@pytest.mark.parametrize(
    "script",
    [
        "function IncomingHttpRequestFilter(method, uri, ip, username) return ip == '127.0.0.1' end",
        "function IncomingHttpRequestFilter(m, u, i, user, h) return h['x-role'] == 'admin' end",
        "function IncomingHttpRequestFilter(m, uri) return string.find(uri, '^/tools') == nil end",
        "function IncomingHttpRequestFilter(m) local ok = m == 'GET' return ok end",
        "IncomingHttpRequestFilter = function(m) return true end",
        "local function IncomingHttpRequestFilter(m) return true end",
        "if true then function IncomingHttpRequestFilter(m) return true end end",
        "local admins = { a = true }\nadmins.alice = true\nfunction IncomingHttpRequestFilter(m, u, i, user)"
        " return admins[user] == true end",
        "function IncomingHttpRequestFilter(m, u, i, user) return somewhere_else(user) end",
        "function IncomingHttpRequestFilter(m, u, i, user) return m == 'GET' --[[ never closed",
    ],
)
def test_a_filter_outside_what_is_read_with_confidence_grants_nothing(script):
    reading = read_filter({"filter.lua": script})
    assert reading.kind == "unknown"
    assert roles_of(script, "alice") == {"alice": ("uploader", False, True)}


def test_no_filter_at_all_means_every_user_could_do_everything():
    assert read_filter({}).role_for("alice").role == "admin"
    assert read_filter({"other.lua": "function OnStoredInstance(id) end"}).kind == "none"


def test_a_script_that_cannot_be_read_here_grants_nothing():
    reading = read_filter({"/etc/orthanc/filter.lua": None})
    assert reading.kind == "unknown" and "could not be read" in reading.note


def test_the_last_script_defining_the_filter_wins_as_in_orthancs_one_lua_context():
    allow_all = "function IncomingHttpRequestFilter(m) return true end"
    assert roles_of(GET_ONLY_FILTER, "alice")["alice"][0] == "viewer"
    reading = read_filter({"a.lua": allow_all, "b.lua": GET_ONLY_FILTER})
    assert reading.role_for("alice").role == "viewer"


def test_the_portals_own_filter_gives_back_the_roles_it_was_made_from():
    script = render_filter({"portal": "admin", "ü-reader": "viewer", "op": "operator", "up": "uploader"}, "probe")
    reading = read_filter({"access.lua": script.decode()})
    assert reading.kind == "portal"
    assert {u: reading.role_for(u).role for u in ("ü-reader", "op", "up")} == {
        "ü-reader": "viewer",
        "op": "operator",
        "up": "uploader",
    }
    assert reading.role_for("stranger").is_active is False


def make_deployment():
    return Deployment.objects.create(
        name="Roles", slug="roles", orthanc_url="http://127.0.0.1:9", config_dir="/nonexistent/etc",
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip


def test_an_import_with_an_uploaded_filter_gives_each_user_the_role_it_had(db):
    deployment = make_deployment()
    result = import_texts(deployment, {"orthanc.json": CONFIG, "filter.lua": GET_ONLY_FILTER})
    users = {u.username: (u.role, u.is_active) for u in OrthancUser.objects.filter(deployment=deployment)}
    assert users == {"admin": ("admin", True), "alice": ("viewer", True), "scanner": ("viewer", True)}
    assert not result.to_decide
    assert "imported: user alice: role viewer (the old filter allowed GET on every URI but the admin-only ones)" in [
        str(line) for line in result.lines
    ]


def test_an_import_whose_filter_is_not_at_hand_imports_everyone_without_access_for_the_admin_to_decide(db):
    deployment = make_deployment()
    result = import_texts(deployment, {"orthanc.json": CONFIG})
    users = {u.username: (u.role, u.is_active) for u in OrthancUser.objects.filter(deployment=deployment)}
    assert users == {name: ("uploader", False) for name in ("admin", "alice", "scanner")}
    assert len(result.to_decide) == 3
    assert any(
        "request filter not read with confidence (/etc/orthanc/filter.lua could not be read)" in line.text
        for line in result.lines
    )


def test_a_reimport_keeps_the_role_the_admin_chose(db):
    deployment = make_deployment()
    import_texts(deployment, {"orthanc.json": CONFIG})
    OrthancUser.objects.filter(username="alice").update(role="operator", is_active=True)
    import_texts(deployment, {"orthanc.json": CONFIG, "filter.lua": GET_ONLY_FILTER})
    assert OrthancUser.objects.get(username="alice").role == "operator"
