"""Plain ``nbgrader autograde`` runs each notebook in a jailed kernel with a limit for the whole notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fake_class import as_nbgrader, notebook
from tests.test_grading_cli import copy_course

SLOW = "import time\ntime.sleep(7)\nprint('marker-{n}')"


def _course_with(tmp_path: Path, settings: str) -> Path:
    """A copy of the course whose nbgrader_config.py ends with ``settings``."""
    course = copy_course(tmp_path / "course")
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write("\n" + settings + "\n")
    return course


def _autograde_with_plain_nbgrader(course: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for command in (["generate_assignment", "bn_math", "--force"], ["autograde", "bn_math", "--force"]):
        done = subprocess.run([sys.executable, "-m", "nbgrader", *command, "--log-level=WARN"], cwd=course,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]


def test_a_notebook_of_slow_cells_is_stopped_at_the_notebook_limit(tmp_path):
    """Four cells of 7 s each, under a 20 s cell limit and a 10 s notebook limit: the kernel is
    stopped during the second cell, the later cells never run, and grading goes on."""
    course = _course_with(tmp_path, "c.ExecuteAndVerify.cell_seconds = 20\nc.ExecuteAndVerify.notebook_seconds = 10")
    slow = notebook(after={"test_batchnorm_forward": [SLOW.format(n=n) for n in range(1, 5)]})
    as_nbgrader({"slow": slow, "quick": notebook()}, course)
    _autograde_with_plain_nbgrader(course)
    graded = json.loads(Path(course / "autograded" / "slow" / "bn_math" / "bn_math.ipynb").read_text())
    printed = "".join("".join(output.get("text", "")) for cell in graded["cells"] if cell["cell_type"] == "code"
                      for output in cell.get("outputs", []))
    assert "marker-1" in printed
    assert "marker-3" not in printed and "marker-4" not in printed
    quick = json.loads(Path(course / "autograded" / "quick" / "bn_math" / "bn_math.ipynb").read_text())
    assert "Hidden tests: 5 of 5 checks passed." in json.dumps(quick)


def test_a_cell_allocating_more_than_the_memory_limit_fails_in_the_kernel(tmp_path):
    """With a 2048 MB limit, a cell that allocates 2.5 GB raises MemoryError in the kernel, one that allocates
    256 MB does not, the later cells still run, and the hidden tests grade the notebook in full."""
    course = _course_with(tmp_path, "c.ExecuteAndVerify.memory_megabytes = 2048")
    # bytes(n) asks for n zeroed bytes at once: refused at the limit, cheap when granted (pages untouched).
    cells = ["small = bytes(256 * 1024**2)\nprint('small fits', len(small) // 1024**2)",
             "del small\nlarge = bytes(2560 * 1024**2)\nprint('large fits')",
             "print('marker-after')"]
    as_nbgrader({"hog": notebook(after={"test_batchnorm_forward": cells})}, course)
    _autograde_with_plain_nbgrader(course)
    graded = json.loads(Path(course / "autograded" / "hog" / "bn_math" / "bn_math.ipynb").read_text())
    outputs = [output for cell in graded["cells"] if cell["cell_type"] == "code"
               for output in cell.get("outputs", [])]
    printed = "".join("".join(output.get("text", "")) for output in outputs)
    assert "small fits 256" in printed and "marker-after" in printed
    assert "large fits" not in printed
    assert "MemoryError" in [output.get("ename") for output in outputs]
    assert "Hidden tests: 5 of 5 checks passed." in json.dumps(graded)
