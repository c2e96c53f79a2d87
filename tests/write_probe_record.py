"""Write ``tests/probe_record.json``: what every test is, as the checks and notebooks define it today.

For every assignment the record holds its known mistakes, in the words the
feedback uses for them; the points of every graded cell; the visible part of every test cell of its source
notebook (what students run); and every probe: its grade id, label, targets,
tolerances, known mistakes and, for the inputs of salt 0, what it hands to the
reference (every call of a graded name, recorded by wrapping the reference's
functions and classes: arrays by dtype, shape, range and mean) and the dtypes
and shapes of the outputs it returns. ``tests/test_probe_record.py`` compares
the course with the record, so that a changed test is a visible, reviewed diff.
After changing a test or a mistake on purpose::

    .venv/bin/python -m tests.write_probe_record

and review ``git diff tests/probe_record.json`` before committing it with the change.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autograder.checks import ASSIGNMENT_IDS
from autograder.checks.core import Probe, as_array, salted
from autograder.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tests" / "probe_record.json"
SALT = 0


# ---------------------------------------------------------------------------
# Describing values


def _array_text(value: Any) -> str | None:
    """``float64(4, 6) in [-1.8, 2.3] mean 0.12`` for an array or a tensor, None for anything else.

    The range and mean (two significant digits) pin what makes an input hard beyond its shape: an
    offset far from zero, a tiny or huge scale, a constant channel. Two digits, so that only a change
    to the probe moves them.
    """
    if isinstance(value, np.ndarray):
        dtype, values = str(value.dtype), value
    elif callable(getattr(value, "detach", None)) and hasattr(value, "dtype") and hasattr(value, "shape"):
        dtype = str(value.dtype).replace("torch.", "")
        values = None if value.dtype.is_complex or str(value.dtype) == "torch.bool" else \
            value.detach().cpu().double().numpy()
    else:
        return None
    text = f"{dtype}{tuple(value.shape)}"
    if values is None or values.dtype.kind not in "iuf" or not values.size:
        return text
    finite = values[np.isfinite(values)].astype(np.float64)
    if not finite.size:
        return text + " all non-finite"
    low, high, mean = finite.min(), finite.max(), finite.mean()
    if abs(mean) <= 1e-9 * max(abs(low), abs(high)):
        mean = 0.0  # a centred input: its mean is rounding noise, whose digits could differ between machines
    return text + f" in [{low:.2g}, {high:.2g}] mean {mean:.2g}"


def describe(value: Any, depth: int = 0) -> str:
    """A short, stable description of an argument: arrays by dtype and shape, scalars by value."""
    text = _array_text(value)
    if text is not None:
        return text
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)) and depth < 2:
        inner = ", ".join(describe(v, depth + 1) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, Mapping) and depth < 2:
        items = [f"{k!r}: {describe(v, depth + 1)}" for k, v in list(value.items())[:8]]
        return "{" + ", ".join(items) + (", ..." if len(value) > 8 else "") + "}"
    if isinstance(value, types.GeneratorType):
        return "<generator>"
    if inspect.isfunction(value) or inspect.ismethod(value):
        return f"<function {value.__name__}>"
    return f"<{type(value).__name__}>"


def _call_text(name: str, args: tuple, kwargs: Mapping[str, Any]) -> str:
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def output_text(value: np.ndarray) -> str:
    if value.dtype.kind == "U":
        return f"str{value.shape}"
    return f"{value.dtype}{value.shape}"


# ---------------------------------------------------------------------------
# A namespace that records what the probes hand to the reference


def _recording_function(name: str, function: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(_call_text(name, args, kwargs))
        return function(*args, **kwargs)

    recorded.__name__ = getattr(function, "__name__", name)
    return recorded


def _recording_class(name: str, cls: type, calls: list[str]) -> type:
    """A subclass of ``cls`` that records its construction and, for a module, its forward calls."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(_call_text(name, args, kwargs))
        cls.__init__(self, *args, **kwargs)

    attributes: dict[str, Any] = {"__init__": __init__, "__module__": cls.__module__}
    # A module's inputs arrive through forward, and through load_state_dict for a state the probe sets.
    for method in ("forward", "load_state_dict"):
        if callable(getattr(cls, method, None)):
            attributes[method] = _recording_method(name, cls, method, calls)
    return type(cls.__name__, (cls,), attributes)


def _recording_method(name: str, cls: type, method: str, calls: list[str]) -> Callable[..., Any]:
    original = getattr(cls, method)

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(_call_text(f"{name}.{method}", args, kwargs))
        return original(self, *args, **kwargs)

    return recorded


def recording_namespace(namespace: Mapping[str, Any], calls: list[str]) -> dict[str, Any]:
    recorded: dict[str, Any] = {}
    for name, value in namespace.items():
        if isinstance(value, type):
            recorded[name] = _recording_class(name, value, calls)
        elif callable(value):
            recorded[name] = _recording_function(name, value, calls)
        else:
            recorded[name] = value
    return recorded


# ---------------------------------------------------------------------------
# The record


def run_probe(probe: Probe, namespace: Mapping[str, Any], salt: int = SALT) -> dict[str, np.ndarray]:
    """The probe's outputs on ``namespace`` for the inputs of ``salt`` (a fresh copy of the namespace)."""
    with salted(salt):
        outputs = probe.run(dict(namespace))
    return {key: as_array(value) for key, value in outputs.items()}


def probe_entry(grade_id: str, probe: Probe, reference: Mapping[str, Any]) -> dict[str, Any]:
    calls: list[str] = []
    outputs = run_probe(probe, recording_namespace(reference, calls))
    return {
        "grade_id": grade_id,
        "label": probe.name,
        "targets": list(probe.targets),
        "rtol": probe.rtol,
        "atol": probe.atol,
        "mistakes": list(probe.mistakes),
        "labels": {key: probe.labels[key] for key in outputs if key in probe.labels},
        "given": probe.given is not None,
        "given_check": probe.given_check,
        "inputs": calls,
        "outputs": {key: output_text(value) for key, value in outputs.items()},
    }


def _source_cells(assignment: str) -> list[dict[str, Any]]:
    source = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    return json.loads(source.read_text(encoding="utf-8"))["cells"] if source.exists() else []


def points(assignment: str) -> dict[str, float]:
    """The points of every graded cell of the source notebook, tests and written answers alike."""
    graded = (cell.get("metadata", {}).get("nbgrader", {}) for cell in _source_cells(assignment))
    return {meta["grade_id"]: meta["points"] for meta in graded if meta.get("grade")}


def visible_tests(assignment: str) -> dict[str, list[str]]:
    """The visible part of every test cell of the source notebook, line by line: what students can run."""
    visible: dict[str, list[str]] = {}
    for cell in _source_cells(assignment):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        shown = text.split("### BEGIN HIDDEN TESTS", 1)[0]
        visible[meta["grade_id"]] = [line.rstrip() for line in shown.splitlines() if line.strip()]
    return visible


def probe_record(assignments: tuple[str, ...] = ASSIGNMENT_IDS) -> dict[str, dict[str, Any]]:
    """Per assignment: its known mistakes with the words students read, its visible tests, its probes."""
    record: dict[str, dict[str, Any]] = {}
    for name in assignments:
        spec = load_spec(name)
        reference = spec.reference()
        record[name] = {
            "mistakes": {key: mistake.description for key, mistake in spec.mistakes.items()},
            "points": points(name),
            "visible tests": visible_tests(name),
            "probes": [probe_entry(grade_id, probe, reference)
                       for grade_id, probes in spec.tests.items() for probe in probes],
        }
    return record


def dump(record: Mapping[str, Any]) -> str:
    """JSON with one line per field, per mistake, per visible line, per input call and per output:
    a change is a one-line diff."""

    def value(v: Any, indent: str) -> str:
        if isinstance(v, dict) and v:
            items = [f"{indent} {json.dumps(k, ensure_ascii=False)}: {value(x, indent + ' ')}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + f"\n{indent}}}"
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v) and sum(map(len, v)) > 80:
            items = [f"{indent} {json.dumps(x, ensure_ascii=False)}" for x in v]
            return "[\n" + ",\n".join(items) + f"\n{indent}]"
        return json.dumps(v, ensure_ascii=False)

    lines = ["{"]
    for a, (name, parts) in enumerate(record.items()):
        lines.append(f" {json.dumps(name)}: {{")
        lines.append(f'  "mistakes": {value(parts["mistakes"], "  ")},')
        lines.append(f'  "points": {value(parts["points"], "  ")},')
        lines.append(f'  "visible tests": {value(parts["visible tests"], "  ")},')
        lines.append('  "probes": [')
        probes = parts["probes"]
        for i, probe in enumerate(probes):
            fields = [f"    {json.dumps(k)}: {value(v, '    ')}" for k, v in probe.items()]
            lines.append("   {\n" + ",\n".join(fields) + "\n   }" + ("," if i < len(probes) - 1 else ""))
        lines.append("  ]")
        lines.append(" }" + ("," if a < len(record) - 1 else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(record)), "dump() lost something"
    return text


def main() -> None:
    RECORD.write_text(dump(probe_record()), encoding="utf-8")
    print(f"wrote {RECORD}; review it with git diff before committing")


if __name__ == "__main__":
    main()
