"""The vocabulary of hidden tests: probes, inputs drawn per student, known mistakes.

A *probe* is a function of a namespace that calls the student's functions on
inputs drawn from a seed and returns a dict of NumPy arrays. The grader runs
every probe twice: on the student's namespace inside a sandboxed worker
process, and on the PyTorch reference in its own process; the two sets of
outputs are compared in the grader, with code the student never had a chance
to touch.

This module and the ``checks/<assignment>.py`` modules built on it are what the
sandbox receives: they hold the inputs and the calls, never a reference or a
known mistake (those live in :mod:`autograder.references`, which only the
grader imports). It depends on NumPy alone (PyTorch is imported lazily).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Namespace = Mapping[str, Any]
Outputs = dict[str, np.ndarray]

# ---------------------------------------------------------------------------
# Inputs drawn per student
#
# A probe names its inputs by small integer seeds; the grader mixes in a salt
# drawn from the student id and the course secret, so that every student's
# hidden inputs differ while the property that makes an input hard (its shape,
# a batch of two, a large eps) stays the same. The salt is set around one
# probe run, in whichever process runs it.

_SALT: contextvars.ContextVar[int] = contextvars.ContextVar("probe_salt", default=0)


@contextlib.contextmanager
def salted(salt: int) -> Iterator[None]:
    """Within this block, :func:`student_rng` and friends draw the inputs of ``salt``."""
    token = _SALT.set(int(salt))
    try:
        yield
    finally:
        _SALT.reset(token)


def student_seed(seed: int) -> int:
    """A 63-bit seed for ``seed`` under the current salt (for ``torch.manual_seed``)."""
    digest = hashlib.sha256(f"{_SALT.get()}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def student_rng(seed: int) -> np.random.Generator:
    """``np.random.default_rng(seed)``, per student."""
    return np.random.default_rng(student_seed(seed))


def student_generator(seed: int) -> Any:
    """``torch.Generator().manual_seed(seed)``, per student."""
    import torch

    return torch.Generator().manual_seed(student_seed(seed))


# ---------------------------------------------------------------------------
# Probes and assignments


@dataclass(frozen=True)
class Mistake:
    """A plausible wrong implementation, used to name what a student did.

    ``implementations`` replaces entries of the reference namespace; when a
    student's outputs match the reference run with these replacements, the
    feedback says ``description``. Mistakes live in
    :mod:`autograder.references` (grader only): their default settings are
    correct implementations.
    """

    description: str
    implementations: Mapping[str, Callable[..., Any]]


@dataclass(frozen=True)
class Probe:
    """One hidden check: ``run(namespace)`` calls ``targets`` and returns outputs.

    The last target is the graded name the probe grades; the ones before it
    are graded names it also calls (a forward pass whose cache the backward
    pass reads). ``mistakes`` are names of :class:`Mistake` objects in the
    assignment's reference module. ``given`` is a second run for when one of
    the other targets is wrong: it exercises the graded name in a way that does
    not depend on their correctness (see :mod:`autograder.verdicts`); its keys
    ``k@expected`` say what ``k`` must be given the student's own functions,
    ``input:*`` are the inputs, ``plausible:*`` must be near the reference's.
    """

    name: str
    targets: tuple[str, ...]
    run: Callable[[Namespace], Outputs]
    rtol: float = 1e-6
    atol: float = 1e-8
    mistakes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    given: Callable[[Namespace], Outputs] | None = None
    given_check: str = ""  # a name in the reference module's GIVEN_CHECKS: more ways to be right given the others

    @property
    def graded(self) -> str:
        return self.targets[-1]

    def label(self, key: str) -> str:
        return self.labels.get(key, f"`{key}`")


@dataclass(frozen=True)
class Assignment:
    """The hidden tests of one assignment.

    ``tests`` maps the grade id of a notebook test cell to its probes.
    ``kind`` says what student code may use: ``"numpy"`` (PyTorch is not
    available where it runs) or ``"torch"``. ``library`` lists, for the whole
    assignment, the identifiers of the library's own versions of its
    exercises (``batch_norm``, ``BatchNorm2d``, ...), which no student code
    may name; ``type_checks`` are those it may name only to test a type
    (``isinstance(m, nn.BatchNorm2d)``).
    """

    name: str
    tests: Mapping[str, tuple[Probe, ...]]
    kind: Literal["numpy", "torch"] = "torch"
    library: tuple[str, ...] = ()
    type_checks: tuple[str, ...] = ()

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


# ---------------------------------------------------------------------------
# Experiments: probes that run a student's experiment function


def with_stand_ins(run: Callable[[Namespace], Outputs],
                   stand_ins: Callable[[], Mapping[str, Any]]) -> Callable[[Namespace], Outputs]:
    """``run`` with the graded names of ``stand_ins()`` replaced, for a given-run.

    An experiment calls the student's other graded functions through the
    notebook's globals; with a stand-in in their place, the experiment is judged
    on its own when one of them is wrong. A stand-in is never a correct
    implementation (this module goes to the sandbox): it is a known mistake that
    does not matter to the experiment (an unbiased variance, say, where the
    experiment only needs a normalization), so that catching it is worth nothing.
    """

    def given(ns: Namespace) -> Outputs:
        namespace = ns if isinstance(ns, dict) else dict(ns)
        armed = [True]
        replacements = {name: _only_while(armed, value) for name, value in stand_ins().items()}
        missing = object()
        saved = {name: namespace.get(name, missing) for name in replacements}
        namespace.update(replacements)
        try:
            return run(namespace)
        finally:
            armed[0] = False  # a stand-in kept by the student's code is of no use afterwards
            for name, value in saved.items():
                if value is missing:
                    namespace.pop(name, None)
                else:
                    namespace[name] = value

    return given


def _only_while(armed: list[bool], value: Any) -> Any:
    """``value`` (a function or a class) that works only while ``armed[0]`` is true."""

    def check() -> None:
        if not armed[0]:
            raise RuntimeError("a stand-in of the grader's given-run was called outside it")

    if isinstance(value, type):
        original_init = value.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            check()
            original_init(self, *args, **kwargs)

        return type(value.__name__, (value,), {"__init__": __init__})
    if callable(value):
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check()
            return value(*args, **kwargs)

        return guarded
    return value


def experiment_numbers(result: Any, function: str, keys: tuple[str, ...], count: int | None = None) -> dict[str, np.ndarray]:
    """The float64 arrays under ``keys`` of the dict an experiment returned; a clear ProbeError if it is not one."""
    if not isinstance(result, Mapping):
        raise ProbeError(f"{function} should return a dict, got {type(result).__name__}")
    missing = [key for key in keys if key not in result]
    if missing:
        raise ProbeError(f"{function} returned a dict without the key(s) {', '.join(map(repr, missing))}")
    numbers = {}
    for key in keys:
        try:
            values = np.asarray(as_array(result[key]) if hasattr(result[key], "detach") else result[key],
                                dtype=np.float64)
        except (TypeError, ValueError):
            raise ProbeError(f"{function}(...)[{key!r}] is not a number or a list of numbers") from None
        if count is not None and values.shape != (count,):
            raise ProbeError(f"{function}(...)[{key!r}] should hold {count} numbers, got shape {values.shape}")
        numbers[key] = values
    return numbers


def fraction(values: np.ndarray) -> np.ndarray:
    """Whether every value is a finite number in [0, 1] (an accuracy)."""
    return np.array(bool(np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))))
