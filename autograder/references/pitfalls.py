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
FUSE_FIXED_EPS = Mistake("eps fixed at 1e-5: use the layer's own bn.eps in sqrt(running_var + eps)",
                         {"fuse_conv_bn": _fuse_with(lambda bn: _gamma(bn) / (bn.running_var + 1e-5).sqrt(),
                                                     _right_shift)})
FUSE_FLOAT32 = Mistake(
    "the scale gamma / sqrt(running_var + eps) computed in float32: keep the layers' dtype, float64 here "
    "(float32 keeps only about 7 significant digits)",
    {"fuse_conv_bn": _fuse_with(lambda bn: _right_scale(bn).float(), _right_shift)})


def _fuse_in_place(conv, bn):
    """The fold written into ``conv`` itself, which is returned."""
    import torch

    with torch.no_grad():
        scale = _right_scale(bn)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + _beta(bn)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = torch.nn.Parameter(new_bias)
    return conv


def _fuse_into_new_conv(conv, bn):
    """A new Conv2d built from the channels, kernel size, stride and padding only."""
    import torch

    fused = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                            padding=conv.padding).to(conv.weight.dtype)
    with torch.no_grad():
        scale = _right_scale(bn)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + _beta(bn))
    return fused


FUSE_IN_PLACE = Mistake(
    "`conv` changed in place and returned: build a new convolution (copy.deepcopy(conv), then new "
    "Parameters) and leave `conv` as it was", {"fuse_conv_bn": _fuse_in_place})
FUSE_LOSES_SETTINGS = Mistake(
    "a new Conv2d built from some of the convolution's settings only, so dilation, groups or padding_mode "
    "were lost: start from copy.deepcopy(conv), which keeps them all", {"fuse_conv_bn": _fuse_into_new_conv})


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


def _merge_equal_weight_between_term(means, variances, counts):
    n = counts.to(means.dtype).reshape(-1, 1)
    mean = (n * means).sum(0) / n.sum()
    return mean, (n * variances).sum(0) / n.sum() + ((means - mean) ** 2).mean(0)


def _merge_in_place(means, variances, counts):
    n = counts.to(means.dtype).reshape(-1, 1)
    mean = (n * means).sum(dim=0) / n.sum()
    variances += (means - mean) ** 2
    return mean, (n * variances).sum(dim=0) / n.sum()


def _merge_pairwise_last_dropped(means, variances, counts):
    """Shard after shard (Chan's update), with a loop that stops one shard short."""
    mean, var, n = means[0], variances[0], counts[0].to(means.dtype)
    for k in range(1, len(counts) - 1):
        n_k = counts[k].to(means.dtype)
        total = n + n_k
        delta = means[k] - mean
        mean = mean + delta * n_k / total
        var = (n * var + n_k * variances[k]) / total + delta ** 2 * n * n_k / total ** 2
        n = total
    return mean, var


MERGE_EQUAL_WEIGHT_BETWEEN = Mistake(
    "the between-shard term averaged with equal weights: weight each (mean_k - mean)^2 by its count, "
    "sum_k n_k (mean_k - mean)^2 / N", {"merge_batch_stats": _merge_equal_weight_between_term})
MERGE_IN_PLACE = Mistake(
    "the input `variances` changed in place (+=): compute into new tensors and leave the inputs as they were",
    {"merge_batch_stats": _merge_in_place})
MERGE_LAST_SHARD_DROPPED = Mistake(
    "the last shard left out (a loop over the shards that stops one short, range(1, K - 1)): every shard "
    "counts", {"merge_batch_stats": _merge_pairwise_last_dropped})


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
    "requires_grad=False (perhaps with eval() once): the next model.train() puts the layers back in training "
    "mode, where every forward pass moves their running statistics",
    {"freeze_batchnorm": _freeze_requires_grad_only})
FREEZE_EVAL_ONLY = Mistake(
    "eval() on the BatchNorm layers, once: the next model.train() puts them back in training mode",
    {"freeze_batchnorm": _freeze_eval_only})
FREEZE_MOMENTUM_ZERO = Mistake(
    "running statistics that no longer update (momentum=0 or track_running_stats=False): in training mode "
    "the layers still normalize with batch statistics",
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


def _freeze_bias_grad_kept(model):
    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    for layer in _bn_modules(model):
        layer.requires_grad_(False)
        if layer.weight is not None:
            layer.weight.grad = None
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
    return model


FREEZE_BIAS_GRAD_KEPT = Mistake(
    "the .grad of BatchNorm's bias left in place (only weight.grad set to None): an optimizer still decays "
    "and moves it; set .grad to None on every frozen parameter",
    {"freeze_batchnorm": _freeze_bias_grad_kept})


# ---------------------------------------------------------------------------
# The reference


def reference() -> Namespace:
    import torch

    def fuse_conv_bn(conv, bn):
        return torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)

    return {"fuse_conv_bn": fuse_conv_bn, "merge_batch_stats": _reference_merge,
            "freeze_batchnorm": _reference_freeze}


MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}


# ---------------------------------------------------------------------------
# The experiment and the bug hunt (added with them)

from autograder.references.setup_cells import one_thread  # noqa: E402

_reference_of_the_remedies = reference


def reference() -> Namespace:  # noqa: F811 - extends the reference above
    namespace = dict(_reference_of_the_remedies())
    namespace["folding_check"] = _reference_folding_check
    namespace["fine_tune_and_serve"] = _reference_fine_tune_and_serve
    return namespace


@one_thread
def _reference_folding_check(seed=0, epochs=2, repeats=20, *, evaluates=True, keeps_bn=False):
    """The experiment with torch's fusion (the keywords make its known mistakes)."""
    import time

    import torch
    from torch import nn

    from autograder.references.setup_cells import setup_namespace

    h = setup_namespace("pitfalls")
    model = h["train_model"](h["make_cnn"](seed), h["X_TRAIN"], h["Y_TRAIN"], epochs=epochs, seed=seed)
    model.train(not evaluates)
    layers, folded = list(model), []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.BatchNorm2d):
            if keeps_bn:
                folded.append(layer)
            continue
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            bn = copy.deepcopy(following).eval()
            folded.append(torch.nn.utils.fusion.fuse_conv_bn_eval(copy.deepcopy(layer).eval(), bn))
        else:
            folded.append(layer)
    fused = nn.Sequential(*folded).eval()
    with torch.no_grad():
        logits, fused_logits = model(h["X_VAL"]), fused(h["X_VAL"])

        def best(net):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                net(h["X_VAL"])
                runs.append(time.perf_counter() - start)
            return 1e3 * min(runs)

        time_ms, fused_time_ms = best(model), best(fused)
    y = h["Y_VAL"]
    return {"accuracy": (logits.argmax(dim=1) == y).float().mean().item(),
            "fused_accuracy": (fused_logits.argmax(dim=1) == y).float().mean().item(),
            "max_difference": (logits - fused_logits).abs().max().item(), "time_ms": time_ms,
            "fused_time_ms": fused_time_ms,
            "batchnorm_layers": sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())}


def _reference_fine_tune_and_serve(backbone, head, x_train, y_train, requests, epochs=3, batch_size=16, lr=0.05, *,
                                   serves_in_eval=True, freezes_backbone=True, skips_one=True, head_in_eval=False):
    """The script with its three bugs fixed (the keywords put one back, or fix too much)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        if head_in_eval:
            model.eval()
        elif freezes_backbone:
            backbone.eval()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(y_train), batch_size):
            batch = order[start:start + batch_size]
            if skips_one and len(batch) < 2:
                continue
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.train(not serves_in_eval)
    with torch.no_grad():
        return [model(x).argmax(dim=1) for x in requests]


FOLDING_TRAIN_MODE = Mistake(
    "the trained model left in training mode: fuse_conv_bn folds the running statistics, which only evaluation "
    "mode uses; call model.eval() before comparing (and before folding)",
    {"folding_check": functools.partial(_reference_folding_check, evaluates=False)})
FOLDING_BN_KEPT = Mistake(
    "the BatchNorm layers kept in the folded model: the folded convolution already applies them, leave them out",
    {"folding_check": functools.partial(_reference_folding_check, keeps_bn=True)})
BUG_SERVED_IN_TRAINING_MODE = Mistake(
    "the requests still served in training mode: call model.eval() before serving, so that each prediction uses "
    "the running statistics and a request of one example works",
    {"fine_tune_and_serve": functools.partial(_reference_fine_tune_and_serve, serves_in_eval=False)})
BUG_BACKBONE_STATISTICS_MOVE = Mistake(
    "the backbone's running statistics still move: requires_grad_(False) does not stop them, and model.train() "
    "puts its BatchNorm layers back in training mode; freeze them (freeze_batchnorm)",
    {"fine_tune_and_serve": functools.partial(_reference_fine_tune_and_serve, freezes_backbone=False)})
BUG_BATCH_OF_ONE = Mistake(
    "a training batch of one example still reaches the model: skip (or merge) a last batch with fewer than two "
    "examples", {"fine_tune_and_serve": functools.partial(_reference_fine_tune_and_serve, skips_one=False)})
BUG_HEAD_FROZEN_TOO = Mistake(
    "the whole model in evaluation mode during fine-tuning: the head's BatchNorm layer must train (and learn its "
    "running statistics); freeze the backbone's layers only",
    {"fine_tune_and_serve": functools.partial(_reference_fine_tune_and_serve, head_in_eval=True)})
MISTAKES.update(FOLDING_TRAIN_MODE=FOLDING_TRAIN_MODE, FOLDING_BN_KEPT=FOLDING_BN_KEPT,
                BUG_SERVED_IN_TRAINING_MODE=BUG_SERVED_IN_TRAINING_MODE,
                BUG_BACKBONE_STATISTICS_MOVE=BUG_BACKBONE_STATISTICS_MOVE, BUG_BATCH_OF_ONE=BUG_BATCH_OF_ONE,
                BUG_HEAD_FROZEN_TOO=BUG_HEAD_FROZEN_TOO)
