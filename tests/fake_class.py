"""Build fake classes of bn_math submissions: honest, wrong, broken and dishonest notebooks.

A submission starts from the released notebook (what students get: no hidden
test, no solution), with answer cells filled in from the source notebook's
solutions or replaced, and extra cells inserted where a student could put them.
Used by tests/test_grading_*.py and autograder/bench.py.
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "bn_math"
FUNCTIONS = ("batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward")


def _points() -> dict[str, float]:
    """Points of every graded cell of the source notebook, by grade id (written answers included)."""
    source = json.loads((ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(encoding="utf-8"))
    return {cell["metadata"]["nbgrader"]["grade_id"]: float(cell["metadata"]["nbgrader"].get("points", 0))
            for cell in source["cells"] if cell.get("metadata", {}).get("nbgrader", {}).get("grade")}


POINTS = _points()
#: What an honest notebook earns from the autograder (written answers wait for a person).
HONEST = sum(p for grade_id, p in POINTS.items() if grade_id.startswith("test_"))
MAXIMUM = sum(POINTS.values())


def _load(kind: str) -> dict:
    return json.loads((ROOT / kind / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


#: What every fake student writes for a written question.
WRITTEN_ANSWER = "My answer: the running statistics lag behind the weights."


def solutions() -> dict[str, str]:
    """The reference answer of every answer cell, as a student would have typed it."""
    answers = {}
    for cell in _load("solutions")["cells"]:
        if not _meta(cell).get("solution"):
            continue
        if cell["cell_type"] != "code":
            # A written answer in the student's own words, not the instructors' rubric (an answer left as
            # released scores 0 under nbgrader; an answered one waits for a person).
            answers[_meta(cell)["grade_id"]] = WRITTEN_ANSWER
            continue
        lines = [line for line in _source(cell).splitlines()
                 if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line]
        answers[_meta(cell)["grade_id"]] = "\n".join(lines)
    return answers


def hidden_test_lines() -> list[str]:
    """Every non-empty line between BEGIN and END HIDDEN TESTS in the source notebook."""
    lines = []
    for cell in _load("solutions")["cells"]:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", _source(cell), re.S):
            lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def notebook(answers: dict[str, str] | None = None, *, solved: bool = True,
             after: dict[str, list[str]] | None = None, before_first_test: list[str] | None = None,
             edit: Callable[[dict], None] | None = None) -> dict:
    """A student's notebook.

    ``solved``: start from the reference answers (else from the released stubs).
    ``answers``: answer cell grade id -> new source. ``after``: grade id -> code
    cells inserted right after that cell. ``before_first_test``: code cells
    inserted before the first test cell. ``edit``: any change to the notebook.
    """
    nb = copy.deepcopy(_load("exercises"))
    filled = dict(solutions() if solved else {})
    filled.update(answers or {})
    cells = []
    inserted_early = False
    for cell in nb["cells"]:
        meta = _meta(cell)
        if not inserted_early and meta.get("grade") and not meta.get("solution") and before_first_test:
            cells += [_code(source) for source in before_first_test]
            inserted_early = True
        if meta.get("solution") and meta.get("grade_id") in filled:
            cell["source"] = filled[meta["grade_id"]]
        cell["outputs"] = [] if cell["cell_type"] == "code" else cell.get("outputs")
        if cell["cell_type"] != "code":
            cell.pop("outputs", None)
        cells.append(cell)
        for source in (after or {}).get(meta.get("grade_id"), []):
            cells.append(_code(source))
    nb["cells"] = cells
    if edit:
        edit(nb)
    return nb


def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def wrong_forward() -> str:
    """A forward pass with the unbiased variance: loses the forward points (and more)."""
    return solutions()["batchnorm_forward"].replace("x.var(axis=0", "x.var(axis=0, ddof=1").replace(
        ".var(axis=0)", ".var(axis=0, ddof=1)")


def write(nb: dict | str | bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, bytes):
        path.write_bytes(nb)
    elif isinstance(nb, str):
        path.write_text(nb, encoding="utf-8")
    else:
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def synthetic_class(size: int) -> dict[str, dict]:
    """``size`` plausible students: most right, some with one mistake, some unfinished."""
    kinds = [
        lambda: notebook(),
        lambda: notebook({"batchnorm_forward": wrong_forward()}),
        lambda: notebook(),
        lambda: notebook(solved=False),
        lambda: notebook({"spatial_batchnorm_backward": solutions()["spatial_batchnorm_backward"]
                          .replace("return dx, dgamma, dbeta", "return 2 * dx, dgamma, dbeta")}),
    ]
    return {f"student{i:03d}": kinds[i % len(kinds)]() for i in range(size)}


def as_folder(students: dict[str, dict], folder: Path) -> Path:
    """``<student>/bn_math.ipynb``: one folder per student."""
    for student, nb in students.items():
        write(nb, folder / student / f"{ASSIGNMENT}.ipynb")
    return folder


def as_nbgrader(students: dict[str, dict], course: Path) -> Path:
    """nbgrader's own layout: ``submitted/<student>/bn_math/bn_math.ipynb``."""
    for student, nb in students.items():
        write(nb, course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return course / "submitted"


def as_zip(files: dict[str, dict | str | bytes], archive: Path) -> Path:
    """A zip holding ``files`` (archive path -> notebook or raw content)."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, content in files.items():
            if isinstance(content, dict):
                content = json.dumps(content)
            zipped.writestr(name, content)
    return archive


def shared_result(tmp_path_factory, name: str, compute: Callable[[Path], dict]) -> dict:
    """``compute(folder)`` once per test session, even with several xdist workers.

    The first worker to get here computes (in a folder all workers see) while
    the others wait on a file lock, then read the JSON result.
    """
    import fcntl
    import os

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers
    folder = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text(encoding="utf-8"))
        folder.mkdir(exist_ok=True)
        result = compute(folder)
        done.write_text(json.dumps(result), encoding="utf-8")
        return result
