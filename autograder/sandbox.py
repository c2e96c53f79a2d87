"""Run a student's code in a separate, confined process and collect its results.

The worker (:mod:`autograder.worker`) gets a working directory of its own,
a memory limit, a wall-clock limit for the whole run and one per cell, a CPU
time limit, its own session (so that nothing it starts outlives it) and, when
the grader runs as root, no network and a user id of its own that can write
nowhere but in its working directory. What it reported before dying (crash,
``os._exit``, timeout, out of memory) is kept.

Two ways to start the worker, same confinement and same results:

- by default a fresh ``python -m autograder.worker`` per run (what
  ``nbgrader autograde`` uses);
- inside :func:`fork_server`, a process forked from a server that imported
  NumPy, PyTorch and the hidden tests once (what ``python -m autograder grade``
  uses): start-up then costs milliseconds instead of seconds.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autograder.checks.core import Outputs

#: The repository root, so that the worker can import ``autograder``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Sandboxed runs get user ids from this range (when the grader is root), a
#: different one for each run in flight, so that two submissions graded at the
#: same time cannot touch each other's files.
UID_BASE = 200_000
_uids = itertools.count()
UID_COUNT = 10_000
_uid_lock = threading.Lock()


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run of a student's notebook."""

    cell_seconds: float = 60.0
    notebook_seconds: float = 300.0
    memory_bytes: int = 4 * 1024**3


@dataclass
class CellRun:
    """What one of the student's cells did: its printed output, its error if any."""

    output: str = ""
    error: str = ""
    traceback: list[str] = field(default_factory=list)


@dataclass
class WorkerRun:
    """What came back from one sandboxed run."""

    cell_errors: dict[int, str] = field(default_factory=dict)
    probe_outputs: dict[int, Outputs] = field(default_factory=dict)
    probe_errors: dict[int, str] = field(default_factory=dict)
    forbidden_calls: dict[int, str] = field(default_factory=dict)
    cells: dict[int, CellRun] = field(default_factory=dict)
    finished: bool = False
    stopped_because: str = ""
    seconds: float = 0.0
    tampered: str = ""


@contextlib.contextmanager
def _sandbox_uid() -> Iterator[int | None]:
    """A user id no other sandboxed run holds, across every grader on this machine (root only).

    Each candidate id has a lock file; ``flock`` on it is released by the
    kernel when the grader exits, so a crashed grader leaves nothing behind.
    """
    if os.geteuid() != 0:
        yield None
        return
    import fcntl

    lock_dir = Path(tempfile.gettempdir()) / "bn-sandbox-uids"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    with _uid_lock:
        start = next(_uids)
    for attempt in range(UID_COUNT):
        uid = UID_BASE + (start + attempt + os.getpid()) % UID_COUNT
        handle = open(lock_dir / str(uid), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        try:
            yield uid
        finally:
            handle.close()
        return
    raise RuntimeError("no free sandbox user id")


def _prepare_dirs(uid: int | None) -> tuple[Path, Path, Path]:
    """An empty working directory owned by ``uid`` and a results file only the grader can open."""
    workdir = Path(tempfile.mkdtemp(prefix="bn-grade-"))
    results_dir = Path(tempfile.mkdtemp(prefix="bn-results-"))
    os.chmod(results_dir, 0o700)
    results = results_dir / "events.jsonl"
    results.touch(mode=0o600)
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    return workdir, results_dir, results


def _spec(assignment: str, cells: list[str], probes: list[tuple[str, int]], limits: Limits,
          positions: list[int] | None) -> dict:
    return {"assignment": assignment, "cells": cells, "probes": [list(p) for p in probes],
            "cell_seconds": limits.cell_seconds, "positions": positions}


def _expected(spec: dict) -> list[tuple[str, int]]:
    """The only order in which the worker reports cells and probes (see :func:`autograder.worker.main`)."""
    cells, probes = len(spec["cells"]), len(spec["probes"])
    schedule = spec.get("positions") or [cells] * probes
    order: list[tuple[str, int]] = []
    number = 0
    for done in range(cells + 1):
        while number < probes and (schedule[number] <= done or done == cells):
            order.append(("probe", number))
            number += 1
        if done < cells:
            order.append(("cell", done))
    return order


def run_student_code(assignment: str, cells: list[str], probes: list[tuple[str, int]],
                     limits: Limits, positions: list[int] | None = None) -> WorkerRun:
    """Execute ``cells`` and ``probes`` in a confined worker; return what it produced.

    ``positions[k]`` (non-decreasing) is the number of cells that run before
    probe ``k``; by default every probe runs after the last cell.
    """
    spec = _spec(assignment, cells, probes, limits, positions)
    server = _active_server
    if server is not None:
        return server.run(spec, limits)
    with _sandbox_uid() as uid:
        return _spawn_as(uid, spec, limits)


def _spawn_as(uid: int | None, spec: dict, limits: Limits) -> WorkerRun:
    from autograder.worker import confine, environment

    workdir, results_dir, results = _prepare_dirs(uid)
    started = time.monotonic()
    fd = os.open(results, os.O_WRONLY | os.O_APPEND)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "autograder.worker", str(fd)],
            cwd=workdir,
            env=environment(str(workdir)),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(fd,),
            preexec_fn=lambda: confine(str(workdir), uid, limits.memory_bytes, limits.notebook_seconds,
                                       relative_memory=False),
        )
        os.close(fd)
        fd = -1
        stopped_because = ""
        payload = json.dumps(spec).encode("utf-8")
        try:
            _, stderr = process.communicate(payload, timeout=limits.notebook_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
            stderr = b""
            stopped_because = f"the notebook ran for more than {limits.notebook_seconds:g} s and was stopped"
        _kill_group(process.pid)  # anything the student left running in the background
        process.wait()
        run = _read_results(results, _expected(spec))
        if not run.finished and not stopped_because:
            stopped_because = _why_it_died(process.returncode, stderr or b"")
        run.stopped_because = stopped_because
        run.seconds = time.monotonic() - started
        return run
    finally:
        if fd >= 0:
            os.close(fd)
        _cleanup(workdir, uid)
        shutil.rmtree(results_dir, ignore_errors=True)


def _cleanup(workdir: Path, uid: int | None) -> None:
    if uid is not None:
        _kill_uid(uid)
    shutil.rmtree(workdir, ignore_errors=True)


def _kill_uid(uid: int) -> None:
    """Kill every process still running as the sandbox's user id (it may have left its session)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _why_it_died(returncode: int | None, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    if "MemoryError" in text or returncode == -signal.SIGKILL:
        return "the notebook ran out of memory or was killed"
    if returncode == -signal.SIGXCPU:
        return "the notebook used more CPU time than allowed and was stopped"
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"the notebook's process crashed (signal {name})"
    return f"the notebook's process exited early (exit code {returncode})"


def _read_results(results: Path, expected: list[tuple[str, int]]) -> WorkerRun:
    """Parse the worker's events, checking that they come in the only order the worker writes them.

    The worker writes ``started``, then one event per cell and per probe in
    the order ``expected`` (fixed by the spec), then ``finished``. Anything
    else (an event out of turn or twice, an unknown event, a line that is not
    JSON) can only come from the student's code writing to the results
    descriptor: the run then earns nothing.
    """
    run = WorkerRun()
    if not results.exists():
        return run
    position, started = 0, False

    def tamper(why: str) -> WorkerRun:
        return WorkerRun(cells=run.cells, tampered=why,
                         stopped_because=f"the results of this notebook were tampered with ({why})")

    for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return tamper("a malformed result line")
        if not isinstance(event, dict):
            return tamper("a malformed result line")
        kind = event.get("event")
        try:
            if run.finished:
                return tamper("an event after the end")
            if kind == "started":
                if started:
                    return tamper("started twice")
                started = True
            elif not started:
                return tamper("an event before the start")
            elif kind == "finished":
                if position != len(expected):
                    return tamper("the end reported early")
                run.finished = True
            elif kind == "cell":
                index = int(event.get("index", -1))
                if position >= len(expected) or expected[position] != ("cell", index):
                    return tamper("a cell reported out of turn")
                position += 1
                cell = CellRun(output=str(event.get("output", "")))
                if not event.get("ok"):
                    cell.error = str(event.get("error", ""))
                    cell.traceback = [str(line) for line in event.get("traceback", [])][:60]
                    run.cell_errors[index] = cell.error
                run.cells[index] = cell
            elif kind == "probe":
                number = int(event.get("number", -1))
                if position >= len(expected) or expected[position] != ("probe", number):
                    return tamper("a check reported out of turn")
                position += 1
                if event.get("ok"):
                    outputs = _load_outputs(str(event.get("npz", "")))
                    if outputs is None:
                        run.probe_errors[number] = "its outputs could not be read"
                    else:
                        run.probe_outputs[number] = outputs
                else:
                    run.probe_errors[number] = str(event.get("error", "failed"))
                    if event.get("forbidden"):
                        run.forbidden_calls[number] = str(event["forbidden"])
            else:
                return tamper("an unknown event")
        except (TypeError, ValueError):
            return tamper("a malformed result line")
    return run


def _load_outputs(text: str) -> Outputs | None:
    try:
        with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception:  # a missing or malformed archive is the student's loss, not a crash
        return None


# ---------------------------------------------------------------------------
# Fork server


class ForkServer:
    """Start confined workers by forking a process that already imported everything.

    Thread-safe: several threads may call :meth:`run` at once.
    """

    def __init__(self) -> None:
        from autograder.worker import environment

        env = {**environment(tempfile.gettempdir()), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self._process = subprocess.Popen([sys.executable, "-m", "autograder.forkserver"], cwd=PROJECT_ROOT,
                                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        self._waiting: dict[str, dict] = {}
        self._arrived = threading.Condition()
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # The server's imports (NumPy, PyTorch) overlap with the grader's own set-up:
        # requests written before it is ready simply wait in the pipe.
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._arrived:
                self._waiting.setdefault(message.get("id"), {}).update(message)
                self._arrived.notify_all()
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def _wait_for(self, ident: str, key: str, timeout: float | None) -> dict | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._arrived:
            while key not in self._waiting.get(ident, {}):
                if getattr(self, "_closed", False):
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._arrived.wait(remaining)
            return self._waiting[ident]

    def run(self, spec: dict, limits: Limits) -> WorkerRun:
        with _sandbox_uid() as uid:
            workdir, results_dir, results = _prepare_dirs(uid)
            started = time.monotonic()
            ident = f"run-{next(self._ids)}"
            try:
                request = {"id": ident, "spec": spec, "results": str(results),
                           "workdir": str(workdir), "uid": uid, "memory_bytes": limits.memory_bytes,
                           "cpu_seconds": limits.notebook_seconds}
                with self._lock:
                    self._process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
                    self._process.stdin.flush()
                pid = (self._wait_for(ident, "pid", 300) or {}).get("pid")
                stopped_because = ""
                status: int | None = None
                if pid is None:
                    stopped_because = "the grader could not start a sandbox for this notebook"
                else:
                    done = self._wait_for(ident, "status", limits.notebook_seconds)
                    if done is None:
                        stopped_because = (f"the notebook ran for more than {limits.notebook_seconds:g} s "
                                           "and was stopped")
                        _kill_group(pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        done = self._wait_for(ident, "status", 10)
                    status = (done or {}).get("status")
                    _kill_group(pid)
                run = _read_results(results, _expected(spec))
                if not run.finished and not stopped_because:
                    stopped_because = _why_it_died(status, b"")
                run.stopped_because = stopped_because
                run.seconds = time.monotonic() - started
                return run
            finally:
                with self._arrived:
                    self._waiting.pop(ident, None)
                _cleanup(workdir, uid)
                shutil.rmtree(results_dir, ignore_errors=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


_active_server: ForkServer | None = None


@contextlib.contextmanager
def fork_server() -> Iterator[ForkServer]:
    """Within this block, :func:`run_student_code` forks its workers from a preloaded server."""
    global _active_server
    previous = _active_server
    server = ForkServer()
    _active_server = server
    try:
        yield server
    finally:
        _active_server = previous
        server.close()


def shared_fork_server() -> ForkServer:
    """A fork server for the rest of this process (``nbgrader autograde`` grades many notebooks)."""
    global _active_server
    if _active_server is None:
        import atexit

        _active_server = ForkServer()
        atexit.register(_active_server.close)
    return _active_server
