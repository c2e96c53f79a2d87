"""The instructor's command line: ``python -m autograder <command>``.

Commands:
    release [ASSIGNMENT ...]     regenerate exercises/ from solutions/ (all assignments by default)
    grade ASSIGNMENT SUBMISSIONS autograde a class, write feedback, grades.csv and a report
    publish DEST                 write the student edition (no solution, no hidden test) into DEST

``grade`` takes the submissions as an LMS hands them over: a folder of
``<student>/<notebook>.ipynb``, a folder of loose ``<student>_<anything>.ipynb``
files, nbgrader's ``submitted/`` layout, or a ``.zip`` of any of these. It
records them in the nbgrader gradebook, grades new or changed submissions
only (several at a time, each in a sandbox), writes every student's feedback to
``feedback/<student>/<assignment>/`` and, in ``grading/<assignment>/``,
``grades.csv`` (one row per student) and ``report.html``.
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
    from autograder.authoring import refresh_rules_cell

    with tempfile.TemporaryDirectory(prefix="bn-release-") as scratch:
        for name in assignments:
            if refresh_rules_cell(ROOT / "solutions" / name / f"{name}.ipynb", name):
                print(f"refreshed the grading rules in solutions/{name}/{name}.ipynb")
            command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                       f"--db=sqlite:///{scratch}/gradebook.db", "--log-level=WARN"]
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if completed.returncode != 0:
                raise CommandError(f"nbgrader generate_assignment {name} failed:\n{completed.stdout}{completed.stderr}")
            print(f"released {name} -> exercises/{name}/")


def grade(args: argparse.Namespace) -> None:
    """Grade a class; print where the results are."""
    import logging
    import warnings

    from autograder.pipeline import grade_class
    from autograder.sandbox import Limits

    if args.assignment not in ASSIGNMENT_IDS:
        raise UnknownAssignment(args.assignment)
    source = Path(args.submissions)
    if not source.exists():
        raise CommandError(f"no such file or folder: {source}")
    warnings.filterwarnings("ignore")  # SQLAlchemy's warnings about nbgrader's sessions are not the user's business
    logging.basicConfig(level=logging.ERROR)
    # NbGraderAPI warns when the nbgrader exchange folder is missing: grading does not use it.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: "nbgrader/exchange" not in record.getMessage())
    limits = Limits(args.cell_seconds, args.notebook_seconds, args.memory_mb * 1024**2)
    try:
        summary = grade_class(args.assignment, source, root=ROOT, jobs=args.jobs, db_url=args.db,
                              out=Path(args.out) if args.out else None, limits=limits, force=args.force,
                              progress=not args.quiet, feedback=not args.no_feedback)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    for note in summary["notes"]:
        print(f"note: {note}")
    if summary["students"] == 0:
        print(f"warning: no submissions found in {source} (expected <student>/<notebook>.ipynb, "
              "<student>_<anything>.ipynb, or a .zip of either)")
    print(f"{summary['students']} students: {summary['graded']} graded, {summary['unchanged']} unchanged "
          f"since the last run ({summary['seconds']:.1f} s)")
    print("time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary["timings"].items()))
    print(f"grades:   {summary['grades']}")
    print(f"report:   {summary['report']}")
    print(f"feedback: {summary['feedback']}/<student>/{args.assignment}/")


def publish(dest: str) -> None:
    """Write the student edition into ``dest``; print its warnings and where it is."""
    from autograder.publish import PublishError, publish as write_edition

    try:
        edition = write_edition(ROOT, Path(dest))
    except PublishError as error:
        raise CommandError(str(error)) from error
    for warning in edition.warnings:
        print(warning, file=sys.stderr)
    print(f"student edition: {len(edition.files)} files in {edition.dest}")
    if edition.repository is not None:
        print(f"push it to {edition.repository.url} ({edition.repository.branch}); "
              f"its site: {edition.repository.site_url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="regenerate exercises/ from solutions/")
    release_parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                                help=f"default: all ({', '.join(ASSIGNMENT_IDS)})")
    grade_parser = commands.add_parser("grade", help="grade a class's submissions (folder or zip)")
    grade_parser.add_argument("assignment", metavar="ASSIGNMENT", help=", ".join(ASSIGNMENT_IDS))
    grade_parser.add_argument("submissions", metavar="SUBMISSIONS", help="a folder or a .zip, as the LMS exports it")
    grade_parser.add_argument("--jobs", "-j", type=int, default=None, help="submissions graded at once (default: one per core)")
    grade_parser.add_argument("--db", default=None, help="gradebook URL (default: sqlite gradebook.db; "
                                                         "PostgreSQL: postgresql+psycopg://user@host/db)")
    grade_parser.add_argument("--out", default=None, help="where grades.csv and report.html go (default: grading/<a>)")
    grade_parser.add_argument("--force", action="store_true", help="regrade every submission, changed or not")
    grade_parser.add_argument("--cell-seconds", type=float, default=60.0, help="time limit of one cell (default 60)")
    grade_parser.add_argument("--notebook-seconds", type=float, default=300.0,
                              help="time limit of one notebook (default 300)")
    grade_parser.add_argument("--memory-mb", type=int, default=4096, help="memory limit of one notebook (default 4096)")
    grade_parser.add_argument("--no-feedback", action="store_true", help="skip the feedback files")
    grade_parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    publish_parser = commands.add_parser("publish", help="write the student edition into DEST")
    publish_parser.add_argument("dest", metavar="DEST",
                                help="an empty folder, a clone of the (empty) student repository, or a previous edition")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            release(args.assignments or list(ASSIGNMENT_IDS))
        elif args.command == "grade":
            grade(args)
        elif args.command == "publish":
            publish(args.dest)
    except (CommandError, UnknownAssignment) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
