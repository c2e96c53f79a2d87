#!/usr/bin/env python3
"""Time the site's build: once from clean, once more with nothing changed.

    .venv/bin/python scripts/bench_build.py [--keep] [--check]

Copies the repository (without .venv, _build, .git) into a temporary folder,
runs the strict build there twice and prints both wall times, with how many
notebooks each run executed. The second run must execute none. A third run,
after touching every chapter (so Sphinx reads them all again), shows that
the notebooks come from the execution cache (`execute_notebooks: cache`)
rather than running again.

Targets, on the project's 2-core machine: full build under 5 minutes,
unchanged rebuild under 30 seconds. With --check the script exits 1 when a
target is missed or the rebuild executed a notebook; --keep leaves the copy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = ROOT / ".venv" / "bin" / "jupyter-book"
BUILD = ["build", ".", "--warningiserror", "--nitpick", "--keep-going"]
IGNORE = shutil.ignore_patterns(".venv", "_build", ".git", ".jupyter_cache", "__pycache__", ".pytest_cache",
                                ".ipynb_checkpoints", "submitted", "autograded", "feedback", "release",
                                "gradebook.db")
FULL_TARGET = 300.0
REBUILD_TARGET = 30.0


def build(copy: Path, label: str) -> tuple[float, int, int, str]:
    """Run one build in `copy`; (seconds, notebooks executed, exit code, log path)."""
    log = copy / f"bench-{label}.log"
    env = dict(os.environ, PYTHONHASHSEED="0")
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.call([str(JUPYTER_BOOK), *BUILD], cwd=copy, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.monotonic() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    executed = len(re.findall(r"Executed notebook in", text))
    return seconds, executed, code, str(log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if not JUPYTER_BOOK.exists():
        print(f"{JUPYTER_BOOK} is missing: run `make book` once to create the venv", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="bench-build-"))
    copy = tmp / "repo"
    shutil.copytree(ROOT, copy, ignore=IGNORE, symlinks=True)
    print(f"copy: {copy}  (cores: {os.cpu_count()})", flush=True)
    try:
        full = build(copy, "full")
        print(f"full build (clean):      {full[0]:7.1f} s  notebooks executed: {full[1]:2d}  exit {full[2]}"
              f"  (target < {FULL_TARGET:.0f} s)", flush=True)
        again = build(copy, "rebuild")
        print(f"rebuild (nothing changed): {again[0]:5.1f} s  notebooks executed: {again[1]:2d}  exit {again[2]}"
              f"  (target < {REBUILD_TARGET:.0f} s)", flush=True)
        # Touch every chapter: Sphinx re-reads them all, and each must come
        # from the execution cache (same code, same hash) instead of running.
        for chapter in (copy / "book").glob("*.md"):
            chapter.touch()
        touched = build(copy, "touched")
        print(f"rebuild (chapters touched): {touched[0]:4.1f} s  notebooks executed: {touched[1]:2d}  exit {touched[2]}"
              f"  (all from the cache)", flush=True)
        problems = []
        if full[2] != 0 or again[2] != 0:
            problems.append(f"a build failed (logs: {full[3]}, {again[3]})")
        if full[0] >= FULL_TARGET:
            problems.append(f"full build {full[0]:.0f} s >= {FULL_TARGET:.0f} s")
        if again[0] >= REBUILD_TARGET:
            problems.append(f"rebuild {again[0]:.0f} s >= {REBUILD_TARGET:.0f} s")
        if again[1] or touched[1]:
            problems.append(f"a rebuild executed {again[1] + touched[1]} notebook(s): the execution cache was missed")
        for problem in problems:
            print(f"MISSED: {problem}")
        if not problems:
            print("both targets met")
        return 1 if problems and args.check else 0
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
