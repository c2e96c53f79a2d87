"""No page of the site holds a working answer: every function a chapter defines fails the hidden checks.

Each function or class defined in a chapter's code (visible or hidden cells)
is put in the place of every graded function of the course that it could
stand in for (a compatible number of positional parameters; a class for a
graded class), with PyTorch's reference for the other names a check calls,
and run through that graded function's hidden checks. Passing every check of
a graded function would make the chapter a working answer after a rename.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
from collections.abc import Callable

import pytest

from autograder.checks import ASSIGNMENT_IDS
from autograder.checks.core import salted
from autograder.spec import load_spec
from tests.chapter_checks import Chapter

CHAPTERS = ("covariate_shift", "bn_math", "train_eval", "alternatives", "pitfalls")


def _imports(tree: ast.Module) -> str:
    return "\n".join(ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def _definitions(chapter: Chapter) -> dict[str, object]:
    """The chapter's functions and classes, each defined on its own after the chapter's imports."""
    found: dict[str, object] = {}
    trees = []
    for cell in chapter.cells:
        with contextlib.suppress(SyntaxError):
            trees.append(ast.parse("\n".join(line for line in cell.source.splitlines()
                                             if not line.lstrip().startswith(("%", "!")))))
    imports = "\n".join(_imports(tree) for tree in trees)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                namespace: dict[str, object] = {}
                with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
                    exec(imports + "\n" + ast.unparse(node), namespace)  # noqa: S102 - the course's own chapters
                    found[node.name] = namespace[node.name]
    return found


def _positional(function: Callable) -> tuple[int, int]:
    """How many positional arguments ``function`` takes: (required, at most)."""
    try:
        parameters = [p for p in inspect.signature(function).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return 0, 0
    return sum(p.default is p.empty for p in parameters), len(parameters)


def _stand_ins(candidate: object) -> list[tuple[str, str]]:
    """The (assignment, graded name) pairs ``candidate`` could be put in the place of."""
    pairs = []
    for assignment in ASSIGNMENT_IDS:
        reference = load_spec(assignment).reference()
        for name in load_spec(assignment).checks.graded_names:
            graded = reference.get(name)
            if graded is None or isinstance(graded, type) != isinstance(candidate, type):
                continue
            if isinstance(candidate, type):
                pairs.append((assignment, name))
                continue
            need, most = _positional(graded)
            have_need, have_most = _positional(candidate)
            if have_need <= need <= have_most or have_need <= most <= have_most:
                pairs.append((assignment, name))
    return pairs


def _passes_every_check(assignment: str, name: str, candidate: object) -> bool:
    spec = load_spec(assignment)
    probes = [probe for probes in spec.tests.values() for probe in probes if probe.graded == name]
    if not probes:
        return False
    namespace = {**spec.reference(), name: candidate}
    from autograder.verdicts import Judge

    judge = Judge(spec)
    for grade_id, all_probes in spec.tests.items():
        for index, probe in enumerate(all_probes):
            if probe.graded != name:
                continue
            try:
                with salted(3), contextlib.redirect_stdout(io.StringIO()):
                    outputs = probe.run(namespace)
            except Exception:  # noqa: BLE001 - a chapter function that cannot even run this check fails it
                return False
            from autograder.checks.core import compare

            if compare(judge.expected(grade_id, index, 3), {k: __import__("numpy").asarray(v)
                                                          for k, v in outputs.items()}, probe.rtol, probe.atol):
                return False
    return True


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_function_of_the_chapter_passes_a_graded_functions_checks(chapter):
    working = [f"{defined} passes every hidden check of {assignment}.{name}"
               for defined, candidate in _definitions(Chapter(chapter)).items()
               for assignment, name in _stand_ins(candidate)
               if _passes_every_check(assignment, name, candidate)]
    assert not working, "\n".join(working)


def test_the_guard_catches_a_working_answer():
    """A reference implementation dropped into a chapter would be caught (the guard itself can fail)."""
    spec = load_spec("alternatives")
    assert _passes_every_check("alternatives", "layer_norm", spec.reference()["layer_norm"])
    assert ("alternatives", "layer_norm") in _stand_ins(spec.reference()["layer_norm"])
