"""Correct answers for ``train_eval``: the ``BatchNorm`` module and ``recalibrate_bn``."""

from __future__ import annotations

from tests.correct import CorrectImplementation

# ---------------------------------------------------------------------------
# BatchNorm

BATCHNORM_REGISTER_COPY = '''
import torch


class BatchNorm(torch.nn.Module):
    """Batch normalization over dimension 1, as torch.nn.BatchNorm1d and BatchNorm2d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.register_parameter("weight", torch.nn.Parameter(torch.ones(num_features)))
            self.register_parameter("bias", torch.nn.Parameter(torch.zeros(num_features)))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        """Normalize x, shape (N, C, *); in training mode also update the running statistics."""
        dims = [0] + list(range(2, x.dim()))
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        if self.training and self.track_running_stats:
            # counted before the batch is checked, as torch does
            self.num_batches_tracked.copy_(self.num_batches_tracked + 1)
        if self.training or self.running_mean is None:
            n = x.numel() // x.shape[1]
            if n <= 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            mean = x.mean(dim=dims)
            var = ((x - mean.reshape(shape)) ** 2).mean(dim=dims)
            if self.training and self.track_running_stats:
                if self.momentum is None:
                    m = 1.0 / float(self.num_batches_tracked.item())
                else:
                    m = self.momentum
                new_mean = (1 - m) * self.running_mean + m * mean.detach()
                new_var = (1 - m) * self.running_var + m * var.detach() * (n / (n - 1))
                self.running_mean.copy_(new_mean.detach())
                self.running_var.copy_(new_var.detach())
        else:
            mean, var = self.running_mean, self.running_var
        out = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        return out
'''

BATCHNORM_NO_GRAD_INPLACE = '''
import torch
from torch import nn


class BatchNorm(nn.Module):
    """Batch normalization over dimension 1, as torch.nn.BatchNorm1d and BatchNorm2d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.empty(num_features)) if affine else None
        self.bias = nn.Parameter(torch.empty(num_features)) if affine else None
        self.register_buffer("running_mean", torch.empty(num_features) if track_running_stats else None)
        self.register_buffer("running_var", torch.empty(num_features) if track_running_stats else None)
        self.register_buffer("num_batches_tracked",
                             torch.empty((), dtype=torch.long) if track_running_stats else None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x):
        """Normalize x, shape (N, C, *); in training mode also update the running statistics."""
        c = x.shape[1]
        channels_first = x.transpose(0, 1).reshape(c, -1)  # (C, n): one row per channel
        n = channels_first.shape[1]
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # before the batch is checked, as torch does
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            if n == 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            var, mean = torch.var_mean(channels_first, dim=1, unbiased=False)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    factor = (1.0 / self.num_batches_tracked.item()) if self.momentum is None else self.momentum
                    self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
                    self.running_var.mul_(1.0 - factor).add_(var * (n / (n - 1)), alpha=factor)
        else:
            mean, var = self.running_mean, self.running_var
        normalized = (channels_first - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + self.eps)
        if self.affine:
            normalized = normalized * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)
        moved = list(x.shape)
        moved[0], moved[1] = moved[1], moved[0]
        return normalized.reshape(moved).transpose(0, 1)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")
'''

BATCHNORM_FLOAT64_HELPER = '''
import torch


def _ci_channel_moments(x):
    """Per-channel mean and biased variance of x (N, C, *), in float64, and the count n."""
    dims = tuple(d for d in range(x.dim()) if d != 1)
    x64 = x.to(torch.float64)
    mean = x64.mean(dim=dims)
    centered = x64 - mean.reshape((1, -1) + (1,) * (x.dim() - 2))
    var = (centered * centered).sum(dim=dims) / (x.numel() // x.shape[1])
    return mean, var, x.numel() // x.shape[1]


def _ci_normalize(x, mean, var, weight, bias, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias per channel, computed in float64."""
    view = (1, -1) + (1,) * (x.dim() - 2)
    out = (x.to(torch.float64) - mean.to(torch.float64).reshape(view)) / torch.sqrt(
        var.to(torch.float64).reshape(view) + eps)
    if weight is not None:
        out = out * weight.to(torch.float64).reshape(view)
    if bias is not None:
        out = out + bias.to(torch.float64).reshape(view)
    return out.to(x.dtype)


class BatchNorm(torch.nn.Module):
    """Batch normalization over dimension 1, as torch.nn.BatchNorm1d and BatchNorm2d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        parameters = {"weight": torch.ones, "bias": torch.zeros}
        for name, make in parameters.items():
            self.register_parameter(name, torch.nn.Parameter(make(num_features)) if affine else None)
        buffers = {
            "running_mean": torch.zeros(num_features),
            "running_var": torch.ones(num_features),
            "num_batches_tracked": torch.tensor(0, dtype=torch.long),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value if track_running_stats else None)

    def _update_running_stats(self, mean, var, n):
        if self.momentum is None:
            weight_of_batch = 1.0 / float(self.num_batches_tracked)
        else:
            weight_of_batch = float(self.momentum)
        with torch.no_grad():
            new_mean = (1.0 - weight_of_batch) * self.running_mean.double() + weight_of_batch * mean
            new_var = (1.0 - weight_of_batch) * self.running_var.double() + weight_of_batch * var * n / (n - 1)
            self.running_mean.copy_(new_mean.to(self.running_mean.dtype))
            self.running_var.copy_(new_var.to(self.running_var.dtype))

    def forward(self, x):
        """Normalize x, shape (N, C, *); in training mode also update the running statistics."""
        if not self.training and self.track_running_stats:
            return _ci_normalize(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # counted before the batch is checked, as torch does
        mean, var, n = _ci_channel_moments(x)
        if n < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n)
        return _ci_normalize(x, mean, var, self.weight, self.bias, self.eps)
'''

BATCHNORM_EINSUM_LERP = '''
import torch


class BatchNorm(torch.nn.Module):
    """Batch normalization over dimension 1, as torch.nn.BatchNorm1d and BatchNorm2d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if self.affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features))
            self.bias = torch.nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        """Normalize x, shape (N, C, *); in training mode also update the running statistics."""
        flat = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, L) with L = 1 for (N, C) input
        n = flat.shape[0] * flat.shape[2]
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1  # before the batch is checked, as torch does
        if self.training or self.running_mean is None:
            if n == 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            mean = torch.einsum("ncl->c", flat) / n
            centered = flat - mean[None, :, None]
            var = torch.einsum("ncl,ncl->c", centered, centered) / n
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    step = self.momentum
                    if step is None:
                        step = 1.0 / int(self.num_batches_tracked)
                    self.running_mean.lerp_(mean.detach(), step)
                    self.running_var.lerp_(var.detach() * n / (n - 1), step)
        else:
            mean, var = self.running_mean, self.running_var
            centered = flat - mean[None, :, None]
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        out = torch.einsum("ncl,c->ncl", centered, scale)
        if self.bias is not None:
            out = out + self.bias[None, :, None]
        return out.reshape(x.shape)
'''

# ---------------------------------------------------------------------------
# recalibrate_bn

RECALIBRATE_MOMENTUM_NONE = '''
import torch


def recalibrate_bn(model, batches):
    """Re-estimate the running statistics of every batch normalization layer of `model`."""
    layers = [m for m in model.modules()
              if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, BatchNorm))]
    momenta = {}
    try:
        for layer in layers:
            momenta[layer] = layer.momentum
            if layer.running_mean is not None:
                with torch.no_grad():
                    layer.running_mean.zero_()
                    layer.running_var.fill_(1.0)
                    layer.num_batches_tracked.zero_()
            layer.momentum = None
        model.train()
        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                model(batch)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        model.eval()
    return model
'''

RECALIBRATE_EXPLICIT_AVERAGE = '''
import torch


def _ci_is_batchnorm(module):
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or isinstance(module, BatchNorm)


def recalibrate_bn(model, batches):
    """Re-estimate the running statistics as the explicit average of the batch statistics.

    With momentum 1 each layer's running statistics after a forward pass are that pass's
    batch statistics; a forward hook adds them up, and the sums are divided at the end.
    """
    layers = [m for m in model.modules() if _ci_is_batchnorm(m) and m.running_mean is not None]
    saved_momentum = [layer.momentum for layer in layers]
    sums = {layer: [0, 0.0, 0.0] for layer in layers}  # calls, sum of means, sum of variances

    def accumulate(layer, args, output):
        entry = sums[layer]
        entry[0] += 1
        entry[1] = entry[1] + layer.running_mean.detach().double()
        entry[2] = entry[2] + layer.running_var.detach().double()

    handles = []
    try:
        with torch.no_grad():
            for layer in layers:  # start from torch's reset values, as reset_running_stats() does
                layer.running_mean.zero_()
                layer.running_var.fill_(1.0)
                layer.num_batches_tracked.zero_()
        for layer in layers:
            layer.momentum = 1.0
            handles.append(layer.register_forward_hook(accumulate))
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            for layer in layers:
                calls, mean_sum, var_sum = sums[layer]
                if calls == 0:
                    layer.running_mean.zero_()
                    layer.running_var.fill_(1.0)
                else:
                    layer.running_mean.copy_(mean_sum / calls)
                    layer.running_var.copy_(var_sum / calls)
                layer.num_batches_tracked.fill_(calls)
    finally:
        for handle in handles:
            handle.remove()
        for layer, momentum in zip(layers, saved_momentum):
            layer.momentum = momentum
        model.eval()
    return model
'''

RECALIBRATE_PRE_HOOK_MEASURE = '''
import torch


class _ci_CumulativeStats:
    """Sum of the per-channel batch means and unbiased variances a layer received."""

    def __init__(self):
        self.calls = 0
        self.mean_sum = None
        self.var_sum = None

    def __call__(self, layer, args):
        x = args[0].detach().to(torch.float64)
        rows = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = rows.mean(dim=1)
        var = rows.var(dim=1, unbiased=True)
        self.calls += 1
        self.mean_sum = mean if self.mean_sum is None else self.mean_sum + mean
        self.var_sum = var if self.var_sum is None else self.var_sum + var


def recalibrate_bn(model, batches):
    """Measure each layer's input with forward pre-hooks during training-mode passes, then set the
    running statistics to the average over the passes (the cumulative average torch computes)."""
    layers = [m for m in model.modules()
              if (isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or type(m).__name__ == "BatchNorm")
              and m.running_mean is not None]
    momenta = [layer.momentum for layer in layers]
    stats = [_ci_CumulativeStats() for _ in layers]
    handles = [layer.register_forward_pre_hook(stat) for layer, stat in zip(layers, stats)]
    try:
        model.train()
        with torch.no_grad():
            for batch in batches:
                inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                model(inputs)
            for layer, stat in zip(layers, stats):
                if stat.calls:
                    layer.running_mean.copy_(stat.mean_sum / stat.calls)
                    layer.running_var.copy_(stat.var_sum / stat.calls)
                else:
                    layer.running_mean.fill_(0.0)
                    layer.running_var.fill_(1.0)
                layer.num_batches_tracked.fill_(stat.calls)
    finally:
        for handle in handles:
            handle.remove()
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.eval()
    return model
'''

RIGHT: list[CorrectImplementation] = [
    CorrectImplementation("register-buffer-copy-update", "BatchNorm", BATCHNORM_REGISTER_COPY),
    CorrectImplementation("no-grad-inplace-channels-rows", "BatchNorm", BATCHNORM_NO_GRAD_INPLACE),
    CorrectImplementation("float64-helpers-then-cast", "BatchNorm", BATCHNORM_FLOAT64_HELPER),
    CorrectImplementation("einsum-lerp", "BatchNorm", BATCHNORM_EINSUM_LERP),
    CorrectImplementation("momentum-none-like-torch", "recalibrate_bn", RECALIBRATE_MOMENTUM_NONE),
    CorrectImplementation("momentum-one-explicit-average", "recalibrate_bn", RECALIBRATE_EXPLICIT_AVERAGE),
    CorrectImplementation("pre-hook-measured-average", "recalibrate_bn", RECALIBRATE_PRE_HOOK_MEASURE),
]

# ---------------------------------------------------------------------------
# train_vs_eval_accuracy

EXPERIMENT_FRESH_COPIES = '''
import torch


def train_vs_eval_accuracy(batch_sizes, seed=0, epochs=3):
    """Training mode measured on fresh models loaded from the trained one's state dict."""
    trained = train_model(make_cnn(BatchNorm, seed=seed), X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed)
    trained.eval()
    state = {k: v.clone() for k, v in trained.state_dict().items()}

    def fresh():
        model = make_cnn(BatchNorm, seed=seed)
        model.load_state_dict(state)
        return model

    out = {"batch_sizes": list(batch_sizes), "train_mode": [], "eval_mode": []}
    for size in batch_sizes:
        out["eval_mode"].append(accuracy(trained, X_VAL, Y_VAL, size))
        out["train_mode"].append(accuracy(fresh().train(), X_VAL, Y_VAL, size))
    shifted = shift_domain(X_VAL)
    out["shifted"] = accuracy(trained, shifted, Y_VAL)
    new_domain = shift_domain(X_TRAIN)
    adapted = recalibrate_bn(fresh(), [new_domain[i:i + 64] for i in range(0, len(new_domain), 64)])
    out["shifted_recalibrated"] = accuracy(adapted, shifted, Y_VAL)
    return out
'''

EXPERIMENT_RESTORE_STATE = '''
import copy

import torch


def train_vs_eval_accuracy(batch_sizes, seed=0, epochs=3):
    """One model: its buffers saved before each training-mode pass and restored after;
    recalibrated last, in place, on (input, label) tuples."""
    model = make_cnn(BatchNorm, seed=seed)
    train_model(model, X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed)
    saved = copy.deepcopy(model.state_dict())
    by_mode = {"train_mode": [], "eval_mode": []}
    for size in batch_sizes:
        model.train()
        by_mode["train_mode"].append(accuracy(model, X_VAL, Y_VAL, batch_size=size))
        model.load_state_dict(saved)
        model.eval()
        by_mode["eval_mode"].append(accuracy(model, X_VAL, Y_VAL, batch_size=size))
    val_shifted = shift_domain(X_VAL)
    before = accuracy(model.eval(), val_shifted, Y_VAL)
    pairs = zip(shift_domain(X_TRAIN).split(64), Y_TRAIN.split(64))
    recalibrate_bn(model, ((x, y) for x, y in pairs))
    after = accuracy(model, val_shifted, Y_VAL)
    return dict(batch_sizes=list(batch_sizes), shifted=before, shifted_recalibrated=after, **by_mode)
'''

EXPERIMENT_FROZEN_MOMENTUM = '''
import copy

import torch
from torch.utils.data import DataLoader, TensorDataset


def train_vs_eval_accuracy(batch_sizes, seed=0, epochs=3):
    """Training mode on a copy whose layers have momentum 0 (their statistics cannot move);
    the new domain fed to recalibrate_bn by a DataLoader; results as tensors."""
    model = train_model(make_cnn(BatchNorm, seed=seed), X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed).eval()
    probe = copy.deepcopy(model)
    for layer in probe.modules():
        if isinstance(layer, BatchNorm):
            layer.momentum = 0.0
    probe.train()
    train_acc = torch.tensor([accuracy(probe, X_VAL, Y_VAL, b) for b in batch_sizes])
    eval_acc = torch.tensor([accuracy(model, X_VAL, Y_VAL, b) for b in batch_sizes])
    target = shift_domain(X_VAL)
    loader = DataLoader(TensorDataset(shift_domain(X_TRAIN)), batch_size=64, shuffle=False)
    adapted = recalibrate_bn(copy.deepcopy(model), loader)
    return {"batch_sizes": list(batch_sizes), "train_mode": train_acc, "eval_mode": eval_acc,
            "shifted": torch.tensor(accuracy(model, target, Y_VAL)),
            "shifted_recalibrated": torch.tensor(accuracy(adapted, target, Y_VAL))}
'''

RIGHT += [
    CorrectImplementation("fresh-copies-from-state-dict", "train_vs_eval_accuracy", EXPERIMENT_FRESH_COPIES),
    CorrectImplementation("restore-buffers-tuples", "train_vs_eval_accuracy", EXPERIMENT_RESTORE_STATE),
    CorrectImplementation("momentum-zero-copy-dataloader", "train_vs_eval_accuracy", EXPERIMENT_FROZEN_MOMENTUM),
]
