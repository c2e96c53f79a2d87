"""The course's additions to nbgrader, installed by ``nbgrader_config.py``.

- :class:`ExecuteAndVerify` replaces nbgrader's ``Execute`` during autograding:
  it runs the notebook in its kernel as usual (so students get their outputs
  back in the feedback), survives a kernel that dies, then overwrites the result
  of every test cell with the verdict of the hidden tests, computed from a
  sandboxed run of the student's code (:func:`autograder.grading.grade_in_sandbox`).
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

import os
import re
import weakref
from pathlib import Path

from autograder.checks import ASSIGNMENT_IDS
from autograder.confinement import environment, regular_files, write_files
from autograder.grading import is_figure_cell, is_test_cell, runs_in_sandbox
from autograder.sandbox import Limits
from autograder.verdicts import Verdict

#: The course's nbconvert templates (the offline feedback page).
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def configure(c: Any, root: str) -> None:
    """Apply the course's nbgrader configuration to the config object ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)

    _copy_no_links()
    c.CourseDirectory.root = root
    c.CourseDirectory.course_id = "batchnorm"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = c.CourseDirectory.get("db_url", f"sqlite:///{root}/gradebook.db")
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.Execute.timeout = 60
    c.ExecuteAndVerify.course_root = root
    # Feedback: no hidden test source, no traceback of hidden code, no CDN.
    import nbgrader

    nbgrader_templates = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader",
                                      "templates")
    c.HTMLExporter.extra_template_basedirs = [TEMPLATES, nbgrader_templates]
    c.HTMLExporter.template_name = "feedback_offline"
    c.HTMLExporter.template_file = "offline.html.j2"
    from nbgrader.preprocessors import GetGrades
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    c.GenerateFeedback.preprocessors = [HideHiddenTests, MathToMathML, GetGrades, CSSHTMLHeaderPreprocessor]
    c.Autograde.autograde_preprocessors = [
        ExecuteAndVerify,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]


def _copy_no_links() -> None:
    """nbgrader copies a submission's other files as root with ``shutil.copy``, which follows links:
    a student's ``data.txt -> /course/solutions/...`` would arrive as the solutions. Links are skipped.

    nbgrader has no setting for this, so its file finder is wrapped (once, idempotently) when this
    course's configuration loads.
    """
    from nbgrader.converters import base

    finder = base.find_all_files
    if getattr(finder, "skips_links", False):
        return

    def find_regular_files(path: str, exclude: list[str] | None = None) -> list[str]:
        root = os.path.realpath(path)
        return [name for name in finder(path, exclude) if not os.path.islink(name)
                and os.path.realpath(name).startswith(root + os.sep)]

    find_regular_files.skips_links = True  # type: ignore[attr-defined]
    base.find_all_files = find_regular_files


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

    The kernel is jailed like a worker (:mod:`autograder.confinement`): an
    empty working folder with copies of the submission's data files (regular
    files only, no link followed), a scrubbed environment, no network (it
    talks to nbgrader over Unix sockets), a memory limit for its process
    tree, an unprivileged user id and a view of the machine without the
    course; and the whole notebook gets ``notebook_seconds``. A kernel that
    dies or hangs costs only its own outputs: the grade comes from the
    sandboxed run of the student's cells.
    """

    cell_seconds = Float(60.0, help="Time limit for one cell or check.").tag(config=True)
    notebook_seconds = Float(300.0, help="Time limit for the whole notebook.").tag(config=True)
    memory_megabytes = Integer(4096, help="Memory limit of one notebook.").tag(config=True)
    course_root = Unicode("", help="The course folder (for its secret).").tag(config=True)

    _kernel_jail: Any = None

    def _shared_grading(self) -> tuple[Any, dict[str, Any]]:
        """One sandbox (NumPy and PyTorch imported once) and one judge per assignment for the whole command.

        nbconvert makes a new preprocessor for every notebook; the exporter
        that owns them lives as long as the command, so they are kept there.
        """
        from autograder.sandbox import Sandbox

        owner = self.parent if self.parent is not None else self
        shared = getattr(owner, "_bn_grading", None)
        if shared is None:
            shared = (Sandbox(), {})
            owner._bn_grading = shared
            weakref.finalize(owner, shared[0].close)
        return shared

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._kernel_jail is not None:
            conn = os.path.join(self._kernel_jail["conn"], "kernel")
            km.transport = "ipc"
            km.ip = conn
            km.connection_file = conn + ".json"
        return km

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        state = self._kernel_jail
        if state is not None:
            from autograder.confinement import enter_jail

            jail = state["jail"]
            source = kwargs.get("cwd") or self.resources.get("metadata", {}).get("path")
            if source and os.path.isdir(source):
                # The submission's other files, regular ones only: a link could point at the solutions.
                write_files(jail.workdir, regular_files(source, skip_suffix=".ipynb"))

            def confine() -> None:
                for name in os.listdir(state["conn"]):
                    if jail.uid is not None:
                        os.chown(os.path.join(state["conn"], name), jail.uid, jail.uid)
                enter_jail(jail)

            kwargs["cwd"] = jail.workdir
            kwargs["preexec_fn"] = confine
            kwargs["env"] = environment(jail.workdir, {"IPYTHONDIR": os.path.join(jail.workdir, ".ipython"),
                                                        "JUPYTER_RUNTIME_DIR": state["conn"]})
        return await super().async_start_new_kernel(**kwargs)

    # nbclient binds the synchronous wrapper to its own coroutine: rebind it to ours.
    start_new_kernel = run_sync(async_start_new_kernel)

    def _kernel_run(self, nb: NotebookNode, resources: dict) -> NotebookNode:
        import threading

        from autograder.sandbox import run_jail

        with run_jail("kernel", self._limits(), forked=False, shared_dirs=("conn",)) as confined:
            self._kernel_jail = {"jail": confined.jail, "conn": confined.jail.extra_paths[0]}
            self.timeout = int(self.cell_seconds)
            deadline = threading.Timer(self.notebook_seconds, confined.stop_everything)
            deadline.start()
            try:
                nb, resources = super().preprocess(nb, resources)
            except Exception as error:  # a dead or hung kernel must not stop the grading
                self.log.warning("Kernel execution stopped early: %s", error)
            finally:
                deadline.cancel()
                confined.stop_everything()
                self._kernel_jail = None
        return nb

    def _limits(self) -> Limits:
        return Limits(self.cell_seconds, self.notebook_seconds, self.memory_megabytes * 1024**2)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb = self._kernel_run(nb, resources)
        info = resources.get("nbgrader", {})
        assignment = info.get("assignment")
        if assignment in ASSIGNMENT_IDS:
            from autograder.grading import grade_in_sandbox
            from autograder.secret import course_secret, student_salt
            from autograder.spec import load_spec
            from autograder.verdicts import Judge

            sandbox, judges = self._shared_grading()
            if assignment not in judges:
                judges[assignment] = Judge(load_spec(assignment))
            judge = judges[assignment]
            salt = student_salt(course_secret(Path(self.course_root or os.getcwd())), str(info.get("student")),
                                assignment)
            graded = grade_in_sandbox(nb, judge.spec, sandbox, judge, salt, self._limits())
            apply_verdicts(nb, graded.verdicts)
        return nb, resources


class UseSandboxResults(Preprocessor):
    """In place of the kernel: results of the grader's sandboxed run (``python -m autograder grade``).

    Fills every test cell with its verdict and every other code cell with what
    it printed or the error it raised, as recorded by the worker, from
    ``<results_root>/<student>/<notebook>.json`` written by the grading command.
    """

    results_root = Unicode("", help="Where the grading command left each notebook's results.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        import json

        from autograder.grading import graded_from_json

        info = resources.get("nbgrader", {})
        if info.get("assignment") not in ASSIGNMENT_IDS:
            return nb, resources
        path = Path(self.results_root) / str(info.get("student")) / f"{info.get('notebook')}.json"
        result = graded_from_json(json.loads(path.read_text(encoding="utf-8")))
        apply_verdicts(nb, result.verdicts)
        position = 0
        for cell in nb.cells:
            if is_figure_cell(cell):
                cell.outputs = [NotebookNode(output_type="stream", name="stdout",
                                             text="(not run when grading: this cell only draws your figure)\n")]
            if not runs_in_sandbox(cell):
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


class MathToMathML(Preprocessor):
    """Feedback renders its formulas offline: TeX in markdown cells becomes MathML, which browsers draw natively.

    ``$$...$$`` becomes a block and ``$...$`` an inline ``<math>`` element; a
    formula that does not convert stays as TeX.
    """

    _display = re.compile(r"\$\$(.+?)\$\$", re.S)
    _inline = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\$)")

    @staticmethod
    def _convert(tex: str, display: str) -> str | None:
        from latex2mathml.converter import convert

        try:
            return convert(tex.strip(), display=display)
        except Exception:  # noqa: BLE001 - keep the TeX when the converter cannot read it
            return None

    def _replace(self, text: str) -> str:
        def block(match: re.Match[str]) -> str:
            return self._convert(match.group(1), "block") or match.group(0)

        def inline(match: re.Match[str]) -> str:
            return self._convert(match.group(1), "inline") or match.group(0)

        parts = re.split(r"(```.*?```|`[^`\n]*`)", text, flags=re.S)  # leave code alone
        return "".join(part if index % 2 else self._inline.sub(inline, self._display.sub(block, part))
                       for index, part in enumerate(parts))

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "markdown":
            cell.source = self._replace(cell.source)
        return cell, resources


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
