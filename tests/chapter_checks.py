"""Structural checks shared by the chapter tests, usable for any chapter.

``Chapter("bn_math")`` reads ``book/bn_math.md`` (a MyST Markdown notebook) and
splits it into prose and code cells. The ``check_*`` functions each pin one
promise of CONTRIBUTING.md or of the course conventions and raise an
AssertionError whose message names what is wrong:

- figures have a caption and a name, and the text refers to every figure;
- cited keys exist in the book's bibliography;
- seeds and the thread count are fixed;
- the chapter ends with its labelled Assignment section, which links the
  released notebook, and the chapter's quiz is included just before it;
- the chapter runs outside the repository (no import of ``book/_code``);
- no code cell, hidden or not, defines a graded function or class, or a
  function with the exact parameters of one;
- the notation of book/notation.md is used (no stale symbols).

They read the sources only; the strict site build checks that the code runs
and that every reference resolves.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"

# The graded names of every assignment (../shared/exercise-contract.md). No
# chapter may define any of them: the student edition of the site is public.
GRADED_NAMES = {
    "covariate_shift": ("layer_input_stats", "loss_along_gradient"),
    "bn_math": ("batchnorm_forward", "batchnorm_backward",
                "spatial_batchnorm_forward", "spatial_batchnorm_backward"),
    "train_eval": ("BatchNorm", "recalibrate_bn"),
    "alternatives": ("layer_norm", "group_norm", "instance_norm", "rms_norm",
                     "weight_norm", "batch_renorm"),
    "pitfalls": ("fuse_conv_bn", "merge_batch_stats", "freeze_batchnorm"),
}

# Parameter lists of graded functions: a function with one of these, under any
# name, would be a graded answer after a rename.
GRADED_SIGNATURES = (
    ("x", "gamma", "beta", "eps"),
    ("dout", "cache"),
    ("model", "loss_fn", "x", "y", "step_sizes"),
    ("model", "batches"),
    ("self", "num_features", "eps", "momentum", "affine", "track_running_stats"),
)

_CELL = re.compile(r"```\{code-cell\} ipython3\n(.*?)```", re.S)


@dataclass(frozen=True)
class CodeCell:
    header: str   # the cell's metadata: a ---...--- block or :key: lines
    source: str   # the Python code

    @property
    def figure_name(self) -> str | None:
        match = re.search(r"^\s*name: (\S+)", self.header, re.M)
        return match.group(1) if match and "figure:" in self.header else None

    @property
    def figure_caption(self) -> str | None:
        match = re.search(r"^\s*caption: ?\|?\s*\n?(.+)", self.header, re.M)
        return match.group(1).strip() if match and "figure:" in self.header else None

    @property
    def draws_a_figure(self) -> bool:
        return bool(re.search(r"plt\.(subplots|figure|show)\(", self.source))


def _split_cell(raw: str) -> CodeCell:
    lines = raw.split("\n")
    if lines and lines[0].strip() == "---":
        end = lines.index("---", 1)
        return CodeCell("\n".join(lines[1:end]), "\n".join(lines[end + 1:]))
    header = [line for line in lines if line.startswith(":") and re.match(r":\w+:", line)]
    body = [line for line in lines if line not in header]
    return CodeCell("\n".join(header), "\n".join(body))


class Chapter:
    """One chapter's MyST source, split into prose and code cells."""

    def __init__(self, name: str):
        self.name = name
        self.path = BOOK / f"{name}.md"
        self.text = self.path.read_text(encoding="utf-8")

    @cached_property
    def cells(self) -> list[CodeCell]:
        return [_split_cell(raw) for raw in _CELL.findall(self.text)]

    @cached_property
    def code(self) -> str:
        return "\n".join(cell.source for cell in self.cells)

    @cached_property
    def prose(self) -> str:
        return _CELL.sub("", self.text)

    @cached_property
    def headings(self) -> list[str]:
        return re.findall(r"^## (.+)$", self.prose, re.M)

    @cached_property
    def cited_keys(self) -> set[str]:
        groups = re.findall(r"\{cite:[pt]\}`([^`]+)`", self.text)
        return {key.strip() for group in groups for key in group.split(",")}

    def definitions(self) -> list[ast.AST]:
        """Every function and class defined in any code cell (hidden cells included)."""
        found = []
        for cell in self.cells:
            source = "\n".join(line for line in cell.source.split("\n")
                               if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    found.append(node)
        return found


def bib_keys() -> set[str]:
    keys: set[str] = set()
    for path in [BOOK / "references.bib", *sorted((BOOK / "references").glob("*.bib"))]:
        keys |= set(re.findall(r"^@\w+\{([^,\s]+),", path.read_text(encoding="utf-8"), re.M))
    return keys


# --------------------------------------------------------------------------
# The checks


def check_figures(chapter: Chapter, prefix: str, minimum: int) -> None:
    """Every cell that draws is a figure with a caption and a name that the text refers to."""
    figures = [cell for cell in chapter.cells if cell.figure_name]
    assert len(figures) >= minimum, f"{chapter.name}: {len(figures)} figures, expected at least {minimum}"
    for cell in chapter.cells:
        if cell.draws_a_figure:
            assert cell.figure_name, f"{chapter.name}: a cell draws a figure without a name:\n{cell.source[:200]}"
    for cell in figures:
        name = cell.figure_name
        assert name.startswith(prefix), f"{chapter.name}: figure {name} does not start with {prefix}"
        assert cell.figure_caption, f"{chapter.name}: figure {name} has no caption"
        assert f"{{numref}}`{name}`" in chapter.prose, f"{chapter.name}: the text never names {name}"
    names = [cell.figure_name for cell in figures]
    assert len(names) == len(set(names)), f"{chapter.name}: duplicate figure names {names}"


#: The paper that introduced each method, by its glossary term: a citation right after the term is it.
METHOD_PAPERS = {
    "batch normalization": "Ioffe2015", "batch renormalization": "Ioffe2017", "group normalization": "Wu2018",
    "instance normalization": "Ulyanov2016", "layer normalization": "Ba2016", "weight normalization": "Salimans2016",
    "l1 batch normalization": "Hoffer2018", "rms normalization": "Zhang2019", "ghost batch normalization": "Hoffer2017",
    "adabn": "Li2017AdaBN",
}
_TERM_THEN_CITATION = re.compile(r"\{term\}`([^`]*)`\s*\{cite:[pt]\}`([^`]*)`")


def check_citations(chapter: Chapter, required: tuple[str, ...] = ()) -> None:
    """Every cited key is in the bibliography, the chapter cites what it must, and a method's glossary
    term followed by a citation cites that method's paper."""
    known = bib_keys()
    assert chapter.cited_keys, f"{chapter.name} cites nothing"
    assert chapter.cited_keys <= known, f"{chapter.name}: unknown keys {sorted(chapter.cited_keys - known)}"
    missing = set(required) - chapter.cited_keys
    assert not missing, f"{chapter.name} does not cite {sorted(missing)}"
    misattributed = []
    for term, keys in _TERM_THEN_CITATION.findall(chapter.prose):
        target = (term.rsplit("<", 1)[1].rstrip(">") if "<" in term else term).strip().lower()
        paper = METHOD_PAPERS.get(target)
        if paper is not None and paper not in [key.strip() for key in keys.split(",")]:
            misattributed.append(f"{term} cites {keys}, not {paper}")
    assert not misattributed, f"{chapter.name}: {misattributed}"


def check_seeds_and_threads(chapter: Chapter) -> None:
    """One thread, fixed seeds: every build draws the same figures."""
    code = chapter.code
    assert "torch.set_num_threads(1)" in code, f"{chapter.name}: torch.set_num_threads(1) missing"
    assert "torch.manual_seed(" in code, f"{chapter.name}: no torch.manual_seed"
    assert not re.search(r"np\.random\.default_rng\(\s*\)", code), f"{chapter.name}: unseeded NumPy generator"
    assert not re.search(r"np\.random\.(rand|randn|normal|uniform|choice|permutation)\(", code), \
        f"{chapter.name}: NumPy's global random state is used; use a seeded np.random.default_rng"
    for match in re.finditer(r"torch\.Generator\(\)(.{0,20})", code):
        assert ".manual_seed(" in match.group(1), f"{chapter.name}: unseeded torch.Generator"


def check_ends_with_assignment(chapter: Chapter, label: str) -> None:
    """The last section is the labelled Assignment, with the released notebook's download link."""
    assert chapter.headings and chapter.headings[-1] == "Assignment", \
        f"{chapter.name}: last section is {chapter.headings[-1:]}"
    assert f"({label})=\n## Assignment" in chapter.text, f"{chapter.name}: Assignment not labelled {label}"
    tail = chapter.text[chapter.text.index(f"({label})="):]
    link = f"{{download}}`Download the notebook <../exercises/{chapter.name}/{chapter.name}.ipynb>`"
    assert link in tail, f"{chapter.name}: the Assignment section does not link the released notebook"
    assert (ROOT / "exercises" / chapter.name / f"{chapter.name}.ipynb").exists()


def check_quiz_before_assignment(chapter: Chapter, label: str) -> None:
    """The chapter's quiz is included once, right before the Assignment section."""
    include = f"```{{include}} quizzes/{chapter.name}.md\n```\n"
    assert chapter.text.count(include) == 1, f"{chapter.name}: quiz include missing or repeated"
    assert chapter.text.count("{include}") == 1, f"{chapter.name}: more than one include"
    after = chapter.text[chapter.text.index(include) + len(include):]
    assert after.lstrip("\n").startswith(f"({label})=\n## Assignment"), \
        f"{chapter.name}: the quiz is not right before the Assignment section"
    assert (BOOK / "quizzes" / f"{chapter.name}.md").is_file()


def check_runs_outside_the_repository(chapter: Chapter) -> None:
    """No import of the book's helper package: the page runs alone (Colab, Binder)."""
    assert "_code" not in chapter.code, f"{chapter.name} imports book/_code"
    assert "sys.path" not in chapter.code, f"{chapter.name} edits sys.path"
    assert "myst_nb" not in chapter.code, f"{chapter.name} imports myst_nb, which Colab lacks"


def check_no_graded_code(chapter: Chapter) -> None:
    """No graded function or class of any assignment, under its name or with its parameters."""
    graded = {name for names in GRADED_NAMES.values() for name in names}
    for node in chapter.definitions():
        assert node.name not in graded, f"{chapter.name} defines the graded {node.name}"
        if isinstance(node, ast.ClassDef):
            source = ast.unparse(node)
            assert "register_buffer('running_mean'" not in source and \
                'register_buffer("running_mean"' not in source, \
                f"{chapter.name}: class {node.name} keeps running statistics like a BatchNorm module"
            continue
        params = tuple(arg.arg for arg in node.args.posonlyargs + node.args.args)
        for signature in GRADED_SIGNATURES:
            assert params[:len(signature)] != signature, \
                f"{chapter.name}: {node.name}{params} has the parameters of a graded function"


def check_notation(chapter: Chapter) -> None:
    """The symbols of book/notation.md: epsilon, script-B batch statistics, rho for the momentum."""
    stale = {
        r"\varepsilon": "write \\epsilon",
        r"\mu_B": "write \\mu_\\mathcal{B}",
        r"\sigma_B": "write \\sigma^2_\\mathcal{B}",
        r"\sigma^2_B": "write \\sigma^2_\\mathcal{B}",
        "(1 - m)": "the momentum is \\rho",
        "(1-m)": "the momentum is \\rho",
    }
    for pattern, advice in stale.items():
        assert pattern not in chapter.text, f"{chapter.name} contains {pattern!r}: {advice}"
