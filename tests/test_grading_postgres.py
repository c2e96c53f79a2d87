"""The gradebook on PostgreSQL: two graders fill one database at the same time.

Starts a private PostgreSQL cluster (initdb + pg_ctl in a temporary folder, on
a free port, as the ``postgres`` user when run as root), then two instructors,
each with their own copy of the course and their own section of the class,
run ``python -m autograder grade`` at once against the same ``db_url``
(``postgresql+psycopg://``). Every student must end up in the one gradebook
with the right score.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.fake_class import HONEST, as_folder, notebook, wrong_forward
from tests.test_grading_cli import copy_course

pytestmark = pytest.mark.xdist_group("grading-postgres")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    binaries = _pg_bin()
    if binaries is None:
        pytest.fail("PostgreSQL is not installed: run `make system-deps` (tests/install_system_deps.sh)")
    # Not under pytest's temp root: that one is private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="bn-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir()
    sockets.mkdir()
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (folder, data, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(folder, 0o755)

    def as_user(*command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)

    port = _free_port()
    done = as_user(str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
    assert done.returncode == 0, done.stderr
    done = as_user(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                   f"-p {port} -k {sockets} -c listen_addresses=''", "start")
    assert done.returncode == 0, done.stderr + (folder / "log").read_text(errors="replace")
    try:
        done = as_user(str(binaries / "createdb"), "-h", str(sockets), "-p", str(port), "-U", user, "gradebook")
        assert done.returncode == 0, done.stderr
        yield f"postgresql+psycopg://{user}@/gradebook?host={sockets}&port={port}"
    finally:
        as_user(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_graders_share_one_postgres_gradebook(postgres, tmp_path):
    sections = {
        "morning": {"ana": notebook(), "ben": notebook(solved=False), "cyd": notebook(
            {"batchnorm_forward": wrong_forward()})},
        "evening": {"dan": notebook(), "eli": notebook(), "fay": notebook(solved=False)},
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    graders = []
    for name, students in sections.items():
        course = copy_course(tmp_path / f"course-{name}")
        subs = as_folder(students, tmp_path / f"subs-{name}")
        graders.append(subprocess.Popen(
            [sys.executable, "-m", "autograder", "grade", "bn_math", str(subs), "--db", postgres, "--jobs", "1",
             "--quiet", "--no-feedback"], cwd=course, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
        time.sleep(0.2)
    for grader in graders:
        out, err = grader.communicate(timeout=600)
        assert grader.returncode == 0, err[-3000:]

    from nbgrader.api import Gradebook

    with Gradebook(postgres) as gb:
        scores = {s.student.id: s.score for s in gb.find_assignment("bn_math").submissions}
        assert len(gb.find_assignment("bn_math").notebooks) == 1
    assert set(scores) == {"ana", "ben", "cyd", "dan", "eli", "fay"}
    assert scores["ana"] == scores["dan"] == scores["eli"] == HONEST
    assert scores["ben"] == scores["fay"] == 0.0
    assert 0.0 < scores["cyd"] < HONEST
    shutil.rmtree(tmp_path, ignore_errors=True)
