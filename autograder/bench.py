"""Benchmark: plain serial ``nbgrader autograde`` against ``python -m autograder grade``.

    .venv/bin/python -m autograder.bench [--size 50] [--jobs N] [--skip-plain]

Builds one synthetic bn_math class (``tests/fake_class.py``: right, wrong and
unfinished notebooks), copies the course twice to a scratch folder and grades
the same class with each tool, from a cold start (both include their gradebook
set-up). Prints both wall times, the time per submission, the ratio, and
checks that both gave every student the same total.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copy_course(destination: Path) -> Path:
    destination.mkdir(parents=True)
    for name in ("solutions", "exercises", "autograder"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", destination)
    return destination


def _env() -> dict[str, str]:
    # One course secret for both copies of the course: every student gets the same inputs from both graders.
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "BN_COURSE_SECRET": "bench"}


def _run(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def _export(course: Path) -> dict[str, float]:
    _run([sys.executable, "-m", "nbgrader", "export", "--to", "bench.csv", "--log-level=ERROR"], course)
    with open(course / "bench.csv", encoding="utf-8") as handle:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=50, help="number of submissions (default 50)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel jobs of the project command (default: cores)")
    parser.add_argument("--skip-plain", action="store_true", help="time the project command only")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tests.fake_class import as_folder, as_nbgrader, synthetic_class

    students = synthetic_class(args.size)
    cores = os.cpu_count() or 1
    print(f"class: {args.size} bn_math submissions; machine: {cores} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bn-bench-") as scratch:
        scratch_path = Path(scratch)
        plain_scores: dict[str, float] | None = None
        plain = setup = 0.0
        if not args.skip_plain:
            course = _copy_course(scratch_path / "plain")
            as_nbgrader(students, course)
            setup = _run([sys.executable, "-m", "nbgrader", "generate_assignment", "bn_math", "--force",
                          "--log-level=ERROR"], course)
            plain = _run([sys.executable, "-m", "nbgrader", "autograde", "bn_math", "--force",
                          "--log-level=ERROR"], course)
            plain_scores = _export(course)
            print(f"plain nbgrader: generate_assignment {setup:.1f} s, autograde {plain:.1f} s "
                  f"({plain / args.size:.2f} s per submission)")
        course = _copy_course(scratch_path / "project")
        subs = as_folder(students, scratch_path / "subs")
        command = [sys.executable, "-m", "autograder", "grade", "bn_math", str(subs), "--quiet"]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        project = _run(command, course)
        project_scores = _export(course)
        print(f"python -m autograder grade (gradebook set-up, grading, feedback, report): {project:.1f} s "
              f"({project / args.size:.2f} s per submission, jobs={args.jobs or cores})")
        again = _run(command, course)
        print(f"re-run with nothing changed: {again:.1f} s")
        if plain_scores is not None:
            total_plain = setup + plain
            print(f"speed-up: {plain / project:.2f}x against autograde alone, "
                  f"{total_plain / project:.2f}x against generate_assignment + autograde")
            differ = {s for s in students if abs(plain_scores.get(s, -1) - project_scores.get(s, -2)) > 1e-6}
            print("same total for every student: " + ("yes" if not differ else f"NO: {sorted(differ)}"))
            return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
