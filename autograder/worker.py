"""The sandboxed side of grading: run one student's cells, then call their functions.

A worker is a process forked from the zygote (:mod:`autograder.zygote`) for
one submission. The zygote imported NumPy and PyTorch and this module, and
nothing else of the course: no hidden test, no reference, no other
submission. The child reads its job (the student's cells, the assignment's
probes as source text, the per-student salt) from a file only root can read,
confines itself (:mod:`autograder.confinement`) and then runs the cells in
order, each test cell's probes where that cell sits.

Whatever the student's code does here, it does to its own answers: the
process holds no reference output and no correct implementation, and every
event it writes (a cell ran, a probe's outputs) is read by the grader as the
student's answer to that one call. Comparison and grading happen in the
grader's process.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import signal
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from autograder.checks.core import ProbeError, salted

#: What one cell's captured output keeps for the feedback (the rest is counted, not kept).
OUTPUT_CHARS = 2_000
#: What one error message keeps: its type and the start of its first line.
ERROR_CHARS = 160
#: Dtypes an output may have: booleans, numbers and short strings.
ARRAY_KINDS = "biufU"
MAX_STRING_CHARS = 200


class CellTimeout(BaseException):
    """Raised in student code when a cell or probe runs past its time limit."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout()


# ---------------------------------------------------------------------------
# What student code sees


class UnavailableModule(types.ModuleType):
    """A module the assignment does not allow: importing it works, using it fails clearly.

    In a NumPy assignment ``import torch`` left over from experimenting costs
    nothing; ``torch.tensor(...)`` inside a graded function fails that
    function with a message that says why.
    """

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name)
        self.__dict__["_why"] = why

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        raise RuntimeError(f"{self.__name__}.{attribute} is not available here: {self.__dict__['_why']}")


def hide_torch() -> None:
    """Replace PyTorch by placeholders for the rest of this process (NumPy assignments)."""
    why = "this is a NumPy assignment; PyTorch may be imported but not used"
    for name in [name for name in sys.modules if name == "torch" or name.startswith("torch.")]:
        sys.modules[name] = UnavailableModule(name, why)


class _Magics:
    """Stands in for IPython's shell so that cells with magics still run."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _transform(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


class BoundedText(io.TextIOBase):
    """A text stream that keeps its first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self._limit - self._kept
        if room > 0:
            self._parts.append(text[:room])
            self._kept += min(room, len(text))
        self._dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def take(self) -> str:
        """What was written since the last call, cut to the limit."""
        text = "".join(self._parts)
        if self._dropped:
            text += f"\n... ({self._dropped} more characters not shown)\n"
        self._parts, self._kept, self._dropped = [], 0, 0
        return text


def error_text(error: BaseException) -> str:
    """The type of an error and the start of its message's first line."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def failure_text(error: BaseException) -> str:
    """What a student reads when a check could not get outputs from their code."""
    if isinstance(error, ProbeError):  # the check's own words about the student's outputs
        return str(error)[:300]
    if isinstance(error, NotImplementedError):
        return "not implemented yet (it raises NotImplementedError)"
    return "raised " + error_text(error)


def _student_traceback(error: BaseException) -> list[str]:
    """Where in the student's own cells the error happened (file and line only)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename.startswith("<cell ")]
    lines = [f"{frame.filename}, line {frame.lineno}, in {frame.name}" for frame in frames][-8:]
    return lines + [error_text(error)]


# ---------------------------------------------------------------------------
# Results: one JSON line per event, arrays as raw bytes with a declared shape


def encode_outputs(raw: object) -> dict[str, Any]:
    """A probe's outputs as JSON: dtype, shape and base64 bytes per key (no pickle, no compression)."""
    if not isinstance(raw, dict):
        raise TypeError(f"a probe returned {type(raw).__name__}, not a dict")
    encoded = {}
    for key, value in raw.items():
        array = np.asarray(value)
        if array.dtype.kind not in ARRAY_KINDS:
            raise TypeError(f"output {key!r} has unsupported type {array.dtype}")
        if array.dtype.kind == "U":
            array = array.astype(f"<U{min(max(array.dtype.itemsize // 4, 1), MAX_STRING_CHARS)}")
        array = np.array(array, order="C", copy=True)
        encoded[str(key)] = {"dtype": array.dtype.str, "shape": list(array.shape),
                             "data": base64.b64encode(array.tobytes()).decode("ascii")}
    return encoded


class Events:
    """One JSON line per event on a descriptor the grader opened before confinement."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, **event: Any) -> None:
        data = (json.dumps(event) + "\n").encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]


# ---------------------------------------------------------------------------
# Running the cells and the probes


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _call(run: Callable[[Mapping[str, Any]], object], namespace: dict[str, Any], salt: int, seconds: float,
          output: BoundedText) -> dict[str, Any]:
    """One probe run as an event body: its outputs, or why there are none.

    Whatever the student's functions print while a probe runs is discarded:
    it could only be about the hidden inputs.
    """
    try:
        with _time_limit(seconds), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), \
                salted(salt):
            raw = run(namespace)
        return {"ok": True, "outputs": encode_outputs(raw)}
    except CellTimeout:
        return {"ok": False, "error": f"timed out after {seconds:g} s"}
    except BaseException as error:  # noqa: BLE001 - student code may raise anything
        return {"ok": False, "error": failure_text(error)}
    finally:
        output.take()


def _load_checks(name: str, source: str) -> Any:
    module = types.ModuleType(f"autograder.checks.{name}")
    module.__file__ = f"<checks {name}>"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the course's own checks
    return module.ASSIGNMENT


def run(job: Mapping[str, Any], events: Events) -> None:
    """Run the cells and probes of ``job`` (see :func:`autograder.sandbox.Sandbox.run`)."""
    assignment = _load_checks(job["assignment"], job["checks_source"])
    if assignment.kind == "numpy":
        hide_torch()
    signal.signal(signal.SIGALRM, _on_alarm)
    seconds = float(job["cell_seconds"])
    salt = int(job["salt"])
    events.write(event="started")

    namespace: dict[str, Any] = {"__name__": "__main__", "get_ipython": _Magics, "display": print}
    output = BoundedText(OUTPUT_CHARS)
    probes = [tuple(p) for p in job["probes"]]
    schedule = [int(p) for p in job["positions"]]
    next_probe = 0

    def run_probe(number: int) -> None:
        grade_id, index = probes[number]
        probe = assignment.probe(grade_id, int(index))
        missing = [name for name in probe.targets if name not in namespace]
        if missing:
            body = {"ok": False, "error": f"{', '.join(missing)} is not defined (did its cell run?)"}
            events.write(event="probe", number=number, **body)
            events.write(event="given", number=number, **body)
            return
        events.write(event="probe", number=number, **_call(probe.run, namespace, salt, seconds, output))
        if probe.given is None:
            events.write(event="given", number=number, ok=False, error="no given-run")
        else:
            events.write(event="given", number=number, **_call(probe.given, namespace, salt, seconds, output))

    def probes_up_to(cells_done: float) -> None:
        """Run the probes due here in a forked child: whatever they leave behind (the hidden inputs
        kept in a global, a crash, a hog) dies with it, and the cells after them never see it."""
        nonlocal next_probe
        due = []
        while next_probe < len(probes) and schedule[next_probe] <= cells_done:
            due.append(next_probe)
            next_probe += 1
        if not due:
            return
        done = run_isolated(due, run_probe)
        for number in due[done:]:
            body = {"ok": False, "error": "the notebook's process crashed or ran out of memory during this check"}
            events.write(event="probe", number=number, **body)
            events.write(event="given", number=number, **body)

    probes_up_to(0)
    for index, source in enumerate(job["cells"]):
        try:
            code = compile(_transform(source), f"<cell {index}>", "exec")
            with _time_limit(seconds), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                exec(code, namespace)  # noqa: S102 - the student's code, confined
            events.write(event="cell", index=index, ok=True, output=output.take())
        except CellTimeout:
            events.write(event="cell", index=index, ok=False, output=output.take(),
                         error=f"timed out after {seconds:g} s", traceback=[])
        except BaseException as error:  # noqa: BLE001 - any failure of student code is recorded
            events.write(event="cell", index=index, ok=False, output=output.take(), error=error_text(error),
                         traceback=_student_traceback(error))
        probes_up_to(index + 1)
    probes_up_to(math.inf)  # type: ignore[arg-type]
    events.write(event="finished")


def run_isolated(numbers: list[int], run_one: Callable[[int], None]) -> int:
    """Run ``run_one`` for each number in a forked child; return how many the child finished."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            for number in numbers:
                run_one(number)
                os.write(write_end, b".")
        finally:
            leave(0)
    os.close(write_end)
    finished = 0
    while chunk := os.read(read_end, 1024):
        finished += len(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return finished


def leave(code: int) -> None:
    """Exit without running the student's atexit hooks or finalizers."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def preload() -> None:
    """What the zygote imports once, so that no submission pays for it: libraries, never checks."""
    import autograder.checks.core  # noqa: F401
    import autograder.confinement  # noqa: F401

    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)
    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    with contextlib.suppress(ImportError):
        import sklearn.datasets  # noqa: F401
    from IPython.core.inputtransformer2 import TransformerManager  # noqa: F401
