"""Hidden tests of ``alternatives``: normalization layers other than batch norm, in PyTorch.

The reference is PyTorch itself: ``F.layer_norm``, ``F.group_norm``,
``F.instance_norm`` (without running statistics), ``F.rms_norm`` and
``torch._weight_norm``; batch renormalization, which PyTorch does not have, is
written here with tensor operations, ``r`` and ``d`` detached. Every probe
compares the output and the gradients that autograd computes through the
student's function (with respect to the input, the weight and the bias, or to
``v`` and ``g``) for a fixed upstream gradient.

The inputs are chosen so that the usual mistakes change the result visibly:

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

from autograder.checks.core import Assignment, Mistake, Namespace, Outputs, Probe, ProbeError, as_array

# Tolerances: float64 probes are compared tightly, float32 ones to float32 accuracy.
_F64 = {"rtol": 1e-6, "atol": 1e-9}
_F32 = {"rtol": 1e-4, "atol": 1e-5}

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
    generator = torch.Generator().manual_seed(seed)
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
    generator = torch.Generator().manual_seed(seed)
    x = offset + scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    return x.to(_dtype(dtype))


def _parameter(seed: int, shape: tuple[int, ...], dtype: str, kind: str):
    """A weight (positive, away from 1) or a bias (away from 0)."""
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    if kind == "weight":
        value = 0.5 + 2.0 * torch.rand(shape, generator=generator, dtype=torch.float64)
    else:
        value = 1.0 + torch.randn(shape, generator=generator, dtype=torch.float64)
    return value.to(_dtype(dtype))


def _upstream(seed: int, like):
    """The upstream gradient: random, with a non-zero mean."""
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
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
        generator = torch.Generator().manual_seed(seed + 5)
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
           mistakes: Sequence[Mistake], labels: dict[str, str]) -> Probe:
    name, run = spec
    tolerances = _F32 if dtype == "float32" else _F64
    return Probe(name, targets, run, mistakes=tuple(mistakes), labels=labels, **tolerances)


# ---------------------------------------------------------------------------
# The reference: PyTorch


def _as_tuple(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def _reference_batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    torch = _torch()
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias


def reference() -> Namespace:
    torch = _torch()
    import torch.nn.functional as F

    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        return F.layer_norm(x, _as_tuple(normalized_shape), weight, bias, eps)

    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        return F.group_norm(x, num_groups, weight, bias, eps)

    def instance_norm(x, weight=None, bias=None, eps=1e-5):
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)

    def rms_norm(x, normalized_shape, weight=None, eps=None):
        return F.rms_norm(x, _as_tuple(normalized_shape), weight, eps)

    def weight_norm(v, g, dim=0):
        return torch._weight_norm(v, g, dim)

    return {
        "layer_norm": layer_norm,
        "group_norm": group_norm,
        "instance_norm": instance_norm,
        "rms_norm": rms_norm,
        "weight_norm": weight_norm,
        "batch_renorm": _reference_batch_renorm,
    }


# ---------------------------------------------------------------------------
# Known mistakes, written as a student would, to name them in feedback.


def _standardize(x, dims, eps, unbiased=False, eps_inside=True, center=True):
    torch = _torch()
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=unbiased, keepdim=True)
    std = torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps
    return ((x - mean) if center else x) / std


def _channel_view(t, x):
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _layer_norm_mistake(unbiased=False, eps_inside=True, first_dims=False, last_dim_only=False):
    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        shape = _as_tuple(normalized_shape)
        if last_dim_only:
            dims = (-1,)
        elif first_dims:  # statistics over the batch axes instead of the normalized ones
            dims = tuple(range(x.dim() - len(shape)))
        else:
            dims = tuple(range(-len(shape), 0))
        out = _standardize(x, dims, eps, unbiased, eps_inside)
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out

    return layer_norm


def _group_norm_mistake(order="groups first", unbiased=False, eps_inside=True, per_group_affine=False):
    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        n, c = x.shape[:2]
        if order == "groups first":
            grouped = x.reshape(n, num_groups, -1)
            out = _standardize(grouped, (-1,), eps, unbiased, eps_inside).reshape(x.shape)
        elif order == "groups last":  # channels c, c + G, c + 2G, ... grouped together
            grouped = x.reshape(n, c // num_groups, num_groups, -1)
            out = _standardize(grouped, (1, 3), eps, unbiased, eps_inside).reshape(x.shape)
        elif order == "instance":
            out = _standardize(x, tuple(range(2, x.dim())), eps, unbiased, eps_inside)
        else:  # "layer"
            out = _standardize(x, tuple(range(1, x.dim())), eps, unbiased, eps_inside)
        if per_group_affine and weight is not None:
            # weight and bias indexed by group instead of by channel
            index = [g * num_groups // c for g in range(c)]
            weight = weight[index]
            bias = None if bias is None else bias[index]
        if weight is not None:
            out = out * _channel_view(weight, x)
        if bias is not None:
            out = out + _channel_view(bias, x)
        return out

    return group_norm


def _instance_norm_mistake(dims="spatial", unbiased=False, eps_inside=True):
    def instance_norm(x, weight=None, bias=None, eps=1e-5):
        chosen = {"spatial": tuple(range(2, x.dim())), "batch": (0,) + tuple(range(2, x.dim())),
                  "layer": tuple(range(1, x.dim())), "last": (-1,)}[dims]
        out = _standardize(x, chosen, eps, unbiased, eps_inside)
        if weight is not None:
            out = out * _channel_view(weight, x)
        if bias is not None:
            out = out + _channel_view(bias, x)
        return out

    return instance_norm


def _rms_norm_mistake(center=False, default_eps=None, eps_inside=True, norm_not_rms=False, last_dim_only=False):
    torch = _torch()

    def rms_norm(x, normalized_shape, weight=None, eps=None):
        shape = _as_tuple(normalized_shape)
        dims = (-1,) if last_dim_only else tuple(range(-len(shape), 0))
        if eps is None:
            eps = torch.finfo(x.dtype).eps if default_eps is None else default_eps
        y = x - x.mean(dim=dims, keepdim=True) if center else x
        square = y.pow(2).sum(dim=dims, keepdim=True) if norm_not_rms else y.pow(2).mean(dim=dims, keepdim=True)
        denominator = torch.sqrt(square + eps) if eps_inside else torch.sqrt(square) + eps
        out = y / denominator
        return out if weight is None else out * weight

    return rms_norm


def _weight_norm_mistake(kind):
    def weight_norm(v, g, dim=0):
        if kind == "norm over dim":
            norm = v.pow(2).sum(dim=dim, keepdim=True).sqrt()
        elif kind == "minus one is last":
            d = dim % v.dim()
            norm = v.pow(2).sum(dim=[k for k in range(v.dim()) if k != d], keepdim=True).sqrt()
        elif kind == "squared norm":
            if dim == -1:
                norm = v.pow(2).sum()
            else:
                d = dim % v.dim()
                norm = v.pow(2).sum(dim=[k for k in range(v.dim()) if k != d], keepdim=True)
        elif kind == "whole tensor":
            norm = v.pow(2).sum().sqrt()
        else:  # "no g"
            d = dim % v.dim()
            norm = v.pow(2).sum(dim=[k for k in range(v.dim()) if k != d], keepdim=True).sqrt()
            return v / norm if dim != -1 else v / v.pow(2).sum().sqrt()
        return g * v / norm

    return weight_norm


def _batch_renorm_mistake(detach=True, r_low=None, unbiased=False, sigma_without_eps=False, d_over_sigma_b=False,
                          update_running=False, inverted_r=False):
    torch = _torch()

    def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
        mean_b = x.mean(dim=0)
        sigma_b = torch.sqrt(x.var(dim=0, unbiased=unbiased) + eps)
        sigma = torch.sqrt(running_var) if sigma_without_eps else torch.sqrt(running_var + eps)
        ratio = sigma / sigma_b if inverted_r else sigma_b / sigma
        r = torch.clamp(ratio, 1.0 / r_max if r_low is None else r_low, r_max)
        d = torch.clamp((mean_b - running_mean) / (sigma_b if d_over_sigma_b else sigma), -d_max, d_max)
        if detach:
            r, d = r.detach(), d.detach()
        if update_running:
            with torch.no_grad():
                running_mean.mul_(0.9).add_(0.1 * mean_b)
                running_var.mul_(0.9).add_(0.1 * x.var(dim=0, unbiased=True))
        return weight * ((x - mean_b) / sigma_b * r + d) + bias

    return batch_renorm


def _m(description: str, name: str, implementation: Callable[..., Any]) -> Mistake:
    return Mistake(description, {name: implementation})


_UNBIASED = "the unbiased variance (dividing by n - 1): normalization layers use the biased one (dividing by n)"
_EPS_OUTSIDE = "eps added outside the square root: the denominator is sqrt(var + eps), not sqrt(var) + eps"

LN_UNBIASED = _m(_UNBIASED, "layer_norm", _layer_norm_mistake(unbiased=True))
LN_EPS_OUTSIDE = _m(_EPS_OUTSIDE, "layer_norm", _layer_norm_mistake(eps_inside=False))
LN_LAST_DIM_ONLY = _m(
    "statistics over the last dimension only: layer norm takes them over all the trailing dimensions named "
    "by normalized_shape", "layer_norm", _layer_norm_mistake(last_dim_only=True))
LN_BATCH_DIMS = _m(
    "statistics over the leading (batch) dimensions instead of the trailing ones named by normalized_shape",
    "layer_norm", _layer_norm_mistake(first_dims=True))
_LN_MISTAKES = (LN_UNBIASED, LN_EPS_OUTSIDE, LN_LAST_DIM_ONLY, LN_BATCH_DIMS)

GN_GROUPS_LAST = _m(
    "the channels grouped in the wrong order: reshaping (N, C, ...) to (N, C // G, G, ...) puts channels "
    "c, c + G, c + 2G, ... in one group; reshape to (N, G, C // G, ...) so that each group is C // G "
    "consecutive channels", "group_norm", _group_norm_mistake(order="groups last"))
GN_INSTANCE = _m("statistics per channel (instance norm) instead of per group of channels", "group_norm",
                 _group_norm_mistake(order="instance"))
GN_LAYER = _m("statistics over all channels at once (layer norm) instead of per group of channels", "group_norm",
              _group_norm_mistake(order="layer"))
GN_UNBIASED = _m(_UNBIASED, "group_norm", _group_norm_mistake(unbiased=True))
GN_EPS_OUTSIDE = _m(_EPS_OUTSIDE, "group_norm", _group_norm_mistake(eps_inside=False))
GN_PER_GROUP_AFFINE = _m(
    "weight and bias applied per group: they have one entry per channel (shape (C,))", "group_norm",
    _group_norm_mistake(per_group_affine=True))
_GN_MISTAKES = (GN_GROUPS_LAST, GN_INSTANCE, GN_LAYER, GN_UNBIASED, GN_EPS_OUTSIDE, GN_PER_GROUP_AFFINE)

IN_BATCH = _m("statistics over the batch and the spatial dimensions (batch norm) instead of per example",
              "instance_norm", _instance_norm_mistake(dims="batch"))
IN_LAYER = _m("statistics over all channels of an example (layer norm) instead of per channel",
              "instance_norm", _instance_norm_mistake(dims="layer"))
IN_LAST = _m("statistics over the last dimension only: instance norm uses every spatial dimension (2 onwards)",
             "instance_norm", _instance_norm_mistake(dims="last"))
IN_UNBIASED = _m(_UNBIASED, "instance_norm", _instance_norm_mistake(unbiased=True))
IN_EPS_OUTSIDE = _m(_EPS_OUTSIDE, "instance_norm", _instance_norm_mistake(eps_inside=False))
_IN_MISTAKES = (IN_BATCH, IN_LAYER, IN_LAST, IN_UNBIASED, IN_EPS_OUTSIDE)

RMS_CENTERED = _m("the mean subtracted: RMSNorm divides x itself by sqrt(mean(x ** 2) + eps), with no centring",
                  "rms_norm", _rms_norm_mistake(center=True))
RMS_EPS_1E6 = _m("eps=None taken as 1e-6: it means torch.finfo(x.dtype).eps", "rms_norm",
                 _rms_norm_mistake(default_eps=1e-6))
RMS_EPS_1E5 = _m("eps=None taken as 1e-5: it means torch.finfo(x.dtype).eps", "rms_norm",
                 _rms_norm_mistake(default_eps=1e-5))
RMS_EPS_ZERO = _m("eps=None taken as 0: it means torch.finfo(x.dtype).eps", "rms_norm",
                  _rms_norm_mistake(default_eps=0.0))
RMS_EPS_FLOAT64 = _m("eps=None taken as the float64 machine epsilon whatever the dtype: it is "
                     "torch.finfo(x.dtype).eps, the epsilon of the input's own dtype", "rms_norm",
                     _rms_norm_mistake(default_eps=float(np.finfo(np.float64).eps)))
RMS_EPS_OUTSIDE = _m("eps added outside the square root: the denominator is sqrt(mean(x ** 2) + eps)", "rms_norm",
                     _rms_norm_mistake(eps_inside=False))
RMS_NORM = _m("the Euclidean norm (a sum of squares) instead of the root mean square (a mean of squares)",
              "rms_norm", _rms_norm_mistake(norm_not_rms=True))
RMS_LAST_DIM_ONLY = _m("the mean square over the last dimension only: it is over all the dimensions named by "
                       "normalized_shape", "rms_norm", _rms_norm_mistake(last_dim_only=True))
_RMS_MISTAKES = (RMS_CENTERED, RMS_EPS_1E6, RMS_EPS_1E5, RMS_EPS_ZERO, RMS_EPS_FLOAT64, RMS_EPS_OUTSIDE, RMS_NORM,
                 RMS_LAST_DIM_ONLY)

WN_OVER_DIM = _m("the norm taken over dimension `dim` itself: it is taken over every dimension except `dim`",
                 "weight_norm", _weight_norm_mistake("norm over dim"))
WN_MINUS_ONE = _m("dim=-1 treated as the last dimension: in torch._weight_norm, dim=-1 means one norm over the "
                  "whole tensor (what weight_norm(module, dim=None) uses)", "weight_norm",
                  _weight_norm_mistake("minus one is last"))
WN_SQUARED = _m("the squared norm instead of the norm", "weight_norm", _weight_norm_mistake("squared norm"))
WN_WHOLE = _m("one norm over the whole tensor whatever `dim` is", "weight_norm", _weight_norm_mistake("whole tensor"))
WN_NO_G = _m("g left out: the weight is g * v / ||v||", "weight_norm", _weight_norm_mistake("no g"))
_WN_MISTAKES = (WN_OVER_DIM, WN_MINUS_ONE, WN_SQUARED, WN_WHOLE, WN_NO_G)

BR_NOT_DETACHED = _m(
    "r and d not detached: the gradient must treat them as constants (call .detach() on them)", "batch_renorm",
    _batch_renorm_mistake(detach=False))
BR_R_FROM_ZERO = _m("r clipped to [0, r_max]: its range is [1 / r_max, r_max]", "batch_renorm",
                    _batch_renorm_mistake(r_low=0.0))
BR_UNBIASED = _m(_UNBIASED.replace("normalization layers use", "sigma_B uses"), "batch_renorm",
                 _batch_renorm_mistake(unbiased=True))
BR_SIGMA_NO_EPS = _m("sigma computed without eps: sigma = sqrt(running_var + eps)", "batch_renorm",
                     _batch_renorm_mistake(sigma_without_eps=True))
BR_D_OVER_SIGMA_B = _m("d divided by the batch's sigma_B: d = (mu_B - running_mean) / sigma, with the running sigma",
                       "batch_renorm", _batch_renorm_mistake(d_over_sigma_b=True))
BR_INVERTED_R = _m("r inverted: r = sigma_B / sigma, the batch's spread over the running one", "batch_renorm",
                   _batch_renorm_mistake(inverted_r=True))
BR_UPDATES_RUNNING = _m("the running statistics updated in place: batch_renorm must leave them unchanged",
                        "batch_renorm", _batch_renorm_mistake(update_running=True))
_BR_MISTAKES = (BR_NOT_DETACHED, BR_R_FROM_ZERO, BR_UNBIASED, BR_SIGMA_NO_EPS, BR_D_OVER_SIGMA_B, BR_INVERTED_R,
                BR_UPDATES_RUNNING)

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

# The library's own versions of the exercises, which no answer may call.
_LIBRARY_NORMALIZATION = (
    "torch.nn.functional.layer_norm", "torch.nn.functional.group_norm", "torch.nn.functional.instance_norm",
    "torch.nn.functional.rms_norm", "torch.nn.functional.batch_norm",
    "torch.layer_norm", "torch.group_norm", "torch.instance_norm", "torch.rms_norm", "torch.batch_norm",
    "torch.native_layer_norm", "torch.native_group_norm", "torch.native_batch_norm",
    "torch._weight_norm", "torch._weight_norm_interface", "torch.norm_except_dim",
    "torch.nn.utils.weight_norm", "torch.nn.utils.parametrizations.weight_norm",
    "torch.nn.LayerNorm", "torch.nn.GroupNorm", "torch.nn.RMSNorm",
    "torch.nn.InstanceNorm1d", "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d",
    "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d",
)

ASSIGNMENT = Assignment(
    name="alternatives",
    reference=reference,
    tests={
        "test_layer_norm": _LN,
        "test_group_norm": _GN,
        "test_instance_norm": _IN,
        "test_rms_norm": _RMS,
        "test_weight_norm": _WN,
        "test_batch_renorm": _BR,
    },
    forbidden={name: _LIBRARY_NORMALIZATION for name in
               ("layer_norm", "group_norm", "instance_norm", "rms_norm", "weight_norm", "batch_renorm")},
)
