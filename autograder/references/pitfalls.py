"""The PyTorch reference and the known mistakes of ``pitfalls`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations. The references:

- ``fuse_conv_bn`` is ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (both modules
  in eval mode, as every probe passes them);
- ``merge_batch_stats`` is the law of total variance computed in float64 and
  returned in the input's dtype; every probe builds its per-shard statistics from
  real shards of data, so the reference is also the statistics of the full batch
  (:func:`_self_check` verifies this);
- ``freeze_batchnorm`` has no PyTorch counterpart; the reference keeps every
  BatchNorm layer a BatchNorm layer (same state dict), overrides ``train`` on the
  layer instances so that they stay in eval mode, switches off the gradients of
  their affine parameters and drops stale gradients.
"""

from __future__ import annotations

import copy
import functools

from autograder.checks.core import Mistake, Namespace
from autograder.checks.pitfalls import _shards

# ---------------------------------------------------------------------------
# fuse_conv_bn


def _fuse_with(scale_of, shift_of, keep_conv_bias: bool = True, scale_conv_bias: bool = True):
    """fuse_conv_bn built from a (possibly wrong) per-channel scale and shift."""

    def fuse(conv, bn):
        import torch

        fused = copy.deepcopy(conv)
        with torch.no_grad():
            scale = scale_of(bn)
            shift = shift_of(bn, scale)
            bias = conv.bias if (conv.bias is not None and keep_conv_bias) else torch.zeros_like(bn.running_mean)
            fused.weight = torch.nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
            fused.bias = torch.nn.Parameter((bias * scale if scale_conv_bias else bias) + shift)
        return fused

    return fuse


def _gamma(bn):
    import torch

    return bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)


def _beta(bn):
    import torch

    return bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)


def _right_scale(bn):
    return _gamma(bn) / (bn.running_var + bn.eps).sqrt()


def _right_shift(bn, scale):
    return _beta(bn) - bn.running_mean * scale


FUSE_NO_EPS = Mistake("eps left out: the scale is gamma / sqrt(running_var + eps)",
                      {"fuse_conv_bn": _fuse_with(lambda bn: _gamma(bn) / bn.running_var.sqrt(), _right_shift)})
FUSE_NO_SQRT = Mistake("the variance used without a square root: the scale is gamma / sqrt(running_var + eps)",
                       {"fuse_conv_bn": _fuse_with(lambda bn: _gamma(bn) / (bn.running_var + bn.eps),
                                                   _right_shift)})
FUSE_DROPS_CONV_BIAS = Mistake(
    "the convolution's own bias left out: the fused bias is scale * (conv.bias - running_mean) + beta",
    {"fuse_conv_bn": _fuse_with(_right_scale, _right_shift, keep_conv_bias=False)})
FUSE_UNSCALED_CONV_BIAS = Mistake(
    "the convolution's bias added without scaling it: the fused bias is scale * (conv.bias - running_mean) + beta",
    {"fuse_conv_bn": _fuse_with(_right_scale, _right_shift, scale_conv_bias=False)})
FUSE_NO_MEAN = Mistake("the running mean left out of the fused bias",
                       {"fuse_conv_bn": _fuse_with(_right_scale, lambda bn, scale: _beta(bn))})
FUSE_NO_AFFINE = Mistake("BatchNorm's weight and bias (gamma and beta) left out",
                         {"fuse_conv_bn": _fuse_with(lambda bn: 1 / (bn.running_var + bn.eps).sqrt(),
                                                     lambda bn, scale: -bn.running_mean * scale)})


# ---------------------------------------------------------------------------
# merge_batch_stats


def _reference_merge(means, variances, counts):
    import torch

    n = counts.to(torch.float64).reshape(-1, 1)
    m, v = means.to(torch.float64), variances.to(torch.float64)
    mean = (n * m).sum(0) / n.sum()
    var = (n * (v + (m - mean) ** 2)).sum(0) / n.sum()
    return mean.to(means.dtype), var.to(means.dtype)


def _merge_equal_weights(means, variances, counts):
    return means.mean(0), variances.mean(0)


def _merge_average_variances(means, variances, counts):
    n = counts.to(means.dtype).reshape(-1, 1)
    return (n * means).sum(0) / n.sum(), (n * variances).sum(0) / n.sum()


def _merge_equal_weight_means(means, variances, counts):
    mean = means.mean(0)
    n = counts.to(means.dtype).reshape(-1, 1)
    return mean, (n * (variances + (means - mean) ** 2)).sum(0) / n.sum()


def _merge_sum_of_squares(means, variances, counts):
    n = counts.to(means.dtype).reshape(-1, 1)
    mean = (n * means).sum(0) / n.sum()
    return mean, (n * (variances + means ** 2)).sum(0) / n.sum() - mean ** 2


def _merge_unbiased(means, variances, counts):
    mean, var = _reference_merge(means, variances, counts)
    total = counts.sum().to(var.dtype)
    return mean, var * total / (total - 1)


MERGE_EQUAL_WEIGHTS = Mistake(
    "plain averages of the shard means and variances: weight each shard by its count, and add the spread of "
    "the shard means around the overall mean", {"merge_batch_stats": _merge_equal_weights})
MERGE_AVERAGE_VARIANCES = Mistake(
    "the count-weighted average of the shard variances: that misses the between-shard term, "
    "sum_k n_k (mean_k - mean)^2 / N", {"merge_batch_stats": _merge_average_variances})
MERGE_EQUAL_WEIGHT_MEANS = Mistake(
    "the shard means averaged with equal weights: shards of different sizes must be weighted by their counts",
    {"merge_batch_stats": _merge_equal_weight_means})
MERGE_SUM_OF_SQUARES = Mistake(
    "E[x^2] - E[x]^2 in the inputs' precision: when the means are large compared to the spread this "
    "subtraction cancels catastrophically in float32; use sum_k n_k (var_k + (mean_k - mean)^2) / N",
    {"merge_batch_stats": _merge_sum_of_squares})
MERGE_UNBIASED = Mistake("the unbiased variance of the whole batch: return the biased one (divide by N)",
                         {"merge_batch_stats": _merge_unbiased})


def _self_check() -> None:
    """The reference merge equals the statistics of the concatenated shards (run by the tests)."""
    import torch

    for counts, dtype in (([3, 8, 1, 20], "float64"), ([5, 5], "float64")):
        data, means, variances = _shards(0, counts, 4, 0.0, 1.0, dtype)
        mean, var = _reference_merge(means, variances, torch.tensor(counts))
        full = torch.cat(data)
        assert torch.allclose(mean, full.mean(0)) and torch.allclose(var, full.var(0, unbiased=False))


# ---------------------------------------------------------------------------
# freeze_batchnorm


def _reference_freeze(model):
    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            for parameter in layer.parameters(recurse=False):
                parameter.requires_grad_(False)
                parameter.grad = None
            layer.train = functools.partial(stay_in_eval, layer)
            layer.eval()
    return model


def _bn_modules(model, kinds=None):
    from torch import nn

    kinds = kinds or (nn.modules.batchnorm._BatchNorm,)
    return [m for m in model.modules() if isinstance(m, kinds)]


def _freeze_requires_grad_only(model):
    for layer in _bn_modules(model):
        layer.requires_grad_(False)
    return model


def _freeze_eval_only(model):
    for layer in _bn_modules(model):
        layer.eval()
    return model


def _freeze_momentum_zero(model):
    for layer in _bn_modules(model):
        layer.momentum = 0.0
        layer.requires_grad_(False)
    return model


def _freeze_keeps_stale_gradients(model):
    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    for layer in _bn_modules(model):
        layer.requires_grad_(False)
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
    return model


def _freeze_no_requires_grad(model):
    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    for layer in _bn_modules(model):
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
    return model


def _freeze_only_2d(model):
    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    for layer in _bn_modules(model, (nn.BatchNorm2d,)):
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
    return model


FREEZE_REQUIRES_GRAD_ONLY = Mistake(
    "requires_grad=False (and perhaps eval() once): that stops the weight updates, but the next model.train() "
    "puts the layers back in training mode, where they overwrite their running statistics in every forward "
    "pass",
    {"freeze_batchnorm": _freeze_requires_grad_only})
FREEZE_EVAL_ONLY = Mistake(
    "eval() on the BatchNorm layers, once: the next model.train() puts them back in training mode",
    {"freeze_batchnorm": _freeze_eval_only})
FREEZE_MOMENTUM_ZERO = Mistake(
    "running statistics that no longer update (momentum=0 or track_running_stats=False): in training mode "
    "the layers still normalize with the batch statistics instead of the running ones",
    {"freeze_batchnorm": _freeze_momentum_zero})
FREEZE_STALE_GRADIENTS = Mistake(
    "gradients left on the frozen parameters: an optimizer still applies weight decay and momentum to a "
    "parameter whose .grad is a tensor of zeros; set .grad to None", {"freeze_batchnorm": _freeze_keeps_stale_gradients})
FREEZE_NO_REQUIRES_GRAD = Mistake(
    "BatchNorm's weight and bias still trainable: switch off their gradients with requires_grad_(False)",
    {"freeze_batchnorm": _freeze_no_requires_grad})
FREEZE_ONLY_2D = Mistake(
    "only torch.nn.BatchNorm2d layers frozen: BatchNorm1d (and 3d) layers are BatchNorm layers too; test "
    "isinstance(module, torch.nn.modules.batchnorm._BatchNorm)", {"freeze_batchnorm": _freeze_only_2d})


# ---------------------------------------------------------------------------
# The reference


def reference() -> Namespace:
    import torch

    def fuse_conv_bn(conv, bn):
        return torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)

    return {"fuse_conv_bn": fuse_conv_bn, "merge_batch_stats": _reference_merge,
            "freeze_batchnorm": _reference_freeze}


MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}
