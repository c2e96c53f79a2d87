"""Turn what a student's code produced into verdicts, in the grader's process.

Nothing here runs student code. The student's outputs arrive as arrays (from
the sandboxed worker, or from :mod:`autograder.hidden` inside a notebook); the
reference outputs are computed here with PyTorch; a mismatch becomes a message
that says which check failed, which output differs and how, and, when the
student's outputs match a known mistake, what that mistake is.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import cache

import numpy as np

from autograder.checks import load_assignment
from autograder.checks.core import Assignment, Outputs, Probe, compare, matches


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of one probe: passed, or a message for the student."""

    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Verdict:
    """The result of one test cell (one grade id)."""

    grade_id: str
    outcomes: tuple[ProbeOutcome, ...]

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def messages(self) -> list[str]:
        return [outcome.message for outcome in self.outcomes if not outcome.passed]

    def report(self) -> str:
        """What the student reads under the test cell."""
        head = f"Hidden tests: {self.passed} of {self.total} checks passed."
        if not self.messages:
            return head
        items = (textwrap.fill(message, width=100, initial_indent="- ", subsequent_indent="  ",
                               break_long_words=False, break_on_hyphens=False)
                 for message in _unique(self.messages))
        return head + "\n" + "\n".join(items)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class StudentResult:
    """What one probe produced on the student's code: outputs, or why there are none."""

    outputs: Outputs | None = None
    error: str = ""


@cache
def _assignment(name: str) -> Assignment:
    return load_assignment(name)


@cache
def reference_outputs(assignment: str, grade_id: str, index: int) -> Outputs:
    """The outputs of a probe run on the PyTorch reference (cached per process)."""
    spec = _assignment(assignment)
    return spec.probe(grade_id, index).run(spec.reference())


@cache
def _mistake_outputs(assignment: str, grade_id: str, index: int, mistake: int) -> Outputs | None:
    spec = _assignment(assignment)
    probe = spec.probe(grade_id, index)
    namespace = dict(spec.reference())
    namespace.update(probe.mistakes[mistake].implementations)
    try:
        return probe.run(namespace)
    except Exception:  # a mistake that crashes on this input names nothing
        return None


def _diagnose(assignment: str, grade_id: str, index: int, probe: Probe, actual: Outputs) -> str:
    for number, mistake in enumerate(probe.mistakes):
        outputs = _mistake_outputs(assignment, grade_id, index, number)
        if outputs is not None and matches(outputs, actual, probe.rtol, probe.atol):
            return f" Your result matches {mistake.description}."
    return ""


def judge(assignment: str, grade_id: str, index: int, result: StudentResult) -> ProbeOutcome:
    """Compare one probe's student result with the reference."""
    probe = _assignment(assignment).probe(grade_id, index)
    if result.outputs is None:
        return ProbeOutcome(probe.name, False, f"{probe.name}: {result.error}")
    expected = reference_outputs(assignment, grade_id, index)
    problems = compare(expected, result.outputs, probe.rtol, probe.atol)
    if not problems:
        return ProbeOutcome(probe.name, True)
    described = "; ".join(f"{probe.label(key)} {problem}" for key, problem in problems)
    hint = _diagnose(assignment, grade_id, index, probe, result.outputs)
    return ProbeOutcome(probe.name, False, f"{probe.name}: {described}.{hint}")


def verdict(assignment: str, grade_id: str, results: list[StudentResult]) -> Verdict:
    """Judge every probe of a test cell, given the student's results in probe order."""
    return Verdict(
        grade_id,
        tuple(judge(assignment, grade_id, index, result) for index, result in enumerate(results)),
    )


def as_outputs(raw: object) -> Outputs:
    """Check that a probe returned a dict of plain arrays (no objects, no pickles)."""
    if not isinstance(raw, dict):
        raise TypeError(f"a probe returned {type(raw).__name__}, not a dict")
    outputs: Outputs = {}
    for key, value in raw.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufU":
            raise TypeError(f"output {key!r} has unsupported type {array.dtype}")
        outputs[str(key)] = array
    return outputs
