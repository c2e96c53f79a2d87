"""Run a student's code in a confined worker and read back what it answered.

A :class:`Sandbox` owns one zygote (:mod:`autograder.zygote`) and forks a
fresh worker from it per submission: start-up costs milliseconds, and no
worker inherits anything of another submission. Each run gets a user id of
its own (when the grader is root), a cgroup for its memory, an empty tmpfs
working folder, a wall-clock limit for the whole notebook and one per cell
and check (:class:`Limits`).

The worker's answers come back as JSON lines in a file only the grader can
open; :func:`read_results` accepts them only in the one order the worker
writes them, bounded in size, each array of a declared dtype and shape.
What the worker reported before dying (crash, ``os._exit``, timeout, out of
memory) is kept.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autograder.checks.core import Outputs
from autograder.confinement import Jail, ProcessGroup, environment

#: The repository root, so that the zygote can import ``autograder``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Sandboxed runs get user ids from this range (when the grader is root), one
#: per run in flight across every grader on the machine.
UID_BASE, UID_COUNT = 200_000, 10_000
#: The most the grader reads of one run's answers, and of its error output.
MAX_RESULTS_BYTES = 64 * 1024**2
MAX_STDERR_BYTES = 4096
#: The largest array the grader accepts in an answer.
MAX_ARRAY_BYTES = 16 * 1024**2
ACCEPTED_DTYPES = frozenset("|b1 |i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 <f2 <f4 <f8".split())


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run of a student's notebook."""

    cell_seconds: float = 60.0
    notebook_seconds: float = 300.0
    memory_bytes: int = 4 * 1024**3
    workdir_bytes: int = 64 * 1024**2


@dataclass
class CellRun:
    """What one of the student's cells did: its printed output, its error if any."""

    output: str = ""
    error: str = ""
    traceback: list[str] = field(default_factory=list)


@dataclass
class WorkerRun:
    """What came back from one sandboxed run, by probe number and cell index."""

    probe_outputs: dict[int, Outputs] = field(default_factory=dict)
    probe_errors: dict[int, str] = field(default_factory=dict)
    given_outputs: dict[int, Outputs] = field(default_factory=dict)
    given_errors: dict[int, str] = field(default_factory=dict)
    cells: dict[int, CellRun] = field(default_factory=dict)
    finished: bool = False
    stopped_because: str = ""
    seconds: float = 0.0
    tampered: str = ""


@dataclass(frozen=True)
class Job:
    """What a worker is asked to do: run ``cells``, and ``probes`` at ``positions``."""

    assignment: str
    checks_source: str
    cells: list[str]
    probes: list[tuple[str, int]]
    positions: list[int]
    salt: int

    def as_json(self, limits: Limits) -> dict[str, Any]:
        return {**asdict(self), "probes": [list(p) for p in self.probes], "cell_seconds": limits.cell_seconds}

    def expected_events(self) -> list[tuple[str, int]]:
        """The only order in which the worker reports cells and probes (see :func:`autograder.worker.run`)."""
        order: list[tuple[str, int]] = []
        number = 0
        cells, probes = len(self.cells), len(self.probes)
        for done in range(cells + 1):
            while number < probes and (self.positions[number] <= done or done == cells):
                order += [("probe", number), ("given", number)]
                number += 1
            if done < cells:
                order.append(("cell", done))
        return order


# ---------------------------------------------------------------------------
# User ids and working folders


@contextlib.contextmanager
def lease_uid() -> Iterator[int | None]:
    """A user id no other sandboxed run holds, across every grader on this machine (root only).

    Each candidate id has a lock file; ``flock`` on it is released by the
    kernel when the grader exits, so a crashed grader leaves nothing behind.
    """
    if os.geteuid() != 0:
        yield None
        return
    lock_dir = Path(tempfile.gettempdir()) / "bn-sandbox-uids"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    start = random.randrange(UID_COUNT)
    for attempt in range(UID_COUNT):
        uid = UID_BASE + (start + attempt) % UID_COUNT
        handle = open(lock_dir / str(uid), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        try:
            yield uid
        finally:
            kill_uid(uid)
            handle.close()
        return
    raise RuntimeError("no free sandbox user id")


def kill_uid(uid: int) -> None:
    """Kill every process still running as ``uid`` (it may have left its session and cgroup)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)


@dataclass(frozen=True)
class RunFolders:
    """One run's folders: the jail's working folder and root, and the grader's private files."""

    base: Path

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def private(self) -> Path:
        return self.base / "private"

    @classmethod
    def create(cls, uid: int | None) -> RunFolders:
        base = Path(tempfile.mkdtemp(prefix="bn-run-"))
        os.chmod(base, 0o711)
        folders = cls(base)
        for path in (folders.work, folders.root, folders.private):
            path.mkdir()
        os.chmod(folders.private, 0o700)
        if uid is not None:
            os.chown(folders.work, uid, uid)
        os.chmod(folders.work, 0o700)
        return folders

    def remove(self) -> None:
        for _ in range(3):  # a mount still held by a dying child can delay the removal
            shutil.rmtree(self.base, ignore_errors=True)
            if not self.base.exists():
                return
            time.sleep(0.05)


#: Processes one run may have at once (the cgroup's pids limit, and the jail's process limit).
MAX_PROCESSES = 64


@dataclass(frozen=True)
class RunJail:
    """One run's jail, with the folders and the cgroup behind it."""

    jail: Jail
    folders: RunFolders
    group: ProcessGroup | None

    def stop_everything(self) -> None:
        """Kill every process of the run, wherever it went (its cgroup, its user id)."""
        if self.group is not None:
            self.group.kill_all()
        if self.jail.uid is not None:
            kill_uid(self.jail.uid)


@contextlib.contextmanager
def run_jail(name: str, limits: Limits, *, forked: bool, shared_dirs: tuple[str, ...] = ()) -> Iterator[RunJail]:
    """A jail for one run: a user id of its own, its folders, a cgroup; all of it gone afterwards.

    ``forked``: the run is a fork of a process that has already mapped its
    libraries (the zygote), so an address-space limit must come on top of
    them. ``shared_dirs`` are folders made in the run's base folder, owned by
    the run's user and visible inside the jail (a kernel's connection files).
    """
    with lease_uid() as uid:
        folders = RunFolders.create(uid)
        shared = []
        for directory in shared_dirs:
            path = folders.base / directory
            path.mkdir(mode=0o711)
            if uid is not None:
                os.chown(path, uid, uid)
            shared.append(str(path))
        group = ProcessGroup.create(f"bn-{os.getpid()}-{name}", limits.memory_bytes, MAX_PROCESSES)
        try:
            jail = Jail(workdir=str(folders.work), root=str(folders.root), uid=uid, memory_bytes=limits.memory_bytes,
                        cpu_seconds=limits.notebook_seconds, relative_memory=forked and group is None,
                        cgroup=group.handle if group else "", workdir_bytes=limits.workdir_bytes,
                        extra_paths=tuple(shared), max_processes=MAX_PROCESSES)
            yield RunJail(jail, folders, group)
        finally:
            if group is not None:
                group.remove()
            folders.remove()


# ---------------------------------------------------------------------------
# Reading the answers


class _Tampered(Exception):
    pass


def decode_outputs(encoded: object) -> Outputs:
    """Arrays from a worker's answer: declared dtype and shape, sizes checked before anything is built."""
    if not isinstance(encoded, dict):
        raise ValueError("outputs are not a mapping")
    outputs: Outputs = {}
    for key, item in encoded.items():
        if not isinstance(item, dict):
            raise ValueError("an output is not described")
        dtype_text, shape, data = item.get("dtype"), item.get("shape"), item.get("data")
        if not isinstance(dtype_text, str) or not isinstance(shape, list) or not isinstance(data, str):
            raise ValueError("an output is not described")
        if dtype_text not in ACCEPTED_DTYPES and not (dtype_text.startswith("<U") and dtype_text[2:].isdigit()
                                                      and 0 < int(dtype_text[2:]) <= 200):
            raise ValueError(f"an output has the unsupported dtype {dtype_text[:20]}")
        if len(shape) > 8 or not all(isinstance(n, int) and 0 <= n <= 10**8 for n in shape):
            raise ValueError("an output has an unsupported shape")
        dtype = np.dtype(dtype_text)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size > MAX_ARRAY_BYTES or len(data) > 4 * (size // 3 + 2):
            raise ValueError("an output is too large")
        raw = base64.b64decode(data, validate=True)
        if len(raw) != size:
            raise ValueError("an output's data does not match its shape")
        outputs[str(key)[:100]] = np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).copy()
    return outputs


def read_results(path: Path, expected: list[tuple[str, int]]) -> WorkerRun:
    """Parse the worker's events, checking that they come in the only order the worker writes them.

    The worker writes ``started``, then one event per cell and per probe in
    the order ``expected``, then ``finished``. Anything else can only come
    from the student's code writing to the results descriptor: the run then
    keeps the cells' outputs and earns nothing.
    """
    run = WorkerRun()
    if not path.exists():
        return run
    with open(path, "rb") as handle:
        data = handle.read(MAX_RESULTS_BYTES + 1)
    if len(data) > MAX_RESULTS_BYTES:
        return WorkerRun(cells=run.cells, tampered="too much output",
                         stopped_because="the notebook's answers were larger than the grader accepts")
    position, started = 0, False
    try:
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise _Tampered("a malformed result line") from None
            if not isinstance(event, dict):
                raise _Tampered("a malformed result line")
            kind = event.get("event")
            if run.finished:
                raise _Tampered("an event after the end")
            if kind == "started":
                if started:
                    raise _Tampered("started twice")
                started = True
                continue
            if not started:
                raise _Tampered("an event before the start")
            if kind == "finished":
                if position != len(expected):
                    raise _Tampered("the end reported early")
                run.finished = True
                continue
            number = event.get("index") if kind == "cell" else event.get("number")
            if position >= len(expected) or expected[position] != (kind, number):
                raise _Tampered("an event out of turn")
            position += 1
            _record(run, kind, int(number), event)
    except (_Tampered, TypeError, ValueError, binascii.Error) as error:
        why = str(error) if isinstance(error, _Tampered) else "a malformed result line"
        return WorkerRun(cells=run.cells, tampered=why,
                         stopped_because=f"the results of this notebook were tampered with ({why})")
    return run


def _record(run: WorkerRun, kind: str, number: int, event: Mapping[str, Any]) -> None:
    if kind == "cell":
        cell = CellRun(output=str(event.get("output", ""))[:4000])
        if not event.get("ok"):
            cell.error = str(event.get("error", ""))[:200]
            cell.traceback = [str(line)[:200] for line in event.get("traceback", [])][:10]
        run.cells[number] = cell
        return
    outputs, errors = (run.probe_outputs, run.probe_errors) if kind == "probe" else (run.given_outputs,
                                                                                       run.given_errors)
    if event.get("ok"):
        outputs[number] = decode_outputs(event.get("outputs"))
    else:
        errors[number] = str(event.get("error", "failed"))[:300]


def _why_it_died(status: int | None, stderr: str, out_of_memory: bool) -> str:
    if out_of_memory or "MemoryError" in stderr:
        return "the notebook ran out of memory"
    if status == -signal.SIGKILL:
        return "the notebook was killed (out of memory or too many processes)"
    if status == -signal.SIGXCPU:
        return "the notebook used more CPU time than allowed and was stopped"
    if status == -signal.SIGXFSZ:
        return "the notebook wrote a file larger than allowed and was stopped"
    if status is not None and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"the notebook's process crashed (signal {name})"
    if status == 3 and "Traceback" in stderr:
        return "the grader could not set up the sandbox for this notebook"
    return f"the notebook's process exited early (exit code {status})"


# ---------------------------------------------------------------------------
# The sandbox


class Sandbox:
    """Forks confined workers from a zygote. Thread-safe; use as a context manager."""

    def __init__(self) -> None:
        scratch = tempfile.mkdtemp(prefix="bn-zygote-")
        env = environment(scratch, {"PYTHONPATH": str(PROJECT_ROOT)})
        self._scratch = scratch
        self._process = subprocess.Popen([sys.executable, "-m", "autograder.zygote"], cwd=scratch, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        self._messages: dict[str, dict] = {}
        self._arrived = threading.Condition()
        self._closed = False
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        # The zygote's imports overlap with the grader's own set-up: requests
        # written before it is ready simply wait in the pipe.
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                message = json.loads(line)
                with self._arrived:
                    self._messages.setdefault(message.get("id"), {}).update(message)
                    self._arrived.notify_all()
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def _wait_for(self, ident: str, key: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while key not in self._messages.get(ident, {}):
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._arrived.wait(remaining)
            return self._messages[ident]

    def run(self, job: Job, limits: Limits) -> WorkerRun:
        """Run ``job`` in a fresh confined worker; return what it answered."""
        started = time.monotonic()
        ident = f"run-{next(self._ids)}"
        with run_jail(ident, limits, forked=True) as confined:
            paths = {name: confined.folders.private / name for name in ("job.json", "events.jsonl", "stderr.txt")}
            try:
                paths["job.json"].write_text(json.dumps(job.as_json(limits)), encoding="utf-8")
                for name in ("events.jsonl", "stderr.txt"):
                    paths[name].touch(mode=0o600)
                request = {"id": ident, "job": str(paths["job.json"]), "results": str(paths["events.jsonl"]),
                           "stderr": str(paths["stderr.txt"]), "jail": asdict(confined.jail)}
                with self._lock:
                    assert self._process.stdin is not None
                    self._process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
                    self._process.stdin.flush()
                status, stopped_because = self._wait(ident, limits, confined)
                run = read_results(paths["events.jsonl"], job.expected_events())
                stderr = paths["stderr.txt"].read_bytes()[-MAX_STDERR_BYTES:].decode("utf-8", "replace")
                if not run.finished and not run.stopped_because:
                    run.stopped_because = stopped_because or _why_it_died(
                        status, stderr, confined.group is not None and confined.group.out_of_memory())
                run.seconds = time.monotonic() - started
                return run
            finally:
                with self._arrived:
                    self._messages.pop(ident, None)

    def _wait(self, ident: str, limits: Limits, confined: RunJail) -> tuple[int | None, str]:
        pid = (self._wait_for(ident, "pid", 300) or {}).get("pid")
        if pid is None:
            return None, "the grader could not start a sandbox for this notebook"
        done = self._wait_for(ident, "status", limits.notebook_seconds + 5)
        stopped_because = ""
        if done is None:
            stopped_because = f"the notebook ran for more than {limits.notebook_seconds:g} s and was stopped"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # and anything it left running in the background
        if confined.group is not None:
            confined.group.kill_all()
        if done is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            done = self._wait_for(ident, "status", 10)
        return (done or {}).get("status"), stopped_because

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)
