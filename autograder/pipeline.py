"""``python -m autograder grade``: grade a whole class, fast, isolated, resumable.

1. :mod:`autograder.intake` reads the submissions (folder or zip, any LMS layout).
2. Each new or changed submission (content hash, kept in ``grading/<a>/state.json``)
   is copied to ``submitted/<student>/<a>/`` and run in a confined worker forked
   from a server that imported NumPy and PyTorch once
   (:func:`autograder.sandbox.fork_server`), several at a time (one per core by
   default). No Jupyter kernel: the worker executes the cells itself and
   records what they printed, for the feedback. Verdicts are computed here,
   against reference outputs computed once.
3. This process alone writes the gradebook, through nbgrader's own
   ``autograde`` converter (in-process, with :class:`UseSandboxResults` in place
   of the kernel), then writes the feedback with ``generate_feedback``.
4. ``grades.csv`` and ``report.html`` are rebuilt from the gradebook and the
   saved state: every student of the class, every question.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.grading import GradedNotebook, grade_in_sandbox, graded_to_json
from autograder.intake import Entry, collect
from autograder.sandbox import Limits, Sandbox
from autograder.secret import course_secret, student_salt
from autograder.spec import AssignmentSpec, load_spec
from autograder.verdicts import Judge

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("autograder")


@dataclass
class Outcome:
    """One student's row: scores per question, status and reasons."""

    student: str
    digest: str
    status: str = "graded"
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    messages: dict[str, list[str]] = field(default_factory=dict)
    mistakes: dict[str, list[str]] = field(default_factory=dict)  # named mistakes per test cell
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# Grading one submission (runs in a worker thread: no gradebook access here)


def grader_version(assignment: str, root: Path = ROOT) -> str:
    """A hash of everything that decides a grade besides the submission."""
    h = hashlib.sha256()
    files = [ROOT / "autograder" / name for name in ("grading.py", "verdicts.py", "worker.py", "policy.py",
                                                       "sandbox.py", "confinement.py", "spec.py")]
    files += [ROOT / "autograder" / "checks" / "core.py", ROOT / "autograder" / "checks" / f"{assignment}.py",
              ROOT / "autograder" / "references" / f"{assignment}.py"]
    h.update(hashlib.sha256(course_secret(root)).digest())  # new secret, new inputs: grade again
    files += sorted((root / "solutions" / assignment).glob("*.ipynb"))
    for path in files:
        if path.exists():
            h.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def source_test_cells(root: Path, assignment: str, notebook: str) -> dict[str, dict]:
    """The source notebook's locked or graded cells, by grade id."""
    data = json.loads((root / "solutions" / assignment / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    cells = {}
    for cell in data.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") and (meta.get("locked") or meta.get("grade")) and not meta.get("solution"):
            cells[meta["grade_id"]] = cell
    return cells


def sanitize(notebook: dict, protected: dict[str, dict]) -> dict:
    """What nbgrader's ``OverwriteCells`` does: protected cells come from the source, not the student.

    A student's cell that claims a protected grade id gets the source's
    content, metadata and cell type (a test cell turned into markdown is a
    test cell again); any other cell that claims to be graded loses that
    claim (so it runs as the student's code, and scores nothing).
    """
    cells = []
    for cell in notebook.get("cells", []):
        if not isinstance(cell, dict):
            continue
        cell = dict(cell)
        meta = dict((cell.get("metadata") or {}).get("nbgrader") or {})
        grade_id = meta.get("grade_id")
        if isinstance(grade_id, str) and grade_id in protected:
            original = protected[grade_id]
            cell = {key: value for key, value in original.items() if key != "id"}
            if original.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
        elif meta.get("grade") or meta.get("locked"):
            meta.update(grade=False, locked=False)
            cell["metadata"] = {**(cell.get("metadata") or {}), "nbgrader": meta}
        cells.append(cell)
    return {**notebook, "cells": cells}


# ---------------------------------------------------------------------------
# The class


@dataclass
class Course:
    root: Path
    assignment: str
    notebooks: list[str]
    out: Path
    db_url: str
    course_id: str = "default_course"
    in_place: bool = False  # the submissions are the course's own submitted/ folder

    @property
    def state_path(self) -> Path:
        return self.out / "state.json"


def load_config(root: Path, db_url: str | None):
    """The course's nbgrader configuration, as ``nbgrader`` itself would load it."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    if db_url:
        config.CourseDirectory.db_url = db_url
    config.CourseDirectory.root = str(root)
    return config if isinstance(config, Config) else Config(config)


def _has_assignment(course: Course, config: Any) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            assignment = gb.find_assignment(course.assignment)
        except MissingEntry:
            return False
        return {nb.name for nb in assignment.notebooks} >= set(course.notebooks)


@contextlib.contextmanager
def gradebook_lock(db_url: str, name: str):
    """Serialize gradebook set-up between graders: a PostgreSQL advisory lock, a file lock for SQLite."""
    if db_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(db_url)
        key = int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        engine.dispose()
    else:
        import fcntl

        path = db_url.split("sqlite:///", 1)[-1] + ".lock" if db_url.startswith("sqlite:///") else None
        if not path:
            yield
            return
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_assignment(course: Course, config: Any) -> None:
    """Record the assignment and its test cells in the gradebook (nbgrader generate_assignment).

    Runs only when the gradebook lacks the assignment; writes the released
    copy to a scratch folder so that ``exercises/`` stays as committed. Two
    graders starting at once on one gradebook take turns here.
    """
    import tempfile

    # Under the lock from the first connection on: creating a fresh gradebook's
    # tables is itself a race between two graders.
    with gradebook_lock(course.db_url, "bn-gradebook-setup"):
        if _has_assignment(course, config):
            return
        with tempfile.TemporaryDirectory(prefix="bn-release-") as scratch:
            from copy import deepcopy

            from nbgrader.apps import NbGraderAPI

            release_config = deepcopy(config)
            release_config.CourseDirectory.release_directory = scratch
            api = NbGraderAPI(config=release_config)
            api.log.setLevel(logging.ERROR)
            done = api.generate_assignment(course.assignment, force=True, create=True)
            if not done.get("success"):
                raise RuntimeError(f"nbgrader generate_assignment {course.assignment} failed: "
                                   f"{_last_line(done.get('error') or done.get('log') or '')}")


class Progress:
    """A one-line progress bar on stderr: done / total, failures, time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.started = time.monotonic()
        self.enabled = enabled and total > 0

    def step(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        sys.stderr.write(f"\rgrading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                         f"({self.total - self.done} left, {self.failed} with problems, ~{left:.0f} s to go) ")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def grade_class(assignment: str, submissions: Path, *, root: Path = ROOT, jobs: int | None = None,
                db_url: str | None = None, out: Path | None = None, limits: Limits = Limits(),
                force: bool = False, progress: bool = True, feedback: bool = True) -> dict[str, Any]:
    """Grade every new or changed submission of ``assignment``; return a summary."""
    from autograder.checks import ASSIGNMENT_IDS, UnknownAssignment

    if assignment not in ASSIGNMENT_IDS:
        raise UnknownAssignment(assignment)
    root = root.resolve()
    notebooks = sorted(p.stem for p in (root / "solutions" / assignment).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no source notebook in solutions/{assignment}")
    config = load_config(root, db_url)
    course = Course(root, assignment, notebooks, (out or root / "grading" / assignment).resolve(),
                    str(config.CourseDirectory.db_url), str(config.CourseDirectory.get("course_id") or "default_course"))
    course.out.mkdir(parents=True, exist_ok=True)
    course.in_place = submissions.resolve() == (root / "submitted").resolve()
    started = time.monotonic()

    timings: dict[str, float] = {}

    def lap(name: str, since: list[float] = [started]) -> None:
        now = time.monotonic()
        timings[name] = timings.get(name, 0.0) + now - since[0]
        since[0] = now

    entries, notes = collect(submissions, assignment, notebooks)
    version = grader_version(assignment, root)
    state = _load_state(course)
    if state.get("version") != version:
        state = {"version": version, "students": state.get("students", {})}
    todo = [e for e in entries if force or state["students"].get(e.student, {}).get("digest") != e.digest(version)]
    skipped = len(entries) - len(todo)

    lap("intake")
    # The zygote starts importing NumPy and PyTorch now, in parallel with what follows.
    with Sandbox() if todo else contextlib.nullcontext() as sandbox:
        return _grade(course, config, entries, notes, state, version, todo, skipped, limits, jobs, progress,
                      feedback, force, lap, timings, started, sandbox)


def _grade(course, config, entries, notes, state, version, todo, skipped, limits, jobs, progress, feedback,
           force, lap, timings, started, sandbox) -> dict[str, Any]:
    root, assignment, notebooks = course.root, course.assignment, course.notebooks
    ensure_assignment(course, config)
    lap("gradebook set-up")
    protected = {nb: source_test_cells(root, assignment, nb) for nb in notebooks}
    spec = load_spec(assignment)
    judge = Judge(spec)
    secret = course_secret(root)
    lap("hidden tests")
    bar = Progress(len(todo), progress)
    jobs = jobs or os.cpu_count() or 1

    from nbgrader.apps import NbGraderAPI

    api_config = _grading_config(config, course.out / "runs")
    api = NbGraderAPI(config=api_config)
    api.log.setLevel(logging.ERROR)
    gb_lock = threading.Lock()
    lap("nbgrader set-up")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {}
        for entry in todo:
            salt = student_salt(secret, entry.student, assignment)
            pending[pool.submit(_grade_entry, entry, spec, sandbox, judge, salt, protected, limits)] = entry
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                entry = pending.pop(future)
                try:
                    graded = future.result()
                except Exception as error:  # noqa: BLE001 - one submission never stops the class
                    graded = {}
                    entry.problem = entry.problem or f"the grader failed on this submission: {error}"
                with gb_lock:
                    outcome = _record(course, api, entry, graded, version, feedback)
                state["students"][outcome.student] = outcome.__dict__
                _save_state(course, state)
                bar.step(outcome.status == "graded" and not outcome.reasons)
        lap("grading")

    from autograder.report import write_outputs

    students = [e.student for e in entries]
    paths = write_outputs(course, state, students, notes, [e for e in entries if e.notes])
    lap("grades.csv and report")
    elapsed = time.monotonic() - started
    return {"timings": timings, "graded": len(todo), "unchanged": skipped, "students": len(entries), "seconds": elapsed,
            "grades": str(paths["grades"]), "report": str(paths["report"]), "notes": notes,
            "feedback": str(root / "feedback")}


def _grade_entry(entry: Entry, spec: AssignmentSpec, sandbox: Sandbox, judge: Judge, salt: int,
                 protected: dict[str, dict[str, dict]], limits: Limits) -> dict[str, GradedNotebook]:
    graded = {}
    for name, data in entry.notebooks.items():
        notebook = json.loads(data.decode("utf-8-sig"))
        graded[name] = grade_in_sandbox(sanitize(notebook, protected[name]), spec, sandbox, judge, salt, limits)
    return graded


def _grading_config(config: Any, runs: Path) -> Any:
    """The course's config with the kernel replaced by this process's sandbox results."""
    from copy import deepcopy

    from autograder.nbgrader_plugins import UseSandboxResults

    config = deepcopy(config)
    preprocessors = list(config.Autograde.autograde_preprocessors)
    config.Autograde.autograde_preprocessors = [
        UseSandboxResults if getattr(p, "__name__", "") == "ExecuteAndVerify" else p for p in preprocessors]
    config.UseSandboxResults.results_root = str(runs)
    return config


def _record(course: Course, api: Any, entry: Entry, graded: dict[str, GradedNotebook], version: str,
            feedback: bool) -> Outcome:
    """Write one student's submission, grades and feedback (the single writer)."""
    from nbgrader.api import Gradebook

    outcome = Outcome(entry.student, entry.digest(version), reasons=list(entry.notes))
    submitted = course.root / "submitted" / entry.student / course.assignment
    if submitted.exists() and not course.in_place:
        shutil.rmtree(submitted)  # an earlier submission of this student: replaced, not merged
    submitted.mkdir(parents=True, exist_ok=True)
    for name, data in entry.notebooks.items():
        target = submitted / f"{name}.ipynb"
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    runs = course.out / "runs" / entry.student
    runs.mkdir(parents=True, exist_ok=True)
    for name, result in graded.items():
        (runs / f"{name}.json").write_text(json.dumps(graded_to_json(result)), encoding="utf-8")
        outcome.seconds += result.seconds
        if result.policy:
            outcome.status = "needs review"
            outcome.reasons += [f"{name}: outside the source policy: {line}" for line in result.policy[:5]]
        if result.stopped_because:
            outcome.reasons.append(f"{name}: stopped early: {result.stopped_because}")
        for index, cell in sorted(result.cells.items()):
            if cell.error.startswith(("timed out", "MemoryError")):
                outcome.reasons.append(f"{name}: code cell {index + 1}: {cell.error}")
    try:
        if entry.notebooks and graded:
            answer = api.autograde(course.assignment, entry.student, force=True, create=True)
            if not answer.get("success"):
                raise RuntimeError(_last_line(answer.get("error") or answer.get("log") or "autograde failed"))
            _check_recorded(course, entry.student, graded)
            if feedback:
                _feedback(api, course, entry.student)
        else:
            # Nothing to grade: the grading and feedback of an earlier submission are not this one's.
            for earlier in ("autograded", "feedback"):
                shutil.rmtree(course.root / earlier / entry.student / course.assignment, ignore_errors=True)
            with Gradebook(course.db_url, course.course_id) as gb:
                gb.update_or_create_student(entry.student)
                submission = gb.update_or_create_submission(course.assignment, entry.student)
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        grade.auto_score = 0
                        grade.needs_manual_grade = False
                gb.db.commit()
    except Exception as error:  # noqa: BLE001
        outcome.status = "error"
        outcome.reasons.append(f"not recorded in the gradebook: {error}")
    if entry.problem:
        outcome.status = "error"
        outcome.reasons.insert(0, entry.problem)
    for name, result in graded.items():
        for grade_id, item in result.verdicts.items():
            outcome.scores[grade_id] = item.fraction
            outcome.messages[grade_id] = item.messages
            outcome.mistakes[grade_id] = item.mistakes
    return outcome


def _check_recorded(course: Course, student: str, graded: dict[str, GradedNotebook]) -> None:
    """The gradebook must hold exactly the scores the verdicts give: anything else is a grading fault."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        submission = gb.find_submission(course.assignment, student)
        recorded = {grade.name: (grade.auto_score, grade.max_score)
                    for notebook in submission.notebooks for grade in notebook.grades}
    for result in graded.values():
        for grade_id, item in result.verdicts.items():
            score, maximum = recorded.get(grade_id, (None, None))
            expected = round(float(maximum or 0) * item.fraction, 2)
            # nbgrader records no score for a test cell the student deleted: that is a zero.
            if (score is None and expected != 0) or abs(float(score or 0) - expected) > 0.011:
                raise RuntimeError(f"gradebook has {score} for {grade_id}, the hidden tests give {expected}")


def _feedback(api: Any, course: Course, student: str) -> None:
    from nbgrader.apps.api import capture_log
    from nbgrader.converters import GenerateFeedback
    from nbgrader.utils import temp_attrs

    with temp_attrs(api.coursedir, assignment_id=course.assignment, student_id=student):
        app = GenerateFeedback(coursedir=api.coursedir, parent=api)
        app.force = True
        answer = capture_log(app)
    if not answer.get("success"):
        raise RuntimeError("feedback: " + _last_line(answer.get("error") or answer.get("log") or "failed"))


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(text)


def _load_state(course: Course) -> dict[str, Any]:
    try:
        return json.loads(course.state_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _save_state(course: Course, state: dict[str, Any]) -> None:
    temporary = course.state_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, course.state_path)
