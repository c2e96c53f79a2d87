"""The course's additions to nbgrader, installed by ``nbgrader_config.py``.

- :class:`ExecuteAndVerify` replaces nbgrader's ``Execute`` during autograding:
  it runs the notebook in its kernel as usual (so students get their outputs
  back in the feedback), survives a kernel that dies, then overwrites the result
  of every test cell with the verdict of the hidden tests, computed from a
  sandboxed run of the student's code (:func:`autograder.grading.grade_notebook`).
  Test cells' sources and metadata come from the gradebook (nbgrader's
  ``OverwriteCells``), never from the submission.
- :class:`UseSandboxResults` takes the place of :class:`ExecuteAndVerify` in
  ``python -m autograder grade``: no kernel, the verdicts and the outputs of the
  student's cells come from the grader's own sandboxed run.
- Feedback (``nbgrader generate_feedback``) shows no hidden test: their source
  is cut (:class:`HideHiddenTests`), error tracebacks of test cells are reduced
  to their last line, and the HTML template loads nothing from the network
  (math stays as TeX).
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor as Preprocessor
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer, Unicode

from autograder.checks import ASSIGNMENT_IDS
from autograder.grading import grade_notebook, is_test_cell
from autograder.sandbox import Limits
from autograder.verdicts import Verdict

import os
import shutil
from pathlib import Path

#: The course's nbconvert templates (the offline feedback page).
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def configure(c: Any, root: str) -> None:
    """Apply the course's nbgrader configuration to the config object ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)

    c.CourseDirectory.root = root
    c.CourseDirectory.course_id = "batchnorm"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = c.CourseDirectory.get("db_url", f"sqlite:///{root}/gradebook.db")
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.Execute.timeout = 120
    # Feedback: no hidden test source, no traceback of hidden code, no CDN.
    import nbgrader

    nbgrader_templates = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader",
                                      "templates")
    c.HTMLExporter.extra_template_basedirs = [TEMPLATES, nbgrader_templates]
    c.HTMLExporter.template_name = "feedback_offline"
    c.HTMLExporter.template_file = "offline.html.j2"
    from nbgrader.preprocessors import GetGrades
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
    c.Autograde.autograde_preprocessors = [
        ExecuteAndVerify,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]


def verdict_outputs(result: Verdict, points: float) -> list[NotebookNode]:
    """The outputs that make nbgrader's ``determine_grade`` give ``result``'s score.

    All checks passed: a plain report (full points). Some passed: the report on
    stdout, then the partial score as the cell's value. None passed: an error.
    """
    report = result.report()
    if result.passed == result.total:
        return [NotebookNode(output_type="stream", name="stdout", text=report + "\n")]
    if result.passed == 0:
        return [NotebookNode(output_type="error", ename="HiddenTestFailure",
                             evalue=report.splitlines()[0], traceback=report.splitlines())]
    score = round(points * result.fraction, 2)
    return [
        NotebookNode(output_type="stream", name="stdout", text=report + "\n"),
        NotebookNode(output_type="execute_result", execution_count=None, metadata={},
                     data={"text/plain": repr(score)}),
    ]


def apply_verdicts(nb: NotebookNode, verdicts: dict[str, Verdict]) -> None:
    """Replace the outputs of each test cell that has a verdict."""
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        meta = cell.metadata.nbgrader
        result = verdicts.get(meta.get("grade_id", ""))
        if result is not None:
            cell.outputs = verdict_outputs(result, float(meta.get("points", 0)))


class ExecuteAndVerify(Execute):
    """nbgrader's Execute in a confined kernel, then the sandboxed hidden tests decide every test cell.

    The kernel gets the sandbox's limits too: its own empty working folder
    (with copies of the assignment's data files), an address-space and a CPU
    time limit and, when nbgrader runs as root, an unprivileged user id and
    private mounts (it cannot write to the course, read the solutions or the
    gradebook, or touch another submission). It keeps the network, which it
    needs to talk to nbgrader. A kernel that dies or hangs costs only its
    own outputs: the grade comes from the sandboxed run.
    """

    cell_seconds = Float(60.0, help="Time limit for one cell or check in the sandbox.").tag(config=True)
    notebook_seconds = Float(300.0, help="Time limit for the whole sandboxed run.").tag(config=True)
    memory_megabytes = Integer(4096, help="Memory limit of the sandboxed run.").tag(config=True)

    _kernel_uid: int | None = None
    _kernel_dir: str = ""

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._kernel_dir:
            km.connection_file = os.path.join(self._kernel_dir, "connection.json")
        return km

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        if self._kernel_dir:
            from autograder.worker import confine

            workdir = os.path.join(self._kernel_dir, "work")
            source = kwargs.get("cwd") or self.resources.get("metadata", {}).get("path")
            if source and os.path.isdir(source):
                for name in os.listdir(source):
                    path = os.path.join(source, name)
                    if os.path.isfile(path) and not name.endswith(".ipynb"):
                        shutil.copy(path, workdir)
            uid, kernel_dir = self._kernel_uid, self._kernel_dir
            memory, seconds = self.memory_megabytes * 1024**2, self.notebook_seconds

            def limit() -> None:
                connection = os.path.join(kernel_dir, "connection.json")
                if uid is not None and os.path.exists(connection):
                    os.chown(connection, uid, uid)
                confine(workdir, uid, memory, seconds, relative_memory=False, network=True, keep=(kernel_dir,))

            kwargs["cwd"] = workdir
            kwargs["preexec_fn"] = limit
            kwargs["env"] = {**os.environ, "HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir,
                             "IPYTHONDIR": os.path.join(workdir, ".ipython"), "MPLBACKEND": "Agg"}
        return await super().async_start_new_kernel(**kwargs)

    # nbclient binds the synchronous wrapper to its own coroutine: rebind it to ours.
    start_new_kernel = run_sync(async_start_new_kernel)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        import tempfile

        from autograder.sandbox import _cleanup, _sandbox_uid

        with _sandbox_uid() as uid:
            self._kernel_uid = uid
            self._kernel_dir = tempfile.mkdtemp(prefix="bn-kernel-")
            workdir = os.path.join(self._kernel_dir, "work")
            os.mkdir(workdir)
            os.chmod(self._kernel_dir, 0o711)
            if uid is not None:
                os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
            try:
                nb, resources = super().preprocess(nb, resources)
            except Exception as error:  # a dead or hung kernel must not stop the grading
                self.log.warning("Kernel execution stopped early: %s", error)
            finally:
                _cleanup(Path(self._kernel_dir), uid)
                self._kernel_dir = ""
        assignment = resources.get("nbgrader", {}).get("assignment")
        if assignment in ASSIGNMENT_IDS:
            from autograder.sandbox import shared_fork_server

            shared_fork_server()  # NumPy and PyTorch imported once for every notebook of this command
            limits = Limits(self.cell_seconds, self.notebook_seconds, self.memory_megabytes * 1024**2)
            apply_verdicts(nb, grade_notebook(nb, assignment, limits))
        return nb, resources


class UseSandboxResults(Preprocessor):
    """In place of the kernel: results of the grader's sandboxed run (``python -m autograder grade``).

    Fills every test cell with its verdict and every other code cell with what
    it printed or the error it raised, as recorded by the worker. A notebook
    the grader has no precomputed result for is graded on the spot.
    """

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from autograder.grading import grade_in_sandbox
        from autograder.pipeline import PRECOMPUTED

        info = resources.get("nbgrader", {})
        assignment = info.get("assignment")
        if assignment not in ASSIGNMENT_IDS:
            return nb, resources
        result = PRECOMPUTED.get((info.get("student"), info.get("notebook")))
        if result is None:
            result = grade_in_sandbox(nb, assignment, Limits())
        apply_verdicts(nb, result.verdicts)
        position = 0
        for cell in nb.cells:
            if cell.cell_type != "code" or is_test_cell(cell):
                continue
            run = result.cells.get(position)
            position += 1
            cell.outputs = []
            if run is None:
                continue
            if run.output:
                cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=run.output))
            if run.error:
                name, _, value = run.error.partition(": ")
                cell.outputs.append(NotebookNode(output_type="error", ename=name, evalue=value,
                                                 traceback=run.traceback or [run.error]))
        return nb, resources


class HideHiddenTests(Preprocessor):
    """Feedback shows no hidden test: its source is cut and tracebacks are reduced to one line."""

    begin = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("END HIDDEN TESTS").tag(config=True)
    replacement = Unicode("# (hidden tests)").tag(config=True)

    def _strip(self, source: str) -> tuple[str, list[str]]:
        kept, hidden, inside = [], [], False
        for line in source.splitlines():
            if self.begin in line:
                inside = True
                kept.append(self.replacement)
                continue
            if self.end in line:
                inside = False
                continue
            (hidden if inside else kept).append(line)
        return "\n".join(kept), [line.strip() for line in hidden if line.strip()]

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type != "code":
            return cell, resources
        cell.source, hidden = self._strip(cell.source)
        graded = bool(cell.metadata.get("nbgrader", {}).get("grade"))

        def leaks(text: str) -> bool:
            return self.begin in text or any(line in text for line in hidden)

        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and leaks("\n".join(output.get("traceback", []))):
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
            elif output.get("output_type") == "stream" and graded and hidden:
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                output["text"] = "\n".join(line for line in text.splitlines() if not leaks(line))
        return cell, resources
