"""The hidden tests are pinned, their mistakes are distinct and visible, and their tolerances are tight.

- Every probe, every known mistake's words, every graded cell's points and every visible test are as
  ``tests/probe_record.json`` records them (for a probe: grade id, label, targets,
  tolerances, mistakes, and what it hands to the reference and gets back for salt
  0): changing one is a deliberate, reviewed diff
  (``.venv/bin/python -m tests.write_probe_record`` rewrites the record).
- Within an assignment no two known mistakes share a description (the feedback
  must tell them apart); every known mistake is listed by a probe, and changes
  the outputs of at least one probe that lists it (or its diagnosis can never fire).
- A near miss fails every probe: the reference's outputs nudged by five times the
  probe's tolerance, and, for a float64 probe, rounded to float32 (what float32
  arithmetic where float64 is required returns at best).
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from itertools import combinations

import numpy as np
import pytest

from autograder.checks import ASSIGNMENT_IDS
from autograder.checks.core import compare
from autograder.spec import load_spec
from tests.write_probe_record import RECORD, dump, probe_record, run_probe

ASSIGNMENTS = list(ASSIGNMENT_IDS)


@lru_cache(maxsize=None)
def _spec(assignment: str):
    return load_spec(assignment)


@lru_cache(maxsize=None)
def _reference(assignment: str):
    return _spec(assignment).reference()


@lru_cache(maxsize=None)
def _expected(assignment: str) -> dict:
    """Every probe's reference outputs for salt 0, by (grade id, index)."""
    spec = _spec(assignment)
    return {(grade_id, index): run_probe(probe, _reference(assignment))
            for grade_id, probes in spec.tests.items() for index, probe in enumerate(probes)}


def _probes(assignment: str):
    return [(grade_id, index, probe) for grade_id, probes in _spec(assignment).tests.items()
            for index, probe in enumerate(probes)]


# ---------------------------------------------------------------------------
# The record


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_probes_are_as_recorded(assignment):
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    now = probe_record((assignment,))[assignment]
    if recorded.get(assignment) == now:
        return
    empty = {"mistakes": {}, "points": {}, "visible tests": {}, "probes": []}
    before = dump({assignment: recorded.get(assignment, empty)}).splitlines()
    after = dump({assignment: now}).splitlines()
    diff = "\n".join(difflib.unified_diff(before, after, "tests/probe_record.json", "the checks now", n=4,
                                          lineterm=""))
    pytest.fail(f"the tests or mistakes of {assignment} differ from tests/probe_record.json. If the change is "
                f"deliberate, run `.venv/bin/python -m tests.write_probe_record` and review the diff:\n"
                f"{diff[:6000]}", pytrace=False)


def test_the_record_has_no_stale_assignment():
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    assert sorted(recorded) == sorted(ASSIGNMENTS)


# ---------------------------------------------------------------------------
# Known mistakes


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_mistake_descriptions_are_unique_within_an_assignment(assignment):
    seen: dict[str, list[str]] = {}
    for name, mistake in _spec(assignment).mistakes.items():
        seen.setdefault(mistake.description, []).append(name)
    shared = {description: names for description, names in seen.items() if len(names) > 1}
    assert not shared, f"mistakes that the feedback cannot tell apart: {shared}"


#: The two tests that run every mistake on its probes share one run per assignment: same worker, one cache.
MISTAKE_RUNS = [pytest.param(a, marks=pytest.mark.xdist_group(f"mistake-outputs-{a}")) for a in ASSIGNMENTS]


@lru_cache(maxsize=None)
def _mistake_outputs(assignment: str) -> dict[tuple[str, str, int], dict | None]:
    """Each known mistake's outputs on every probe that lists it, by (mistake, grade id, index); None where
    the mistake raises (a mistake that crashes on a probe names nothing there)."""
    spec = _spec(assignment)
    outputs: dict[tuple[str, str, int], dict | None] = {}
    for name, mistake in spec.mistakes.items():
        namespace = {**_reference(assignment), **mistake.implementations}
        for grade_id, index, probe in _probes(assignment):
            if name in probe.mistakes:
                try:
                    outputs[name, grade_id, index] = run_probe(probe, namespace)
                except Exception:  # noqa: BLE001 - the student's kind of failure, not the test's
                    outputs[name, grade_id, index] = None
    return outputs


@pytest.mark.parametrize("assignment", MISTAKE_RUNS)
def test_every_mistake_is_listed_and_changes_a_probe_that_lists_it(assignment):
    spec = _spec(assignment)
    listed = {name for _, _, probe in _probes(assignment) for name in probe.mistakes}
    unlisted = sorted(set(spec.mistakes) - listed)
    assert not unlisted, f"known mistakes that no probe lists (their diagnosis never fires): {unlisted}"
    probes = {(grade_id, index): probe for grade_id, index, probe in _probes(assignment)}
    shown = {name for (name, grade_id, index), outputs in _mistake_outputs(assignment).items()
             if outputs is not None and compare(_expected(assignment)[grade_id, index], outputs,
                                                probes[grade_id, index].rtol, probes[grade_id, index].atol)}
    invisible = sorted(set(spec.mistakes) - shown)
    assert not invisible, f"known mistakes that change no probe that lists them (for salt 0): {invisible}"


@pytest.mark.parametrize("assignment", MISTAKE_RUNS)
def test_two_mistakes_of_a_probe_are_told_apart(assignment):
    """Two mistakes that fail the same probes give different outputs on at least one of them: else the
    feedback could name either for the other."""
    outputs = _mistake_outputs(assignment)
    probes = {(grade_id, index): probe for grade_id, index, probe in _probes(assignment)}

    def differ(a: dict | None, b: dict | None, grade_id: str, index: int) -> bool:
        if a is None or b is None:
            return (a is None) != (b is None)
        probe = probes[grade_id, index]
        return bool(compare(a, b, probe.rtol, probe.atol))

    twins = []
    for first, second in combinations(_spec(assignment).mistakes, 2):
        # The probes listing both where either one fails: there the diagnosis must choose between them.
        failing = [(g, i) for (name, g, i) in outputs if name == first and (second, g, i) in outputs
                   and any(differ(_expected(assignment)[g, i], outputs[m, g, i], g, i) for m in (first, second))]
        if failing and not any(differ(outputs[first, g, i], outputs[second, g, i], g, i) for g, i in failing):
            twins.append((first, second))
    assert not twins, f"mistakes that every probe listing both sees alike: {twins}"


# ---------------------------------------------------------------------------
# Near misses


def _nudged(value: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """``value`` with its entry of largest magnitude moved away from zero by 5 * (atol + rtol * |entry|)."""
    result = value.astype(np.float64).copy()
    finite = np.where(np.isfinite(result), np.abs(result), -1.0)
    index = np.unravel_index(np.argmax(finite), result.shape) if result.ndim else ()
    entry = result[index]
    result[index] = entry + (1.0 if entry >= 0 else -1.0) * 5.0 * (atol + rtol * abs(entry))
    return result.astype(value.dtype)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_an_output_nudged_by_five_tolerances_fails_its_probe(assignment):
    loose = []
    for grade_id, index, probe in _probes(assignment):
        expected = _expected(assignment)[grade_id, index]
        for key, value in expected.items():
            if value.dtype.kind != "f" or not value.size or not np.isfinite(value).any():
                continue
            actual = {**expected, key: _nudged(value, probe.rtol, probe.atol)}
            if not compare(expected, actual, probe.rtol, probe.atol):
                loose.append(f"{grade_id}[{index}] {probe.name!r}: `{key}`")
    assert not loose, f"probes that pass an output nudged by five times their tolerance: {loose}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_float64_probe_fails_float32_rounding(assignment):
    """A probe with float64 outputs tells float32 arithmetic from float64: its outputs rounded to float32
    (as good as float32 arithmetic gets) fail it, whenever the rounding changes them at all."""
    loose = []
    for grade_id, index, probe in _probes(assignment):
        expected = _expected(assignment)[grade_id, index]
        rounded = {key: value.astype(np.float32).astype(np.float64) if value.dtype == np.float64 else value
                   for key, value in expected.items()}
        changed = any(not np.array_equal(rounded[key], value, equal_nan=True) for key, value in expected.items())
        if changed and not compare(expected, rounded, probe.rtol, probe.atol):
            loose.append(f"{grade_id}[{index}] {probe.name!r} (rtol={probe.rtol:g}, atol={probe.atol:g})")
    assert not loose, f"float64 probes that pass float32 rounding (tighten their tolerance): {loose}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_named_mistake_fits_in_one_message(assignment):
    """The judge cuts a message at MESSAGE_CHARS: the probe's label and a mistake it names must fit whole."""
    from autograder.verdicts import MESSAGE_CHARS

    spec = _spec(assignment)
    long = sorted({(len(f"{probe.name}: your result matches {spec.mistakes[name].description}."), name, probe.name)
                   for _, _, probe in _probes(assignment) for name in probe.mistakes
                   if len(f"{probe.name}: your result matches {spec.mistakes[name].description}.") > MESSAGE_CHARS},
                  reverse=True)
    assert not long, f"messages longer than {MESSAGE_CHARS} characters (shorten the label or the description): {long}"
