"""The grader's size and resource limits, each exercised by a submission just past it.

- a cell that prints a megabyte keeps a few thousand characters for the feedback;
- a notebook file over the size limit, and a zip that declares more than the
  archive limit, are refused with a note: the rest of the class is graded;
- a submission that starts hundreds of threads is stopped near the process
  limit, and the grader goes on.

(The memory limit of plain ``nbgrader autograde``'s kernel: tests/test_kernel_limits.py.)
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import pytest

from autograder.intake import collect
from autograder.sandbox import Job, Limits
from tests.fake_class import notebook, write

MB = 1024**2


def _run(grader, cells: list[str], **limits):
    job = Job("bn_math", grader.judge("bn_math").spec.checks_source, cells, [], [], salt=0)
    return grader.sandbox.run(job, Limits(**{"cell_seconds": 20, "notebook_seconds": 60, **limits}))


def test_a_cell_that_prints_a_megabyte_keeps_a_few_thousand_characters(grader):
    """The feedback keeps the start of a long output and says how much was left out; the next cell runs."""
    run = _run(grader, ["print('x' * 1_000_000)", "print('next cell')"])
    kept = run.cells[0].output
    assert kept.startswith("x" * 1000)
    assert len(kept) < 5_000
    dropped = re.search(r"\((\d+) more characters not shown\)", kept)
    assert dropped, kept[-200:]
    assert 990_000 < int(dropped.group(1)) < 1_000_001
    assert run.cells[1].output == "next cell\n" and run.finished


def _big_notebook(megabytes: int) -> dict:
    """A valid bn_math notebook made large by one markdown cell (a pasted dataset, an embedded image)."""
    nb = notebook()
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "a" * (megabytes * MB)})
    return nb


def test_a_notebook_over_the_size_limit_is_refused_with_its_size(tmp_path):
    """A 25 MB notebook is that student's problem, said in one line; the others are read as usual."""
    write(notebook(), tmp_path / "subs" / "ann" / "bn_math.ipynb")
    big = write(_big_notebook(25), tmp_path / "subs" / "bo" / "bn_math.ipynb")
    assert big.stat().st_size > 25 * MB
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    found = {e.student: e for e in entries}
    assert not found["ann"].problem and list(found["ann"].notebooks) == ["bn_math"]
    assert not found["bo"].notebooks
    assert "25 MB" in found["bo"].problem and "allowed" in found["bo"].problem


def test_a_zip_declaring_more_than_the_size_limit_is_cut_short_with_a_note(tmp_path):
    """A zip whose files add up to more than 512 MB uncompressed (here 600 MB of zeros in under a
    megabyte): what comes after the limit is skipped with a note, what came before is graded."""
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
        zipped.writestr("ann/bn_math.ipynb", json.dumps(notebook()))
        with zipped.open("bo/bn_math.ipynb", "w", force_zip64=True) as member:
            block = bytes(8 * MB)
            for _ in range(75):
                member.write(block)
    assert archive.stat().st_size < 5 * MB
    entries, notes = collect(archive, "bn_math", ["bn_math"])
    assert any("the zip holds more than" in note and "the rest was skipped" in note for note in notes), notes
    found = {e.student: e for e in entries}
    assert not found["ann"].problem and list(found["ann"].notebooks) == ["bn_math"]
    assert "bo" not in found or not found["bo"].notebooks


def test_a_submission_starting_hundreds_of_threads_is_stopped_near_the_process_limit(grader):
    """200 threads: the sandbox refuses them after a few dozen, the notebook goes on, and so does the grader."""
    if os.geteuid() != 0:
        pytest.skip("the process limit applies to the sandbox's own user id (root only)")
    spawn = ("import threading\nrelease = threading.Event()\nstarted = 0\ntry:\n    for _ in range(200):\n"
             "        threading.Thread(target=release.wait, daemon=True).start()\n        started += 1\n"
             "except RuntimeError as error:\n    print('refused:', error)\nrelease.set()\n"
             "print('threads started', started)")
    run = _run(grader, [spawn, "print('still running')"])
    started = int(re.search(r"threads started (\d+)", run.cells[0].output).group(1))
    assert 8 <= started <= 64, run.cells[0].output
    assert "refused" in run.cells[0].output
    assert run.cells[1].output == "still running\n" and run.finished
    after = _run(grader, ["print(6 * 7)"])
    assert after.cells[0].output == "42\n" and after.finished


def test_a_function_that_never_returns_is_stopped_by_the_cell_limit_in_each_check(grader):
    """A hidden check that calls a looping function is stopped after the cell limit, as a cell would be:
    its checks fail as timed out, and the test cells of the functions it does not touch keep their points."""
    from tests.conftest import source_notebook, with_answer

    looping = "def batchnorm_backward_alt(dout, cache):\n    while True:\n        pass"
    notebook = with_answer(source_notebook("bn_math"), "batchnorm_backward_alt", looping)
    graded = grader.grade(notebook, "bn_math", limits=Limits(cell_seconds=1, notebook_seconds=60))
    alt = graded.verdicts["test_batchnorm_backward_alt"]
    assert alt.fraction == 0 and all("timed out" in message for message in alt.messages), alt.messages
    for untouched in ("test_batchnorm_forward", "test_batchnorm_backward", "test_spatial_batchnorm_backward"):
        assert graded.verdicts[untouched].fraction == 1, graded.verdicts[untouched]
