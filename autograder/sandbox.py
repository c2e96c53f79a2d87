"""Run a student's code in a separate, limited process and collect its results.

The worker (:mod:`autograder.worker`) gets a working directory of its own, a
memory limit, a wall-clock limit for the whole run and one per cell, and its
own process group, so that nothing it starts outlives it. What it wrote before
dying (crash, ``os._exit``, timeout, out of memory) is kept.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autograder.checks.core import Outputs

#: The repository root, so that the worker can import ``autograder``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run of a student's notebook."""

    cell_seconds: float = 60.0
    notebook_seconds: float = 300.0
    memory_bytes: int = 4 * 1024**3


@dataclass
class WorkerRun:
    """What came back from one sandboxed run."""

    cell_errors: dict[int, str] = field(default_factory=dict)
    probe_outputs: dict[int, Outputs] = field(default_factory=dict)
    probe_errors: dict[int, str] = field(default_factory=dict)
    forbidden_calls: dict[int, str] = field(default_factory=dict)
    finished: bool = False
    stopped_because: str = ""


def _limit_resources(memory_bytes: int) -> None:
    """Runs in the child before exec: new process group, memory limit, no core files."""
    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _environment(workdir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **{key: value for key, value in os.environ.items() if key.startswith("OPENBLAS_CORETYPE")},
    }


def run_student_code(assignment: str, cells: list[str], probes: list[tuple[str, int]],
                     limits: Limits) -> WorkerRun:
    """Execute ``cells`` then ``probes`` in a sandboxed worker; return what it produced."""
    workdir = Path(tempfile.mkdtemp(prefix="bn-grade-"))
    results = Path(tempfile.mkdtemp(prefix="bn-results-"))
    try:
        spec = results / "spec.json"
        spec.write_text(json.dumps({
            "assignment": assignment,
            "cells": cells,
            "probes": [list(p) for p in probes],
            "cell_seconds": limits.cell_seconds,
        }), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "autograder.worker", str(spec), str(results)],
            cwd=workdir,
            env=_environment(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _limit_resources(limits.memory_bytes),
        )
        stopped_because = ""
        try:
            _, stderr = process.communicate(timeout=limits.notebook_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stderr = b""
            stopped_because = f"the notebook ran for more than {limits.notebook_seconds:g} s and was stopped"
        _kill_group(process)  # anything the student left running in the background
        run = _read_results(results)
        if not run.finished and not stopped_because:
            stopped_because = _why_it_died(process.returncode, stderr or b"")
        run.stopped_because = stopped_because
        return run
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(results, ignore_errors=True)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _why_it_died(returncode: int | None, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    if "MemoryError" in text or returncode == -signal.SIGKILL:
        return "the notebook ran out of memory or was killed"
    if returncode is not None and returncode < 0:
        return f"the notebook's process crashed (signal {signal.Signals(-returncode).name})"
    return f"the notebook's process exited early (exit code {returncode})"


def _read_results(results: Path) -> WorkerRun:
    run = WorkerRun()
    events = results / "events.jsonl"
    if not events.exists():
        return run
    for line in events.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        kind = event.get("event")
        if kind == "finished":
            run.finished = True
        elif kind == "cell" and not event.get("ok"):
            run.cell_errors[int(event.get("index", -1))] = str(event.get("error", ""))
        elif kind == "probe":
            number = int(event.get("number", -1))
            if event.get("ok"):
                outputs = _load_outputs(results / f"probe-{number}.npz")
                if outputs is None:
                    run.probe_errors[number] = "its outputs could not be read"
                else:
                    run.probe_outputs[number] = outputs
            else:
                run.probe_errors[number] = str(event.get("error", "failed"))
                if event.get("forbidden"):
                    run.forbidden_calls[number] = str(event["forbidden"])
    return run


def _load_outputs(path: Path) -> Outputs | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception:  # a missing or malformed file is the student's loss, not a crash
        return None
