"""Dishonest submissions gain nothing, under plain ``nbgrader autograde`` and under the project command.

Every tampering notebook starts from answers that are wrong (functions that
return zeros of the right shape: an honest zero) or unfinished, then tries to
turn that into points: patching NumPy's or PyTorch's comparison functions,
replacing the PyTorch reference, reading expected values from stack frames or
the heap, editing, deleting or re-weighting test cells, IPython tricks,
forging the grader's result records, reading the solutions, or solving an
exercise with the library's own implementation. Each must score exactly what
the same notebook scores without the trick. One honest notebook checks that the
run itself works.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.sitekit import remote_resources
from tests.fake_class import HONEST, MAXIMUM, as_folder, as_nbgrader, notebook, shared_result, solutions
from tests.test_grading_cli import copy_course


ZEROS = {
    "batchnorm_forward": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                         "    return np.zeros_like(x), (x, gamma)",
    "batchnorm_backward": "def batchnorm_backward(dout, cache):\n    x, gamma = cache\n"
                          "    return np.zeros_like(dout), np.zeros_like(gamma), np.zeros_like(gamma)",
    "spatial_batchnorm_forward": "def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                                 "    return np.zeros_like(x), (x, gamma)",
    "spatial_batchnorm_backward": "def spatial_batchnorm_backward(dout, cache):\n    x, gamma = cache\n"
                                  "    return np.zeros_like(dout), np.zeros_like(gamma), np.zeros_like(gamma)",
    "batchnorm_backward_alt": "def batchnorm_backward_alt(dout, cache):\n    x, gamma = cache\n"
                              "    return np.zeros_like(dout), np.zeros_like(gamma), np.zeros_like(gamma)",
    "init_scale_sweep": "def init_scale_sweep(scales, seed=0, steps=150, lr=0.1, batch_size=64, hidden=(64, 64, 64, 64)):\n"
                        "    return {}",
}

PATCH_COMPARISONS = """
import numpy as np
import numpy.testing
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
np.testing.assert_array_almost_equal = lambda *args, **kwargs: None
try:
    import torch
    torch.allclose = lambda *args, **kwargs: True
    torch.testing.assert_close = lambda *args, **kwargs: None
except ImportError:
    pass
"""

REPLACE_REFERENCE = """
import torch
import torch.nn.functional as F
F.batch_norm = lambda input, *args, **kwargs: input * 0
torch.batch_norm = lambda input, *args, **kwargs: input * 0
try:
    import autograder.checks.bn_math as checks
    checks.reference = lambda: {name: globals()[name] for name in (
        "batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward")}
    checks.ASSIGNMENT.__dict__["reference"] = checks.reference
except Exception:
    pass
"""

FRAMES = """def batchnorm_forward(x, gamma, beta, eps=1e-5):
    import gc, sys
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, np.ndarray) and value.shape == x.shape and value is not x:
                return value, (x, gamma)
        frame = frame.f_back
    for value in gc.get_objects():
        if isinstance(value, np.ndarray) and value.shape == x.shape and value is not x:
            return value, (x, gamma)
    return np.zeros_like(x), (x, gamma)"""

IPYTHON_TRICKS = """
import sys
sys.excepthook = lambda *args: None
shell = get_ipython()
shell.set_custom_exc((BaseException,), lambda *args, **kwargs: None)
shell.showtraceback = lambda *args, **kwargs: None
"""

INPUT_TRANSFORMER = """
get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
"""

FORGE_RESULTS = """
import base64, glob, io, json, os
import numpy as np
try:
    import autograder.checks.bn_math as checks
    reference = checks.ASSIGNMENT.reference()
    lines, number = [json.dumps({"event": "started"})], 0
    for grade_id, probes in checks.ASSIGNMENT.tests.items():
        for probe in probes:
            buffer = io.BytesIO()
            np.savez(buffer, **{k: np.asarray(v) for k, v in probe.run(reference).items()})
            lines.append(json.dumps({"event": "probe", "number": number, "ok": True,
                                     "npz": base64.b64encode(buffer.getvalue()).decode()}))
            number += 1
    lines.append(json.dumps({"event": "finished"}))
    payload = ("\\n".join(lines) + "\\n").encode()
except Exception as error:
    payload = b'{"event": "finished"}\\n'
for path in ["events.jsonl", "probe-0.npz", *glob.glob("/tmp/bn-results-*/events.jsonl")]:
    try:
        with open(path, "ab") as handle:
            handle.write(payload)
    except OSError:
        pass
for fd in range(3, 40):
    if os.path.islink(f"/proc/self/fd/{fd}") and "socket" in os.readlink(f"/proc/self/fd/{fd}"):
        continue  # the kernel's own channels: breaking them proves nothing
    try:
        os.write(fd, payload)
    except OSError:
        pass
"""

READ_SOLUTIONS = """
import json, os, autograder
root = os.path.dirname(os.path.dirname(autograder.__file__))
try:
    source = json.load(open(os.path.join(root, "solutions", "bn_math", "bn_math.ipynb")))
    for cell in source["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]), globals())
except Exception as error:
    print("no solutions:", error)
"""

LIBRARY_FORWARD = """def batchnorm_forward(x, gamma, beta, eps=1e-5):
    import torch
    import torch.nn.functional as F
    out = F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta),
                       training=True, eps=eps)
    mean, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    return out.numpy(), ((x - mean) * inv_std, inv_std, gamma)"""

AUTOGRAD_BACKWARD = """def batchnorm_backward(dout, cache):
    import torch
    x_hat, inv_std, gamma = cache
    x = torch.tensor(x_hat / inv_std, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    eps = torch.tensor(1.0 / inv_std ** 2 - (x_hat / inv_std).var(axis=0))
    out = g * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps) + b
    out.backward(torch.from_numpy(dout))
    return x.grad.numpy(), g.grad.numpy(), b.grad.numpy()"""


REBIND_WORKER = """
import autograder.worker as worker
worker.run = lambda *args, **kwargs: None
worker.encode_outputs = lambda raw: {}
"""

#: Looks everywhere it can for the hidden checks, the references and the solutions, and prints them.
READ_COURSE_FILES = """
import os
for top in ("/", "/work", "/tmp", "/root"):
    for folder, _, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            if name in ("bn_math.py", "bn_math.ipynb", ".course-secret") and "site-packages" not in path:
                try:
                    print(path, open(path).read()[:20000])
                except OSError as error:
                    print(path, error)
"""

#: Sends what it can see to a listener on the grader's machine; prints the environment.
ENVIRONMENT_AND_NETWORK = """
import os, socket
print(sorted(os.environ.items()))
try:
    with socket.create_connection(("127.0.0.1", PORT), timeout=3) as connection:
        connection.sendall(repr(sorted(os.environ.items())).encode())
except OSError as error:
    print("no network:", error)
"""


#: A right forward pass that keeps what it is called with, and a later cell that prints what it kept.
PEEK_FORWARD = """def batchnorm_forward(x, gamma, beta, eps=1e-5):
    PEEKED.append(x.copy())
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x_hat, 1.0 / np.sqrt(var + eps), gamma)"""
PEEK_PRINT = "print('PEEK' + str(len(PEEKED)), [p.tolist() for p in PEEKED])"
LONG_ERROR = """def batchnorm_forward(x, gamma, beta, eps=1e-5):
    raise ValueError("LONG" + "x" * 5000 + repr(x.tolist()))"""


def _to_kind(kind: str):
    def edit(nb: dict) -> None:
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                cell["cell_type"] = kind
                cell.pop("outputs", None)
                cell.pop("execution_count", None)

    return edit


def _edit_tests(nb: dict) -> None:
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell["source"] = "print('All tests passed.')"


def _delete_tests(nb: dict) -> None:
    nb["cells"] = [c for c in nb["cells"] if not (c.get("metadata", {}).get("nbgrader", {}).get("grade")
                                                  and not c["metadata"]["nbgrader"].get("solution"))]


def _reweigh(nb: dict) -> None:
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            meta["points"] = 100
    nb["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [], "source": "print(1)",
                        "metadata": {"nbgrader": {"grade": True, "solution": False, "locked": True, "points": 50,
                                                  "grade_id": "bonus", "schema_version": 3}}})


def _nb(**kwargs) -> dict:
    return notebook(ZEROS, **kwargs)


#: name -> (notebook, expected total)
CASES = {
    "honest": (notebook(), HONEST),
    "patch_comparisons": (_nb(before_first_test=[PATCH_COMPARISONS]), 0.0),
    "replace_reference": (_nb(before_first_test=[REPLACE_REFERENCE]), 0.0),
    "inspect_frames": (notebook({**ZEROS, "batchnorm_forward": FRAMES}), 0.0),
    "edit_test_cells": (_nb(edit=_edit_tests), 0.0),
    "delete_test_cells": (_nb(edit=_delete_tests), 0.0),
    "reweigh_points": (_nb(edit=_reweigh), 0.0),
    "ipython_tricks": (_nb(before_first_test=[IPYTHON_TRICKS]), 0.0),
    "input_transformer": (_nb(before_first_test=[INPUT_TRANSFORMER]), 0.0),
    "forge_results": (_nb(before_first_test=[FORGE_RESULTS]), 0.0),
    "read_solutions": (notebook(solved=False, before_first_test=[READ_SOLUTIONS]), 0.0),
    "library_forward": (notebook({"batchnorm_forward": LIBRARY_FORWARD}), 0.0),
    # The backward points (4) and the spatial backward's (3), which delegates to it, are lost.
    "autograd_backward": (notebook({"batchnorm_backward": AUTOGRAD_BACKWARD}), HONEST - 7.0),
    # A test cell turned into markdown or raw (Esc M by accident, or on purpose) is a test cell again:
    # the honest student loses nothing, and the trick gains nothing.
    "markdown_test_cells": (notebook(edit=_to_kind("markdown")), HONEST),
    "raw_test_cells": (notebook(edit=_to_kind("raw")), HONEST),
    "rebind_worker": (_nb(before_first_test=[REBIND_WORKER]), 0.0),
    "read_course_files": (_nb(before_first_test=[READ_COURSE_FILES]), 0.0),
    "environment_and_network": (_nb(before_first_test=[ENVIRONMENT_AND_NETWORK]), 0.0),
    "symlinked_data_file": (_nb(before_first_test=["print(open('data.txt').read()[:20000])"]), 0.0),
    # Keeping the hidden inputs for a later cell to print: the checks run in a child process of their own.
    "peek_inputs": (notebook({"batchnorm_forward": PEEK_FORWARD},
                             after={"batchnorm_forward": ["PEEKED = []"],
                                    "test_spatial_batchnorm_backward": [PEEK_PRINT]}), HONEST),
    "long_error_text": (notebook({**ZEROS, "batchnorm_forward": LONG_ERROR}), 0.0),
}

#: A value in the grader's environment that no submission may see.
CANARY = "canary-7f3d9e1a"


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "BN_TEST_CANARY": CANARY,
            "BN_COURSE_SECRET": CANARY + "-secret"}


def _cases_with_port(port: int) -> dict[str, dict]:
    import json

    return {name: json.loads(json.dumps(nb).replace("PORT", str(port))) for name, (nb, _) in CASES.items()}


def _listen():
    """A TCP listener on the grader's machine that records whatever reaches it."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    received.append(connection.recv(1 << 16) or b"(connected)")
                except OSError:
                    received.append(b"(connected)")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server.getsockname()[1], received, (stop, thread, server)


def _stop(handle) -> None:
    stop, thread, server = handle
    stop.set()
    thread.join(5)
    server.close()


def _secrets(course: Path) -> list[str]:
    """Lines a submission must never carry out: hidden checks, references, solutions, secrets."""
    lines = [CANARY]
    for path in [course / "autograder" / "checks" / "bn_math.py", course / "autograder" / "references" / "bn_math.py"]:
        lines += [line.strip() for line in path.read_text().splitlines() if len(line.strip()) > 40]
    from tests.fake_class import WRITTEN_ANSWER, solutions

    import nbformat

    released = "\n".join(cell.source for cell in
                         nbformat.read(course / "exercises" / "bn_math" / "bn_math.ipynb", as_version=4).cells)
    lines += [line.strip() for source in solutions().values() if source != WRITTEN_ANSWER
              for line in source.splitlines() if len(line.strip()) > 30 and line.strip() not in released]
    return lines


def _totals_from_nbgrader_export(course: Path) -> dict[str, tuple[float, float]]:
    done = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", "export.csv"], cwd=course,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(course / "export.csv", encoding="utf-8") as handle:
        return {row["student_id"]: [float(row["score"]), float(row["max_score"])] for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def plain_nbgrader(tmp_path_factory):
    result = shared_result(tmp_path_factory, "tamper-plain", _plain_nbgrader)
    return result["totals"], Path(result["course"]), result["feedback_stderr"], result["received"]


def _plain_nbgrader(folder: Path) -> dict:
    course = copy_course(folder / "course")
    port, received, handle = _listen()
    as_nbgrader(_cases_with_port(port), course)
    data = course / "submitted" / "symlinked_data_file" / "bn_math" / "data.txt"
    data.symlink_to(course / "solutions" / "bn_math" / "bn_math.ipynb")
    for command in (["generate_assignment", "bn_math", "--force"], ["autograde", "bn_math", "--force"]):
        done = subprocess.run([sys.executable, "-m", "nbgrader", *command, "--log-level=WARN"], cwd=course,
                              env=_env(), capture_output=True, text=True, timeout=900)
        # nbgrader itself refuses the notebook with a forged grade cell (its metadata
        # does not validate): that student stays at zero, the others are graded.
        failed = {line.split("for student '")[1].split("'")[0] for line in done.stderr.splitlines()
                  if "There was an error processing assignment 'bn_math' for student" in line}
        assert done.returncode == 0 or failed == {"reweigh_points"}, done.stderr[-3000:]
    feedback = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", "bn_math", "--force",
                               "--log-level=WARN"], cwd=course, env=_env(), capture_output=True, text=True,
                              timeout=900)
    _stop(handle)
    return {"totals": _totals_from_nbgrader_export(course), "course": str(course), "feedback_stderr": feedback.stderr,
            "received": [r.decode("utf-8", "replace") for r in received]}


@pytest.fixture(scope="session")
def project_command(tmp_path_factory):
    return shared_result(tmp_path_factory, "tamper-project", _project_command)


def _project_command(folder: Path) -> dict:
    course = copy_course(folder / "course")
    port, received, handle = _listen()
    subs = as_folder(_cases_with_port(port), folder / "subs")
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", "bn_math", str(subs), "--quiet"],
                          cwd=course, env=_env(), capture_output=True, text=True, timeout=900)
    _stop(handle)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"totals": _totals_from_nbgrader_export(course), "course": str(course),
            "received": [r.decode("utf-8", "replace") for r in received]}


@pytest.mark.xdist_group("grading-tamper-plain")
@pytest.mark.parametrize("case", list(CASES))
def test_plain_nbgrader_autograde(plain_nbgrader, case):
    expected = CASES[case][1]
    assert plain_nbgrader[0][case] == [pytest.approx(expected), MAXIMUM]


@pytest.mark.xdist_group("grading-tamper-plain")
def test_plain_nbgrader_feedback_hides_hidden_tests_and_loads_nothing(plain_nbgrader):
    from tests.fake_class import hidden_test_lines

    _, course, stderr, _ = plain_nbgrader
    files = sorted((course / "feedback").glob("*/bn_math/*.html"))
    assert len(files) >= len(CASES) - 1, stderr[-2000:]
    hidden = hidden_test_lines()
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert not [line for line in hidden if line in text], file
        assert not remote_resources(file), (file, remote_resources(file))
        # Formulas are MathML: a feedback page needs no script, so none can fetch anything either.
        assert "<script" not in text.lower(), file
    honest = (course / "feedback" / "honest" / "bn_math" / "bn_math.html").read_text(encoding="utf-8")
    assert "Hidden tests: 5 of 5 checks passed." in honest
    # The notebook's formulas are drawn as MathML, with no script: none is left as TeX.
    assert "<math" in honest and "$$" not in honest


@pytest.mark.xdist_group("grading-tamper-project")
@pytest.mark.parametrize("case", list(CASES))
def test_project_command(project_command, case):
    expected = CASES[case][1]
    assert project_command["totals"][case] == [pytest.approx(expected), MAXIMUM]


@pytest.mark.parametrize("grader", ["plain", "project"])
def test_nothing_leaves_through_feedback_or_network(plain_nbgrader, project_command, grader):
    """No feedback page holds a line of the hidden checks, the references, the solutions or the grader's
    environment, and nothing reached a listener on the grader's machine."""
    course = plain_nbgrader[1] if grader == "plain" else Path(project_command["course"])
    received = plain_nbgrader[3] if grader == "plain" else project_command["received"]
    assert received == []
    secrets = _secrets(course)
    pages = sorted((course / "feedback").glob("*/bn_math/*.html"))
    assert {page.parent.parent.name for page in pages} >= set(CASES) - {"reweigh_points"}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        student = page.parent.parent.name
        # What the student wrote themselves (an honest student's own answer) is theirs to see.
        submitted = json.loads((course / "submitted" / student / "bn_math" / "bn_math.ipynb").read_text("utf-8"))
        own = "\n".join("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                        for cell in submitted["cells"])
        leaked = [line for line in secrets if line in text and line not in own]
        assert not leaked, f"{student}: {leaked[:3]}"


def _hidden_inputs(student: str) -> list[str]:
    """The first values of every array the hidden checks pass to this student's functions, as printed."""
    import numpy as np

    from autograder.checks.core import salted
    from autograder.secret import student_salt
    from autograder.spec import load_spec

    spec = load_spec("bn_math")
    reference = spec.reference()
    seen: list[np.ndarray] = []

    def recording(function):
        def record(*args, **kwargs):
            seen.extend(a for a in args if isinstance(a, np.ndarray) and a.size > 1)
            return function(*args, **kwargs)
        return record

    namespace = {name: recording(function) for name, function in reference.items()}
    with salted(student_salt((CANARY + "-secret").encode(), student, "bn_math")):
        for probes in spec.tests.values():
            for probe in probes:
                probe.run(namespace)
    return sorted({repr(float(array.flat[0]))[:12] for array in seen})


@pytest.mark.parametrize("grader", ["plain", "project"])
def test_feedback_carries_no_hidden_input_and_only_a_short_error(plain_nbgrader, project_command, grader):
    course = plain_nbgrader[1] if grader == "plain" else Path(project_command["course"])
    feedback = course / "feedback"
    peek = (feedback / "peek_inputs" / "bn_math" / "bn_math.html").read_text(encoding="utf-8")
    assert "PEEK" in peek
    hidden = _hidden_inputs("peek_inputs")
    assert len(hidden) > 5 and not [value for value in hidden if value in peek]
    long_error = (feedback / "long_error_text" / "bn_math" / "bn_math.html").read_text(encoding="utf-8")
    assert "LONG" in long_error and "x" * 200 not in long_error


def test_the_catalogue_of_tricks_is_complete():
    """Guard against a case silently losing its trick (e.g. an edit that no longer applies)."""
    assert not any(c.get("metadata", {}).get("nbgrader", {}).get("grade") and
                   not c["metadata"]["nbgrader"].get("solution") for c in CASES["delete_test_cells"][0]["cells"])
    assert "bonus" in str(CASES["reweigh_points"][0])
    assert solutions()["batchnorm_forward"] not in str(CASES["inspect_frames"][0])


def _hidden_test_reports(page: Path) -> list[str]:
    """The hidden tests' reports of a feedback page, as text."""
    import html
    import re

    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    return re.findall(r"Hidden tests: \d+ of \d+ checks passed\.[^\n]*(?:\n- [^\n]*(?:\n  [^\n]*)*)*", text)


def test_both_graders_draw_the_same_inputs_for_a_student(plain_nbgrader, project_command):
    """Differences reported on the same wrong answers are the same numbers under plain nbgrader and the
    grading command: the same student got the same hidden inputs from both."""
    plain = plain_nbgrader[1] / "feedback" / "patch_comparisons" / "bn_math" / "bn_math.html"
    project = Path(project_command["course"]) / "feedback" / "patch_comparisons" / "bn_math" / "bn_math.html"
    reports = _hidden_test_reports(plain)
    assert reports and any("largest difference" in report for report in reports)
    assert reports == _hidden_test_reports(project)
