"""What student code may use: a policy checked on the source of every cell the student controls.

The grader reads the cells as text (it never runs them here). The policy is
written down for students in each notebook:

- imports only from :data:`ALLOWED_IMPORTS` (what a layer and an experiment
  need), never ``from ... import *``;
- no attribute reached by a computed name: ``getattr``/``setattr``/
  ``delattr``/``hasattr`` only with a literal name; no ``eval``, ``exec``,
  ``compile``, ``__import__``, ``globals``, ``locals``, ``vars``,
  ``breakpoint``; no dunder attribute but ``__init__``, ``__name__`` and
  ``__doc__``; no frame or code object attribute; no private (``_x``)
  attribute of a module such as ``torch._C``;
- the identifiers of the library's own versions of the exercise
  (``batch_norm``, ``layer_norm``, ``BatchNorm2d``, ...) nowhere as an
  attribute, an imported name or a keyword; the classes an exercise must
  recognise (``nn.BatchNorm2d``) only inside ``isinstance``/``issubclass``.

Together these leave no route, by alias or by string, to the library's own
version of an exercise; strings and comments are free. A violation costs the
automatic credit of the graded names it can affect (those its cell defines,
and every graded name when the cell defines none) and marks the submission
for review.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autograder.checks.core import Assignment
from autograder.worker import ERROR_CHARS, OUTPUT_CHARS

#: Modules (and their submodules, where marked with ``.*``) student code may import.
ALLOWED_IMPORTS: tuple[str, ...] = (
    "__future__", "math", "cmath", "numbers", "copy", "functools", "itertools", "collections", "collections.abc",
    "types", "typing", "dataclasses", "enum", "abc", "time", "timeit", "random", "statistics", "warnings",
    "numpy", "numpy.random", "numpy.linalg", "numpy.testing",
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim", "torch.optim.lr_scheduler",
    "torch.utils", "torch.utils.data", "torch.nn.modules", "torch.nn.modules.batchnorm",
    "matplotlib", "matplotlib.*", "sklearn", "sklearn.datasets", "sklearn.model_selection", "sklearn.metrics",
    "tqdm", "tqdm.*",
)
FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                             "input", "help", "memoryview"})
COMPUTED_ACCESS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__"})
#: Attributes that lead to frames, code objects or an interpreter's internals.
INTROSPECTION = frozenset({
    "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
    "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals", "func_code",
    "ops", "library", "cpp_extension", "ctypeslib", "f2py", "hub", "classes", "modules_to_fuse",
})
#: Always denied: ways to load code, and library routes every assignment shares.
COMMON_LIBRARY = ("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm",
                  "batch_norm_elemt", "batch_norm_stats", "batch_norm_gather_stats",
                  "batch_norm_gather_stats_with_counts", "batch_norm_update_stats", "batch_norm_backward_reduce",
                  "batch_norm_backward_elemt", "quantized_batch_norm", "native_layer_norm", "native_group_norm",
                  "_weight_norm_interface", "allow_pickle", "weights_only", "load_inline", "fuse_modules",
                  "fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval", "fuse_linear_bn_weights",
                  "update_bn")


@dataclass(frozen=True)
class Violation:
    """One place where a cell leaves the policy."""

    cell: int
    line: int
    what: str

    def message(self, cell_number: int | None = None) -> str:
        where = f"code cell {cell_number if cell_number is not None else self.cell + 1}, line {self.line}"
        return f"{where}: {self.what}"


def _import_allowed(module: str) -> bool:
    for allowed in ALLOWED_IMPORTS:
        if allowed.endswith(".*") and (module == allowed[:-2] or module.startswith(allowed[:-1])):
            return True
        if module == allowed:
            return True
    return False


def _parse(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


class _Checker(ast.NodeVisitor):
    def __init__(self, cell: int, denied: frozenset[str], type_checks: frozenset[str]) -> None:
        self.cell, self.denied, self.type_checks = cell, denied, type_checks
        self.modules: set[str] = set()  # names bound to imported modules
        self.found: list[Violation] = []
        self._in_type_check = 0

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append(Violation(self.cell, getattr(node, "lineno", 0), what))

    def _identifier(self, node: ast.AST, name: str, how: str) -> None:
        type_check_only = name in self.type_checks and not self._in_type_check and how != "imports"
        if name in self.denied or type_check_only:
            where = " outside isinstance/issubclass" if name in self.type_checks else ""
            self._flag(node, f"{how} `{name}`{where}: the library's own version of an exercise earns no credit")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _import_allowed(alias.name):
                self._flag(node, f"`import {alias.name}` is outside the allowed imports")
            self.modules.add((alias.asname or alias.name).split(".")[0])
            self._identifier(node, alias.name.rsplit(".", 1)[-1], "imports")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if node.level or not _import_allowed(module):
            self._flag(node, f"`from {module} import ...` is outside the allowed imports")
        for alias in node.names:
            if alias.name == "*":
                self._flag(node, f"`from {module} import *` hides what is used")
                continue
            self._identifier(node, alias.name, "imports")
            if _import_allowed(f"{module}.{alias.name}"):
                self.modules.add(alias.asname or alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name):
            if function.id in FORBIDDEN_CALLS:
                self._flag(node, f"`{function.id}(...)` is not allowed")
            if function.id in COMPUTED_ACCESS:
                name = node.args[1] if len(node.args) > 1 else None
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    self._flag(node, f"`{function.id}` with a computed attribute name is not allowed")
                else:
                    self._attribute(node, name.value, rooted_at_module=False)
            if function.id in ("isinstance", "issubclass") and len(node.args) == 2:
                self.visit(node.func)
                self.visit(node.args[0])
                self._in_type_check += 1
                self.visit(node.args[1])
                self._in_type_check -= 1
                for keyword in node.keywords:
                    self.visit(keyword)
                return
        for keyword in node.keywords:
            if keyword.arg:
                self._identifier(keyword, keyword.arg, "passes the keyword")
        self.generic_visit(node)

    def _attribute(self, node: ast.AST, name: str, rooted_at_module: bool) -> None:
        if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
            self._flag(node, f"the attribute `{name}` is not allowed")
        elif name in INTROSPECTION:
            self._flag(node, f"the attribute `{name}` is not allowed")
        elif rooted_at_module and name.startswith("_") and name not in self.type_checks:
            self._flag(node, f"the private attribute `{name}` of a module is not allowed")
        self._identifier(node, name, "uses")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root: ast.AST = node
        while isinstance(root, ast.Attribute):
            root = root.value
        self._attribute(node, node.attr, isinstance(root, ast.Name) and root.id in self.modules)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("__") and node.id.endswith("__") and node.id not in ALLOWED_DUNDERS:
            self._flag(node, f"the name `{node.id}` is not allowed")
        if node.id in self.type_checks and not self._in_type_check:
            self._identifier(node, node.id, "uses")

    def check_bare_references(self, tree: ast.Module) -> None:
        """``getattr`` and friends passed around as values would compute a name out of sight."""
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in COMPUTED_ACCESS | FORBIDDEN_CALLS and id(node) not in called:
                self._flag(node, f"`{node.id}` may only be called directly")


def check_cell(source: str, cell: int, assignment: Assignment) -> list[Violation]:
    """The violations of one cell's source."""
    tree = _parse(source)
    if tree is None:
        return []  # a cell that does not parse fails when it runs: nothing to judge here
    checker = _Checker(cell, frozenset(COMMON_LIBRARY) | frozenset(assignment.library),
                       frozenset(assignment.type_checks))
    checker.visit(tree)
    checker.check_bare_references(tree)
    return sorted(set(checker.found), key=lambda v: (v.cell, v.line, v.what))


_DEFINITION = r"^(?:def|class)\s+{name}\b"


def defined_names(source: str, names: Iterable[str]) -> list[str]:
    """The graded ``names`` this cell defines at the start of a line."""
    return [name for name in names if re.search(_DEFINITION.format(name=re.escape(name)), source, re.MULTILINE)]


@dataclass(frozen=True)
class PolicyReport:
    """The violations of a notebook and, per graded name, the ones that cost it its credit."""

    violations: tuple[Violation, ...]
    affected: dict[str, tuple[Violation, ...]]


def check_notebook(cells: Sequence[str], checked: Sequence[bool], assignment: Assignment) -> PolicyReport:
    """Check every cell the student controls (``checked[i]``); map violations to the graded names.

    A violation in a cell that defines graded names affects those names and
    every graded name whose cell calls one of them; a violation in any other
    cell could reach every function, and affects them all.
    """
    graded = assignment.graded_names
    violations: list[Violation] = []
    affected: dict[str, list[Violation]] = {}
    definitions = {index: defined_names(source, graded) for index, source in enumerate(cells)}
    for index, source in enumerate(cells):
        if not checked[index]:
            continue
        found = check_cell(source, index, assignment)
        violations += found
        for name in (definitions[index] or graded) if found else ():
            affected.setdefault(name, []).extend(found)
    changed = True
    while changed:  # a function that calls an affected one is affected too
        changed = False
        for index, names in definitions.items():
            for name in names:
                if name in affected:
                    continue
                for other in list(affected):
                    if re.search(rf"(?<![\w.]){re.escape(other)}\s*\(", cells[index]):
                        affected[name] = list(affected[other])
                        changed = True
                        break
    return PolicyReport(tuple(violations), {name: tuple(v) for name, v in affected.items()})


# ---------------------------------------------------------------------------
# The rules as students read them


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def rules_markdown(assignment: Assignment) -> str:
    """The "How your work is graded" cell of an assignment's notebook, from the policy itself."""
    wildcards = [name[:-2] for name in ALLOWED_IMPORTS if name.endswith(".*")]
    imports = [name for name in ALLOWED_IMPORTS if name != "__future__" and not name.endswith(".*")]
    numpy_only = ("This is a NumPy assignment: `import torch` costs nothing, but PyTorch is not available "
                  "when your functions are graded, so a function that uses it fails.\n\n"
                  if assignment.kind == "numpy" else "")
    library = sorted(set(assignment.library) - set(assignment.graded_names))
    type_checks = f" ({_names(sorted(assignment.type_checks))} only inside `isinstance`/`issubclass`)" \
        if assignment.type_checks else ""
    own = sorted(set(assignment.library) & set(assignment.graded_names))
    if own:
        type_checks += (f"; the names of your own functions ({_names(own)}) only for them: the library's "
                        f"function of that name, as in `F.{own[0]}`, earns nothing")
    private = sorted(name for name in assignment.type_checks if name.startswith("_"))
    private_type_checks = f" other than {_names(private)}, which you may import for `isinstance`" \
        if private else ""
    return f"""## How your work is graded

Each test cell has visible tests, which you run, and hidden tests, which run when your notebook is
graded: they call your functions on inputs drawn for you alone and compare the results with those
of a reference written with PyTorch (PyTorch's own layer wherever it has one). A test cell earns the fraction of its hidden checks that pass. Its feedback names each
failed check and how your result differs, and, when it recognizes it, the mistake. Errors and printed
output reach the feedback only as a short excerpt: an error's type and the start of its first line
({ERROR_CHARS} characters), and {OUTPUT_CHARS:,} characters of output per cell.

One mistake costs once: when one of your functions builds on another of yours, a mistake in the one
it builds on costs points only in that function's test cells; the other keeps its points as long as
it is right given what the first one does.

{numpy_only}Your notebook is graded as code. Every code cell you write must keep to these rules:

- import only from {_names(imports)}, and the submodules of {_names(wildcards)};
- never use the library's own version of an exercise as an attribute, an imported name or a keyword
  argument (in strings, comments, docstrings and your own variable names these words are free):
  {_names(library) or "none"}{type_checks};
- no `getattr`, `setattr`, `delattr` or `hasattr` with a computed name (a literal string is fine), and
  no {_names(sorted(FORBIDDEN_CALLS))};
- no attribute or name with double underscores other than {_names(sorted(ALLOWED_DUNDERS))}, and no
  private attribute of a module (such as `torch._C`){private_type_checks}.

A cell outside the rules earns no automatic credit for the functions it can affect (those it
defines, or all of them if it defines none), and your notebook goes to an instructor for review.
"""
