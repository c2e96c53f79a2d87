"""Turn what a student's code answered into verdicts, in the grader's process.

Nothing here runs student code. The student's outputs arrive as arrays (from
the sandboxed worker, or from :mod:`autograder.hidden` inside an instructor's
notebook); the reference outputs are computed here with PyTorch, for the
student's own inputs (the salt); a mismatch becomes a short message that
names the check, says which output differs and how, and, when the student's
outputs match a known mistake, which mistake.

One mistake, one deduction: when a check of B fails and a graded function A
that it also calls failed its own checks, B is judged again on its
*given-run* (a run that does not depend on A being right: B against what the
student's own A does, or B with PyTorch's A in its place). If B is right
there, it keeps its points and the feedback says that A's mistake is graded
in A's cells.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from autograder.checks.core import Outputs, Probe, compare, matches, salted
from autograder.spec import AssignmentSpec

#: A feedback message stays about this short: the first difference is enough.
MESSAGE_CHARS = 300
#: How far a student's function may be from PyTorch's to count as "a batch norm with a mistake".
PLAUSIBLE_RELATIVE_ERROR = 0.5


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of one probe: passed, or a message for the student."""

    name: str
    passed: bool
    message: str = ""
    mistake: str = ""  # the description of the known mistake the outputs match, if any
    note: str = ""  # passed only given another function's mistake


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

    @property
    def mistakes(self) -> list[str]:
        return sorted({outcome.mistake for outcome in self.outcomes if outcome.mistake})

    def _failures(self) -> list[str]:
        """One line per failed check, but once per named mistake: the first check it explains, then how
        many more it explains (seven lines saying the same thing hide the one that differs)."""
        first: dict[str, int] = {}
        lines: list[str] = []
        more: list[int] = []
        for outcome in self.outcomes:
            if outcome.passed:
                continue
            if outcome.mistake and outcome.mistake in first:
                more[first[outcome.mistake]] += 1
                continue
            if outcome.mistake:
                first[outcome.mistake] = len(lines)
            lines.append(outcome.message)
            more.append(0)
        lines = [line + (f" (the same in {count} more check{'s' if count > 1 else ''})" if count else "")
                 for line, count in zip(lines, more)]
        return list(dict.fromkeys(lines))

    def report(self) -> str:
        """What the student reads under the test cell."""
        head = f"Hidden tests: {self.passed} of {self.total} checks passed."
        lines = self._failures() + list(dict.fromkeys(o.note for o in self.outcomes if o.note))
        if not lines:
            return head
        items = (textwrap.fill(line, width=100, initial_indent="- ", subsequent_indent="  ",
                               break_long_words=False, break_on_hyphens=False) for line in lines)
        return head + "\n" + "\n".join(items)


@dataclass(frozen=True)
class StudentResult:
    """What one probe produced on the student's code: outputs, or why there are none."""

    outputs: Outputs | None = None
    error: str = ""
    given: Outputs | None = None  # the outputs of the probe's given-run, if it has one


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


@dataclass
class Judge:
    """Compares students' outputs with the reference of one assignment; caches per salt."""

    spec: AssignmentSpec
    _reference: dict[tuple[str, int, int, str], Outputs | None] = field(default_factory=dict)
    _namespace: Mapping | None = None

    def _run_reference(self, grade_id: str, index: int, salt: int, which: str,
                       mistake: str = "") -> Outputs | None:
        key = (grade_id, index, salt, which + "|" + mistake)
        if key not in self._reference:
            probe = self.spec.probe(grade_id, index)
            if self._namespace is None:
                self._namespace = self.spec.reference()
            namespace = dict(self._namespace)
            if mistake:
                namespace.update(self.spec.mistakes[mistake].implementations)
            run = probe.run if which == "run" else probe.given
            try:
                with salted(salt):
                    self._reference[key] = None if run is None else run(namespace)
            except Exception:  # a mistake that crashes on this input names nothing
                if not mistake:
                    raise
                self._reference[key] = None
        return self._reference[key]

    def expected(self, grade_id: str, index: int, salt: int) -> Outputs:
        """The reference outputs of a probe for the inputs of ``salt``."""
        outputs = self._run_reference(grade_id, index, salt, "run")
        assert outputs is not None
        return outputs

    def warm(self, salt: int) -> None:
        """Compute every probe's reference outputs for ``salt`` (before grading threads start)."""
        for grade_id, probes in self.spec.tests.items():
            for index in range(len(probes)):
                self.expected(grade_id, index, salt)

    def _diagnose(self, grade_id: str, index: int, probe: Probe, salt: int, actual: Outputs) -> str:
        for name in probe.mistakes:
            outputs = self._run_reference(grade_id, index, salt, "run", name)
            if outputs is not None and matches(outputs, actual, probe.rtol, probe.atol):
                return self.spec.mistakes[name].description
        return ""

    def judge(self, grade_id: str, index: int, salt: int, result: StudentResult) -> ProbeOutcome:
        """Compare one probe's result with the reference (no regard to other functions)."""
        probe = self.spec.probe(grade_id, index)
        if result.outputs is None:
            return ProbeOutcome(probe.name, False, _cut(f"{probe.name}: {result.error}"))
        problems = compare(self.expected(grade_id, index, salt), result.outputs, probe.rtol, probe.atol)
        if not problems:
            return ProbeOutcome(probe.name, True)
        key, problem = problems[0]
        mistake = self._diagnose(grade_id, index, probe, salt, result.outputs)
        message = f"{probe.name}: {probe.label(key)} {problem}."
        if mistake:
            # The named mistake is what the student can act on: it goes first within the limit.
            message = f"{probe.name}: your result matches {mistake}."
        return ProbeOutcome(probe.name, False, _cut(message), mistake=mistake)

    def passes_given(self, grade_id: str, index: int, salt: int, given: Outputs | None,
                     culprit_named: bool = False) -> bool:
        """Whether the probe's given-run shows the graded function right, whatever the others do.

        Right means: every output equals what it must be given the student's
        own functions (``k@expected``), or what the assignment's given check
        computes in this process, or the reference's given-run; and the
        student's own function it is built on is a batch norm with a mistake
        (within 50 % of PyTorch, or a named mistake), not something trivial.
        """
        probe = self.spec.probe(grade_id, index)
        if given is None or probe.given is None:
            return False
        expected = self._run_reference(grade_id, index, salt, "given") or {}
        keys = [k for k in given if not (k.endswith("@expected") or k.startswith(("plausible:", "input:")))]

        def scaled(want: np.ndarray, rtol: float, atol: float) -> tuple[np.ndarray, float, float]:
            return want, rtol, atol * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)

        def agrees(candidate: Mapping[str, tuple[np.ndarray, float, float]]) -> bool:
            return all(key in candidate and not compare({key: candidate[key][0]}, {key: given[key]},
                                                        candidate[key][1], candidate[key][2]) for key in keys)

        # A candidate is a way to be right given the others: (expected outputs, whether it needs a plausible
        # forward). Being consistent with one's own forward needs one, so that a trivial forward and its
        # trivial gradient earn nothing; the given check's formulas need none (they are the real formulas).
        candidates: list[tuple[dict[str, tuple[np.ndarray, float, float]], bool]] = []
        own = {k: scaled(given[k + "@expected"], 1e-4, 1e-6) for k in keys if k + "@expected" in given}
        if own:
            candidates.append(({**{k: (expected[k], probe.rtol, probe.atol) for k in keys if k in expected}, **own},
                               True))
        if probe.given_check:
            for computed in self.spec.given_checks[probe.given_check](given, expected):
                candidates.append(({k: scaled(v, 1e-6, 1e-8) for k, v in computed.items()}, False))
        if not own and not probe.given_check:
            candidates.append(({k: (expected[k], probe.rtol, probe.atol) for k in keys if k in expected}, True))
        if not keys:
            return False
        return any(agrees(candidate) and (not needs_plausible or culprit_named or self._plausible(given, expected))
                   for candidate, needs_plausible in candidates)

    @staticmethod
    def _plausible(given: Outputs, expected: Outputs) -> bool:
        """The student's function the probe builds on is within 50 % of PyTorch's (``plausible:*`` keys)."""
        for key, value in given.items():
            if key.startswith("plausible:"):
                want = expected.get(key)
                if want is None or want.shape != value.shape or value.dtype.kind not in "biuf":
                    return False
                error = float(np.linalg.norm(value.astype(np.float64) - want)) / max(float(np.linalg.norm(want)),
                                                                                    1e-12)
                if not error <= PLAUSIBLE_RELATIVE_ERROR:
                    return False
        return True

    def verdicts(self, results: Mapping[str, list[StudentResult]], salt: int) -> dict[str, Verdict]:
        """Judge every test cell, then give back the points lost only to another function's mistake."""
        outcomes = {grade_id: [self.judge(grade_id, index, salt, result) for index, result in enumerate(items)]
                    for grade_id, items in results.items()}
        failing = {self.spec.probe(grade_id, index).graded
                   for grade_id, items in outcomes.items() for index, outcome in enumerate(items) if not outcome.passed}
        named = {self.spec.probe(grade_id, index).graded
                 for grade_id, items in outcomes.items() for index, outcome in enumerate(items) if outcome.mistake}
        for grade_id, items in outcomes.items():
            for index, outcome in enumerate(items):
                probe = self.spec.probe(grade_id, index)
                culprits = [name for name in probe.targets[:-1] if name in failing and name != probe.graded]
                result = results[grade_id][index]
                if outcome.passed or not culprits or result.outputs is None and not result.given:
                    continue
                if self.passes_given(grade_id, index, salt, result.given, any(c in named for c in culprits)):
                    items[index] = ProbeOutcome(
                        probe.name, True, note=f"{probe.graded} is right given your {culprits[0]}; the mistake in "
                                               f"{culprits[0]} is graded in its own test cells only.")
        return {grade_id: Verdict(grade_id, tuple(items)) for grade_id, items in outcomes.items()}
