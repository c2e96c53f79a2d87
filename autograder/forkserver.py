"""A fork server for sandboxed workers: import NumPy and PyTorch once, fork per run.

Started by :class:`autograder.sandbox.ForkServer` as ``python -m
autograder.forkserver``. It imports what every worker needs
(:func:`autograder.worker.preload`), then reads one JSON request per line on
stdin, forks a child per request (the child confines itself and runs the
student's code, :func:`autograder.worker.forked_main`) and answers on stdout
with ``{"id", "pid"}`` when the child started and ``{"id", "status"}`` when it
ended (``status`` as ``subprocess`` reports it: exit code, or minus the signal).
The server itself never runs student code.
"""

from __future__ import annotations

import json
import os
import select
import sys


def _status(raw: int) -> int:
    if os.WIFSIGNALED(raw):
        return -os.WTERMSIG(raw)
    return os.WEXITSTATUS(raw)


def serve() -> None:
    from autograder.worker import forked_main, preload

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
                if pid == 0:  # the child: never returns
                    os.close(stdin)
                    devnull = os.open(os.devnull, os.O_RDWR)
                    os.dup2(devnull, 0)
                    os.dup2(devnull, 1)  # a child cannot speak for the server
                    forked_main(request["spec"], request["results"], request["workdir"], request["uid"],
                                request["memory_bytes"], request["cpu_seconds"])
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
