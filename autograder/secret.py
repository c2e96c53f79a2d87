"""The course secret and the per-student salt of the hidden inputs.

Every student's hidden inputs are drawn from a salt derived from their id and
a secret kept out of the repository: the ``BN_COURSE_SECRET`` environment
variable or, by default, the file ``.course-secret`` at the course root
(ignored by git, created on first use). Both graders derive the same salt for
the same student, so a student gets the same inputs from either; knowing one
student's inputs, or the checks' source, tells nothing of another's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = ".course-secret"
SECRET_VARIABLE = "BN_COURSE_SECRET"


def course_secret(root: Path) -> bytes:
    """The course secret: from the environment, else the course's secret file (created if missing)."""
    from_environment = os.environ.get(SECRET_VARIABLE, "")
    if from_environment:
        return from_environment.encode("utf-8")
    path = root / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        value = secrets.token_hex(32).encode("ascii")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(value + b"\n")
        return value
    except FileExistsError:  # pragma: no cover - two graders creating it at once
        return path.read_bytes().strip()


def student_salt(secret: bytes, student: str, assignment: str) -> int:
    """The salt of one student's hidden inputs for one assignment (63 bits)."""
    digest = hmac.new(secret, f"{assignment}\0{student}".encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little") >> 1
