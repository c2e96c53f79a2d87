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

# ---------------------------------------------------------------------------
# folding_check

FOLDING_CHILDREN = '''
import time

import torch
from torch import nn


def folding_check(seed=0, epochs=2, repeats=20):
    """Pairs found with named_children; timings with a list comprehension; counts with isinstance."""
    trained = train_model(make_cnn(seed), X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed)
    trained.eval()
    children = list(trained.named_children())
    kept = []
    skip = set()
    for index, (name, module) in enumerate(children):
        if name in skip:
            continue
        if isinstance(module, nn.Conv2d) and index + 1 < len(children) and \\
                isinstance(children[index + 1][1], nn.BatchNorm2d):
            kept.append(fuse_conv_bn(module, children[index + 1][1]))
            skip.add(children[index + 1][0])
        else:
            kept.append(module)
    folded = nn.Sequential(*kept)
    folded.eval()
    with torch.no_grad():
        a, b = trained(X_VAL), folded(X_VAL)
        timings = {}
        for label, net in (("time_ms", trained), ("fused_time_ms", folded)):
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(X_VAL)
                runs.append(time.perf_counter() - t0)
            timings[label] = min(runs) * 1000.0
    return {"accuracy": float((a.argmax(1) == Y_VAL).double().mean()),
            "fused_accuracy": float((b.argmax(1) == Y_VAL).double().mean()),
            "max_difference": float((a - b).abs().max()),
            "batchnorm_layers": sum(1 for m in folded.modules() if isinstance(m, nn.BatchNorm2d)),
            **timings}
'''

FOLDING_COPY_REPLACE = '''
import copy
import time

import torch
from torch import nn


def folding_check(seed=0, epochs=2, repeats=20):
    """A deep copy of the model in which each folded BatchNorm is replaced by nn.Identity; timeit-like loop."""
    model = make_cnn(seed)
    train_model(model, X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed)
    model.eval()
    folded = copy.deepcopy(model)
    for i in range(len(folded) - 1):
        if isinstance(folded[i], nn.Conv2d) and isinstance(folded[i + 1], nn.BatchNorm2d):
            folded[i] = fuse_conv_bn(model[i], model[i + 1])
            folded[i + 1] = nn.Identity()
    folded.eval()

    def clock(net):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():
                net(X_VAL)
            best = min(best, time.perf_counter() - start)
        return best * 1e3

    with torch.no_grad():
        before, after = model(X_VAL), folded(X_VAL)
    return dict(accuracy=(before.argmax(-1) == Y_VAL).float().mean().item(),
                fused_accuracy=(after.argmax(-1) == Y_VAL).float().mean().item(),
                max_difference=torch.max(torch.abs(before - after)).item(),
                time_ms=clock(model), fused_time_ms=clock(folded),
                batchnorm_layers=len(bn_layers(folded)))
'''

FOLDING_GENERATOR = '''
import statistics
import time

import torch
from torch import nn


def _ci_fold(layers):
    """Yield the layers with every (Conv2d, BatchNorm2d) pair replaced by its fusion."""
    layers = list(layers)
    i = 0
    while i < len(layers):
        pair = layers[i:i + 2]
        if len(pair) == 2 and isinstance(pair[0], nn.Conv2d) and isinstance(pair[1], nn.BatchNorm2d):
            yield fuse_conv_bn(*pair)
            i += 2
        else:
            yield layers[i]
            i += 1


def folding_check(seed=0, epochs=2, repeats=20):
    """A generator does the folding; float64 accuracies; the median of the best half of the runs as time."""
    net = train_model(make_cnn(seed), X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed).eval()
    fused = nn.Sequential(*_ci_fold(net)).eval()
    torch.set_grad_enabled(False)
    try:
        out, out_fused = net(X_VAL), fused(X_VAL)
        times = {}
        for key, m in (("time_ms", net), ("fused_time_ms", fused)):
            runs = []
            for _ in range(max(repeats, 1)):
                t = time.perf_counter()
                m(X_VAL)
                runs.append(1e3 * (time.perf_counter() - t))
            runs.sort()
            times[key] = statistics.median(runs[:max(1, len(runs) // 2)])
    finally:
        torch.set_grad_enabled(True)
    correct = lambda logits: (logits.argmax(1) == Y_VAL).double().mean().item()
    return {"accuracy": correct(out), "fused_accuracy": correct(out_fused),
            "max_difference": (out - out_fused).abs().max().item(),
            "batchnorm_layers": len([m for m in fused.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]),
            **times}
'''

# ---------------------------------------------------------------------------
# fine_tune_and_serve

SERVE_BACKBONE_EVAL = '''
import torch
import torch.nn.functional as F
from torch import nn


def fine_tune_and_serve(backbone, head, x_train, y_train, requests, epochs=3, batch_size=16, lr=0.05):
    """backbone.eval() after every model.train(); batches of one skipped; eval before serving."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        backbone.eval()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(y_train), batch_size):
            batch = order[start:start + batch_size]
            if batch.numel() == 1:
                continue
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return [model(x).argmax(dim=1) for x in requests]
'''

SERVE_MERGE_LAST = '''
import torch
import torch.nn.functional as F
from torch import nn


def fine_tune_and_serve(backbone, head, x_train, y_train, requests, epochs=3, batch_size=16, lr=0.05):
    """freeze_batchnorm on the backbone; a last batch of one joins the batch before it; eval inside serving."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    freeze_batchnorm(backbone)
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        batches = list(order.split(batch_size))
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2] = torch.cat([batches[-2], batches.pop()])
        for batch in batches:
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    predictions = []
    for x in requests:
        model.eval()
        with torch.no_grad():
            predictions.append(model(x).argmax(dim=1))
    return predictions
'''

SERVE_PER_LAYER = '''
import torch
import torch.nn.functional as F
from torch import nn


def fine_tune_and_serve(backbone, head, x_train, y_train, requests, epochs=3, batch_size=16, lr=0.05):
    """Training mode set layer by layer (head only); batches filtered by size; inference_mode for serving."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        backbone.train(False)
        head.train(True)
        order = torch.randperm(len(y_train), generator=generator)
        for batch in [b for b in torch.split(order, batch_size) if len(b) >= 2]:
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    model.train(False)
    with torch.inference_mode():
        answers = [model(x).argmax(dim=1).clone() for x in requests]
    return answers
'''

RIGHT += [
    CorrectImplementation("named-children-skip-set", "folding_check", FOLDING_CHILDREN),
    CorrectImplementation("deepcopy-identity", "folding_check", FOLDING_COPY_REPLACE),
    CorrectImplementation("generator-median-times", "folding_check", FOLDING_GENERATOR),
    CorrectImplementation("backbone-eval-each-epoch", "fine_tune_and_serve", SERVE_BACKBONE_EVAL),
    CorrectImplementation("freeze-merge-last-batch", "fine_tune_and_serve", SERVE_MERGE_LAST),
    CorrectImplementation("per-layer-modes-inference-mode", "fine_tune_and_serve", SERVE_PER_LAYER),
]
