"""Fast checks of the grading command's parts: ids, intake, result channel, feedback filter, sandbox."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from nbformat import NotebookNode

from autograder import sandbox
from autograder.intake import check_notebook, collect, student_id
from autograder.nbgrader_plugins import HideHiddenTests
from autograder.sandbox import Job, Limits, read_results
from tests.conftest import ROOT
from tests.fake_class import as_zip, notebook, write


@pytest.mark.parametrize("raw, expected", [
    ("alice", "alice"),
    ("Jane Doe", "Jane_Doe"),
    ("José Núñez", "José_Núñez"),
    ("李雷", "李雷"),
    ("../../etc", "etc"),
    ("Jane Doe_123456_assignsubmission_file_", "Jane_Doe"),
    ("  ", "unnamed"),
])
def test_student_ids_are_safe_folder_names(raw, expected):
    assert student_id(raw) == expected


def test_check_notebook_names_the_problem():
    assert check_notebook(b"") == "the notebook file is empty"
    assert "not JSON" in check_notebook(b"{oops")
    assert "no list of cells" in check_notebook(b"{}")
    assert "version 4" in check_notebook(json.dumps({"cells": [], "nbformat": 3}).encode())
    assert check_notebook(json.dumps(notebook()).encode()) == ""


def test_nested_zip_with_wrapper_folders(tmp_path):
    archive = as_zip({"Downloads/course/ann/bn_math.ipynb": notebook(),
                      "Downloads/course/bo b/bn_math-2.ipynb": notebook(),
                      "Downloads/course/cy/inner.zip": "PK",
                      "Downloads/course/dee/other.ipynb": notebook()}, tmp_path / "c.zip")
    entries, notes = collect(archive, "bn_math", ["bn_math"])
    found = {e.student: e for e in entries}
    assert set(found) == {"ann", "bo_b", "cy", "dee"}
    assert list(found["ann"].notebooks) == ["bn_math"] and not found["ann"].problem
    assert list(found["bo_b"].notebooks) == ["bn_math"]
    assert found["cy"].problem and found["dee"].problem
    assert any("no notebook of that name" in n for n in found["dee"].notes)


def _events(path: Path, *events: dict) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_forged_result_events_void_the_run(tmp_path):
    job = Job("bn_math", "", ["a", "b"], [("t", 0)], [1], salt=0)
    order = job.expected_events()
    assert order == [("cell", 0), ("probe", 0), ("given", 0), ("cell", 1)]
    given = {"event": "given", "number": 0, "ok": False, "error": "none"}
    honest = read_results(_events(tmp_path / "h", {"event": "started"}, {"event": "cell", "index": 0, "ok": True},
                                   {"event": "probe", "number": 0, "ok": False, "error": "x"}, given,
                                   {"event": "cell", "index": 1, "ok": True}, {"event": "finished"}), order)
    assert honest.finished and not honest.tampered and honest.probe_errors == {0: "x"}
    # The student's first cell writes a probe result before its own cell event.
    forged = read_results(_events(tmp_path / "f", {"event": "started"},
                                   {"event": "probe", "number": 0, "ok": True, "outputs": {}},
                                   {"event": "cell", "index": 0, "ok": True},
                                   {"event": "probe", "number": 0, "ok": False, "error": "x"}, given,
                                   {"event": "cell", "index": 1, "ok": True}, {"event": "finished"}), order)
    assert forged.tampered and not forged.probe_outputs and not forged.finished
    # The same events, as many as expected, but a probe's answer comes before its cell has run.
    swapped = read_results(_events(tmp_path / "s", {"event": "started"},
                                    {"event": "probe", "number": 0, "ok": True, "outputs": {}},
                                    {"event": "cell", "index": 0, "ok": True}, given,
                                    {"event": "cell", "index": 1, "ok": True}, {"event": "finished"}), order)
    assert swapped.tampered == "an event out of turn" and not swapped.probe_outputs
    garbage = tmp_path / "g"
    garbage.write_text('{"event": "started"}\nnot json\n')
    assert read_results(garbage, order).tampered


def test_an_array_bomb_is_refused_before_it_is_built(tmp_path):
    """A declared shape far larger than its data, or than the grader accepts, voids the run: nothing expands."""
    job = Job("bn_math", "", [], [("t", 0)], [0], salt=0)
    bomb = {"out": {"dtype": "<f8", "shape": [10**8, 10**8], "data": ""}}
    run = read_results(_events(tmp_path / "b", {"event": "started"},
                                {"event": "probe", "number": 0, "ok": True, "outputs": bomb},
                                {"event": "given", "number": 0, "ok": False, "error": "-"},
                                {"event": "finished"}), job.expected_events())
    assert run.tampered and not run.probe_outputs


@pytest.mark.parametrize("declared", [
    {"dtype": "<f8", "shape": [10**8, 10**8], "data": "AAAA"},  # a shape far beyond what the grader accepts
    {"dtype": "<f8", "shape": [1], "data": "A" * 4_000_000},  # data far longer than its shape needs
])
def test_an_oversized_output_is_refused_before_its_data_is_decoded(monkeypatch, declared):
    """The declared size is checked first: the base64 text of a bomb is never decoded, let alone built."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data was decoded")

    monkeypatch.setattr(sandbox.base64, "b64decode", refuse)
    with pytest.raises(ValueError, match="too large"):
        sandbox.decode_outputs({"out": declared})


def test_feedback_filter_removes_hidden_tests_and_their_tracebacks():
    cell = NotebookNode(cell_type="code", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 1}},
                        source="visible()\n### BEGIN HIDDEN TESTS\nsecret_check(42)\n### END HIDDEN TESTS",
                        outputs=[NotebookNode(output_type="error", ename="AssertionError", evalue="no",
                                              traceback=["Cell In[3], line 3", "----> 3 secret_check(42)"]),
                                 NotebookNode(output_type="stream", name="stdout", text="secret_check(42)\nok\n")])
    filtered, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    text = json.dumps(filtered)
    assert "secret_check" not in text and "visible()" in text and "ok" in text
    assert filtered.outputs[0].traceback == ["AssertionError: no"]


def test_feedback_filter_removes_any_quoted_line_of_a_hidden_test():
    """A traceback or a printed line that quotes a later line of the hidden block (not its first) is cut too."""
    source = ("visible()\n### BEGIN HIDDEN TESTS\nexpected = reference_forward(probe_input)\n"
              "assert np.allclose(student_forward(probe_input), expected)\n### END HIDDEN TESTS")
    cell = NotebookNode(cell_type="code", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 1}},
                        source=source,
                        outputs=[NotebookNode(output_type="error", ename="AssertionError", evalue="",
                                              traceback=["Cell In[3], line 4",
                                                         "----> 4 assert np.allclose(student_forward(probe_input), "
                                                         "expected)"]),
                                 NotebookNode(output_type="stream", name="stdout",
                                              text="checking\nassert np.allclose(student_forward(probe_input), "
                                                   "expected)\nok\n")])
    filtered, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    text = json.dumps(filtered)
    assert "student_forward(probe_input)" not in text and "reference_forward" not in text
    assert filtered.outputs[0].traceback == ["AssertionError: "]
    assert filtered.outputs[1].text.splitlines() == ["checking", "ok"]


def test_partial_credit_is_kept_to_two_decimals():
    """One check of three passed on a 2-point cell: nbgrader records 0.67 points, not a rounded 1."""
    from nbgrader.utils import determine_grade

    from autograder.nbgrader_plugins import verdict_outputs
    from autograder.verdicts import ProbeOutcome, Verdict

    verdict = Verdict("test_forward", (ProbeOutcome("a", True), ProbeOutcome("b", False, "wrong mean"),
                                       ProbeOutcome("c", False, "wrong variance")))
    cell = NotebookNode(cell_type="code", source="", execution_count=1, outputs=verdict_outputs(verdict, 2.0),
                        metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "test_forward",
                                               "points": 2}})
    assert determine_grade(cell) == (0.67, 2.0)


def test_sandbox_limits_and_isolation(tmp_path, grader):
    """One worker: no network, no write outside its folder, no view of the course, limits per cell and run."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    marker = tmp_path / "written-by-student"
    cells = [
        f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    net = True\n"
        "except OSError:\n    net = False\nprint('network', net)",
        f"try:\n    open({str(marker)!r}, 'w').write('x')\nexcept OSError as e:\n    print('no write')",
        f"import os\nprint('course visible', os.path.exists({str(ROOT / 'solutions')!r}), "
        f"os.path.exists({str(ROOT / 'autograder' / 'references')!r}))",
        "x = bytearray(4 * 1024**3)",
        "while True:\n    pass",
        "print('still running')",
        "import os\nos._exit(7)",
        "print('never')",
    ]
    job = Job("bn_math", grader.judge("bn_math").spec.checks_source, cells, [], [], salt=0)
    run = grader.sandbox.run(job, Limits(cell_seconds=2, notebook_seconds=30, memory_bytes=512 * 1024**2))
    server.close()
    assert "network False" in run.cells[0].output
    assert not marker.exists()
    if os.geteuid() == 0:
        assert "course visible False False" in run.cells[2].output
    assert run.cells[3].error == "MemoryError"
    assert run.cells[4].error.startswith("timed out")
    assert run.cells[5].output == "still running\n"
    assert not run.finished and "exited early (exit code 7)" in run.stopped_because
    assert 7 not in run.cells


def test_children_share_one_memory_limit(grader):
    """Forked children count against the submission's memory, not each against its own."""
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    cells = ["import os, time\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
             "        block = bytearray(300 * 1024**2)\n        for i in range(0, len(block), 4096):\n"
             "            block[i] = 1\n        time.sleep(5)\n        os._exit(0)\n    pids.append(pid)\n"
             "codes = [os.waitpid(p, 0)[1] for p in pids]\nprint('children', codes)"]
    job = Job("bn_math", grader.judge("bn_math").spec.checks_source, cells, [], [], salt=0)
    run = grader.sandbox.run(job, Limits(cell_seconds=20, notebook_seconds=40, memory_bytes=700 * 1024**2))
    output = run.cells[0].output if 0 in run.cells else ""
    assert "children [0, 0, 0, 0]" not in output, "four children of 300 MB fit in a 700 MB limit"


def test_a_deeply_nested_notebook_is_that_students_problem_only(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    assert "nested too deeply" in check_notebook(('{"cells": [], "nbformat": 4, "x": ' + deep + "}").encode())
    assert "not a notebook cell" in check_notebook(b'{"cells": [1], "nbformat": 4}')
    write(notebook(), tmp_path / "subs" / "ann" / "bn_math.ipynb")
    (tmp_path / "subs" / "bo").mkdir()
    (tmp_path / "subs" / "bo" / "bn_math.ipynb").write_text('{"cells": ' + deep + "}")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    found = {e.student: e for e in entries}
    assert not found["ann"].problem and "nested too deeply" in found["bo"].problem


def test_a_damaged_zip_is_refused_with_one_line_before_grading(tmp_path):
    archive = as_zip({"ann/bn_math.ipynb": notebook(), "bo/bn_math.ipynb": notebook()}, tmp_path / "c.zip")
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the first member's compressed data
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged zip archive") as caught:
        collect(archive, "bn_math", ["bn_math"])
    assert "\n" not in str(caught.value)


def test_two_moodle_students_of_the_same_name_stay_two_students(tmp_path):
    for folder in ("Jane Doe_111_assignsubmission_file_", "Jane Doe_222_assignsubmission_file_",
                   "Li Lei_333_assignsubmission_file_"):
        write(notebook(), tmp_path / "subs" / folder / "bn_math.ipynb")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    assert sorted(e.student for e in entries) == ["Jane_Doe_111", "Jane_Doe_222", "Li_Lei"]
    assert all(e.notebooks for e in entries)


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether the readable memory of process ``pid`` holds ``needle`` (root reads any process)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            bounds, permissions = line.split()[:2]
            if not permissions.startswith("r"):
                continue
            start, end = (int(value, 16) for value in bounds.split("-"))
            try:
                memory.seek(start)
                if needle in memory.read(end - start):
                    return True
            except (OSError, OverflowError, ValueError):
                continue
    return False


def test_the_zygote_never_holds_a_submission():
    """Workers fork from a process that read no student's code: a later worker inherits nothing of an earlier one."""
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root")
    from autograder.sandbox import Sandbox
    from autograder.spec import load_spec

    marker = "student-secret-" + os.urandom(8).hex()
    with Sandbox() as sandbox:
        job = Job("bn_math", load_spec("bn_math").checks_source, [f"note = {marker!r}\nprint(len(note))"], [], [],
                  salt=0)
        run = sandbox.run(job, Limits(cell_seconds=10, notebook_seconds=30))
        assert run.cells[0].output.strip() == str(len(marker))
        assert not _memory_holds(sandbox._process.pid, marker.encode())


def test_figure_cells_are_not_run_when_grading(grader):
    """A course-provided cell that only draws a figure costs every submission seconds and grades nothing:
    the worker skips it, and the checks still find everything they need."""
    from autograder.grading import is_figure_cell
    from tests.conftest import source_notebook

    notebook = source_notebook("bn_math")
    figures = [cell for cell in notebook.cells if is_figure_cell(cell)]
    assert figures
    for cell in figures:
        cell.source = "raise RuntimeError('the figure cell ran')"
    graded = grader.grade(notebook, "bn_math")
    assert not [cell for cell in graded.cells.values() if "figure cell ran" in cell.error]
    assert all(verdict.fraction == 1 for verdict in graded.verdicts.values())


def test_the_grader_version_changes_with_what_decides_a_grade_and_only_that(tmp_path, monkeypatch):
    """A re-run grades again when the hidden checks, the reference or the judge change; another
    assignment's checks leave this one's grades alone."""
    import shutil

    from autograder import pipeline
    from autograder.secret import SECRET_VARIABLE

    shutil.copytree(ROOT / "autograder", tmp_path / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    monkeypatch.setenv(SECRET_VARIABLE, "a course secret")
    before = pipeline.grader_version("bn_math", tmp_path)
    for changed in ("checks/bn_math.py", "references/bn_math.py", "checks/core.py", "verdicts.py", "worker.py"):
        path = tmp_path / "autograder" / changed
        path.write_text(path.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
        after = pipeline.grader_version("bn_math", tmp_path)
        assert after != before, f"{changed} changed and the grader version did not"
        before = after
    other = tmp_path / "autograder" / "checks" / "train_eval.py"
    other.write_text(other.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert pipeline.grader_version("bn_math", tmp_path) == before
    monkeypatch.setenv(SECRET_VARIABLE, "another secret")
    assert pipeline.grader_version("bn_math", tmp_path) != before
