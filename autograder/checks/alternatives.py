"""Hidden tests of ``alternatives``: normalization layers other than batch norm, in PyTorch.

The reference (``autograder/references/alternatives.py``, grader only) is
PyTorch itself; batch renormalization, which PyTorch does not have, is written
there with tensor operations. Every probe returns the output and the gradients
that autograd computes through the function (with respect to the input, the
weight and the bias, or to ``v`` and ``g``) for an upstream gradient drawn with
the inputs.

The inputs are drawn per student, and chosen so that the usual mistakes change
the result visibly:

- channels with different means and spreads, and a spatial pattern shared by
  all images, so that statistics over the wrong axes cannot hide;
- group counts strictly between 1 and C, so that grouping channels in the wrong
  order (reshaping to (N, C // G, G, ...) instead of (N, G, C // G, ...)) shows;
- few elements per statistic, where the unbiased variance differs from the
  biased one, and a large ``eps``, where ``eps`` outside the square root shows;
- inputs of tiny magnitude for ``rms_norm`` with ``eps=None``, where the
  default ``eps`` (the machine epsilon of the dtype) matters, and inputs with a
  non-zero mean, where subtracting the mean shows;
- ``weight_norm`` with ``dim`` 0, 1, a positive last axis, a negative axis and
  -1 (which means the whole tensor in ``torch._weight_norm``);
- batch renormalization with the clipping of ``r`` and ``d`` inactive and
  active (above ``r_max``, below ``1 / r_max``, beyond ``d_max``).

Probes run in float64 unless their name says float32, with tolerances to match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autograder.checks.core import (Assignment, Namespace, Outputs, Probe, ProbeError, as_array,
                                   student_generator)
from autograder.checks.core import experiment_numbers, fraction, student_seed, with_stand_ins

# Tolerances: float64 probes are compared tightly, float32 ones to float32 accuracy.
_F64 = {"rtol": 1e-9, "atol": 1e-11}  # right answers agree to about 1e-12; float32 arithmetic to about 1e-7
_F32 = {"rtol": 1e-5, "atol": 1e-5}  # 10 times what right float32 answers are off by (rms_norm's 1e3 gradients)

# ---------------------------------------------------------------------------
# Inputs


def _torch():
    import torch

    return torch


def _dtype(name: str):
    return getattr(_torch(), name)


def _channels_input(seed: int, shape: tuple[int, ...], dtype: str = "float64", scale: float = 1.0,
                    offset: float = 0.0):
    """A batch whose channels (dimension 1) have different means and spreads.

    A pattern shared by every example over the trailing dimensions makes
    statistics over the batch differ from statistics per example.
    """
    torch = _torch()
    generator = student_generator(seed)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    channel_scale = 0.5 + 2.0 * torch.rand(channels, generator=generator, dtype=torch.float64)
    channel_offset = 3.0 * torch.randn(channels, generator=generator, dtype=torch.float64)
    pattern = 2.0 * torch.randn((1,) + tuple(shape[1:]), generator=generator, dtype=torch.float64)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    x = x * channel_scale.view(view) + channel_offset.view(view) + pattern
    return (scale * x + offset).to(_dtype(dtype))


def _plain_input(seed: int, shape: tuple[int, ...], dtype: str = "float64", scale: float = 1.0,
                 offset: float = 0.0):
    torch = _torch()
    generator = student_generator(seed)
    x = offset + scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    return x.to(_dtype(dtype))


def _parameter(seed: int, shape: tuple[int, ...], dtype: str, kind: str):
    """A weight (positive, away from 1) or a bias (away from 0)."""
    torch = _torch()
    generator = student_generator(seed)
    if kind == "weight":
        value = 0.5 + 2.0 * torch.rand(shape, generator=generator, dtype=torch.float64)
    else:
        value = 1.0 + torch.randn(shape, generator=generator, dtype=torch.float64)
    return value.to(_dtype(dtype))


def _upstream(seed: int, like):
    """The upstream gradient: random, with a non-zero mean."""
    torch = _torch()
    generator = student_generator(seed)
    value = 0.5 + torch.randn(tuple(like.shape), generator=generator, dtype=torch.float64)
    return value.to(like.dtype)


# ---------------------------------------------------------------------------
# Running a function and taking its gradients


def _run(ns: Namespace, name: str, call: Callable[[Any], Any], leaves: dict[str, Any], seed: int,
         extra: Outputs | None = None) -> Outputs:
    """Call ``name`` through ``call(function)`` and return its output and gradients."""
    torch = _torch()
    function = ns[name]
    out = call(function)
    if not isinstance(out, torch.Tensor):
        raise ProbeError(f"{name} returned a {type(out).__name__}, expected a torch.Tensor")
    outputs: Outputs = {"out": as_array(out).copy(), "dtype": np.array(str(out.dtype).replace("torch.", ""))}
    if not out.requires_grad:
        raise ProbeError(
            f"the output of {name} is not connected to the autograd graph of its inputs: use tensor "
            "operations only (no .detach(), .numpy(), .item() or torch.no_grad() on the way)")
    names = list(leaves)
    grads = torch.autograd.grad(out, [leaves[k] for k in names], _upstream(seed, out), allow_unused=True)
    for key, grad in zip(names, grads):
        leaf = leaves[key]
        outputs[f"d{key}"] = np.zeros(tuple(leaf.shape)) if grad is None else as_array(grad).copy()
    outputs.update(extra or {})
    return outputs


def _labels(*names: str) -> dict[str, str]:
    labels = {"out": "the output", "dtype": "the dtype of the output"}
    for name in names:
        labels[f"d{name}"] = f"the gradient with respect to `{name}`"
    return labels


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------
# Probes


def _affine_leaves(seed: int, shape: tuple[int, ...], dtype: str, affine: str) -> dict[str, Any]:
    """``weight`` and/or ``bias`` of ``shape`` as leaves that require gradients."""
    leaves = {}
    if affine in ("both", "weight"):
        leaves["weight"] = _parameter(seed + 1, shape, dtype, "weight").requires_grad_(True)
    if affine == "both":
        leaves["bias"] = _parameter(seed + 2, shape, dtype, "bias").requires_grad_(True)
    return leaves


def _affine_text(affine: str) -> str:
    return {"both": "with weight and bias", "weight": "with weight only", "none": "without weight and bias"}[affine]


def _layer_norm_probe(seed: int, shape: tuple[int, ...], normalized_shape: Any, affine: str,
                      eps: float | None = None, dtype: str = "float64", scale: float = 1.0,
                      offset: float = 0.0):
    affine_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)

    def run(ns: Namespace) -> Outputs:
        x = _plain_input(seed, shape, dtype, scale, offset)
        # Give each trailing position its own mean, so per-position statistics differ from per-example ones.
        x = (x + _plain_input(seed + 7, (1,) + shape[1:], dtype, 2.0)).requires_grad_(True)
        leaves = {"x": x, **_affine_leaves(seed, affine_shape, dtype, affine)}
        kwargs = {k: leaves[k] for k in ("weight", "bias") if k in leaves}
        if eps is not None:
            kwargs["eps"] = eps
        shape_arg = list(normalized_shape) if isinstance(normalized_shape, list) else normalized_shape
        return _run(ns, "layer_norm", lambda f: f(x, shape_arg, **kwargs), leaves, seed + 3)

    text = (f"layer_norm on a {dtype} {_shape_text(shape)} input, normalized_shape={normalized_shape!r} "
            f"({_given_as(normalized_shape)}), {_affine_text(affine)}" + ("" if eps is None else f", eps={eps}"))
    return text, run


def _group_norm_probe(seed: int, shape: tuple[int, ...], groups: int, affine: str, eps: float | None = None,
                      dtype: str = "float64"):
    def run(ns: Namespace) -> Outputs:
        x = _channels_input(seed, shape, dtype).requires_grad_(True)
        leaves = {"x": x, **_affine_leaves(seed, (shape[1],), dtype, affine)}
        kwargs = {k: leaves[k] for k in ("weight", "bias") if k in leaves}
        if eps is not None:
            kwargs["eps"] = eps
        return _run(ns, "group_norm", lambda f: f(x, groups, **kwargs), leaves, seed + 3)

    text = (f"group_norm on a {dtype} {_shape_text(shape)} input with {groups} group{'' if groups == 1 else 's'}, {_affine_text(affine)}"
            + ("" if eps is None else f", eps={eps}"))
    return text, run


def _instance_norm_probe(seed: int, shape: tuple[int, ...], affine: str, eps: float | None = None,
                         dtype: str = "float64"):
    def run(ns: Namespace) -> Outputs:
        x = _channels_input(seed, shape, dtype).requires_grad_(True)
        leaves = {"x": x, **_affine_leaves(seed, (shape[1],), dtype, affine)}
        kwargs = {k: leaves[k] for k in ("weight", "bias") if k in leaves}
        if eps is not None:
            kwargs["eps"] = eps
        return _run(ns, "instance_norm", lambda f: f(x, **kwargs), leaves, seed + 3)

    text = (f"instance_norm on a {dtype} {_shape_text(shape)} input, {_affine_text(affine)}"
            + ("" if eps is None else f", eps={eps}"))
    return text, run


_DEFAULT = object()


def _given_as(value: Any) -> str:
    return {"int": "an int", "list": "a list", "tuple": "a tuple"}.get(type(value).__name__, type(value).__name__)


def _rms_norm_probe(seed: int, shape: tuple[int, ...], normalized_shape: Any, weight: bool,
                    eps: Any = _DEFAULT, dtype: str = "float64", scale: float = 1.0, offset: float = 0.0):
    affine_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)

    def run(ns: Namespace) -> Outputs:
        x = _plain_input(seed, shape, dtype, scale, offset).requires_grad_(True)
        leaves = {"x": x, **_affine_leaves(seed, affine_shape, dtype, "weight" if weight else "none")}
        kwargs = {"weight": leaves["weight"]} if weight else {}
        if eps is not _DEFAULT:
            kwargs["eps"] = eps
        return _run(ns, "rms_norm", lambda f: f(x, normalized_shape, **kwargs), leaves, seed + 3)

    size = "" if scale == 1.0 and offset == 0.0 else f" of magnitude {max(abs(scale), abs(offset)):g}"
    eps_text = "the default eps" if eps is _DEFAULT else f"eps={eps!r}"
    text = (f"rms_norm on a {dtype} {_shape_text(shape)} input{size}, normalized_shape={normalized_shape!r} "
            f"({_given_as(normalized_shape)}), {'with' if weight else 'without'} weight, {eps_text}")
    return text, run


def _weight_norm_probe(seed: int, shape: tuple[int, ...], dim: int, dtype: str = "float64"):
    ndim = len(shape)
    if dim == -1:
        g_shape: tuple[int, ...] = ()  # one norm for the whole tensor
    else:
        kept = dim % ndim
        g_shape = tuple(shape[d] if d == kept else 1 for d in range(ndim))

    def run(ns: Namespace) -> Outputs:
        v = _plain_input(seed, shape, dtype).requires_grad_(True)
        g = _parameter(seed + 1, g_shape, dtype, "weight").requires_grad_(True)
        return _run(ns, "weight_norm", lambda f: f(v, g, dim), {"v": v, "g": g}, seed + 3)

    text = f"weight_norm of a {dtype} v of shape {_shape_text(shape)} with dim={dim} (g of shape {_shape_text(g_shape)})"
    return text, run


def _batch_renorm_probe(seed: int, n: int, c: int, running: str, r_max: float, d_max: float,
                        eps: float | None = None, dtype: str = "float64"):
    """``running`` is how far the running statistics are from the batch's: near, far or mixed."""

    def run(ns: Namespace) -> Outputs:
        torch = _torch()
        x = _channels_input(seed, (n, c), dtype).requires_grad_(True)
        generator = student_generator(seed + 5)
        with torch.no_grad():
            mean_b = x.double().mean(dim=0)
            var_b = x.double().var(dim=0, unbiased=False)
            if running == "near":      # r and d well inside their limits
                ratio = 1.0 + 0.2 * torch.rand(c, generator=generator, dtype=torch.float64)
                shift = 0.3 * torch.randn(c, generator=generator, dtype=torch.float64)
            elif running == "small":   # sigma_B / sigma above r_max and |d| beyond d_max
                ratio = torch.full((c,), 1.0 / (r_max * 3.0), dtype=torch.float64)
                shift = torch.linspace(-1.0, 1.0, c, dtype=torch.float64) * (d_max + 2.0) * 5.0
            elif running == "large":   # sigma_B / sigma below 1 / r_max
                ratio = torch.full((c,), r_max * 4.0, dtype=torch.float64)
                shift = 0.2 * torch.randn(c, generator=generator, dtype=torch.float64)
            else:                      # some channels clipped, some not
                ratio = torch.tensor([0.1, 1.1, 20.0, 0.9] * c, dtype=torch.float64)[:c]
                shift = torch.tensor([3.0, -0.2, 0.1, -4.0] * c, dtype=torch.float64)[:c]
            running_var = (var_b * ratio ** 2).to(x.dtype)
            running_mean = (mean_b - shift * running_var.double().sqrt()).to(x.dtype)
        mean_before, var_before = running_mean.clone(), running_var.clone()
        leaves = {"x": x, **_affine_leaves(seed, (c,), dtype, "both")}
        kwargs = {} if eps is None else {"eps": eps}

        def call(f):
            return f(x, leaves["weight"], leaves["bias"], running_mean, running_var, r_max, d_max, **kwargs)

        outputs = _run(ns, "batch_renorm", call, leaves, seed + 3)
        outputs["running_unchanged"] = np.array(
            bool(torch.equal(running_mean, mean_before) and torch.equal(running_var, var_before)))
        return outputs

    what = {"near": "close to the batch's (no clipping)",
            "small": "far from the batch's (r clipped to r_max, d clipped)",
            "large": "far from the batch's (r clipped to 1 / r_max)",
            "mixed": "near for some channels and far for others"}[running]
    text = (f"batch_renorm on a {dtype} ({n}, {c}) batch, running statistics {what}, "
            f"r_max={r_max:g}, d_max={d_max:g}" + ("" if eps is None else f", eps={eps}"))
    return text, run


_RENORM_LABELS = {**_labels("x", "weight", "bias"),
                  "running_unchanged": "whether running_mean and running_var are left unchanged"}


def _probe(spec: tuple[str, Callable[[Namespace], Outputs]], targets: tuple[str, ...], dtype: str,
           mistakes: Sequence[str], labels: dict[str, str]) -> Probe:
    name, run = spec
    tolerances = _F32 if dtype == "float32" else _F64
    return Probe(name, targets, run, mistakes=tuple(mistakes), labels=labels, **tolerances)


# ---------------------------------------------------------------------------
# Known mistakes each probe may name (defined in references/alternatives.py)

_LN_MISTAKES = ("LN_UNBIASED", "LN_EPS_OUTSIDE", "LN_LAST_DIM_ONLY", "LN_BATCH_DIMS", "LN_DEFAULT_EPS_1E6",
                "LN_FLOAT32")
_GN_MISTAKES = ("GN_GROUPS_LAST", "GN_INSTANCE", "GN_LAYER", "GN_UNBIASED", "GN_EPS_OUTSIDE", "GN_PER_GROUP_AFFINE",
                "GN_DETACHED")
_IN_MISTAKES = ("IN_BATCH", "IN_LAYER", "IN_LAST", "IN_UNBIASED", "IN_EPS_OUTSIDE", "IN_NO_BIAS")
_RMS_MISTAKES = ("RMS_CENTERED", "RMS_EPS_1E6", "RMS_EPS_1E5", "RMS_EPS_ZERO", "RMS_EPS_FLOAT64", "RMS_EPS_OUTSIDE",
                 "RMS_NORM", "RMS_LAST_DIM_ONLY", "RMS_EPS_FLOAT32", "RMS_UPCAST")
_WN_MISTAKES = ("WN_OVER_DIM", "WN_MINUS_ONE", "WN_SQUARED", "WN_WHOLE", "WN_NO_G", "WN_NORM_PLUS_EPS")
_BR_MISTAKES = ("BR_NOT_DETACHED", "BR_R_FROM_ZERO", "BR_UNBIASED", "BR_SIGMA_NO_EPS", "BR_D_OVER_SIGMA_B",
                "BR_INVERTED_R", "BR_UPDATES_RUNNING")

# ---------------------------------------------------------------------------
# The probes of each test cell


def _probes(name: str, mistakes, labels, specs) -> tuple[Probe, ...]:
    return tuple(_probe(spec, (name,), dtype, mistakes, labels) for dtype, spec in specs)


_LN = _probes("layer_norm", _LN_MISTAKES, _labels("x", "weight", "bias"), [
    ("float64", _layer_norm_probe(10, (4, 6), 6, "both")),
    ("float64", _layer_norm_probe(11, (2, 3, 5), [3, 5], "both", eps=0.1, scale=0.3)),
    ("float32", _layer_norm_probe(12, (3, 4, 2, 2), (4, 2, 2), "none", dtype="float32")),
    ("float64", _layer_norm_probe(13, (5, 7), (7,), "weight", scale=1e3, offset=-50.0)),
    ("float64", _layer_norm_probe(14, (2, 2, 3, 4), (4,), "both", eps=1e-3)),
    ("float32", _layer_norm_probe(15, (6, 3, 5), [5], "both", dtype="float32")),
])

_GN = _probes("group_norm", _GN_MISTAKES, _labels("x", "weight", "bias"), [
    ("float64", _group_norm_probe(20, (2, 6, 3, 3), 3, "both")),
    ("float64", _group_norm_probe(21, (3, 8, 5), 2, "weight", eps=0.5)),
    ("float64", _group_norm_probe(22, (4, 6), 3, "both")),
    ("float32", _group_norm_probe(23, (2, 4, 2, 3), 4, "none", dtype="float32")),
    ("float64", _group_norm_probe(24, (2, 6, 2, 2), 1, "both")),
    ("float64", _group_norm_probe(25, (1, 12, 2, 3, 2), 4, "both", eps=1e-3)),
    ("float32", _group_norm_probe(26, (3, 8, 4, 4), 4, "both", dtype="float32")),
])

_IN = _probes("instance_norm", _IN_MISTAKES, _labels("x", "weight", "bias"), [
    ("float64", _instance_norm_probe(30, (2, 3, 4, 5), "both")),
    ("float64", _instance_norm_probe(31, (3, 2, 3), "none", eps=0.3)),
    ("float32", _instance_norm_probe(32, (2, 4, 3, 3), "weight", dtype="float32")),
    ("float64", _instance_norm_probe(33, (1, 3, 2, 2, 3), "both", eps=1e-3)),
])

_RMS = _probes("rms_norm", _RMS_MISTAKES, _labels("x", "weight"), [
    ("float64", _rms_norm_probe(40, (4, 8), [8], True, offset=2.0)),
    ("float64", _rms_norm_probe(41, (3, 5), (5,), True, scale=1e-4)),
    ("float32", _rms_norm_probe(42, (2, 3, 4), (3, 4), False, scale=1e-3, dtype="float32")),
    ("float64", _rms_norm_probe(43, (3, 5), 5, True, eps=0.5)),
    ("float64", _rms_norm_probe(44, (2, 3, 2, 4), [2, 4], True, eps=1e-3, offset=-1.0)),
    ("float32", _rms_norm_probe(45, (5, 6), [6], True, eps=1e-6, dtype="float32")),
])

_WN = _probes("weight_norm", _WN_MISTAKES, _labels("v", "g"), [
    ("float64", _weight_norm_probe(50, (4, 3), 0)),
    ("float64", _weight_norm_probe(51, (5, 3, 2, 2), 0)),
    ("float64", _weight_norm_probe(52, (4, 3), 1)),
    ("float64", _weight_norm_probe(53, (3, 4, 2), -1)),
    ("float64", _weight_norm_probe(54, (3, 4, 2), 2)),
    ("float64", _weight_norm_probe(55, (3, 4, 2), -2)),
    ("float32", _weight_norm_probe(56, (6, 5), 0, dtype="float32")),
])

_BR = _probes("batch_renorm", _BR_MISTAKES, _RENORM_LABELS, [
    ("float64", _batch_renorm_probe(60, 8, 3, "near", 3.0, 5.0)),
    ("float64", _batch_renorm_probe(61, 6, 4, "small", 2.0, 1.0)),
    ("float64", _batch_renorm_probe(62, 5, 3, "large", 3.0, 5.0, eps=0.1)),
    ("float64", _batch_renorm_probe(63, 4, 4, "mixed", 1.0, 0.0)),
    ("float64", _batch_renorm_probe(64, 7, 4, "mixed", 2.5, 0.5, eps=1e-3)),
    ("float32", _batch_renorm_probe(65, 16, 4, "mixed", 3.0, 2.0, dtype="float32")),
])

# ---------------------------------------------------------------------------
# The experiment: groupnorm_vs_batchnorm_small_batch
#
# Trained networks differ between correct implementations, so the probe returns
# what any correct one shows, with wide margins (measured over 24 seeds, one epoch:
# group norm 0.84 to 0.94 with batches of 2; batch norm 0.51 to 0.71 with batches
# of 2, at least 0.15 below group norm, and 0.92 to 0.95 with batches of 32).


def _stand_in_group_norm() -> dict[str, Any]:
    """For the experiment's given-run: group norm with the *unbiased* variance, a known mistake that trains
    just as well."""
    import torch

    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        grouped = x.reshape(x.shape[0], num_groups, -1)
        mean = grouped.mean(dim=-1, keepdim=True)
        std = torch.sqrt(grouped.var(dim=-1, unbiased=True, keepdim=True) + eps)
        out = ((grouped - mean) / std).reshape(x.shape)
        view = (1, -1) + (1,) * (x.dim() - 2)
        if weight is not None:
            out = out * weight.reshape(view)
        if bias is not None:
            out = out + bias.reshape(view)
        return out

    return {"group_norm": group_norm}


def _small_batch_probe(seed: int):
    def run(ns: Namespace) -> Outputs:
        result = ns["groupnorm_vs_batchnorm_small_batch"]((2, 32), seed=student_seed(seed) % 2**31, epochs=1)
        numbers = experiment_numbers(result, "groupnorm_vs_batchnorm_small_batch", ("group_norm", "batch_norm"), 2)
        gn, bn = numbers["group_norm"], numbers["batch_norm"]
        return {
            "fractions": fraction(np.concatenate([gn, bn])),
            "gn_small": np.array(bool(gn[0] > 0.75)),
            "bn_small": np.array(bool(bn[0] < gn[0] - 0.08)),
            "bn_large": np.array(bool(bn[1] > 0.85)),
            "bn_gap": np.array(bool(bn[1] > bn[0] + 0.12)),
        }

    return run


_SMALL_BATCH_LABELS = {
    "fractions": "whether every accuracy is a number in [0, 1]",
    "gn_small": "whether the network with your group norm reaches 0.75 with batches of 2",
    "bn_small": "whether batch norm with batches of 2 is worse than group norm by more than 0.08",
    "bn_large": "whether batch norm reaches 0.85 with batches of 32",
    "bn_gap": "whether batch norm gains more than 0.12 from batches of 2 to batches of 32",
}


ASSIGNMENT = Assignment(
    name="alternatives",
    kind="torch",
    tests={
        "test_layer_norm": _LN,
        "test_group_norm": _GN,
        "test_instance_norm": _IN,
        "test_rms_norm": _RMS,
        "test_weight_norm": _WN,
        "test_batch_renorm": _BR,
        "test_groupnorm_vs_batchnorm_small_batch": (
            Probe("one epoch at batch sizes 2 and 32, with a seed of its own", ("group_norm",
                  "groupnorm_vs_batchnorm_small_batch"), _small_batch_probe(70), labels=_SMALL_BATCH_LABELS,
                  given=with_stand_ins(_small_batch_probe(70), _stand_in_group_norm),
                  mistakes=("SMALL_BATCH_SWAPPED", "SMALL_BATCH_NO_RUNNING_STATISTICS", "SMALL_BATCH_FIXED_SIZE")),
        ),
    },
    # The library's own versions of the exercises, in every spelling (functional,
    # native, layer and parametrization); batch norm too, which batch_renorm
    # reduces to when r and d are fixed. Five of these are also the names of the
    # graded functions themselves (the students define layer_norm and the rest).
    library=("layer_norm", "group_norm", "instance_norm", "rms_norm", "batch_norm", "native_layer_norm",
             "native_group_norm", "native_batch_norm", "_weight_norm", "_weight_norm_interface", "norm_except_dim",
             "weight_norm", "LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm1d", "InstanceNorm2d",
             "InstanceNorm3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    # The graded functions work on tensors, not on modules: no type test needs a norm class.
    type_checks=(),
)
