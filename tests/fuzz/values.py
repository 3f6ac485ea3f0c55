"""Hypothesis strategies for hostile input: text, JSON, CSV and Orthanc configuration files."""

import csv
import io
import json
import operator

from hypothesis import strategies as st

# Values that broke real parsers somewhere: control characters, lone surrogates, digits that
# are not ASCII ("²" passes str.isdigit() but not int()), path characters, markup, huge numbers.
NASTY = [
    "", " ", "\x00", "a\x00b", "\x01\x02\x1b[31m", "\r", "\n", "\r\n", "\t", "\x7f", "\x85", "\u2028",
    "\ud800", "x\udfffy", "\ufeff", "\ufffe", "../", "../../etc/passwd", "..\\..\\boot.ini", "%00", "%2e%2e%2f",
    "%", "%ZZ", "\\", "/", "//", "<script>alert(1)</script>", "'", '"', "`", "${x}", "{{ x }}", "%s%n",
    "²", "١٢٣", "𝟗", "１２", "ß", "İ", "ǅ", "Łukasiewicz^Śmiały", "Müller^Jürgen", "🙂", "\u202e", "NaN",
    "Infinity", "-1", "0", "1e309", "0x10", "9" * 40, "-9" + "9" * 30, "2026-02-30", "24:61", "null", "true",
    "[]", "{}", "=cmd|' /C calc'!A0", "a" * 65, "postgresql://u:p@host:abc/db", "postgres://[::1",
]  # fmt: skip

# Every code point, surrogates included (Hypothesis leaves them out by default).
any_char = st.characters(exclude_categories=())


# Over-long strings, built by repetition so that Hypothesis does not have to generate each character.
long_text = st.builds(
    operator.mul,
    st.sampled_from(["a", "é", "\x00", "🙂", "\ud800", "9", " ", "../", "\r"]),
    st.sampled_from([257, 4_097, 65_537]),
)
# A CSV field over the csv module's 128 KiB limit.
huge_field = st.sampled_from(["x" * 200_000, '"' + "y" * 140_000])

text = st.one_of(
    st.sampled_from(NASTY),
    st.text(any_char, max_size=40),
    st.lists(st.sampled_from(NASTY), min_size=2, max_size=4).map("".join),
    long_text,
)

# A form field: one value, several values under the same name, or left out (None).
field_value = st.one_of(text, st.lists(text, min_size=2, max_size=3), st.none())

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(NASTY), text), inner, max_size=3)
    ),
    max_leaves=6,
)


def deep(depth, leaf="1"):
    """JSON nested ``depth`` deep, as text: deeper than any recursive parser's stack."""
    opening, closing = ('{"a":', "}") if depth % 2 else ("[", "]")
    return opening * depth + leaf + closing * depth


deep_json = st.builds(deep, st.sampled_from([50, 1_000, 100_000]))


# Body encodings: how the bytes are made and what charset the Content-Type declares.
# (encode with, errors, declared charset); "surrogatepass" yields invalid UTF-8.
CHARSETS = [
    ("utf-8", "surrogatepass", None),
    ("utf-8", "surrogatepass", "utf-8"),
    ("latin-1", "replace", "latin-1"),
    ("utf-8", "surrogatepass", "latin-1"),
    ("utf-16", "surrogatepass", "utf-16"),
    ("utf-8", "surrogatepass", "utf-16"),
    ("utf-8", "surrogatepass", "bogus-charset"),
    ("cp1252", "replace", "windows-1252"),
    ("utf-8", "surrogatepass", 'utf-8"; x="'),
]
charset = st.sampled_from(CHARSETS)


def encode(value: str, how) -> bytes:
    encoding, errors, _ = how
    return value.encode(encoding, errors)


# ---------------------------------------------------------------- CSV files


@st.composite
def csv_files(draw, columns, required, good_row):
    """An odd CSV file: right, wrong or huge columns; rows built on a valid row with some values
    made hostile; any line ending, a BOM, NUL, odd quoting; in one of several encodings."""
    header = draw(
        st.one_of(
            st.just(list(columns)),
            st.just(list(required)),
            st.lists(st.sampled_from(list(columns)), max_size=len(columns)),
            st.lists(st.one_of(st.sampled_from(list(columns)), text, huge_field), min_size=1, max_size=6),
        )
    )
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        row = [good_row.get(name, "") for name in header]
        for index in draw(st.lists(st.integers(0, max(len(header) - 1, 0)), max_size=3)):
            if row:
                row[index] = draw(st.one_of(text, huge_field))
        if draw(st.booleans()):
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(text, max_size=2))
        rows.append(row)
    ending = draw(st.sampled_from(["\r\n", "\n", "\r", "\n\r"]))
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    for line in [header, *rows]:
        writer.writerow([str(v).replace("\x00", "") for v in line])  # the writer refuses NUL
    body = out.getvalue()
    body = draw(
        st.sampled_from(
            [
                body,
                "\ufeff" + body,
                "\ufeff\ufeff" + body,
                body.replace(",", ",\x00", 1),
                body.replace(ending, ending + '"', 1),
                body + "\x00",
                body[: len(body) // 2],
                "",
            ]
        )
    )
    how = draw(st.sampled_from([("utf-8", "surrogatepass"), ("utf-8-sig", "surrogatepass"), ("utf-16", "surrogatepass"), ("latin-1", "replace"), ("cp1252", "replace")]))  # fmt: skip
    return body.encode(*how)


# ---------------------------------------------------------------- Orthanc configuration files

# Values an Orthanc configuration gets wrong: ports that are not ports, URIs that do not parse.
CONFIG_VALUES = st.one_of(
    st.sampled_from(
        ["²", "abc", "65536", "-1", "1e3", "\x00", "a\x00b", "postgresql://u:p@h:abc/db", "postgres://[::1", "/\x00/x"]
    ),
    st.sampled_from([65_536, -1, 0, 2**64, 1.5, float("inf"), True, None, [], {}, ["AET"], ["A", "h", "²"]]),
    json_value,
)


@st.composite
def config_files(draw, baseline: dict):
    """Orthanc configuration files: the portal's own rendering with some keys (top-level or of a
    section) given hostile values, in one of several encodings and file names."""
    config = json.loads(baseline.get("orthanc.json", b"{}"))
    keys = sorted(config) + ["PostgreSQL", "RegisteredUsers", "DicomModalities", "Worklists", "HttpPort"]
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)):
        section = config.get(key)
        if isinstance(section, dict) and section and draw(st.booleans()):
            section[draw(st.sampled_from(sorted(section)))] = draw(CONFIG_VALUES)
        elif key == "PostgreSQL":
            config[key] = {draw(st.sampled_from(["Port", "Host", "ConnectionUri", "Database"])): draw(CONFIG_VALUES)}
        elif key == "DicomModalities":
            config[key] = {draw(text): draw(st.one_of(CONFIG_VALUES, st.lists(CONFIG_VALUES, max_size=4)))}
        else:
            config[key] = draw(CONFIG_VALUES)
    body = json.dumps(config, indent=1, ensure_ascii=draw(st.booleans()))
    body = draw(st.sampled_from([body, "\ufeff" + body, "// c\n" + body + "/* x", body.replace("{", "{\x00", 1), deep(100_000)]))  # fmt: skip
    how = draw(st.sampled_from([("utf-8", "surrogatepass"), ("utf-16", "surrogatepass"), ("latin-1", "replace")]))
    name = draw(st.sampled_from(["orthanc.json", "postgresql.json", "../../orthanc.json", "a\\b.json", "x.txt", "é.json"]))  # fmt: skip
    return name, body.encode(*how)
