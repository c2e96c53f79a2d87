"""Fast checks of the grading command's parts: ids, intake, result channel, feedback filter, sandbox."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from nbformat import NotebookNode

from autograder.intake import check_notebook, collect, student_id
from autograder.nbgrader_plugins import HideHiddenTests
from autograder.sandbox import Limits, _expected, _read_results, run_student_code
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
    spec = {"cells": ["a", "b"], "probes": [["t", 0]], "positions": [1]}
    order = _expected(spec)
    assert order == [("cell", 0), ("probe", 0), ("cell", 1)]
    honest = _read_results(_events(tmp_path / "h", {"event": "started"}, {"event": "cell", "index": 0, "ok": True},
                                    {"event": "probe", "number": 0, "ok": False, "error": "x"},
                                    {"event": "cell", "index": 1, "ok": True}, {"event": "finished"}), order)
    assert honest.finished and not honest.tampered and honest.probe_errors == {0: "x"}
    # The student's first cell writes a probe result before its own cell event.
    forged = _read_results(_events(tmp_path / "f", {"event": "started"},
                                    {"event": "probe", "number": 0, "ok": True, "npz": ""},
                                    {"event": "cell", "index": 0, "ok": True},
                                    {"event": "probe", "number": 0, "ok": False, "error": "x"},
                                    {"event": "cell", "index": 1, "ok": True}, {"event": "finished"}), order)
    assert forged.tampered and not forged.probe_outputs and not forged.finished
    garbage = tmp_path / "g"
    garbage.write_text('{"event": "started"}\nnot json\n')
    assert _read_results(garbage, order).tampered


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


def test_sandbox_limits_and_isolation(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    marker = tmp_path / "written-by-student"
    cells = [
        f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    net = True\n"
        "except OSError:\n    net = False\nprint('network', net)",
        f"try:\n    open({str(marker)!r}, 'w').write('x')\nexcept OSError as e:\n    print('no write')",
        "x = bytearray(4 * 1024**3)",
        "while True:\n    pass",
        "print('still running')",
        "import os\nos._exit(7)",
        "print('never')",
    ]
    run = run_student_code("bn_math", cells, [], Limits(cell_seconds=2, notebook_seconds=30,
                                                         memory_bytes=512 * 1024**2))
    server.close()
    assert "network False" in run.cells[0].output
    assert not marker.exists()
    assert run.cells[2].error == "MemoryError"
    assert run.cells[3].error.startswith("timed out")
    assert run.cells[4].output == "still running\n"
    assert not run.finished and "exited early (exit code 7)" in run.stopped_because
    assert 6 not in run.cells
