"""The zygote: a process that imported NumPy and PyTorch once and forks one worker per submission.

Started by :class:`autograder.sandbox.Sandbox` as ``python -m autograder.zygote``
in a scrubbed environment. It imports the libraries every worker needs
(:func:`autograder.worker.preload`), never a hidden test or a reference, then
reads one request per line on stdin. A request holds only paths and limits:
the student's code travels in a file that only the forked child reads, after
the fork, so the zygote's memory never holds any submission and a child
inherits nothing of another.

For each request it forks a child that opens its results file, reads its job,
confines itself (:func:`autograder.confinement.enter_jail`) and runs it
(:func:`autograder.worker.run`). It answers on stdout with ``{"id", "pid"}``
when the child started and ``{"id", "status"}`` when it ended (exit code, or
minus the signal).
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from typing import Any


def _status(raw: int) -> int:
    if os.WIFSIGNALED(raw):
        return -os.WTERMSIG(raw)
    return os.WEXITSTATUS(raw)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: never returns."""
    from autograder.confinement import Jail, enter_jail, environment
    from autograder.worker import Events, leave, run

    try:
        # Standard streams first: the zygote's stdin and stdout are its
        # channel to the grader, and a child cannot speak for the zygote.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        errors = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND)
        os.dup2(errors, 2)
        results = os.open(request["results"], os.O_WRONLY | os.O_APPEND)
        with open(request["job"], encoding="utf-8") as handle:
            job = json.load(handle)
        jail = Jail(**request["jail"])
        os.environ.clear()
        os.environ.update(environment(jail.workdir))
        enter_jail(jail)
        run(job, Events(results))
    except BaseException:  # noqa: BLE001 - report (bounded by the file size limit), then leave
        try:
            traceback.print_exc(limit=4)
        finally:
            leave(3)
    leave(0)


def serve() -> None:
    from autograder.worker import preload

    preload()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    children: dict[int, str] = {}
    buffer = b""
    stdin = sys.stdin.fileno()
    open_input = True
    while open_input or children:
        readable, _, _ = select.select([stdin] if open_input else [], [], [], 0.02)
        if readable:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                open_input = False
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children[pid] = request["id"]
                out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
                out.flush()
        while children:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            ident = children.pop(pid, None)
            if ident is not None:
                out.write(json.dumps({"id": ident, "status": _status(raw)}) + "\n")
                out.flush()


if __name__ == "__main__":
    serve()
