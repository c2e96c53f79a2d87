"""The instructor's exports (grades.csv, report.html) from a small hand-made gradebook."""

from __future__ import annotations

import csv
import os
import sys

import pytest

from autograder.pipeline import Course, Outcome
from autograder.report import write_outputs
from tests.conftest import ROOT, points, source_notebook

#: bn_math's automatically graded test cells and their points.
TESTS = points(source_notebook("bn_math"))


@pytest.fixture
def course(tmp_path, monkeypatch):
    # A new gradebook runs `alembic` from PATH (nbgrader_config.py puts the environment's bin/ there).
    monkeypatch.setenv("PATH", os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", ""))))
    return Course(ROOT, "bn_math", ["bn_math"], tmp_path, f"sqlite:///{tmp_path / 'gradebook.db'}")


def _gradebook(course, scores: dict[str, dict[str, float]], by_hand: dict[str, dict[str, float]] | None = None):
    """Each student's automatic score per test cell, and the scores an instructor changed by hand."""
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        gb.add_assignment(course.assignment)
        gb.add_notebook("bn_math", course.assignment)
        for grade_id, worth in TESTS.items():
            gb.add_grade_cell(grade_id, "bn_math", course.assignment, max_score=worth, cell_type="code")
        for student, row in scores.items():
            gb.add_student(student)
            gb.add_submission(course.assignment, student)
            for grade_id, value in row.items():
                grade = gb.find_grade(grade_id, "bn_math", course.assignment, student)
                grade.auto_score = value
                grade.needs_manual_grade = False
                if grade_id in (by_hand or {}).get(student, {}):
                    grade.manual_score = by_hand[student][grade_id]
        gb.db.commit()


def _export(course, records: dict[str, Outcome], everyone: list[str] | None = None):
    """grades.csv as rows by student, and report.html, for the class ``everyone`` (those with records)."""
    state = {"students": {student: outcome.__dict__ for student, outcome in records.items()}}
    paths = write_outputs(course, state, everyone or list(records), [], [])
    with open(paths["grades"], encoding="utf-8") as handle:
        table = {row["student_id"]: row for row in csv.DictReader(handle)}
    return table, paths["report"].read_text(encoding="utf-8")


def test_question_scores_keep_fractions_of_a_point(course):
    _gradebook(course, {"alice": {"test_batchnorm_forward": 1.25, "test_batchnorm_backward": 2.5}})
    table, _ = _export(course, {"alice": Outcome("alice", "d")})
    assert float(table["alice"]["test_batchnorm_forward"]) == 1.25
    assert float(table["alice"]["test_batchnorm_backward"]) == 2.5
    assert float(table["alice"]["total"]) == 3.75


def test_full_points_count_only_full_points(course):
    _gradebook(course, {"alice": {"test_batchnorm_backward": 4.0}, "bob": {"test_batchnorm_backward": 2.0},
                        "cy": {"test_batchnorm_backward": 3.0}})
    _, report = _export(course, {s: Outcome(s, "d") for s in ("alice", "bob", "cy")})
    section = report.split("<h2>test_batchnorm_backward (4 points)</h2>", 1)[1]
    assert section.split("</p>", 1)[0].strip() == "<p>1 of 3 students earned full points."


def test_a_student_who_needs_review_is_not_counted_as_plainly_graded(course):
    _gradebook(course, {"alice": {}, "bob": {}})
    table, report = _export(course, {"alice": Outcome("alice", "d"),
                                     "bob": Outcome("bob", "d", status="needs review")})
    assert table["bob"]["status"] == "needs review"
    assert "1 with an error" in report
    assert "<tr class='error'><td>bob</td>" in report and "<tr><td>alice</td>" in report


def test_a_score_changed_by_hand_in_the_gradebook_is_the_one_exported(course):
    _gradebook(course, {"alice": {"test_batchnorm_forward": 1.0, "test_batchnorm_backward": 4.0}},
               by_hand={"alice": {"test_batchnorm_forward": 2.5}})
    table, _ = _export(course, {"alice": Outcome("alice", "d")})
    assert float(table["alice"]["test_batchnorm_forward"]) == 2.5
    assert float(table["alice"]["test_batchnorm_backward"]) == 4.0
    assert float(table["alice"]["total"]) == 6.5


def test_a_cell_that_timed_out_is_among_the_reasons(tmp_path):
    from autograder.grading import GradedNotebook
    from autograder.intake import Entry
    from autograder.pipeline import _record
    from autograder.sandbox import CellRun

    course = Course(tmp_path, "bn_math", ["bn_math"], tmp_path / "out", f"sqlite:///{tmp_path / 'gb.db'}")
    graded = {"bn_math": GradedNotebook({}, {0: CellRun(), 2: CellRun(error="timed out after 2 s"),
                                             3: CellRun(error="MemoryError")})}
    outcome = _record(course, None, Entry("alice", "alice"), graded, "v", feedback=False)
    assert "bn_math: code cell 3: timed out after 2 s" in outcome.reasons
    assert "bn_math: code cell 4: MemoryError" in outcome.reasons
    assert not any("code cell 1" in reason for reason in outcome.reasons)


def test_a_student_without_a_grading_record_is_listed_as_not_graded(course):
    """A student of the class with no record of being graded shows as an error, never as graded."""
    table, report = _export(course, {"alice": Outcome("alice", "digest")}, everyone=["alice", "bob"])
    assert table["alice"]["status"] == "graded"
    assert table["bob"]["status"] != "graded" and "not graded" in table["bob"]["reasons"]
    assert "<tr class='error'><td>bob</td>" in report and "1 with an error" in report
