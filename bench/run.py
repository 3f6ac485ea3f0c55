"""`make bench`: run every benchmark in this folder, one after the other, and print its figures."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("run", "__init__", "common"))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "DEBUG": "1"}
    # The short fault battery here; `make faults` runs the default 100 rounds of each.
    env.setdefault("FAULT_ROUNDS", "3")
    failed = []
    for name in names:
        print(f"\n=== bench/{name}.py ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / f"{name}.py")], env=env, cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
