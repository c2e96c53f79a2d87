"""``python -m autograder grade``: a small, messy class graded end to end.

One run of the command on a folder with right, wrong, unfinished, broken and
misbehaving submissions (crash, os._exit, endless loop, memory hog, writes
outside its folder, network), odd names, then a re-run (nothing new: nothing
graded), a changed submission (only that one regraded) and a zip of loose
files. Checks grades.csv, report.html, the gradebook and the feedback files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# One class graded once (session-scoped fixtures, so that tests of other
# modules running in between do not tear it down); one xdist worker for the
# group with `--dist loadgroup`.
pytestmark = pytest.mark.xdist_group("grading-cli")

from tests.browser.sitekit import remote_resources
from tests.fake_class import HONEST, MAXIMUM, POINTS, as_zip, hidden_test_lines, notebook, shared_result, write, wrong_forward

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ["--cell-seconds", "4", "--notebook-seconds", "15", "--memory-mb", "1024"]

#: Crashes the interpreter with what the source policy allows: NumPy reading far past an array.
SEGFAULT = "import numpy as np\nnp.lib.stride_tricks.as_strided(np.zeros(1), shape=(10**10,), strides=(8,)).sum()"
#: An endless loop that swallows the cell's time-limit exception.
IGNORE_ALARMS = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
#: A failure message holding markup: the instructor's report must show it as text, never run it.
MARKUP = "<img src=x onerror=alert(1)> is <b>not</b> done"

ESCAPE = """
import os, socket, autograder
root = os.path.dirname(os.path.dirname(autograder.__file__))
for path in (root + "/ESCAPED.txt", root + "/autograder/checks/ESCAPED.py", "/tmp/ESCAPED-grading.txt"):
    try:
        open(path, "w").write("x")
    except OSError:
        pass
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2).sendall(b"LEAK")
except OSError:
    pass
"""


def copy_course(destination: Path) -> Path:
    for name in ("solutions", "exercises", "autograder"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", destination)
    return destination


def grade(course: Path, submissions: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "autograder", "grade", "bn_math", str(submissions), "--jobs", "2",
                           *LIMITS, *extra], cwd=course, env=env, capture_output=True, text=True, timeout=600)


def rows(course: Path) -> dict[str, dict[str, str]]:
    with open(course / "grading" / "bn_math" / "grades.csv", encoding="utf-8") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def _listen() -> tuple[int, list[bytes], object]:
    """A TCP server on the host: a sandbox that reaches it has network access."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            received.append(connection.recv(16))
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], received, server


def _outcome(done: subprocess.CompletedProcess) -> dict:
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _grade_everything(folder: Path) -> dict:
    """Every run of the command these tests look at, in order, on one course."""
    port, received, server = _listen()
    course = copy_course(folder / "course")
    subs = folder / "subs"
    write(notebook(), subs / "alice" / "bn_math.ipynb")
    write(notebook(solved=False), subs / "bob" / "bn_math.ipynb")
    write(notebook({"batchnorm_forward": wrong_forward()}), subs / "José Núñez" / "bn_math (1).ipynb")
    write("{not json", subs / "carol" / "bn_math.ipynb")
    write("", subs / "dave" / "bn_math.ipynb")
    write(notebook(), subs / "erin" / "homework.ipynb")
    write(notebook(after={"test_batchnorm_forward": [SEGFAULT]}), subs / "frank" / "bn_math.ipynb")
    write(notebook(after={"test_batchnorm_backward": [IGNORE_ALARMS]}), subs / "grace" / "bn_math.ipynb")
    write(notebook(after={"test_batchnorm_forward": ["hog = [bytearray(10**9) for _ in range(100)]"]}),
          subs / "heidi" / "bn_math.ipynb")
    write(notebook(before_first_test=[ESCAPE.replace("PORT", str(port))]), subs / "ivan" / "bn_math.ipynb")
    write(notebook(after={"batchnorm_forward": [SEGFAULT]}), subs / "judy" / "bn_math.ipynb")
    write(notebook({"spatial_batchnorm_backward": f"def spatial_batchnorm_backward(dout, cache):\n"
                                                  f"    raise ValueError({MARKUP!r})"}),
          subs / "mallory" / "bn_math.ipynb")
    (subs / "notes.txt").write_text("not a submission")
    runs = {"first": _outcome(grade(course, subs))}
    server.close()
    runs["leaked"] = [r.decode(errors="replace") for r in received]
    runs["grades_after_first"] = rows(course)
    runs["again"] = _outcome(grade(course, subs))
    changed = notebook()
    changed["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "I also tried eps=0."})
    write(changed, subs / "alice" / "bn_math.ipynb")  # alice resubmitted
    runs["third"] = _outcome(grade(course, subs))
    runs["grades_after_third"] = rows(course)
    runs["report_after_third"] = (course / "grading" / "bn_math" / "report.html").read_text(encoding="utf-8")
    # bob's feedback before his broken resubmission below takes it away.
    runs["bob_feedback"] = (course / "feedback" / "bob" / "bn_math" / "bn_math.html").read_text(encoding="utf-8")
    # A later class: alice, and bob, whose notebook is now broken (no notebook to grade).
    write(notebook(), folder / "resubmitted" / "alice" / "bn_math.ipynb")
    write("{not json", folder / "resubmitted" / "bob" / "bn_math.ipynb")
    runs["subset"] = _outcome(grade(course, folder / "resubmitted"))
    runs["grades_after_subset"] = rows(course)
    runs["submitted_after_subset"] = sorted(str(path.relative_to(course / "submitted"))
                                            for path in (course / "submitted").rglob("*") if path.is_file())
    runs["graded_after_subset"] = sorted(str(path.relative_to(course)) for folder in ("autograded", "feedback")
                                         for path in (course / folder).rglob("*") if path.is_file())
    archive = as_zip({
        "export/kim_bn_math.ipynb": notebook(),
        "export/lee_attempt_2.ipynb": notebook({"batchnorm_forward": wrong_forward()}),
        "export/__MACOSX/._kim_bn_math.ipynb": "junk",
        "export/readme.txt": "hello",
        "export/noseparator.ipynb": notebook(),
        "export/../escape_x.ipynb": notebook(),
    }, folder / "class.zip")
    runs["zip"] = _outcome(grade(course, archive, "--out", str(folder / "zip-out")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    runs["bad"] = [_outcome(subprocess.run([sys.executable, "-m", "autograder", *args], cwd=course, env=env,
                                           capture_output=True, text=True, timeout=120))
                   for args in (["grade", "no_such", str(subs)], ["grade", "bn_math", str(folder / "missing")])]
    (folder / "empty").mkdir()
    runs["empty"] = _outcome(grade(course, folder / "empty", "--out", str(folder / "empty-out")))
    runs["course"], runs["subs"] = str(course), str(subs)
    return runs


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """One class graded once for the whole session (all xdist workers share it)."""
    runs = shared_result(tmp_path_factory, "grading-cli", _grade_everything)
    return Path(runs["course"]), runs


def test_every_student_has_a_row_with_a_status(graded):
    course, runs = graded
    assert runs["first"]["returncode"] == 0, runs["first"]["stderr"][-3000:]
    table = runs["grades_after_first"]
    assert set(table) == {"alice", "bob", "José_Núñez", "carol", "dave", "erin", "frank", "grace", "heidi",
                          "ivan", "judy", "mallory"}
    header = list(next(iter(table.values())))
    assert header[:1 + len(POINTS)] == ["student_id", *POINTS]
    assert header[-5:] == ["total", "max_score", "to_grade_by_hand", "status", "reasons"]
    assert all(float(row["max_score"]) == MAXIMUM for row in table.values())


def test_scores(graded):
    course, runs = graded
    table = runs["grades_after_first"]
    total = {student: float(row["total"]) for student, row in table.items()}
    assert total["alice"] == HONEST and table["alice"]["status"] == "graded" and table["alice"]["reasons"] == ""
    assert total["bob"] == 0.0
    assert float(table["José_Núñez"]["test_batchnorm_forward"]) < 3.0
    assert 0 < total["José_Núñez"] < HONEST
    assert total["carol"] == total["dave"] == total["erin"] == 0.0


def test_broken_input_gets_one_clear_reason(graded):
    course, runs = graded
    table = runs["grades_after_first"]
    assert table["carol"]["status"] == "error" and "not a valid notebook" in table["carol"]["reasons"]
    assert table["dave"]["status"] == "error" and "empty" in table["dave"]["reasons"]
    assert table["erin"]["status"] == "error" and "no notebook of that name" in table["erin"]["reasons"]
    assert "José Núñez" in table["José_Núñez"]["reasons"]  # how the id was made
    assert "graded as bn_math.ipynb" in table["José_Núñez"]["reasons"]


def test_misbehaving_notebooks_keep_what_they_earned(graded):
    course, runs = graded
    table = runs["grades_after_first"]
    # A segfault right after the forward test: the forward points, nothing after.
    assert float(table["frank"]["test_batchnorm_forward"]) == 3.0
    assert float(table["frank"]["total"]) == 3.0
    assert "crashed" in table["frank"]["reasons"]
    # An endless loop that ignores the cell alarm: stopped by the notebook limit
    # after the forward and backward tests ran.
    assert float(table["grace"]["total"]) == 7.0
    assert "more than 15 s" in table["grace"]["reasons"]
    # Unbounded allocation: a MemoryError in that cell, the rest graded.
    assert float(table["heidi"]["total"]) == HONEST
    assert "MemoryError" in table["heidi"]["reasons"]
    # A segfault in a cell after the forward pass: the forward function was
    # defined but its test comes after the crash.
    assert float(table["judy"]["total"]) == 0.0
    assert "crashed" in table["judy"]["reasons"] or "exited" in table["judy"]["reasons"]


def test_a_submission_cannot_write_outside_or_reach_the_network(graded):
    """Its code still runs (in the sandbox), and earns nothing: it imports what the source policy forbids."""
    course, runs = graded
    row = runs["grades_after_first"]["ivan"]
    assert float(row["total"]) == 0.0 and row["status"] == "needs review"
    assert "outside the source policy" in row["reasons"] and "import os" in row["reasons"]
    assert not (course / "ESCAPED.txt").exists()
    assert not (course / "autograder" / "checks" / "ESCAPED.py").exists()
    assert not Path("/tmp/ESCAPED-grading.txt").exists()
    assert runs["leaked"] == []


def test_gradebook_holds_the_same_grades(graded):
    from nbgrader.api import Gradebook

    course, runs = graded
    table = runs["grades_after_first"]
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        for student, row in table.items():
            assert gb.find_submission("bn_math", student).score == pytest.approx(float(row["total"]))


def test_report_has_figures_and_frequent_failures(graded):
    course, runs = graded
    report = runs["report_after_third"]
    assert report.count("data:image/png;base64,") == 1 + len([q for q in POINTS if q.startswith("test_")])
    assert "graded by hand" in report
    assert "Most frequent failures" in report
    assert "not implemented yet" in report
    assert "http://" not in report and "https://" not in report
    assert "no notebook of that name" in report


def test_feedback_has_no_hidden_test_and_no_remote_script(graded):
    course, runs = graded
    files = sorted((course / "feedback").glob("*/bn_math/bn_math.html"))
    assert {f.parts[-3] for f in files} >= {"alice", "José_Núñez", "frank", "grace"}
    hidden = hidden_test_lines()
    assert hidden
    for file in files:
        text = file.read_text(encoding="utf-8")
        for line in hidden:
            assert line not in text, (file, line)
        assert "BEGIN HIDDEN TESTS" not in text
        assert not remote_resources(file), (file, remote_resources(file))
        # Formulas are MathML: a feedback page needs no script, so none can fetch anything either.
        assert "<script" not in text.lower(), file
    assert "not implemented yet" in runs["bob_feedback"]


def test_rerun_grades_only_what_changed(graded):
    course, runs = graded
    assert runs["again"]["returncode"] == 0, runs["again"]["stderr"][-3000:]
    assert "0 graded, 12 unchanged" in runs["again"]["stdout"]
    assert "1 graded, 11 unchanged" in runs["third"]["stdout"]
    assert float(runs["grades_after_third"]["alice"]["total"]) == HONEST
    assert float(runs["grades_after_third"]["bob"]["total"]) == 0.0


def test_grades_csv_holds_exactly_the_class_being_graded(graded):
    """A later run with fewer students lists those students only, as the console says."""
    _, runs = graded
    assert set(runs["grades_after_subset"]) == {"alice", "bob"}
    assert "2 students: 2 graded, 0 unchanged" in runs["subset"]["stdout"]


def test_a_resubmission_replaces_the_earlier_one_in_submitted(graded):
    """bob's later notebook is broken: his earlier notebook does not stay in submitted/, where formgrader
    or `nbgrader autograde` would take it for his submission, and its feedback is not returned to him."""
    _, runs = graded
    assert runs["grades_after_subset"]["bob"]["status"] == "error"
    files = runs["submitted_after_subset"]
    assert not [name for name in files if name.startswith("bob/")], files
    assert "alice/bn_math/bn_math.ipynb" in files
    # Nor do the grading and the feedback of his earlier notebook: he would read feedback on work he replaced.
    graded = runs["graded_after_subset"]
    assert not [name for name in graded if "/bob/" in f"/{name}"], graded
    assert "feedback/alice/bn_math/bn_math.html" in graded


def test_report_shows_markup_in_a_failure_message_as_text(graded):
    """mallory's code raises an error whose message holds HTML: the report escapes it."""
    course, runs = graded
    report = runs["report_after_third"]
    assert "ValueError: &lt;img src=x onerror=alert(1)&gt; is &lt;b&gt;not&lt;/b&gt; done" in report
    assert "<img src=x" not in report and "<b>not</b>" not in report
    feedback = (course / "feedback" / "mallory" / "bn_math" / "bn_math.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in feedback and "<img src=x" not in feedback


def test_report_counts_each_named_mistake_once_per_student(graded):
    _, runs = graded
    report = runs["report_after_third"]
    table = report.split("<h2>Named mistakes</h2>", 1)[1].split("</table>", 1)[0]
    assert "<tr><td>1</td><td>the unbiased variance" in table and "test_batchnorm_forward" in table


def test_a_zip_of_loose_files_with_odd_names(graded):
    course, runs = graded
    done = runs["zip"]
    assert done["returncode"] == 0, done["stderr"][-3000:]
    with open(Path(runs["course"]).parent / "zip-out" / "grades.csv", encoding="utf-8") as handle:
        table = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert float(table["kim"]["total"]) == HONEST
    assert float(table["lee"]["test_batchnorm_forward"]) < 3.0
    assert "noseparator" not in table and "escape" not in table
    assert "noseparator.ipynb" in done["stdout"] and "leaves the archive" in done["stdout"]
    assert not (Path(runs["course"]).parent / "escape_x.ipynb").exists()


def test_unknown_assignment_and_missing_folder_are_one_line_errors(graded):
    course, runs = graded
    for done in runs["bad"]:
        assert done["returncode"] == 2
        assert len(done["stderr"].strip().splitlines()) == 1 and done["stderr"].startswith("error: ")
    assert json.loads((course / "grading" / "bn_math" / "state.json").read_text())["students"]


def test_an_empty_submissions_folder_is_said_in_one_line(graded):
    _, runs = graded
    done = runs["empty"]
    assert done["returncode"] == 0
    warnings = [line for line in done["stdout"].splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "no submissions found" in warnings[0]


def test_written_answers_wait_for_a_person_and_never_count_as_zero(graded):
    """The notebook's written questions show as "to grade by hand" in grades.csv until graded in formgrader."""
    _, runs = graded
    questions = [q for q in POINTS if not q.startswith("test_")]
    assert questions
    alice = runs["grades_after_first"]["alice"]
    assert all(alice[q] == "to grade by hand" for q in questions)
    assert int(alice["to_grade_by_hand"]) == len(questions)
