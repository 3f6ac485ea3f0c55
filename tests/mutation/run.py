"""`make mutation`: mutation testing of the modules that decide who may do what in Orthanc and
what an ultrasound machine is told. Not part of `make test` (it takes a quarter of an hour).

1. mutmut 3 (configured in pyproject.toml, ``[tool.mutmut]``) makes one small change at a time
   to the Python of the modules in ``TARGETS`` and runs, for each mutant, only the tests that
   reached the changed function in one recorded run of the fast tests listed there: pure tests,
   the database, real files. A test that needs an Orthanc is listed only where Orthanc's answer
   is the oracle (the backup manifest's facts); it then starts its own for the mutants it covers.
2. tests/mutation/lua.py changes the generated Lua filter one token at a time and judges each
   mutant with the role table of tests/orthanc_roles.py against one real Orthanc.
3. The table: per module, mutants, equivalent (tests/mutation/equivalent.toml, each with its
   reason, left out of the score), killed, survived, timed out, other (no test reached it), the
   score and the target. The exit status is 1 when a module misses its target.

Everything is written under mutants/ (git-ignored): mutmut's copy of the project, its log,
the Lua results and survivors.txt with the diff of every mutant that was not killed.
``python -m tests.mutation.run --report`` prints the table of the last run again.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "mutants"
EQUIVALENT = Path(__file__).with_name("equivalent.toml")
LUA_MODULE = "deployments/lua.py"
LUA_ROW = "deployments/lua.py: Lua filter"

# module → required score (%), excluding the listed equivalent mutants
TARGETS = {
    "deployments/lua.py": 100,
    LUA_ROW: 100,
    "deployments/render.py": 90,
    "deployments/worklist_server.py": 90,
    "worklists/vr.py": 90,
    "worklists/dicom.py": 90,
    "worklists/sync.py": 90,
    "worklists/completion.py": 90,
    "deployments/backups/retention.py": 90,
    "deployments/backups/manifest.py": 90,
}

# mutmut's exit codes, as its own results command names them
KILLED, SURVIVED, TIMEOUT = "killed", "survived", "timed out"


def mutmut_status(code):
    if code in (1, 3):
        return KILLED
    if code == 0:
        return SURVIVED
    if code in (36, -24, 24, 152, 255, -9):  # its timeout, SIGXCPU, SIGKILL after the CPU limit
        return TIMEOUT
    return {5: "no tests", 33: "no tests", None: "not checked"}.get(code, "suspicious")


def run_mutmut(max_children):
    log = WORK / "mutmut.log"
    started = time.monotonic()
    print(f"mutmut: mutating {len(TARGETS) - 1} modules (log: {log.relative_to(ROOT)})", flush=True)
    with open(log, "w") as out:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DEBUG": "1"},
        )
    if done.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"mutmut failed (exit {done.returncode}):\n{tail}")
    print(f"mutmut: done in {time.monotonic() - started:.0f} s", flush=True)


def _summary_only(line):
    """The passes in Orthanc log one line a mutant, then a summary: print the summary."""
    if not line.lstrip().split("/")[0].isdigit():
        print(line, flush=True)


def run_worklist_server_in_orthanc():
    from tests.mutation import orthanc

    alive = [name for module, name, status in mutmut_mutants() if module == orthanc.MODULE and status != KILLED]
    print(f"worklist server: {len(alive)} mutants mutmut left alive, into a real Orthanc", flush=True)
    results = orthanc.run(alive, log=_summary_only)
    (WORK / "worklist-orthanc-results.json").write_text(json.dumps([vars(r) for r in results], indent=1))


def run_lua():
    from tests.mutation import lua

    print("Lua filter: mutating deployments/lua.py FILTER against a real Orthanc", flush=True)
    results = lua.run(log=_summary_only)
    (WORK / "lua-results.json").write_text(json.dumps([vars(r) for r in results], indent=1, ensure_ascii=False))


def mutmut_mutants():
    """[(module, mutant name, status)] from mutmut's results under mutants/."""
    out = []
    for module in TARGETS:
        meta = WORK / f"{module}.meta"
        if module == LUA_ROW or not meta.exists():
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out.append((module, name, mutmut_status(code)))
    return out


def diff_of(name, module):
    """The unified diff of one mutmut mutant (its own `mutmut show`)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return get_diff_for_mutant(name, path=module)
    finally:
        os.chdir(cwd)


def function_of(name):
    """worklists.vr.x_check_da__mutmut_3 → check_da; …xǁIndexǁsnapshot__mutmut_2 → Index.snapshot"""
    mangled = name.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    if mangled.startswith("xǁ"):
        _, cls, method = mangled.split("ǁ")
        return f"{cls}.{method}"
    return mangled[2:]


def changed_lines(diff, sign="+"):
    """The lines a mutant added ("+") or took away ("-"), stripped, one per line."""
    return "\n".join(
        line[1:].strip() for line in diff.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)
    )


def load_equivalents():
    entries = tomllib.loads(EQUIVALENT.read_text())["equivalent"] if EQUIVALENT.exists() else []
    for entry in entries:
        if not entry.get("reason", "").strip():
            sys.exit(f"{EQUIVALENT.name}: an equivalent mutant without a reason: {entry}")
    return entries


def _same(a, b):
    return " ".join(a.split()) == " ".join(b.split())


def is_equivalent(entries, module, function, added, removed=""):
    """The entry of equivalent.toml naming this mutant: a Lua mutant by its id (``function``), a
    mutmut mutant by its function, the lines it reads (``line``) and, for a mutant that only takes
    lines away, the lines it took (``removed``)."""
    for entry in entries:
        if entry["module"] != module:
            continue
        if "mutant" in entry and entry["mutant"] == function:
            return entry
        if entry.get("function") != function or not _same(entry.get("line", ""), added):
            continue
        if "removed" not in entry or _same(entry["removed"], removed):
            return entry
    return None


def report():
    entries = load_equivalents()
    used = set()
    counts = defaultdict(Counter)
    survivors = []
    in_orthanc = WORK / "worklist-orthanc-results.json"
    killed_in_orthanc = (
        {r["id"] for r in json.loads(in_orthanc.read_text()) if r["status"] == KILLED} if in_orthanc.exists() else set()
    )
    for module, name, status in mutmut_mutants():
        counts[module]["mutants"] += 1
        if name in killed_in_orthanc:
            status = KILLED
            counts[module]["in Orthanc"] += 1
        if status == KILLED or status == TIMEOUT:
            counts[module][status] += 1
            continue
        diff = diff_of(name, module)
        function = function_of(name)
        entry = is_equivalent(entries, module, function, changed_lines(diff), changed_lines(diff, "-"))
        if entry:
            counts[module]["equivalent"] += 1
            used.add(id(entry))
            continue
        counts[module][status] += 1
        survivors.append(f"# {name}: {status}\n{diff}")
    lua_results = WORK / "lua-results.json"
    if lua_results.exists():
        for result in json.loads(lua_results.read_text()):
            counts[LUA_ROW]["mutants"] += 1
            if result["status"] == KILLED:
                counts[LUA_ROW][KILLED] += 1
                continue
            entry = is_equivalent(entries, LUA_MODULE, result["id"], "")
            if entry:
                counts[LUA_ROW]["equivalent"] += 1
                used.add(id(entry))
                continue
            counts[LUA_ROW][SURVIVED] += 1
            survivors.append(f"# {result['id']}: survived (Lua, line {result['line']} of FILTER)\n")

    header = f"{'module':34} {'mutants':>7} {'equiv':>6} {'killed':>7} {'survived':>8} {'timeout':>7} {'other':>6} {'score':>7} {'target':>6}"
    print()
    print(header)
    print("-" * len(header))
    missed = []
    for module, target in TARGETS.items():
        c = counts.get(module)
        if not c:
            print(f"{module:34} {'(not run)':>7}")
            missed.append(module)
            continue
        other = c["mutants"] - c["equivalent"] - c[KILLED] - c[SURVIVED] - c[TIMEOUT]
        judged = c["mutants"] - c["equivalent"]
        score = 100.0 * (c[KILLED] + c[TIMEOUT]) / judged if judged else 100.0
        ok = score >= target
        if not ok:
            missed.append(module)
        print(
            f"{module:34} {c['mutants']:7} {c['equivalent']:6} {c[KILLED]:7} {c[SURVIVED]:8} {c[TIMEOUT]:7} "
            f"{other:6} {score:6.1f}% {target:5}%{'' if ok else '  MISSED'}"
        )
    print()
    print("score = (killed + timed out) / (mutants - equivalent); other = no test reached the mutant")
    if counts["deployments/worklist_server.py"]["in Orthanc"]:
        print(
            f"worklist_server.py: {counts['deployments/worklist_server.py']['in Orthanc']} of its killed mutants "
            "were killed inside a real Orthanc (tests/mutation/orthanc.py)"
        )
    (WORK / "survivors.txt").write_text("\n".join(survivors))
    if survivors:
        print(f"{len(survivors)} mutants not killed: their diffs are in {(WORK / 'survivors.txt').relative_to(ROOT)}")
    stale = [e for e in entries if id(e) not in used]
    if stale:
        print(f"{len(stale)} entries of {EQUIVALENT.name} matched no surviving mutant (code changed?):")
        for e in stale:
            print(f"  {e['module']}: {e.get('mutant') or e.get('function')} {e.get('line', '')}")
    return missed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print the table of the last run")
    parser.add_argument("--no-orthanc", action="store_true", help="mutmut only: leave out the passes in Orthanc")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    if not args.report:
        shutil.rmtree(WORK, ignore_errors=True)  # mutmut keeps copies it did not change: start clean
        WORK.mkdir()
        run_mutmut(args.max_children)
        if not args.no_orthanc:
            run_worklist_server_in_orthanc()
            run_lua()
    missed = report()
    if missed:
        sys.exit(f"below target: {', '.join(missed)}")


if __name__ == "__main__":
    main()
