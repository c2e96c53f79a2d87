"""An assignment as the grader sees it: probes, reference, mistakes and the text the sandbox gets.

:func:`load_spec` is called once per grading run; the resulting
:class:`AssignmentSpec` is passed to everything that needs it. Only the
grader's process builds one: the sandbox receives ``checks_source`` (the
probes and their inputs) and nothing of ``references/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autograder.checks import ASSIGNMENT_IDS, UnknownAssignment, load_assignment
from autograder.checks.core import Assignment, Mistake, Namespace, Outputs, Probe

PACKAGE = Path(__file__).resolve().parent


class SpecError(RuntimeError):
    """An assignment's checks and references disagree (a course authoring error)."""


@dataclass(frozen=True)
class AssignmentSpec:
    """Everything that decides a grade of one assignment, besides the submission."""

    checks: Assignment
    reference: Callable[[], Namespace]
    mistakes: Mapping[str, Mistake]
    checks_source: str
    given_checks: Mapping[str, Callable[[Outputs, Outputs], list[Outputs]]]

    @property
    def name(self) -> str:
        return self.checks.name

    @property
    def tests(self) -> Mapping[str, tuple[Probe, ...]]:
        return self.checks.tests

    def probe(self, grade_id: str, index: int) -> Probe:
        return self.checks.probe(grade_id, index)

    def mistakes_of(self, probe: Probe) -> tuple[Mistake, ...]:
        return tuple(self.mistakes[name] for name in probe.mistakes)


def load_spec(name: str) -> AssignmentSpec:
    """The checks of ``name`` joined with its reference and named mistakes."""
    if name not in ASSIGNMENT_IDS:
        raise UnknownAssignment(name)
    checks = load_assignment(name)
    references = importlib.import_module(f"autograder.references.{name}")
    mistakes: Mapping[str, Mistake] = references.MISTAKES
    unknown = sorted({m for probes in checks.tests.values() for p in probes for m in p.mistakes} - set(mistakes))
    if unknown:
        raise SpecError(f"checks/{name}.py names mistakes that references/{name}.py lacks: {', '.join(unknown)}")
    given_checks = getattr(references, "GIVEN_CHECKS", {})
    missing = sorted({p.given_check for ps in checks.tests.values() for p in ps if p.given_check} - set(given_checks))
    if missing:
        raise SpecError(f"checks/{name}.py names given checks that references/{name}.py lacks: {', '.join(missing)}")
    source = (PACKAGE / "checks" / f"{name}.py").read_text(encoding="utf-8")
    return AssignmentSpec(checks, references.reference, mistakes, source, given_checks)
