"""Run one test cell's hidden tests inside a notebook's kernel.

This is what the hidden part of a source notebook's test cell calls, so that an
instructor who runs ``solutions/<a>/<a>.ipynb`` (or ``nbgrader validate``) sees
the hidden tests pass or fail. It is not what grades students: during
``nbgrader autograde`` the verdict of every test cell is replaced by the one
computed from a sandboxed run of the student's code
(:mod:`autograder.nbgrader_plugins`), because code in the same process as the
student's can be fooled by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.checks import load_assignment
from autograder.checks.core import ProbeError
from autograder.verdicts import StudentResult, as_outputs, verdict


class HiddenTestFailure(AssertionError):
    """Some hidden checks of a test cell failed; the message lists them."""


def run_probe(probe_run: Any, namespace: Mapping[str, Any], targets: tuple[str, ...]) -> StudentResult:
    """Run one probe on a namespace and capture what it produced."""
    missing = [name for name in targets if name not in namespace]
    if missing:
        return StudentResult(error=f"{', '.join(missing)} is not defined (did its cell run without errors?)")
    try:
        return StudentResult(outputs=as_outputs(probe_run(namespace)))
    except ProbeError as error:
        return StudentResult(error=str(error))
    except NotImplementedError:
        return StudentResult(error=f"{targets[-1]} is not implemented yet (it raises NotImplementedError)")
    except Exception as error:  # the student's code failed: report it, don't crash the cell
        return StudentResult(error=f"raised {type(error).__name__}: {error}")


def run_hidden_tests(assignment: str, grade_id: str, namespace: Mapping[str, Any]) -> None:
    """Run the probes of ``grade_id`` on ``namespace``; raise if any fails."""
    spec = load_assignment(assignment)
    probes = spec.tests[grade_id]
    results = [run_probe(probe.run, namespace, probe.targets) for probe in probes]
    outcome = verdict(assignment, grade_id, results)
    if outcome.passed < outcome.total:
        raise HiddenTestFailure(outcome.report())
    print(outcome.report())
