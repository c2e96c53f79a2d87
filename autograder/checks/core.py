"""The vocabulary of hidden tests: probes, known mistakes, assignments.

A *probe* is a function of a namespace that calls the student's functions on
fixed, seeded inputs and returns a dict of NumPy arrays. The grader runs every
probe twice: on the student's namespace inside a sandboxed worker process, and
on a PyTorch reference namespace in its own process. The two sets of outputs
are compared here, in the grader, with code the student never had a chance to
touch.

This module is imported by the worker too, so it depends on NumPy alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Namespace = Mapping[str, Any]
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Mistake:
    """A plausible wrong implementation, used to name what a student did.

    ``implementations`` replaces entries of the reference namespace; when a
    student's outputs match the reference run with these replacements, the
    feedback says ``description``.
    """

    description: str
    implementations: Mapping[str, Callable[..., Any]]


@dataclass(frozen=True)
class Probe:
    """One hidden check: ``run(namespace)`` calls ``targets`` and returns outputs."""

    name: str
    targets: tuple[str, ...]
    run: Callable[[Namespace], Outputs]
    rtol: float = 1e-6
    atol: float = 1e-8
    mistakes: tuple[Mistake, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str:
        return self.labels.get(key, f"`{key}`")


@dataclass(frozen=True)
class Assignment:
    """The hidden tests of one assignment.

    ``tests`` maps the grade id of a notebook test cell to its probes.
    ``forbidden`` maps a graded name to the dotted names of library functions it
    may not call (the library's own version of the exercise).
    """

    name: str
    reference: Callable[[], Namespace]
    tests: Mapping[str, tuple[Probe, ...]]
    forbidden: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def probe(self, grade_id: str, index: int) -> Probe:
        return self.tests[grade_id][index]

    @property
    def graded_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for probes in self.tests.values():
            for probe in probes:
                names.extend(t for t in probe.targets if t not in names)
        return tuple(names)


class ProbeError(Exception):
    """Raised by a probe to report a problem with the student's outputs.

    Use it for checks that are not a comparison with the reference, such as
    "returned a list, expected a tuple". The message is shown to the student.
    """


# ---------------------------------------------------------------------------
# Comparing outputs


def as_array(value: Any) -> np.ndarray:
    """Convert a tensor, array, number, bool or string to a NumPy array."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch.Tensor, without importing torch here
        return value.detach().cpu().numpy()
    return np.asarray(value)


def raised(error: BaseException) -> np.ndarray:
    """The output that records an exception a probe expected."""
    return np.array(type(error).__name__)


def _describe_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def compare(expected: Outputs, actual: Outputs, rtol: float, atol: float) -> list[tuple[str, str]]:
    """Compare outputs key by key; return ``(key, problem)`` for each mismatch."""
    problems: list[tuple[str, str]] = []
    for key, want in expected.items():
        if key not in actual:
            if want.dtype.kind == "U" and key == "raised":
                problems.append((key, f"should raise {want.item()}, but nothing was raised"))
            else:
                problems.append((key, "is missing"))
            continue
        got = actual[key]
        if want.dtype.kind in "U":
            if got.dtype.kind != "U" or got.shape != want.shape or not np.array_equal(got, want):
                problems.append((key, f"is {_short(got)}, expected {_short(want)}"))
            continue
        if got.dtype.kind not in "biuf":
            problems.append((key, f"has non-numeric type {got.dtype}"))
            continue
        if got.shape != want.shape:
            problems.append(
                (key, f"has shape {_describe_shape(got.shape)}, expected {_describe_shape(want.shape)}")
            )
            continue
        if want.dtype.kind == "b":
            if not np.array_equal(got, want):
                problems.append((key, f"is {_short(got)}, expected {_short(want)}"))
            continue
        got64 = got.astype(np.float64)
        want64 = want.astype(np.float64)
        finite = np.isfinite(want64)
        if not np.isfinite(got64[finite]).all():
            problems.append((key, "contains NaN or infinity"))
            continue
        if np.allclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True):
            continue
        diff = np.abs(got64 - want64)
        if not np.isfinite(diff).any():
            problems.append((key, "differs from PyTorch in every entry"))
            continue
        diff = np.where(np.isfinite(diff), diff, 0.0)
        worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.ndim else ()
        scale = np.abs(want64[worst]) if diff.ndim else abs(float(want64))
        bad = int(np.sum(~np.isclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True)))
        problems.append(
            (
                key,
                f"differs from PyTorch in {bad} of {want64.size} entries; the largest "
                f"difference is {float(np.max(diff)):.3g} where the expected value has "
                f"magnitude {float(scale):.3g}",
            )
        )
    return problems


def matches(expected: Outputs, actual: Outputs, rtol: float, atol: float) -> bool:
    """True when ``actual`` agrees with ``expected`` on every key of ``expected``."""
    return not compare(expected, actual, rtol, atol)


def _short(value: np.ndarray) -> str:
    if value.dtype.kind == "U" and value.ndim == 0:
        return repr(str(value.item()))
    text = np.array2string(value, precision=4, threshold=6)
    return text if len(text) < 60 else text[:57] + "..."
