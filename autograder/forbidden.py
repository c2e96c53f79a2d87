"""Find calls to the library's own version of an exercise, by reading the source.

The grader reads the student's cells as text (it never runs them), resolves
import aliases and flags any use of a forbidden dotted name: an attribute
access, a ``from ... import``, or a string naming it (``getattr(F, "batch_norm")``).
A runtime tripwire in the worker catches calls this misses.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

_DEFINITION = r"^(?:def|class)\s+{name}\b"


def defining_cell(cells: list[str], name: str) -> int | None:
    """The index of the cell that defines ``name`` at the start of a line."""
    pattern = re.compile(_DEFINITION.format(name=re.escape(name)), re.MULTILINE)
    for index, source in enumerate(cells):
        if pattern.search(source):
            return index
    return None


def _parse(source: str) -> ast.Module | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except ImportError:  # pragma: no cover
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def forbidden_uses(source: str, forbidden: Iterable[str]) -> list[str]:
    """The forbidden names that ``source`` uses, as dotted names."""
    tree = _parse(source)
    if tree is None:
        return []
    banned = set(forbidden)
    modules = {name for name in banned if "." not in name}
    leaves = {name.rpartition(".")[2]: name for name in banned if "." in name}
    aliases: dict[str, str] = {}
    found: set[str] = set()

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[(alias.asname or alias.name).split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0])
                if alias.name.split(".")[0] in modules:
                    found.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in modules:
                found.add(root)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if full in banned or alias.name in leaves:
                    found.add(leaves.get(alias.name, full))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node, aliases)
            if dotted is None:
                continue
            if dotted in banned:
                found.add(dotted)
            elif node.attr in leaves:
                found.add(leaves[node.attr])
            if dotted.split(".")[0] in modules:
                found.add(dotted.split(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            full = aliases.get(node.id, node.id)
            if full in banned:
                found.add(full)
            elif full.split(".")[0] in modules:
                found.add(full.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in leaves:
                found.add(leaves[node.value])
    return sorted(found)
