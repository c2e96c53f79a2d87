"""The hidden tests of ``alternatives`` are sound: right reference, useful mistakes, good coverage.

- the reference is PyTorch's semantics (batch renormalization, which PyTorch
  lacks, reduces to batch norm and to evaluation mode where it should; the
  weight norm matches torch's parametrization for every ``dim``);
- the reference solutions of the source notebook agree with PyTorch on inputs
  beyond the probes (more shapes, group counts and dtypes);
- every known mistake changes at least one probe it is attached to, so that
  its diagnosis can fire, and the probes cover what the contract promises;
- answers that call the library's own layer are caught statically.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.checks.core import compare
from autograder.policy import check_cell
from autograder.spec import load_spec
from tests.conftest import source_notebook

SPEC = load_spec("alternatives")
ASSIGNMENT = SPEC.checks
NAMES = ("layer_norm", "group_norm", "instance_norm", "rms_norm", "weight_norm", "batch_renorm")


@pytest.fixture(scope="module")
def solution():
    """The namespace of the source notebook's answer cells (the reference solutions)."""
    namespace: dict = {"torch": torch, "F": F}
    for cell in source_notebook("alternatives").cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id in NAMES:
            exec(cell.source, namespace)  # noqa: S102 - our own reference solutions
    return namespace


def _leaf(shape, seed, dtype=torch.float64, offset=0.0):
    generator = torch.Generator().manual_seed(seed)
    return (offset + torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype).requires_grad_(True)


def _same(mine, theirs, inputs, dtype):
    """Outputs and gradients of two callables of the same leaves agree."""
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-7, atol=1e-10)
    copies = [[t.detach().clone().requires_grad_(True) for t in inputs] for _ in range(2)]
    out_a, out_b = mine(*copies[0]), theirs(*copies[1])
    assert out_a.dtype == out_b.dtype and out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, **tol)
    dout = torch.randn(out_b.shape, generator=torch.Generator().manual_seed(99), dtype=torch.float64).to(dtype)
    for ga, gb in zip(torch.autograd.grad(out_a, copies[0], dout), torch.autograd.grad(out_b, copies[1], dout)):
        torch.testing.assert_close(ga, gb, **tol)


# ---------------------------------------------------------------------------
# The reference


def test_batch_renorm_reference_is_batch_norm_when_r_and_d_are_fixed():
    renorm = SPEC.reference()["batch_renorm"]
    x, weight, bias = _leaf((6, 4), 1, offset=2.0), _leaf((4,), 2), _leaf((4,), 3)
    running_mean, running_var = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    _same(lambda x, w, b: renorm(x, w, b, running_mean, running_var, 1.0, 0.0),
          lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, weight, bias], torch.float64)


def test_batch_renorm_reference_forward_is_evaluation_mode_without_clipping():
    renorm = SPEC.reference()["batch_renorm"]
    x = _leaf((8, 3), 4, offset=1.0).detach()
    weight, bias = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    running_mean = x.mean(dim=0) + 0.1
    running_var = x.var(dim=0) * 1.1
    out = renorm(x, weight, bias, running_mean, running_var, 10.0, 10.0)
    expected = F.batch_norm(x, running_mean, running_var, weight, bias, training=False)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim", [0, 1, None])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_weight_norm_reference_matches_the_parametrization(dim, layer):
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    module = torch.nn.Linear(5, 3) if layer == "linear" else torch.nn.Conv2d(2, 4, 3)
    module = weight_norm(module.double(), dim=dim)
    g = module.parametrizations.weight.original0.detach()
    v = module.parametrizations.weight.original1.detach()
    with torch.no_grad():
        g.mul_(1.7)
        module.parametrizations.weight.original0.copy_(g)
    reference = SPEC.reference()["weight_norm"]
    torch.testing.assert_close(reference(v, g, -1 if dim is None else dim), module.weight.detach())


# ---------------------------------------------------------------------------
# The reference solutions, on inputs the probes do not use


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("shape", "normalized_shape"), [((3, 7), 7), ((2, 3, 4), [3, 4]), ((2, 2, 3, 2), (2, 3, 2))])
@pytest.mark.parametrize("affine", [False, True])
def test_solution_layer_norm(solution, dtype, shape, normalized_shape, affine):
    size = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = _leaf(shape, 5, dtype, offset=3.0)
    if affine:
        inputs = [x, _leaf(size, 6, dtype), _leaf(size, 7, dtype)]
        _same(lambda x, w, b: solution["layer_norm"](x, normalized_shape, w, b, eps=1e-3),
              lambda x, w, b: F.layer_norm(x, size, w, b, eps=1e-3), inputs, dtype)
    else:
        _same(lambda x: solution["layer_norm"](x, normalized_shape), lambda x: F.layer_norm(x, size), [x], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("shape", "groups"), [((2, 8, 3, 3), 2), ((2, 8, 3, 3), 4), ((3, 6, 5), 3), ((4, 10), 5),
                                               ((1, 4, 2, 2, 2), 2), ((2, 6, 3, 3), 6)])
def test_solution_group_norm(solution, dtype, shape, groups):
    channels = shape[1]
    inputs = [_leaf(shape, 8, dtype, offset=-1.0), _leaf((channels,), 9, dtype), _leaf((channels,), 10, dtype)]
    _same(lambda x, w, b: solution["group_norm"](x, groups, w, b),
          lambda x, w, b: F.group_norm(x, groups, w, b), inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 2, 2, 3, 2)])
def test_solution_instance_norm(solution, dtype, shape):
    channels = shape[1]
    inputs = [_leaf(shape, 11, dtype, offset=2.0), _leaf((channels,), 12, dtype), _leaf((channels,), 13, dtype)]
    _same(lambda x, w, b: solution["instance_norm"](x, w, b, eps=0.01),
          lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=0.01), inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("shape", "normalized_shape"), [((3, 7), 7), ((2, 3, 4), [3, 4]), ((2, 2, 3), (3,))])
@pytest.mark.parametrize("eps", [None, 0.1])
def test_solution_rms_norm(solution, dtype, shape, normalized_shape, eps):
    size = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = (1e-3 * _leaf(shape, 14, dtype)).detach().requires_grad_(True)
    inputs = [x, _leaf(size, 15, dtype)]
    _same(lambda x, w: solution["rms_norm"](x, normalized_shape, w, eps=eps),
          lambda x, w: F.rms_norm(x, size, w, eps=eps), inputs, dtype)


@pytest.mark.parametrize(("shape", "dim"), [((4, 3), 0), ((4, 3), 1), ((4, 3), -1), ((2, 3, 4), 2), ((2, 3, 4), -3),
                                            ((3, 2, 2, 2), 0), ((3, 2, 2, 2), -2), ((3, 2, 2, 2), -1)])
def test_solution_weight_norm(solution, shape, dim):
    g_shape = () if dim == -1 else tuple(s if d == dim % len(shape) else 1 for d, s in enumerate(shape))
    inputs = [_leaf(shape, 16), (_leaf(g_shape, 17).detach().abs() + 0.5).requires_grad_(True)]
    _same(lambda v, g: solution["weight_norm"](v, g, dim), lambda v, g: torch._weight_norm(v, g, dim),
          inputs, torch.float64)


def test_solution_batch_renorm(solution):
    reference = SPEC.reference()["batch_renorm"]
    for seed, (r_max, d_max) in enumerate([(1.0, 0.0), (1.5, 0.2), (3.0, 5.0), (100.0, 100.0)]):
        inputs = [_leaf((5, 4), 20 + seed, offset=1.0), _leaf((4,), 30 + seed), _leaf((4,), 40 + seed)]
        running_mean = torch.randn(4, dtype=torch.float64)
        running_var = torch.rand(4, dtype=torch.float64) * 4.0
        _same(lambda x, w, b: solution["batch_renorm"](x, w, b, running_mean, running_var, r_max, d_max),
              lambda x, w, b: reference(x, w, b, running_mean, running_var, r_max, d_max), inputs, torch.float64)


# ---------------------------------------------------------------------------
# Mistakes and coverage


def _mistakes():
    for grade_id, probes in ASSIGNMENT.tests.items():
        seen = []
        for probe in probes:
            for name in probe.mistakes:
                if name not in seen:
                    seen.append(name)
        for name in seen:
            yield grade_id, name


MISTAKES = list(_mistakes())


@pytest.mark.parametrize(("grade_id", "name"), MISTAKES, ids=[f"{g}-{m}" for g, m in MISTAKES])
def test_every_mistake_changes_a_probe_it_names(grade_id, name):
    mistake = SPEC.mistakes[name]
    reference = SPEC.reference()
    wrong = {**reference, **mistake.implementations}
    changed = [probe.name for probe in ASSIGNMENT.tests[grade_id] if name in probe.mistakes
               and compare(probe.run(reference), probe.run(wrong), probe.rtol, probe.atol)]
    assert changed, f"no probe of {grade_id} tells {mistake.description!r} from the reference"


def test_reference_outputs_are_finite_and_probes_cover_the_contract():
    reference = SPEC.reference()
    names = " | ".join(p.name for probes in ASSIGNMENT.tests.values() for p in probes)
    for probes in ASSIGNMENT.tests.values():
        for probe in probes:
            for key, value in probe.run(reference).items():
                if value.dtype.kind == "f":
                    assert np.isfinite(value).all(), (probe.name, key)
    for phrase in ("float32", "float64", "(an int)", "(a list)", "(a tuple)", "without weight and bias",
                   "with weight only", "dim=-1", "dim=-2", "no clipping", "r clipped to 1 / r_max", "r_max=1,",
                   "the default eps"):
        assert phrase in names, phrase
    # Group counts strictly between 1 and C, where the order of the reshape matters.
    assert any(f"with {g} groups" in names for g in (2, 3, 4))


@pytest.mark.parametrize(("name", "call"), list(itertools.product(NAMES, [
    "F.layer_norm(x, (4,))", "torch.nn.functional.group_norm(x, 2)", "F.instance_norm(x)", "F.rms_norm(x, [4])",
    "F.batch_norm(x, None, None, training=True)", "torch._weight_norm(v, g, 0)", "torch.norm_except_dim(v, 2, 0)",
    "torch.nn.LayerNorm(4)(x)", "nn.GroupNorm(2, 4)(x)", "torch.layer_norm(x, (4,))",
])))
def test_calling_the_library_is_outside_the_source_policy(name, call):
    """Every route to PyTorch's own version of a layer, from any of the graded functions, is a violation."""
    source = (f"import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"
              f"def {name}(x, v=None, g=None):\n    return {call}\n")
    assert check_cell(source, 0, ASSIGNMENT)


def test_reference_solutions_keep_to_the_source_policy():
    for cell in source_notebook("alternatives").cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id in NAMES:
            assert not check_cell(cell.source, 0, ASSIGNMENT), grade_id


def _small_batch_outputs(group_norm: tuple[float, float], batch_norm: tuple[float, float]) -> dict:
    """What the hidden small-batch probe makes of an experiment that reports these accuracies
    (at batch sizes 2 and 32)."""
    (probe,) = load_spec("alternatives").tests["test_groupnorm_vs_batchnorm_small_batch"]

    def groupnorm_vs_batchnorm_small_batch(batch_sizes, seed=0, epochs=1):
        return {"group_norm": list(group_norm), "batch_norm": list(batch_norm)}

    return probe.run({"groupnorm_vs_batchnorm_small_batch": groupnorm_vs_batchnorm_small_batch})


@pytest.mark.parametrize(("batch_norm", "gap"), [((0.60, 0.93), True), ((0.78, 0.93), True),
                                                 ((0.84, 0.93), False), ((0.86, 0.90), False)])
def test_the_small_batch_check_wants_batch_norm_clearly_better_with_large_batches(batch_norm, gap):
    """Batch norm must gain more than 0.12 from batches of 2 to batches of 32: a gain within the noise of
    one short run fails that check."""
    outputs = _small_batch_outputs((0.93, 0.94), batch_norm)
    assert bool(outputs["bn_gap"]) is gap
