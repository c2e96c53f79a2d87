"""The instructor's command line: ``python -m autograder <command>``.

Commands:
    release [ASSIGNMENT ...]     regenerate exercises/ from solutions/ (all assignments by default)
    grade ASSIGNMENT SUBMISSIONS autograde a class, write feedback, grades.csv and a report
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.checks import ASSIGNMENT_IDS, UnknownAssignment

ROOT = Path(__file__).resolve().parent.parent


class CommandError(Exception):
    """A problem with the command's input, reported in one line."""


def release(assignments: list[str]) -> None:
    """Regenerate ``exercises/<a>`` from ``solutions/<a>`` with nbgrader, for each assignment.

    Uses a throwaway gradebook, so the instructor's ``gradebook.db`` is untouched.
    """
    for name in assignments:
        if name not in ASSIGNMENT_IDS:
            raise UnknownAssignment(name)
        if not (ROOT / "solutions" / name).is_dir():
            raise CommandError(f"no source folder solutions/{name}")
    with tempfile.TemporaryDirectory(prefix="bn-release-") as scratch:
        for name in assignments:
            command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                       f"--db=sqlite:///{scratch}/gradebook.db", "--log-level=WARN"]
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if completed.returncode != 0:
                raise CommandError(f"nbgrader generate_assignment {name} failed:\n{completed.stdout}{completed.stderr}")
            print(f"released {name} -> exercises/{name}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="regenerate exercises/ from solutions/")
    release_parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                                help=f"default: all ({', '.join(ASSIGNMENT_IDS)})")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            release(args.assignments or list(ASSIGNMENT_IDS))
    except (CommandError, UnknownAssignment) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
