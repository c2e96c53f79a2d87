"""Run one test cell's hidden tests inside a notebook's kernel (the instructor's source notebook).

This is what the hidden part of a source notebook's test cell calls, so that an
instructor who runs ``solutions/<a>/<a>.ipynb`` (or ``nbgrader validate``) sees
the hidden tests pass or fail, on the inputs of salt 0. It is not what grades
students: during ``nbgrader autograde`` the kernel cannot even import this
package (it runs confined), and the verdict of every test cell comes from a
sandboxed run of the student's code (:mod:`autograder.nbgrader_plugins`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.checks.core import salted
from autograder.sandbox import decode_outputs
from autograder.spec import load_spec
from autograder.verdicts import Judge, StudentResult
from autograder.worker import encode_outputs, failure_text


class HiddenTestFailure(AssertionError):
    """Some hidden checks of a test cell failed; the message lists them."""


def run_probe(run: Any, namespace: Mapping[str, Any], targets: tuple[str, ...], salt: int = 0) -> StudentResult:
    """Run one probe on a namespace, as the worker would, and capture what it produced."""
    missing = [name for name in targets if name not in namespace]
    if missing:
        return StudentResult(error=f"{', '.join(missing)} is not defined (did its cell run?)")
    try:
        with salted(salt):
            return StudentResult(outputs=decode_outputs(encode_outputs(run(namespace))))
    except Exception as error:  # the student's code failed: report it as the grader would, don't crash the cell
        return StudentResult(error=failure_text(error))


def run_hidden_tests(assignment: str, grade_id: str, namespace: Mapping[str, Any]) -> None:
    """Run the probes of ``grade_id`` on ``namespace``; raise if any fails."""
    spec = load_spec(assignment)
    results = []
    for probe in spec.tests[grade_id]:
        result = run_probe(probe.run, namespace, probe.targets)
        given = run_probe(probe.given, namespace, probe.targets) if probe.given else None
        results.append(StudentResult(result.outputs, result.error, given.outputs if given else None))
    outcome = Judge(spec).verdicts({grade_id: results}, 0)[grade_id]
    if outcome.passed < outcome.total:
        raise HiddenTestFailure(outcome.report())
    print(outcome.report())
