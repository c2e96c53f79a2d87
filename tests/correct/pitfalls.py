"""Correct answers for ``pitfalls``: ``fuse_conv_bn``, ``merge_batch_stats``, ``freeze_batchnorm``."""

from __future__ import annotations

from tests.correct import CorrectImplementation

# ---------------------------------------------------------------------------
# fuse_conv_bn

FUSE_DEEPCOPY_RSQRT = '''
import copy

import torch
from torch import nn


def fuse_conv_bn(conv, bn):
    """A deep copy of conv whose weight and bias absorb the eval-mode BatchNorm."""
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        mean, var = bn.running_mean, bn.running_var
        gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
        b = conv.bias if conv.bias is not None else torch.zeros_like(mean)
        scale = gamma * torch.rsqrt(var + bn.eps)
        shape = [-1] + [1] * (conv.weight.dim() - 1)
        weight = (conv.weight * scale.reshape(shape)).to(conv.weight.dtype)
        bias = ((b - mean) * scale + beta).to(conv.weight.dtype if conv.bias is None else conv.bias.dtype)
    fused.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias, requires_grad=conv.bias is not None and conv.bias.requires_grad)
    return fused
'''

FUSE_REBUILD_CONSTRUCTOR = '''
import torch


def _ci_folded(conv, bn):
    """W' = s W and b' = s (b - mean) + beta per output channel, s = gamma / sqrt(var + eps)."""
    weight = conv.weight.detach()
    channels = weight.shape[0]
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones(channels, dtype=weight.dtype)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros(channels, dtype=weight.dtype)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(channels, dtype=weight.dtype)
    s = gamma / torch.sqrt(bn.running_var.detach() + bn.eps)
    new_weight = torch.stack([s[c] * weight[c] for c in range(channels)])
    new_bias = s * (b - bn.running_mean.detach()) + beta
    return new_weight, new_bias


def fuse_conv_bn(conv, bn):
    """A new Conv2d built from conv's settings, holding the folded weight and bias.

    It is built on the meta device, so that its (discarded) initialization draws no random
    numbers; both of its parameters are then replaced by real tensors."""
    fused = torch.nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True, padding_mode=conv.padding_mode,
        device="meta", dtype=conv.weight.dtype,
    )
    new_weight, new_bias = _ci_folded(conv, bn)
    bias_dtype = conv.bias.dtype if conv.bias is not None else conv.weight.dtype
    fused.weight = torch.nn.Parameter(new_weight.to(conv.weight.dtype).clone(),
                                      requires_grad=conv.weight.requires_grad)
    fused.bias = torch.nn.Parameter(new_bias.to(bias_dtype).clone(),
                                    requires_grad=conv.bias is not None and conv.bias.requires_grad)
    fused.train(conv.training)
    return fused
'''

FUSE_EINSUM_FLOAT64 = '''
import copy

import torch


def fuse_conv_bn(conv, bn):
    """Folded in float64 with einsum, cast back to the convolution's dtype."""
    out_channels = conv.weight.shape[0]
    f64 = torch.float64
    with torch.no_grad():
        w = conv.weight.to(f64)
        b = torch.zeros(out_channels, dtype=f64) if conv.bias is None else conv.bias.to(f64)
        gamma = torch.ones(out_channels, dtype=f64) if bn.weight is None else bn.weight.to(f64)
        beta = torch.zeros(out_channels, dtype=f64) if bn.bias is None else bn.bias.to(f64)
        inv_std = 1.0 / torch.sqrt(bn.running_var.to(f64) + bn.eps)
        scale = gamma * inv_std
        new_w = torch.einsum("oihw,o->oihw", w, scale)
        new_b = torch.einsum("o,o->o", b - bn.running_mean.to(f64), scale) + beta
    fused = copy.deepcopy(conv)
    fused.weight = torch.nn.Parameter(new_w.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    bias_dtype = conv.weight.dtype if conv.bias is None else conv.bias.dtype
    fused.bias = torch.nn.Parameter(new_b.to(bias_dtype), requires_grad=conv.bias is not None and conv.bias.requires_grad)
    return fused
'''

# ---------------------------------------------------------------------------
# merge_batch_stats

MERGE_TOTAL_VARIANCE = '''
import torch


def merge_batch_stats(means, variances, counts):
    """Law of total variance: within-shard variance plus the variance of the shard means."""
    n = counts.to(means.dtype).reshape(-1, 1)
    total = n.sum()
    mean = (n * means).sum(dim=0) / total
    var = (n * (variances + (means - mean) ** 2)).sum(dim=0) / total
    return mean, var
'''

MERGE_SHIFTED_POOLED_SUMS = '''
import torch


def merge_batch_stats(means, variances, counts):
    """Pooled sums and sums of squares, taken around a shift (the first shard's mean) so that
    no large, nearly equal numbers are subtracted; computed in float64, cast back."""
    dtype = means.dtype
    m = means.to(torch.float64)
    v = variances.to(torch.float64)
    n = counts.to(torch.float64)
    shift = m[0]
    total = n.sum()
    sum_shifted = torch.einsum("k,kc->c", n, m - shift)  # sum of (x - shift)
    sum_squares = torch.einsum("k,kc->c", n, v + (m - shift) ** 2)  # sum of (x - shift)^2
    mean_shifted = sum_shifted / total
    mean = shift + mean_shifted
    var = sum_squares / total - mean_shifted ** 2
    return mean.to(dtype), var.clamp_min(0.0).to(dtype)
'''

MERGE_CHAN_PAIRWISE = '''
import torch


def _ci_combine(a, b):
    """Chan et al.: merge (count, mean, M2) of two disjoint sets."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta * delta * (n_a * n_b / n)
    return n, mean, m2


def merge_batch_stats(means, variances, counts):
    """Fold the shards in one at a time, keeping a count, a mean and a sum of squared deviations
    (in float64: the running mean is rounded once per shard)."""
    counts = [float(c) for c in counts.tolist()]
    m = means.to(torch.float64)
    v = variances.to(torch.float64)
    merged = (counts[0], m[0], v[0] * counts[0])
    for k in range(1, means.shape[0]):
        merged = _ci_combine(merged, (counts[k], m[k], v[k] * counts[k]))
    n, mean, m2 = merged
    return mean.to(means.dtype), (m2 / n).to(means.dtype)
'''

# ---------------------------------------------------------------------------
# freeze_batchnorm

FREEZE_PARTIAL_TRAIN = '''
import functools

import torch
from torch import nn


def _ci_stay_in_eval(layer, mode=True):
    """A frozen layer's train(): whatever the mode asked for, evaluation mode."""
    return nn.Module.train(layer, False)


def freeze_batchnorm(model):
    """Per-instance train() bound with functools.partial, no gradients, no stale .grad."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train = functools.partial(_ci_stay_in_eval, module)
            module.eval()
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
                p.grad = None
    return model
'''

FREEZE_METHODTYPE = '''
import types

import torch


def _ci_frozen_train(self, mode=True):
    self.training = False
    for child in self.children():
        child.train(False)
    return self


def freeze_batchnorm(model):
    """Per-instance train() bound with types.MethodType (deepcopy rebinds it to the copy)."""
    frozen = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in frozen:
        layer.train = types.MethodType(_ci_frozen_train, layer)
        layer.train(False)
        if layer.weight is not None:
            layer.weight.requires_grad_(False)
            layer.weight.grad = None
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
            layer.bias.grad = None
    return model
'''

FREEZE_PRE_HOOK = '''
import torch


def _ci_eval_before_forward(module, args):
    """Forward pre-hook: whatever mode model.train() left the layer in, normalize with the
    running statistics (and leave them untouched)."""
    if module.training:
        module.eval()


def freeze_batchnorm(model):
    """Forward pre-hooks that switch each BatchNorm layer to eval mode before every forward pass,
    plus requires_grad_(False) and no .grad on its affine parameters."""
    for module in model.modules():
        if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            continue
        module.eval()
        module.register_forward_pre_hook(_ci_eval_before_forward)
        module.requires_grad_(False)
        for p in module.parameters():
            p.grad = None
    return model
'''

RIGHT: list[CorrectImplementation] = [
    CorrectImplementation("deepcopy-rsqrt", "fuse_conv_bn", FUSE_DEEPCOPY_RSQRT),
    CorrectImplementation("rebuild-conv2d-constructor", "fuse_conv_bn", FUSE_REBUILD_CONSTRUCTOR),
    CorrectImplementation("einsum-float64-deepcopy", "fuse_conv_bn", FUSE_EINSUM_FLOAT64),
    CorrectImplementation("total-variance", "merge_batch_stats", MERGE_TOTAL_VARIANCE),
    CorrectImplementation("shifted-pooled-sums-float64", "merge_batch_stats", MERGE_SHIFTED_POOLED_SUMS),
    CorrectImplementation("chan-pairwise-loop", "merge_batch_stats", MERGE_CHAN_PAIRWISE),
    CorrectImplementation("partial-train-override", "freeze_batchnorm", FREEZE_PARTIAL_TRAIN),
    CorrectImplementation("methodtype-train-override", "freeze_batchnorm", FREEZE_METHODTYPE),
    CorrectImplementation("forward-pre-hook-eval", "freeze_batchnorm", FREEZE_PRE_HOOK),
]
