"""The course secret and the per-student salt: another student's inputs cannot be told from one's own."""

from __future__ import annotations

import stat

from autograder.secret import SECRET_FILE, SECRET_VARIABLE, course_secret, student_salt


def test_each_student_and_each_assignment_gets_its_own_salt():
    secret = b"course-secret"
    salts = {student_salt(secret, student, assignment)
             for student in ("ann", "bob", "ann_2") for assignment in ("bn_math", "train_eval")}
    assert len(salts) == 6
    assert student_salt(secret, "ann", "bn_math") == student_salt(secret, "ann", "bn_math")
    assert student_salt(b"another course", "ann", "bn_math") != student_salt(secret, "ann", "bn_math")
    assert all(0 <= salt < 2**63 for salt in salts)


def test_the_secret_file_is_created_once_and_readable_by_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    first = course_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert course_secret(tmp_path) == first
    (tmp_path / "another").mkdir()
    assert course_secret(tmp_path / "another") != first


def test_the_environment_variable_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_VARIABLE, "from-the-environment")
    assert course_secret(tmp_path) == b"from-the-environment"
    assert not (tmp_path / SECRET_FILE).exists()
