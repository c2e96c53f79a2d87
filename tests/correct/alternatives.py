"""Correct answers for ``alternatives``: six normalization layers as tensor operations."""

from __future__ import annotations

from tests.correct import CorrectImplementation

# ---------------------------------------------------------------------------
# layer_norm

LAYER_NORM_DIMS = '''
import torch


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Mean and biased variance over the trailing dims, by reductions over those dims."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
'''

LAYER_NORM_FLATTEN = '''
import math

import torch


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Flatten the normalized block into one trailing dimension, var_mean over it, reshape back."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    lead = x.shape[:x.dim() - len(shape)]
    rows = x.reshape(lead + (math.prod(shape),))
    var, mean = torch.var_mean(rows, dim=-1, keepdim=True, correction=0)
    out = ((rows - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
'''

LAYER_NORM_FLOAT64 = '''
import torch


def _ci_trailing_dims(normalized_shape):
    if isinstance(normalized_shape, int):
        return (-1,)
    return tuple(range(-len(normalized_shape), 0))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Computed in float64, cast back to the dtype of x."""
    dims = _ci_trailing_dims(normalized_shape)
    x64 = x.to(torch.float64)
    count = 1
    for d in dims:
        count *= x.shape[d]
    mean = x64.sum(dim=dims, keepdim=True) / count
    centered = x64 - mean
    var = (centered * centered).sum(dim=dims, keepdim=True) / count
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.to(torch.float64)
    if bias is not None:
        out = out + bias.to(torch.float64)
    return out.to(x.dtype)
'''

# ---------------------------------------------------------------------------
# group_norm

GROUP_NORM_RESHAPE = '''
import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Reshape to (N, G, -1): one row per example and group."""
    n, c = x.shape[0], x.shape[1]
    spatial = 1
    for size in x.shape[2:]:
        spatial *= size
    if n * (c // num_groups) * spatial == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
    groups = x.reshape(n, num_groups, -1)
    var, mean = torch.var_mean(groups, dim=-1, keepdim=True, unbiased=False)
    out = ((groups - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    view = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(view)
    if bias is not None:
        out = out + bias.reshape(view)
    return out
'''

GROUP_NORM_LOOP = '''
import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """A loop over the groups of consecutive channels, statistics over dims (1, 2, ...)."""
    c = x.shape[1]
    size = c // num_groups
    if x.shape[0] * size * x[0, 0].numel() == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
    dims = tuple(range(1, x.dim()))
    pieces = []
    for g in range(num_groups):
        block = x[:, g * size:(g + 1) * size]
        mean = block.mean(dim=dims, keepdim=True)
        var = (block - mean).pow(2).mean(dim=dims, keepdim=True)
        pieces.append((block - mean) / (var + eps).sqrt())
    out = torch.cat(pieces, dim=1)
    trailing = (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.view((c,) + trailing)
    if bias is not None:
        out = out + bias.view((c,) + trailing)
    return out
'''

GROUP_NORM_UNFLATTEN_FLOAT64 = '''
import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Unflatten the channels into (G, C // G), reduce over every dim after the group, in float64."""
    n, c = x.shape[:2]
    grouped = x.to(torch.float64).unflatten(1, (num_groups, c // num_groups))  # (N, G, C/G, *)
    if n * grouped[0, 0].numel() == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
    dims = tuple(range(2, grouped.dim()))
    mean = grouped.mean(dim=dims, keepdim=True)
    var = grouped.var(dim=dims, keepdim=True, unbiased=False)
    out = ((grouped - mean) / torch.sqrt(var + eps)).flatten(1, 2)
    shape = [1, c] + [1] * (x.dim() - 2)
    if weight is not None:
        out = out * weight.to(torch.float64).reshape(shape)
    if bias is not None:
        out = out + bias.to(torch.float64).reshape(shape)
    return out.to(x.dtype)
'''

# ---------------------------------------------------------------------------
# instance_norm

INSTANCE_NORM_DIMS = '''
import torch


def instance_norm(x, weight=None, bias=None, eps=1e-5):
    """Statistics over the spatial dims (2, 3, ...) of every example and channel."""
    dims = tuple(range(2, x.dim()))
    spatial = 1
    for d in dims:
        spatial *= x.shape[d]
    if spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.shape}")
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    out = (x - mean) / torch.sqrt(var + eps)
    view = (1, -1) + (1,) * len(dims)
    if weight is not None:
        out = out * weight.view(view)
    if bias is not None:
        out = out + bias.view(view)
    return out
'''

INSTANCE_NORM_FLATTEN = '''
import torch


def instance_norm(x, weight=None, bias=None, eps=1e-5):
    """Flatten the spatial positions into one dim: (N, C, L), statistics over L."""
    flat = x.flatten(2) if x.dim() > 2 else x.unsqueeze(-1)
    if flat.shape[-1] == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.shape}")
    var, mean = torch.var_mean(flat, dim=2, keepdim=True, correction=0)
    out = (flat - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight[:, None]
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(x.shape)
'''

INSTANCE_NORM_HELPER_FLOAT64 = '''
import torch


def _ci_standardize_rows(rows, eps):
    """Each row of a 2-D tensor minus its mean, over sqrt(biased variance + eps), in float64."""
    rows = rows.to(torch.float64)
    mean = rows.sum(dim=1, keepdim=True) / rows.shape[1]
    centered = rows - mean
    var = torch.einsum("ij,ij->i", centered, centered).unsqueeze(1) / rows.shape[1]
    return centered / torch.sqrt(var + eps)


def instance_norm(x, weight=None, bias=None, eps=1e-5):
    """One row per (example, channel) pair, standardized by a helper in float64, cast back."""
    n, c = x.shape[0], x.shape[1]
    spatial = 1
    for size in x.shape[2:]:
        spatial *= size
    if spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.shape}")
    out = _ci_standardize_rows(x.reshape(n * c, -1), eps).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.to(torch.float64).reshape(per_channel)
    if bias is not None:
        out = out + bias.to(torch.float64).reshape(per_channel)
    return out.to(x.dtype)
'''

# ---------------------------------------------------------------------------
# rms_norm

RMS_NORM_DIMS = '''
import torch


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x * rsqrt(mean(x^2) + eps) over the trailing dims."""
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    if isinstance(normalized_shape, int):
        normalized_shape = [normalized_shape]
    dims = list(range(-len(normalized_shape), 0))
    out = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out
'''

RMS_NORM_EINSUM_FLAT = '''
import math

import torch


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """Sum of squares by einsum over the flattened trailing block, divided by its size."""
    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    size = math.prod(shape)
    rows = x.reshape(tuple(x.shape[:x.dim() - len(shape)]) + (size,))
    mean_square = torch.einsum("...i,...i->...", rows, rows) / size
    out = (rows / torch.sqrt(mean_square + eps).unsqueeze(-1)).reshape(x.shape)
    return out if weight is None else out * weight
'''

RMS_NORM_FLOAT64 = '''
import torch


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """Computed in float64 (eps still the machine epsilon of x's dtype), cast back."""
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    x64 = x.double()
    dims = tuple(range(x.dim() - k, x.dim()))
    count = 1
    for d in dims:
        count *= x.shape[d]
    rms = torch.sqrt((x64 * x64).sum(dim=dims, keepdim=True) / count + eps)
    out = (x64 / rms).to(x.dtype)
    if weight is not None:
        out = out * weight
    return out
'''

# ---------------------------------------------------------------------------
# weight_norm

WEIGHT_NORM_TRANSPOSE_FLATTEN = '''
import torch


def weight_norm(v, g, dim=0):
    """Move `dim` to the front, flatten the rest: one norm per row."""
    if dim == -1:
        return v * (g / torch.sqrt((v * v).sum()))
    d = dim % v.dim()
    front = v.transpose(0, d)
    rows = front.reshape(front.shape[0], -1)
    norms = torch.sqrt((rows * rows).sum(dim=1))
    shape = [1] * v.dim()
    shape[d] = v.shape[d]
    return v * (g / norms.reshape(shape))
'''

WEIGHT_NORM_OTHER_DIMS = '''
import torch


def weight_norm(v, g, dim=0):
    """Reduce over every dim but `dim` (keepdim); dim=-1 means over all of v."""
    if dim == -1:
        norm = torch.linalg.vector_norm(v)
    else:
        keep = dim if dim >= 0 else dim + v.dim()
        others = [d for d in range(v.dim()) if d != keep]
        if others:
            norm = v.pow(2).sum(dim=others, keepdim=True).sqrt()
        else:  # a 1-D v: every entry is its own slice
            norm = v.abs()
    return v * (g / norm)
'''

WEIGHT_NORM_EINSUM_FLOAT64 = '''
import torch


def _ci_norm_except(v, dim):
    """The Euclidean norms of the slices of v along `dim`, shaped to broadcast against v (float64)."""
    v64 = v.to(torch.float64)
    if dim == -1:
        return torch.einsum("i,i->", v64.reshape(-1), v64.reshape(-1)).sqrt()
    dim = dim % v.dim()
    last = torch.movedim(v64, dim, -1).reshape(-1, v.shape[dim])
    squares = torch.einsum("ki,ki->i", last, last)
    shape = [1] * v.dim()
    shape[dim] = v.shape[dim]
    return squares.sqrt().reshape(shape)


def weight_norm(v, g, dim=0):
    """w = g * v / ||v||, the norms by einsum in float64, cast back to v's dtype."""
    out = v.to(torch.float64) * (g.to(torch.float64) / _ci_norm_except(v, dim))
    return out.to(v.dtype)
'''

# ---------------------------------------------------------------------------
# batch_renorm

BATCH_RENORM_DETACH_CLAMP = '''
import torch


def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    """Batch statistics with autograd; r and d detached, then clamped."""
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = (sigma_b / sigma).detach().clamp(1.0 / r_max, r_max)
    d = ((mean_b - running_mean) / sigma).detach().clamp(-d_max, d_max)
    x_hat = (x - mean_b) / sigma_b * r + d
    return weight * x_hat + bias
'''

BATCH_RENORM_NO_GRAD_FOLDED = '''
import torch


def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    """r and d computed under torch.no_grad(), folded into one scale and one shift."""
    var_b, mean_b = torch.var_mean(x, dim=0, correction=0)
    std_b = (var_b + eps).sqrt()
    with torch.no_grad():
        std = (running_var + eps).sqrt()
        r = torch.minimum(torch.maximum(std_b / std, torch.full_like(std, 1.0 / r_max)),
                          torch.full_like(std, r_max))
        d = torch.minimum(torch.maximum((mean_b - running_mean) / std, torch.full_like(std, -d_max)),
                          torch.full_like(std, d_max))
    scale = r * weight if weight is not None else r
    shift = d * weight if weight is not None else d
    if bias is not None:
        shift = shift + bias
    return (x - mean_b) / std_b * scale + shift
'''

BATCH_RENORM_FLOAT64_DETACHED_INPUT = '''
import torch


def _ci_renorm_corrections(x, running_mean, running_var, r_max, d_max, eps):
    """r and d from a detached copy of x: constants for autograd by construction."""
    x = x.detach().to(torch.float64)
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(((x - mean_b) ** 2).mean(dim=0) + eps)
    sigma = torch.sqrt(running_var.detach().to(torch.float64) + eps)
    r = torch.clamp(sigma_b / sigma, min=1.0 / r_max, max=r_max)
    d = torch.clamp((mean_b - running_mean.detach().to(torch.float64)) / sigma, min=-d_max, max=d_max)
    return r, d


def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    """Training-mode batch renormalization computed in float64, cast back to x's dtype."""
    r, d = _ci_renorm_corrections(x, running_mean, running_var, r_max, d_max, eps)
    x64 = x.to(torch.float64)
    mean_b = x64.mean(dim=0)
    centered = x64 - mean_b
    sigma_b = torch.sqrt((centered * centered).mean(dim=0) + eps)
    y = (centered / sigma_b * r + d) * weight.to(torch.float64) + bias.to(torch.float64)
    return y.to(x.dtype)
'''

RIGHT: list[CorrectImplementation] = [
    CorrectImplementation("reduce-trailing-dims", "layer_norm", LAYER_NORM_DIMS),
    CorrectImplementation("flatten-var-mean-rsqrt", "layer_norm", LAYER_NORM_FLATTEN),
    CorrectImplementation("float64-sums-then-cast", "layer_norm", LAYER_NORM_FLOAT64),
    CorrectImplementation("reshape-n-g-rows", "group_norm", GROUP_NORM_RESHAPE),
    CorrectImplementation("loop-over-groups-cat", "group_norm", GROUP_NORM_LOOP),
    CorrectImplementation("unflatten-float64", "group_norm", GROUP_NORM_UNFLATTEN_FLOAT64),
    CorrectImplementation("reduce-spatial-dims", "instance_norm", INSTANCE_NORM_DIMS),
    CorrectImplementation("flatten-spatial-var-mean", "instance_norm", INSTANCE_NORM_FLATTEN),
    CorrectImplementation("row-helper-einsum-float64", "instance_norm", INSTANCE_NORM_HELPER_FLOAT64),
    CorrectImplementation("rsqrt-mean-square", "rms_norm", RMS_NORM_DIMS),
    CorrectImplementation("einsum-flat-block", "rms_norm", RMS_NORM_EINSUM_FLAT),
    CorrectImplementation("float64-then-cast", "rms_norm", RMS_NORM_FLOAT64),
    CorrectImplementation("transpose-flatten-rows", "weight_norm", WEIGHT_NORM_TRANSPOSE_FLATTEN),
    CorrectImplementation("reduce-other-dims", "weight_norm", WEIGHT_NORM_OTHER_DIMS),
    CorrectImplementation("movedim-einsum-float64", "weight_norm", WEIGHT_NORM_EINSUM_FLOAT64),
    CorrectImplementation("detach-then-clamp", "batch_renorm", BATCH_RENORM_DETACH_CLAMP),
    CorrectImplementation("no-grad-min-max-folded", "batch_renorm", BATCH_RENORM_NO_GRAD_FOLDED),
    CorrectImplementation("float64-detached-input", "batch_renorm", BATCH_RENORM_FLOAT64_DETACHED_INPUT),
]

# ---------------------------------------------------------------------------
# groupnorm_vs_batchnorm_small_batch

SMALL_BATCH_FACTORY = '''
import torch


def _ci_group_layer(groups):
    def make(channels):
        layer = torch.nn.Module()
        layer.weight = torch.nn.Parameter(torch.ones(channels))
        layer.bias = torch.nn.Parameter(torch.zeros(channels))
        layer.forward = lambda x: group_norm(x, groups, layer.weight, layer.bias)
        return layer
    return make


class _ci_RunningNorm(torch.nn.Module):
    """Batch norm for (N, C): explicit exponential moving averages under no_grad."""

    def __init__(self, channels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        if self.training:
            centred = x - x.mean(dim=0)
            mean, var = x.mean(dim=0), (centred ** 2).mean(dim=0)
            with torch.no_grad():
                self.running_mean.copy_(0.9 * self.running_mean + 0.1 * mean)
                self.running_var.copy_(0.9 * self.running_var + 0.1 * x.var(dim=0, correction=1))
        else:
            mean, var = self.running_mean, self.running_var
        return self.weight * (x - mean) / torch.sqrt(var + 1e-5) + self.bias


def groupnorm_vs_batchnorm_small_batch(batch_sizes=(2, 32), seed=0, epochs=1, groups=8):
    """A factory of group-norm modules whose forward is an instance attribute; batch norm as a class."""
    runs = {"group_norm": _ci_group_layer(groups), "batch_norm": _ci_RunningNorm}
    out = {name: [accuracy(train_model(make_mlp(layer, seed=seed), X_TRAIN, Y_TRAIN, b, epochs=epochs, seed=seed),
                           X_VAL, Y_VAL) for b in batch_sizes] for name, layer in runs.items()}
    out["batch_sizes"] = list(batch_sizes)
    return out
'''

SMALL_BATCH_ONE_CLASS = '''
import torch


def groupnorm_vs_batchnorm_small_batch(batch_sizes=(2, 32), seed=0, epochs=1, groups=8):
    """One module class with a `kind`; statistics in float64; results gathered as tensors."""

    class Norm(torch.nn.Module):
        def __init__(self, channels, kind):
            super().__init__()
            self.kind = kind
            self.weight = torch.nn.Parameter(torch.ones(channels))
            self.bias = torch.nn.Parameter(torch.zeros(channels))
            if kind == "batch":
                self.register_buffer("running_mean", torch.zeros(channels))
                self.register_buffer("running_var", torch.ones(channels))

        def forward(self, x):
            if self.kind == "group":
                return group_norm(x, groups, weight=self.weight, bias=self.bias)
            if not self.training:
                return (x - self.running_mean) * torch.rsqrt(self.running_var + 1e-5) * self.weight + self.bias
            x64 = x.double()
            mean = x64.mean(0)
            var = x64.var(0, unbiased=False)
            n = x.shape[0]
            with torch.no_grad():
                self.running_mean.mul_(0.9).add_(0.1 * mean.float())
                self.running_var.mul_(0.9).add_(0.1 * (var * n / (n - 1)).float())
            return ((x64 - mean) * torch.rsqrt(var + 1e-5)).to(x.dtype) * self.weight + self.bias

    accuracies = torch.zeros(2, len(batch_sizes))
    for column, size in enumerate(batch_sizes):
        for row, kind in enumerate(("group", "batch")):
            model = make_mlp(lambda c: Norm(c, kind), seed=seed)
            train_model(model, X_TRAIN, Y_TRAIN, size, epochs=epochs, seed=seed)
            accuracies[row, column] = accuracy(model, X_VAL, Y_VAL)
    return {"batch_sizes": list(batch_sizes), "group_norm": accuracies[0], "batch_norm": accuracies[1]}
'''

SMALL_BATCH_RENORM = '''
import torch
from torch import nn


class _ci_Group(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return group_norm(x, self.groups, self.weight, self.bias, eps=1e-5)


class _ci_Batch(nn.Module):
    """Training mode is batch renormalization with r_max = 1 and d_max = 0, which is batch norm."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        if not self.training:
            scale = self.weight / torch.sqrt(self.running_var + 1e-5)
            return x * scale + (self.bias - self.running_mean * scale)
        out = batch_renorm(x, self.weight, self.bias, self.running_mean, self.running_var, 1.0, 0.0)
        with torch.no_grad():
            self.running_mean += 0.1 * (x.mean(0) - self.running_mean)
            self.running_var += 0.1 * (x.var(0) - self.running_var)
        return out


def groupnorm_vs_batchnorm_small_batch(batch_sizes=(2, 32), seed=0, epochs=1, groups=8):
    """Batch norm through the notebook's own batch_renorm; one loop over (name, factory, size)."""
    factories = [("group_norm", lambda c: _ci_Group(c, groups)), ("batch_norm", _ci_Batch)]
    result = {"batch_sizes": list(batch_sizes), "group_norm": [], "batch_norm": []}
    for size in batch_sizes:
        for name, factory in factories:
            net = train_model(make_mlp(factory, seed=seed), X_TRAIN, Y_TRAIN, size, epochs=epochs, seed=seed)
            result[name].append(accuracy(net, X_VAL, Y_VAL))
    return result
'''

RIGHT += [
    CorrectImplementation("factory-instance-forward", "groupnorm_vs_batchnorm_small_batch", SMALL_BATCH_FACTORY),
    CorrectImplementation("one-class-float64-tensors", "groupnorm_vs_batchnorm_small_batch", SMALL_BATCH_ONE_CLASS),
    CorrectImplementation("batch-renorm-as-batch-norm", "groupnorm_vs_batchnorm_small_batch", SMALL_BATCH_RENORM),
]
