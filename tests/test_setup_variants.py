"""Grading works however the course's environment is laid out, and the set-up's speed fix holds."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

GRADE_REFERENCE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from autograder.grading import Grader
    from autograder.sandbox import Sandbox
    from tests.conftest import source_notebook
    with Sandbox() as sandbox:
        graded = Grader(sandbox).grade(source_notebook("bn_math"), "bn_math", salt=5)
    print(sys.prefix, sorted(v.fraction for v in graded.verdicts.values()), graded.stopped_because)
""")


def _grade_the_reference_with(python: Path) -> str:
    """Grade the reference bn_math with ``python``; return its ``sys.prefix`` after checking full marks."""
    done = subprocess.run([str(python), "-c", GRADE_REFERENCE.format(root=str(ROOT))],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert done.returncode == 0, done.stderr[-3000:]
    prefix, fractions = done.stdout.split(" ", 1)[0], done.stdout.split(" ", 1)[1]
    assert fractions.startswith("[1.0, 1.0, 1.0, 1.0") and "0." not in fractions.split("]")[0].replace("1.0", "")
    return prefix


def test_grading_works_with_a_virtual_environment_reached_through_a_link(tmp_path):
    """The sandbox shows the interpreter at the path it was started from, a symbolic link included."""
    link = tmp_path / "linked-venv"
    link.symlink_to(Path(sys.prefix), target_is_directory=True)
    assert _grade_the_reference_with(link / "bin" / "python") == str(link)


def test_grading_works_with_a_virtual_environment_outside_the_course(tmp_path):
    """An environment elsewhere whose packages come from another folder (a ``.pth`` file, as a shared
    install on a hub has): the sandbox shows every folder on ``sys.path``, wherever it lives."""
    outside = tmp_path / "elsewhere" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(outside)], check=True, timeout=120)
    packages = [Path(p) for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    assert packages, sys.path
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (outside / "lib" / version / "site-packages" / "course.pth").write_text(str(packages[0]) + "\n")
    assert _grade_the_reference_with(outside / "bin" / "python") == str(outside)


def test_the_environment_lacks_the_slow_optional_grammar():
    """`make book` uninstalls rfc3987-syntax: with it, every nbgrader command spends seconds building a
    grammar at import (see the Makefile)."""
    done = subprocess.run([sys.executable, "-c", "import importlib.util, sys; "
                           "sys.exit(importlib.util.find_spec('rfc3987_syntax') is not None)"], timeout=60)
    assert done.returncode == 0, "rfc3987-syntax is installed: run `make book`, whose set-up removes it"


def test_make_book_removes_the_slow_optional_grammar():
    """The fresh environment gets the fix because `make book`'s set-up applies it."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("$(INSTALLED): requirements.txt", 1)[1].split("\n\n", 1)[0]
    assert "pip uninstall" in recipe and "rfc3987-syntax" in recipe


def test_make_book_builds_the_site_strictly():
    """`make book` fails on any Sphinx warning and on any reference it cannot resolve (nitpicky), so that a
    broken cross-reference, label or citation stops the build instead of scrolling past."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    recipe = makefile.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    builds = [shlex.split(line) for line in recipe.splitlines()[1:]
              if line.startswith("\t") and "jupyter-book" in line and " build" in line]
    assert len(builds) == 1, f"`make book` should run one `jupyter-book build`: {recipe!r}"
    options = builds[0]
    assert {"--warningiserror", "-W"} & set(options), f"warnings do not fail the build: {options}"
    assert {"--nitpick", "-n"} & set(options), f"unresolved references are not reported: {options}"
