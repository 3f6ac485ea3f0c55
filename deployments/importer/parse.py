"""Parsing: Orthanc's JSON text (comments, trailing commas) → dicts, merged as Orthanc merges a folder."""

import json
from pathlib import Path

from portal.text import json_problem

MAX_FILE_BYTES = 2 * 1024 * 1024


class ConfigImportError(Exception):
    """One line saying what is wrong with the imported configuration."""


# ---------------------------------------------------------------- parsing (text → dict)


def strip_comments(text: str, name: str = "<text>") -> str:
    """Blank out comments and trailing commas, keeping every other character at its line and
    column so that JSON errors point into the original file. Strings are copied untouched: a
    URL's ``//`` is not a comment."""
    out = list(text)
    i, n = 0, len(text)
    last_comma = None  # index of a comma that a closing bracket could make trailing
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            last_comma = None
            continue
        if c == "/" and text.startswith("//", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                line, col = _position(text, i)
                raise ConfigImportError(f"{name}: line {line}, column {col}: a /* comment is never closed")
            for j in range(i, end + 2):
                if out[j] != "\n":
                    out[j] = " "
            i = end + 2
            continue
        if c == ",":
            last_comma = i
        elif c in "}]" and last_comma is not None:
            out[last_comma] = " "
            last_comma = None
        elif not c.isspace():
            last_comma = None
        i += 1
    return "".join(out)


def _position(text, index):
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def parse_text(text: str, name: str = "<text>") -> tuple[dict, list[str]]:
    """One configuration file's text → (its top-level object, warnings)."""
    text = text.removeprefix("\ufeff")
    duplicates = []

    def pairs(items):
        obj = {}
        for key, value in items:
            if key in obj:
                duplicates.append(key)
            obj[key] = value  # the last one wins, as in Orthanc
        return obj

    try:
        data = json.loads(strip_comments(text, name), object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigImportError(f"{name}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigImportError(f"{name}: nested too deeply to be an Orthanc configuration") from None
    if not isinstance(data, dict):
        raise ConfigImportError(f"{name}: the file must hold one JSON object {{ ... }}, not a {type(data).__name__}")
    # A NUL or a lone surrogate anywhere (kept keys included) would reach the database and the
    # files Orthanc reads: refused here, with where it is.
    problem = json_problem(data)
    if problem:
        raise ConfigImportError(f"{name}: {problem[0]}: {problem[1]}")
    return data, [f"{name}: {key} is defined twice; the last value is used, as Orthanc does" for key in duplicates]


def decode(data: bytes, name: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise ConfigImportError(
            f"{name}: larger than {MAX_FILE_BYTES // 1024 // 1024} MB, not an Orthanc configuration"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigImportError(f"{name}: not UTF-8 text (byte {exc.start + 1})") from None


def read_path(path) -> dict[str, str]:
    """A file, or every ``*.json`` of a folder (as Orthanc reads it) → {file name: text}."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        if not files:
            raise ConfigImportError(f"{path}: no *.json file in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigImportError(f"{path}: no such file or folder")
    texts = {}
    for p in files:
        try:
            texts[p.name] = decode(p.read_bytes(), p.name)
        except OSError as exc:
            raise ConfigImportError(f"{p}: cannot be read ({exc.strerror})") from None
    return texts


def merge(texts: dict[str, str]) -> tuple[dict, dict[str, str], list[str]]:
    """Parse and merge files → (configuration, {key: file it came from}, warnings)."""
    config, origin, warnings = {}, {}, []
    for name in sorted(texts):
        data, notes = parse_text(texts[name], name)
        warnings += notes
        for key, value in data.items():
            if key in origin:
                raise ConfigImportError(
                    f"{key} is defined in both {origin[key]} and {name}: Orthanc refuses to start with that"
                )
            config[key], origin[key] = value, name
    return config, origin, warnings


def lua_scripts(config: dict, base=None, uploaded=None) -> dict[str, str | None]:
    """Each ``LuaScripts`` entry → its text: an uploaded file of the same name, else the file
    itself when this host sees it (a relative entry is read from ``base``, the configuration
    folder, as Orthanc reads it); None when neither is at hand."""
    entries = config.get("LuaScripts", [])
    uploaded = uploaded or {}
    scripts = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, str):
            continue  # the plan refuses it with its key and type
        name = entry.replace("\\", "/").rsplit("/", 1)[-1]
        if name in uploaded:
            scripts[entry] = uploaded[name]
            continue
        path = Path(entry) if entry.startswith("/") or base is None else Path(base) / entry
        try:
            scripts[entry] = decode(path.read_bytes(), path.name) if path.is_file() else None
        except (OSError, ConfigImportError, ValueError):
            scripts[entry] = None
    return scripts
