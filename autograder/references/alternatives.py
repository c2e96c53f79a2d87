"""The PyTorch reference and the known mistakes of ``alternatives`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations. The reference is PyTorch
itself (``F.layer_norm``, ``F.group_norm``, ``F.instance_norm`` without running
statistics, ``F.rms_norm``, ``torch._weight_norm``); batch renormalization,
which PyTorch does not have, is written with tensor operations, ``r`` and ``d``
detached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from autograder.checks.core import Mistake, Namespace

# ---------------------------------------------------------------------------
# The reference: PyTorch


def _as_tuple(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def _reference_batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias


def reference() -> Namespace:
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
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=unbiased, keepdim=True)
    std = torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps
    return ((x - mean) if center else x) / std


def _channel_view(t, x):
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _layer_norm_mistake(unbiased=False, eps_inside=True, first_dims=False, last_dim_only=False, default_eps=1e-5,
                        float32=False):
    """``default_eps``: the default of ``eps``; ``float32``: the statistics and the normalization computed in
    float32 (``x.float()``) and the result cast back to the input's dtype."""

    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=None):
        eps = default_eps if eps is None else eps
        shape = _as_tuple(normalized_shape)
        if last_dim_only:
            dims = (-1,)
        elif first_dims:  # statistics over the batch axes instead of the normalized ones
            dims = tuple(range(x.dim() - len(shape)))
        else:
            dims = tuple(range(-len(shape), 0))
        out = _standardize(x.float() if float32 else x, dims, eps, unbiased, eps_inside).to(x.dtype)
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out

    return layer_norm


def _group_norm_mistake(order="groups first", unbiased=False, eps_inside=True, per_group_affine=False,
                        detach_statistics=False):
    """``detach_statistics``: the group mean and variance detached (constants for autograd)."""

    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        n, c = x.shape[:2]
        if order == "groups first" and detach_statistics:
            grouped = x.reshape(n, num_groups, -1)
            mean = grouped.mean(dim=-1, keepdim=True).detach()
            var = grouped.var(dim=-1, unbiased=False, keepdim=True).detach()
            out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
        elif order == "groups first":
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


def _instance_norm_mistake(dims="spatial", unbiased=False, eps_inside=True, use_bias=True):
    """``use_bias``: False leaves ``bias`` out of the output."""

    def instance_norm(x, weight=None, bias=None, eps=1e-5):
        chosen = {"spatial": tuple(range(2, x.dim())), "batch": (0,) + tuple(range(2, x.dim())),
                  "layer": tuple(range(1, x.dim())), "last": (-1,)}[dims]
        out = _standardize(x, chosen, eps, unbiased, eps_inside)
        if weight is not None:
            out = out * _channel_view(weight, x)
        if bias is not None and use_bias:
            out = out + _channel_view(bias, x)
        return out

    return instance_norm


def _rms_norm_mistake(center=False, default_eps=None, eps_inside=True, norm_not_rms=False, last_dim_only=False,
                      upcast=False):
    """``upcast``: computed in float64 (``x.double()``, ``weight.double()``) and returned in float64."""

    def rms_norm(x, normalized_shape, weight=None, eps=None):
        shape = _as_tuple(normalized_shape)
        dims = (-1,) if last_dim_only else tuple(range(-len(shape), 0))
        if eps is None:
            eps = torch.finfo(x.dtype).eps if default_eps is None else default_eps
        if upcast:
            x = x.double()
            weight = None if weight is None else weight.double()
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
        elif kind == "norm plus eps":
            if dim == -1:
                norm = torch.sqrt(v.pow(2).sum()) + 1e-8
            else:
                d = dim % v.dim()
                norm = torch.sqrt(v.pow(2).sum(dim=[k for k in range(v.dim()) if k != d], keepdim=True)) + 1e-8
        else:  # "no g"
            d = dim % v.dim()
            norm = v.pow(2).sum(dim=[k for k in range(v.dim()) if k != d], keepdim=True).sqrt()
            return v / norm if dim != -1 else v / v.pow(2).sum().sqrt()
        return g * v / norm

    return weight_norm


def _batch_renorm_mistake(detach=True, r_low=None, unbiased=False, sigma_without_eps=False, d_over_sigma_b=False,
                          update_running=False, inverted_r=False):
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


def _unbiased(of: str) -> str:
    return (f"the unbiased variance of {of} (dividing by n - 1): normalization layers use the biased one "
            "(dividing by n)")


def _eps_outside(of: str) -> str:
    return (f"eps added outside the square root of {of}'s variance: the denominator is sqrt(var + eps), not "
            "sqrt(var) + eps")


LN_UNBIASED = _m(_unbiased("each example's normalized dimensions"), "layer_norm", _layer_norm_mistake(unbiased=True))
LN_EPS_OUTSIDE = _m(_eps_outside("each example"), "layer_norm", _layer_norm_mistake(eps_inside=False))
LN_DEFAULT_EPS_1E6 = _m("a default eps of 1e-6: layer norm's default is eps=1e-5, as in the signature",
                        "layer_norm", _layer_norm_mistake(default_eps=1e-6))
LN_FLOAT32 = _m("the statistics computed in float32 (.float()) and cast back: compute in the input's dtype, "
                "float64 here (float32 keeps only about 7 significant digits)", "layer_norm",
                _layer_norm_mistake(float32=True))
LN_LAST_DIM_ONLY = _m(
    "statistics over the last dimension only: layer norm takes them over all the trailing dimensions named "
    "by normalized_shape", "layer_norm", _layer_norm_mistake(last_dim_only=True))
LN_BATCH_DIMS = _m(
    "statistics over the leading (batch) dimensions instead of the trailing ones named by normalized_shape",
    "layer_norm", _layer_norm_mistake(first_dims=True))

GN_GROUPS_LAST = _m(
    "the channels grouped in the wrong order: (N, C // G, G, ...) puts channels c, c + G, c + 2G, ... in one "
    "group; reshape to (N, G, C // G, ...) for groups of C // G consecutive channels", "group_norm",
    _group_norm_mistake(order="groups last"))
GN_INSTANCE = _m("statistics per channel (instance norm) instead of per group of channels", "group_norm",
                 _group_norm_mistake(order="instance"))
GN_LAYER = _m("statistics over all channels at once (layer norm) instead of per group of channels", "group_norm",
              _group_norm_mistake(order="layer"))
GN_UNBIASED = _m(_unbiased("each group"), "group_norm", _group_norm_mistake(unbiased=True))
GN_EPS_OUTSIDE = _m(_eps_outside("each group"), "group_norm", _group_norm_mistake(eps_inside=False))
GN_DETACHED = _m("the group mean and variance detached: the gradient must flow through the statistics too "
                 "(no .detach() and no torch.no_grad() around them)", "group_norm",
                 _group_norm_mistake(detach_statistics=True))
GN_PER_GROUP_AFFINE = _m(
    "weight and bias applied per group: they have one entry per channel (shape (C,))", "group_norm",
    _group_norm_mistake(per_group_affine=True))

IN_BATCH = _m("statistics over the batch and the spatial dimensions (batch norm) instead of per example",
              "instance_norm", _instance_norm_mistake(dims="batch"))
IN_LAYER = _m("statistics over all channels of an example (layer norm) instead of per channel",
              "instance_norm", _instance_norm_mistake(dims="layer"))
IN_LAST = _m("statistics over the last dimension only: instance norm uses every spatial dimension (2 onwards)",
             "instance_norm", _instance_norm_mistake(dims="last"))
IN_UNBIASED = _m(_unbiased("each channel of each example"), "instance_norm", _instance_norm_mistake(unbiased=True))
IN_EPS_OUTSIDE = _m(_eps_outside("each channel"), "instance_norm", _instance_norm_mistake(eps_inside=False))
IN_NO_BIAS = _m("bias left out: the output is x_hat * weight + bias, both of shape (C,) over the channels",
                "instance_norm", _instance_norm_mistake(use_bias=False))

RMS_CENTERED = _m("the mean subtracted: RMSNorm divides x itself by sqrt(mean(x ** 2) + eps), with no centring",
                  "rms_norm", _rms_norm_mistake(center=True))
RMS_EPS_1E6 = _m("eps=None taken as 1e-6: it means torch.finfo(x.dtype).eps", "rms_norm",
                 _rms_norm_mistake(default_eps=1e-6))
RMS_EPS_1E5 = _m("eps=None taken as 1e-5: it means torch.finfo(x.dtype).eps", "rms_norm",
                 _rms_norm_mistake(default_eps=1e-5))
RMS_EPS_ZERO = _m("eps=None taken as 0, or as something as small (the float64 epsilon for a float32 input): it "
                  "means torch.finfo(x.dtype).eps", "rms_norm",
                  _rms_norm_mistake(default_eps=0.0))
RMS_EPS_FLOAT64 = _m("eps=None taken as the float64 machine epsilon whatever the dtype: it is "
                     "torch.finfo(x.dtype).eps, the epsilon of the input's own dtype", "rms_norm",
                     _rms_norm_mistake(default_eps=float(np.finfo(np.float64).eps)))
RMS_EPS_FLOAT32 = _m("eps=None taken as the float32 machine epsilon whatever the dtype: it is "
                     "torch.finfo(x.dtype).eps, the epsilon of the input's own dtype", "rms_norm",
                     _rms_norm_mistake(default_eps=float(np.finfo(np.float32).eps)))
RMS_UPCAST = _m("computed and returned in float64 for a float32 input: return the input's dtype (compute in it, or "
                "cast the result back with .to(x.dtype))", "rms_norm", _rms_norm_mistake(upcast=True))
RMS_EPS_OUTSIDE = _m("eps added outside the square root: the denominator is sqrt(mean(x ** 2) + eps)", "rms_norm",
                     _rms_norm_mistake(eps_inside=False))
RMS_NORM = _m("the Euclidean norm (a sum of squares) instead of the root mean square (a mean of squares)",
              "rms_norm", _rms_norm_mistake(norm_not_rms=True))
RMS_LAST_DIM_ONLY = _m("the mean square over the last dimension only: it is over all the dimensions named by "
                       "normalized_shape", "rms_norm", _rms_norm_mistake(last_dim_only=True))

WN_OVER_DIM = _m("the norm taken over dimension `dim` itself: it is taken over every dimension except `dim`",
                 "weight_norm", _weight_norm_mistake("norm over dim"))
WN_MINUS_ONE = _m("dim=-1 treated as the last dimension: in torch._weight_norm, dim=-1 means one norm over the "
                  "whole tensor (what weight_norm(module, dim=None) uses)", "weight_norm",
                  _weight_norm_mistake("minus one is last"))
WN_SQUARED = _m("the squared norm instead of the norm", "weight_norm", _weight_norm_mistake("squared norm"))
WN_WHOLE = _m("one norm over the whole tensor whatever `dim` is", "weight_norm", _weight_norm_mistake("whole tensor"))
WN_NORM_PLUS_EPS = _m("a small eps added to the norm: weight norm divides by ||v|| itself", "weight_norm",
                      _weight_norm_mistake("norm plus eps"))
WN_NO_G = _m("g left out: the weight is g * v / ||v||", "weight_norm", _weight_norm_mistake("no g"))

BR_NOT_DETACHED = _m(
    "r and d not detached: the gradient must treat them as constants (call .detach() on them)", "batch_renorm",
    _batch_renorm_mistake(detach=False))
BR_R_FROM_ZERO = _m("r clipped to [0, r_max]: its range is [1 / r_max, r_max]", "batch_renorm",
                    _batch_renorm_mistake(r_low=0.0))
BR_UNBIASED = _m("the unbiased variance of the batch (dividing by n - 1): sigma_B uses the biased one (dividing by n)",
                 "batch_renorm",
                 _batch_renorm_mistake(unbiased=True))
BR_SIGMA_NO_EPS = _m("sigma computed without eps: sigma = sqrt(running_var + eps)", "batch_renorm",
                     _batch_renorm_mistake(sigma_without_eps=True))
BR_D_OVER_SIGMA_B = _m("d divided by the batch's sigma_B: d = (mu_B - running_mean) / sigma, with the running sigma",
                       "batch_renorm", _batch_renorm_mistake(d_over_sigma_b=True))
BR_INVERTED_R = _m("r inverted: r = sigma_B / sigma, the batch's spread over the running one", "batch_renorm",
                   _batch_renorm_mistake(inverted_r=True))
BR_UPDATES_RUNNING = _m("the running statistics updated in place: batch_renorm must leave them unchanged",
                        "batch_renorm", _batch_renorm_mistake(update_running=True))

MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}


# ---------------------------------------------------------------------------
# The experiment (added with it): PyTorch's GroupNorm and BatchNorm1d in the notebook's MLP

from autograder.references.setup_cells import one_thread  # noqa: E402

_reference_of_the_layers = reference


def reference() -> Namespace:  # noqa: F811 - extends the reference above
    namespace = dict(_reference_of_the_layers())
    namespace["groupnorm_vs_batchnorm_small_batch"] = _reference_small_batch
    return namespace


@one_thread
def _reference_small_batch(batch_sizes=(2, 32), seed=0, epochs=1, groups=8, *, swapped=False, momentum=0.1,
                           fixed_batch=None):
    """The experiment with PyTorch's layers (the keywords make its known mistakes)."""
    from autograder.references.setup_cells import setup_namespace

    h = setup_namespace("alternatives")
    layers = {"group_norm": lambda c: torch.nn.GroupNorm(groups, c),
              "batch_norm": lambda c: torch.nn.BatchNorm1d(c, momentum=momentum)}
    result = {"batch_sizes": list(batch_sizes), "group_norm": [], "batch_norm": []}
    for b in batch_sizes:
        for key, layer in layers.items():
            model = h["train_model"](h["make_mlp"](layer, seed=seed), h["X_TRAIN"], h["Y_TRAIN"], fixed_batch or b,
                                     epochs=epochs,
                                     seed=seed)
            result[key].append(h["accuracy"](model, h["X_VAL"], h["Y_VAL"]))
    if swapped:
        result["group_norm"], result["batch_norm"] = result["batch_norm"], result["group_norm"]
    return result


import functools  # noqa: E402

SMALL_BATCH_SWAPPED = Mistake("the accuracies of group norm and batch norm swapped",
                              {"groupnorm_vs_batchnorm_small_batch": functools.partial(_reference_small_batch,
                                                                                       swapped=True)})
SMALL_BATCH_NO_RUNNING_STATISTICS = Mistake(
    "batch norm's running statistics never updated (they stay 0 and 1): in training mode, move them towards the "
    "batch statistics with momentum 0.1",
    {"groupnorm_vs_batchnorm_small_batch": functools.partial(_reference_small_batch, momentum=0.0)})
SMALL_BATCH_FIXED_SIZE = Mistake(
    "every network trained with the same batch size: train each with the batch size it is measured at",
    {"groupnorm_vs_batchnorm_small_batch": functools.partial(_reference_small_batch, fixed_batch=32)})
MISTAKES.update(SMALL_BATCH_SWAPPED=SMALL_BATCH_SWAPPED, SMALL_BATCH_NO_RUNNING_STATISTICS=SMALL_BATCH_NO_RUNNING_STATISTICS,
                SMALL_BATCH_FIXED_SIZE=SMALL_BATCH_FIXED_SIZE)
