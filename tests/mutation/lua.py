"""Mutants of the generated Lua filter (deployments/lua.py ``FILTER``), judged by a real Orthanc.

mutmut mutates Python, and the access policy is Lua text inside a Python string. This pass makes
one small change at a time to that text (the operators below, in the spirit of mutmut's), loads it
into a real Orthanc and runs the role table of tests/orthanc_roles.py over HTTP. A mutant is
killed when any answer differs from the table.

One Orthanc serves the whole pass (with its study uploaded once): each mutant is loaded by
``POST /tools/reset``, confirmed by the server name it carries, and only a mutant that locks the
portal's own account out costs a restart. A second Orthanc without authentication checks that a
request without a known user is refused; it is asked only about the mutants the table leaves alive.

Run by tests/mutation/run.py (``make mutation``); alone: ``python -m tests.mutation.lua``.
"""

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""(?P<comment>--[^\n]*)
      |(?P<string>"(?:[^"\\\n]|\\.)*")
      |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<number>\d+)
      |(?P<op>==|~=|<=|>=|\.\.|[-+*/%^#<>=(){}\[\];:,.])
      |(?P<space>\s+)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    value: str
    start: int
    end: int


def tokens(text):
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot read the Lua at offset {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            out.append(Tok(kind, match.group(), match.start(), match.end()))
        pos = match.end()
    return out


# ---------------------------------------------------------------- operators


@dataclass(frozen=True)
class Mutant:
    id: str  # stable: the operator and the line's own text, numbered only among equal ones
    line: int
    description: str
    text: str


SWAPS = {"==": "~=", "~=": "==", ">": ">=", ">=": ">", "<": "<=", "<=": "<", "and": "or", "or": "and"}
BOOLS = {"true": "false", "false": "true"}
UNWRAP = {"string.lower", "string.gsub", "string.find", "string.len"}


def _extent(toks, i, stop_words):
    """Index one past the expression starting at ``toks[i]``: up to a stop word at depth 0."""
    depth = 0
    while i < len(toks):
        value = toks[i].value
        if depth == 0 and toks[i].kind == "name" and value in stop_words:
            return i
        if value in "([{":
            depth += 1
        elif value in ")]}":
            depth -= 1
        i += 1
    return i


def _call_end(toks, i):
    """``toks[i]`` is "(": the index of its ")" and the index of the first argument's end."""
    depth, first_end = 0, None
    for j in range(i, len(toks)):
        value = toks[j].value
        if value in "([{":
            depth += 1
        elif value in ")]}":
            depth -= 1
            if depth == 0:
                return j, first_end if first_end is not None else j
        elif value == "," and depth == 1 and first_end is None:
            first_end = j
    raise ValueError("unbalanced parentheses")


def edits(text):
    """(start, end, replacement, description) for every mutation of ``text``."""
    toks = tokens(text)
    for i, tok in enumerate(toks):
        value = tok.value
        if value in SWAPS and tok.kind in ("op", "name"):
            yield tok.start, tok.end, SWAPS[value], f"{value} → {SWAPS[value]}"
        elif tok.kind == "name" and value in BOOLS:
            yield tok.start, tok.end, BOOLS[value], f"{value} → {BOOLS[value]}"
        elif tok.kind == "name" and value == "not":
            yield tok.start, tok.end, "", "not removed"
        elif tok.kind == "number":
            number = int(value)
            yield tok.start, tok.end, str(number + 1), f"{number} → {number + 1}"
            if number:
                yield tok.start, tok.end, str(number - 1), f"{number} → {number - 1}"
        elif tok.kind == "string":
            inner = value[1:-1]
            yield tok.start, tok.end, f'"XX{inner}XX"', f"{value} → XX{inner}XX"
            if inner.startswith("^"):
                yield tok.start, tok.end, f'"{inner[1:]}"', f"{value}: anchor ^ removed"
            if inner.endswith("$") and len(inner) > 1:
                yield tok.start, tok.end, f'"{inner[:-1]}"', f"{value}: anchor $ removed"
            # An exact comparison with a route widened to every route below it.
            if inner.startswith("/") and i >= 2 and toks[i - 1].value == "==" and toks[i - 2].kind == "name":
                name = toks[i - 2]
                escaped = re.sub(r"([-.+*?\[\]()%^$])", r"%\1", inner)
                yield (
                    name.start,
                    tok.end,
                    f'string.find({name.value}, "^{escaped}") ~= nil',
                    f"{name.value} == {value} → any route starting with {inner}",
                )
        elif tok.kind == "name" and value == "return":
            end = _extent(toks, i + 1, {"end", "else", "elseif"})
            expression = text[toks[i + 1].start : toks[end - 1].end] if end > i + 1 else ""
            if expression not in ("true", "false", ""):
                shown = " ".join(expression.split())
                for literal in ("true", "false"):
                    yield toks[i + 1].start, toks[end - 1].end, literal, f"return {shown} → return {literal}"
        elif tok.kind == "name" and value in ("if", "elseif"):
            then = _extent(toks, i + 1, {"then"})
            for literal in ("true", "false"):
                yield toks[i + 1].start, toks[then - 1].end, literal, f"{value} condition → {literal}"
        elif (
            tok.kind == "name"
            and i + 3 < len(toks)
            and toks[i + 1].value == "."
            and f"{value}.{toks[i + 2].value}" in UNWRAP
            and toks[i + 3].value == "("
        ):
            close, first_end = _call_end(toks, i + 3)
            argument = text[toks[i + 4].start : toks[first_end - 1].end]
            call = f"{value}.{toks[i + 2].value}"
            more = ", …" if first_end != close else ""
            yield tok.start, toks[close].end, f"({argument})", f"{call}({argument}{more}) → {argument}"


def mutants(text):
    seen, out = {}, []
    for start, end, replacement, description in edits(text):
        mutated = text[:start] + replacement + text[end:]
        if mutated == text:
            continue
        line_no = text.count("\n", 0, start) + 1
        line = text.splitlines()[line_no - 1].strip()
        key = f"{line} :: {description}"
        seen[key] = seen.get(key, 0) + 1
        suffix = f" #{seen[key]}" if seen[key] > 1 else ""
        out.append(Mutant(f"lua: {key}{suffix}", line_no, description, mutated))
    return out


# ---------------------------------------------------------------- the real Orthanc


class Server:
    """One Orthanc whose configuration is rewritten and reloaded for each mutant."""

    def __init__(self, instance):
        self.instance = instance
        self.restarts = 0

    def load(self, marker):
        deployment = self.instance.deployment
        deployment.name = f"Mutation {marker}"
        self.instance.write_config()
        url, auth = self.instance.url, self.instance.auth
        try:
            reset = requests.post(f"{url}/tools/reset", auth=auth, timeout=10).status_code
        except requests.RequestException:
            reset = None
        if reset == 200 and self._wait_for_name(deployment.name):
            return True
        # The running mutant refuses the portal's account (or Orthanc is gone): start afresh,
        # which reads the new files for certain.
        self.restarts += 1
        self.instance.stop()
        try:
            self.instance.service.start(wait=False)
        except Exception:  # noqa: BLE001 - the mutant's configuration does not start: killed
            return False
        return self._wait_for_answer()

    def _wait_for_name(self, name, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"{self.instance.url}/system", auth=self.instance.auth, timeout=2)
                if answer.status_code == 200 and answer.json().get("Name") == name:
                    return True
                if answer.status_code in (401, 403):
                    return False  # this mutant refuses the portal's account: cannot be told apart
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        return False

    def _wait_for_answer(self, timeout=20.0):
        started = time.monotonic()
        while time.monotonic() < started + timeout:
            # Right after the start the process may not show Orthanc's command line yet: only a
            # process still gone after a few seconds has exited.
            if time.monotonic() > started + 3 and not self.instance.service.is_running():
                return False
            try:
                requests.get(f"{self.instance.url}/system", timeout=2)
                return True
            except requests.RequestException:
                time.sleep(0.1)
        return False


@dataclass
class Result:
    id: str
    line: int
    description: str
    status: str  # killed, survived
    reason: str


def run(only=None, log=print):
    """Every mutant of the filter against the role table; returns [Result]."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from deployments import lua
    from tests import orthanc_roles
    from tests.conftest import OrthancInstance

    original = lua.FILTER
    found = mutants(original)
    if only:
        found = [m for m in found if any(word in m.id for word in only)]
    base = Path(tempfile.mkdtemp(prefix="portal-lua-mutation-"))
    roles = OrthancInstance(base / "roles", execute_lua_enabled=True, rest_api_write_to_file_system_enabled=True)
    roles.users += orthanc_roles.users()
    anonymous = OrthancInstance(base / "anonymous", slug="anonymous", authentication_enabled=False)
    servers = [Server(roles), Server(anonymous)]
    results = []
    try:
        for server in servers:
            server.instance.write_config()
            server.instance.start()
        session = orthanc_roles.Session(roles).prepare()
        baseline = session.check_all() + orthanc_roles.check_anonymous(anonymous.url)
        if baseline:
            raise SystemExit("the role table fails on the unmutated filter:\n  " + "\n  ".join(baseline))
        started = time.monotonic()
        for number, mutant in enumerate(found, 1):
            lua.FILTER = mutant.text
            if not servers[0].load(number):
                wrong = ["Orthanc did not run this filter"]
            else:
                wrong = session.check_all(stop_at_first=True)
                if not wrong:
                    wrong = (
                        orthanc_roles.check_anonymous(anonymous.url)
                        if servers[1].load(number)
                        else ["Orthanc did not run this filter"]
                    )
            status = "killed" if wrong else "survived"
            results.append(Result(mutant.id, mutant.line, mutant.description, status, wrong[0] if wrong else ""))
            log(f"  {number}/{len(found)} {status:8} {mutant.id}")
        log(
            f"  {len(found)} Lua mutants in {time.monotonic() - started:.0f} s, "
            f"{sum(s.restarts for s in servers)} restarts of Orthanc"
        )
    finally:
        lua.FILTER = original
        for server in servers:
            server.instance.stop()
    return results


def main():
    only = sys.argv[1:]
    results = run(only)
    out = ROOT / "mutants" / "lua-results.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([asdict(r) for r in results], indent=1, ensure_ascii=False))
    survivors = [r for r in results if r.status == "survived"]
    print(f"{len(results)} mutants, {len(results) - len(survivors)} killed, {len(survivors)} survived")
    for r in survivors:
        print(f"  survived: {r.id}")


if __name__ == "__main__":
    main()
