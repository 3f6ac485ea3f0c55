"""The Lua filter's text (pure): every username and the probe reach Lua as decimal byte escapes,
and the roles table says who is who. What the filter lets each role do is checked over HTTP
against a real Orthanc in test_orthanc_access.py (tests/orthanc_roles.py)."""

import string

from deployments.lua import FILTER, HEADER, VIEWER_LOOKUPS, lua_string, render_filter


def test_letters_and_digits_stay_and_every_other_byte_becomes_a_decimal_escape():
    assert lua_string("") == '""'
    assert lua_string(string.ascii_letters + string.digits) == f'"{string.ascii_letters}{string.digits}"'
    for char in string.punctuation + " \t\n\r\0\x7f":
        assert lua_string(char) == f'"\\{ord(char):03d}"', repr(char)
    assert lua_string("Zoë") == '"Zo\\195\\171"'  # UTF-8 bytes, each escaped
    assert lua_string("²") == '"\\194\\178"'  # a digit to Python, not ASCII: escaped


def test_the_filter_starts_with_the_header_the_probe_and_the_roles_in_username_order():
    text = render_filter({"zoe": "viewer", "Adam": "admin", "ünal": "uploader"}, probe="a1b2").decode("utf-8")
    lines = text.splitlines()
    assert text.startswith(HEADER)
    assert lines[2] == 'local probe = "a1b2"'
    assert lines[3:8] == [
        "local roles = {",
        '  ["Adam"] = "admin",',
        '  ["zoe"] = "viewer",',
        '  ["\\195\\188nal"] = "uploader",',
        "}",
    ]
    assert text.endswith(FILTER)
    assert text == "\n".join([HEADER, 'local probe = "a1b2"', *lines[3:8]]) + "\n" + FILTER


def test_without_a_probe_the_probe_is_empty_and_without_users_the_table_too():
    assert render_filter({}).decode().split("\n")[2:5] == ['local probe = ""', "local roles = {", "}"]


def test_the_viewer_s_lookup_routes_are_written_into_the_filter():
    assert (
        'local lookups = {["/tools/bulk-content"] = true, ["/tools/find"] = true, ["/tools/lookup"] = true}' in FILTER
    )
    assert VIEWER_LOOKUPS == ("/tools/bulk-content", "/tools/find", "/tools/lookup")
