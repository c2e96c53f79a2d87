"""The sandboxed side of grading: run a student's cells, then the probes.

Started by :mod:`autograder.sandbox` as ``python -m autograder.worker SPEC OUT``
in a process of its own, with resource limits, in an empty working directory.
It executes the student's code cells in order, then runs the requested probes
on the resulting namespace and writes, for each probe, either its outputs
(``OUT/probe-<k>.npz``) or the error it raised, one JSON line per event in
``OUT/events.jsonl`` so that whatever finished before a crash is kept.

Everything the student's code can do here it can do only to its own results:
no reference value and no comparison ever happens in this process.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np


class CellTimeout(BaseException):
    """Raised in student code when a cell or probe runs past its time limit."""


class ForbiddenCall(BaseException):
    """Raised when student code calls a library function the exercise forbids."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout()


class _Magics:
    """Stands in for IPython's shell so that cells with magics still run."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _transform(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with the grading venv
        return source
    return TransformerManager().transform_cell(source)


def _resolve(dotted: str) -> tuple[Any, str] | None:
    """The (owner, attribute) a dotted name refers to, if it can be imported."""
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name:
        return None
    owner: Any
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        parent = _resolve(module_name)
        if parent is None:
            return None
        owner = getattr(*parent, None)
        if owner is None:
            return None
    return (owner, attribute) if hasattr(owner, attribute) else None


@contextlib.contextmanager
def _tripwires(dotted_names: list[str]):
    """Make forbidden library functions raise while a probe runs."""
    patched: list[tuple[Any, str, Any]] = []
    for dotted in dotted_names:
        if "." not in dotted:
            continue  # a whole-module ban is enforced statically by the grader
        target = _resolve(dotted)
        if target is None:
            continue
        owner, attribute = target
        original = getattr(owner, attribute)

        def tripwire(*args: Any, _name: str = dotted, **kwargs: Any) -> Any:
            raise ForbiddenCall(_name)

        try:
            setattr(owner, attribute, tripwire)
        except (AttributeError, TypeError):
            continue
        patched.append((owner, attribute, original))
    try:
        yield
    finally:
        for owner, attribute, original in reversed(patched):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(owner, attribute, original)


class _Events:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")

    def write(self, **event: Any) -> None:
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def _error_text(error: BaseException, limit: int = 400) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(spec_path: str, out_dir: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = Path(out_dir)
    events = _Events(out / "events.jsonl")

    # Import everything the probes need before any student code runs.
    from autograder.checks import load_assignment
    from autograder.checks.core import ProbeError
    from autograder.verdicts import as_outputs

    assignment = load_assignment(spec["assignment"])
    signal.signal(signal.SIGALRM, _on_alarm)
    cell_seconds = float(spec["cell_seconds"])
    events.write(event="started")

    namespace: dict[str, Any] = {"__name__": "__main__", "get_ipython": _Magics, "display": print}
    student_output = io.StringIO()
    for index, source in enumerate(spec["cells"]):
        try:
            code = compile(_transform(source), f"<cell {index}>", "exec")
            signal.setitimer(signal.ITIMER_REAL, cell_seconds)
            with contextlib.redirect_stdout(student_output), contextlib.redirect_stderr(student_output):
                exec(code, namespace)
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="cell", index=index, ok=True)
        except CellTimeout:
            events.write(event="cell", index=index, ok=False,
                         error=f"timed out after {cell_seconds:g} s")
        except BaseException as error:  # noqa: BLE001 - any failure of student code is recorded
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="cell", index=index, ok=False, error=_error_text(error))
        student_output.seek(0)
        student_output.truncate()

    for number, (grade_id, index) in enumerate(spec["probes"]):
        probe = assignment.probe(grade_id, index)
        missing = [name for name in probe.targets if name not in namespace]
        if missing:
            events.write(event="probe", number=number, ok=False,
                         error=f"{', '.join(missing)} is not defined (did its cell run without errors?)")
            continue
        forbidden = sorted({name for target in probe.targets for name in assignment.forbidden.get(target, ())})
        try:
            signal.setitimer(signal.ITIMER_REAL, cell_seconds)
            with _tripwires(forbidden), contextlib.redirect_stdout(student_output), \
                    contextlib.redirect_stderr(student_output):
                outputs = as_outputs(probe.run(namespace))
            signal.setitimer(signal.ITIMER_REAL, 0)
            np.savez(out / f"probe-{number}.npz", **outputs)
            events.write(event="probe", number=number, ok=True)
        except CellTimeout:
            events.write(event="probe", number=number, ok=False, error=f"timed out after {cell_seconds:g} s")
        except ForbiddenCall as error:
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="probe", number=number, ok=False, forbidden=str(error),
                         error=f"calls {error}, the library's own version of this exercise: no credit")
        except ProbeError as error:
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="probe", number=number, ok=False, error=str(error))
        except NotImplementedError:
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="probe", number=number, ok=False,
                         error=f"{probe.targets[-1]} is not implemented yet (it raises NotImplementedError)")
        except BaseException as error:  # noqa: BLE001 - student code may raise anything
            signal.setitimer(signal.ITIMER_REAL, 0)
            events.write(event="probe", number=number, ok=False, error="raised " + _error_text(error))
        student_output.seek(0)
        student_output.truncate()
    events.write(event="finished")


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except BaseException:  # noqa: BLE001 - report, then leave without running student atexit hooks
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    sys.stdout.flush()
    os._exit(0)
