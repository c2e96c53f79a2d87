"""nbgrader settings: the repository root is the course directory.

The plain nbgrader commands work from the root with these settings:

    nbgrader generate_assignment <assignment> --force
    nbgrader autograde <assignment> --force
    nbgrader generate_feedback <assignment> --force
    nbgrader export --to grades.csv

Autograding runs the notebook as nbgrader always does, then replaces every test
cell's result with the verdict of the hidden tests run on the student's code in
a sandboxed process (see autograder/nbgrader_plugins.py): whatever the
student's code does inside the kernel cannot change its grade.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
# The grading library lives next to this file; the kernels nbgrader starts
# inherit the path too, so that source notebooks can import the hidden tests.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
# nbgrader runs `alembic` from PATH to set up the gradebook: make the venv's
# scripts visible even when the venv is not activated.
BIN = os.path.dirname(sys.executable)
if BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join((BIN, os.environ.get("PATH", "")))

from autograder.nbgrader_plugins import configure  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
configure(c, ROOT)
