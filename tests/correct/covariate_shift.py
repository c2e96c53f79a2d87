"""Correct answers for ``covariate_shift``: ``layer_input_stats`` and ``loss_along_gradient``."""

from __future__ import annotations

from tests.correct import CorrectImplementation

# ---------------------------------------------------------------------------
# layer_input_stats

STATS_HOOK_LIST_CONCAT = '''
import torch


def layer_input_stats(model, x):
    """Per-feature mean and biased standard deviation of every Linear layer's input."""
    recorded = {}
    handles = []

    def make_hook(name):
        def hook(module, args, output):
            received = args[0].detach()
            recorded.setdefault(name, []).append(received.reshape(-1, received.shape[-1]))
        return hook

    try:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                handles.append(module.register_forward_hook(make_hook(name)))
        model(x)
    finally:
        for handle in handles:
            handle.remove()

    stats = {}
    for name, pieces in recorded.items():
        rows = torch.cat(pieces, dim=0)
        stats[name] = (rows.mean(dim=0), rows.std(dim=0, correction=0))
    return stats
'''

STATS_HANDLE_DICT_CHAN = '''
import functools

import torch


def _ci_chan_update(accumulators, name, module, args, output):
    """Fold one call's rows into the running (count, mean, M2) of `name`, in float64."""
    received = args[0].detach()
    rows = received.reshape(-1, received.shape[-1]).to(torch.float64)
    count_b = rows.shape[0]
    mean_b = rows.mean(dim=0)
    m2_b = ((rows - mean_b) ** 2).sum(dim=0)
    if name not in accumulators:
        accumulators[name] = (count_b, mean_b, m2_b, received.dtype)
        return
    count_a, mean_a, m2_a, dtype = accumulators[name]
    count = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (count_b / count)
    m2 = m2_a + m2_b + delta * delta * (count_a * count_b / count)
    accumulators[name] = (count, mean, m2, dtype)


def layer_input_stats(model, x):
    """Per-feature mean and biased standard deviation of every Linear layer's input."""
    accumulators = {}
    handles = {}
    try:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                hook = functools.partial(_ci_chan_update, accumulators, name)
                handles[name] = module.register_forward_hook(hook)
        model(x)
    finally:
        for handle in handles.values():
            handle.remove()
    return {
        name: (mean.to(dtype), torch.sqrt(m2 / count).to(dtype))
        for name, (count, mean, m2, dtype) in accumulators.items()
    }
'''

STATS_PRE_HOOK_CLASS = '''
import torch


class _ci_InputMoments:
    """Per-call row counts, means and biased variances of the inputs of named layers."""

    def __init__(self):
        self.calls = {}

    def pre_hook(self, name):
        def record(module, args):
            received = args[0].detach()
            rows = received.reshape(-1, received.shape[-1])
            var, mean = torch.var_mean(rows, dim=0, correction=0)
            self.calls.setdefault(name, []).append((rows.shape[0], mean, var))
        return record

    def pooled(self):
        """Law of total variance over the calls of each layer."""
        result = {}
        for name, calls in self.calls.items():
            means = torch.stack([mean for _, mean, _ in calls])
            variances = torch.stack([var for _, _, var in calls])
            counts = torch.tensor([n for n, _, _ in calls], dtype=means.dtype)
            weights = (counts / counts.sum()).unsqueeze(1)
            mean = (weights * means).sum(dim=0)
            var = (weights * (variances + (means - mean) ** 2)).sum(dim=0)
            result[name] = (mean, var.sqrt())
        return result


def layer_input_stats(model, x):
    """Per-feature mean and biased standard deviation of every Linear layer's input."""
    moments = _ci_InputMoments()
    linear_layers = [(name, module) for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear)]
    handles = []
    try:
        for name, module in linear_layers:
            handles.append(module.register_forward_pre_hook(moments.pre_hook(name)))
        model(x)
    finally:
        while handles:
            handles.pop().remove()
    return moments.pooled()
'''

STATS_MODULE_KEYED_FLOAT64 = '''
import torch


def layer_input_stats(model, x):
    """Per-feature mean and biased standard deviation of every Linear layer's input."""
    names = {}
    for name, module in model.named_modules():  # one name per module, the first
        if isinstance(module, torch.nn.Linear) and module not in names:
            names[module] = name
    inputs = {}  # module -> list of (rows, features) tensors

    def hook(module, args, output):
        inputs.setdefault(module, []).append(args[0].detach().flatten(0, -2) if args[0].dim() > 1
                                             else args[0].detach().unsqueeze(0))

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()

    stats = {}
    for module, pieces in inputs.items():
        dtype = pieces[0].dtype
        rows = torch.cat([piece.double() for piece in pieces])
        var, mean = torch.var_mean(rows, dim=0, unbiased=False)
        stats[names[module]] = (mean.to(dtype), var.sqrt().to(dtype))
    return stats
'''

# ---------------------------------------------------------------------------
# loss_along_gradient

LANDSCAPE_DEEPCOPY = '''
import copy

import torch


def _ci_loss_and_gradient_of_copy(model, loss_fn, x, y, direction, eta):
    """On a fresh copy of `model`: move the trainable parameters by -eta * direction,
    then return the loss and its gradient (zeros where the loss does not depend on one)."""
    clone = copy.deepcopy(model)
    params = [p for p in clone.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    if direction is not None:
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(eta * d)
    loss = loss_fn(clone(x), y)
    if params and loss.requires_grad:
        loss.backward(inputs=params)
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
    return loss.detach(), grads


def loss_along_gradient(model, loss_fn, x, y, step_sizes):
    """Loss and change of the gradient when stepping along the negative gradient."""
    loss0, g = _ci_loss_and_gradient_of_copy(model, loss_fn, x, y, None, 0.0)
    losses, changes = [], []
    for eta in step_sizes:
        loss, grads = _ci_loss_and_gradient_of_copy(model, loss_fn, x, y, g, float(eta))
        losses.append(loss.reshape(()))
        if grads:
            diff = torch.cat([(a - b).reshape(-1) for a, b in zip(grads, g)])
            changes.append(torch.sqrt((diff * diff).sum()))
        else:
            changes.append(torch.zeros((), dtype=loss.dtype))
    if not losses:
        return torch.zeros(0, dtype=loss0.dtype), torch.zeros(0, dtype=loss0.dtype)
    return torch.stack(losses), torch.stack(changes)
'''

LANDSCAPE_FUNCTIONAL_CALL = '''
import torch


def loss_along_gradient(model, loss_fn, x, y, step_sizes):
    """Loss and change of the gradient when stepping along the negative gradient."""
    parameters = dict(model.named_parameters())
    trainable = [name for name, p in parameters.items() if p.requires_grad]
    buffers = dict(model.named_buffers())

    def evaluate(values):
        """Loss and gradient with the trainable parameters set to `values`; buffers are
        cloned so that the model's own are never written to."""
        leaves = {name: values[name].detach().clone().requires_grad_(True) for name in trainable}
        state = {name: leaves.get(name, p) for name, p in parameters.items()}
        state.update({name: b.clone() for name, b in buffers.items()})
        loss = loss_fn(torch.func.functional_call(model, state, (x,)), y)
        if not trainable or not loss.requires_grad:
            return loss.detach(), {name: torch.zeros_like(leaves[name]) for name in trainable}
        grads = torch.autograd.grad(loss, [leaves[name] for name in trainable], allow_unused=True)
        return loss.detach(), {
            name: torch.zeros_like(leaves[name]) if grad is None else grad
            for name, grad in zip(trainable, grads)
        }

    theta = {name: parameters[name].detach() for name in trainable}
    loss0, g = evaluate(theta)
    losses, changes = [], []
    for eta in step_sizes:
        eta = float(eta)
        loss, grad = evaluate({name: theta[name] - eta * g[name] for name in trainable})
        squared = sum(((grad[name] - g[name]) ** 2).sum() for name in trainable)
        losses.append(loss)
        changes.append(torch.as_tensor(squared, dtype=loss.dtype).sqrt())
    empty = torch.zeros(0, dtype=loss0.dtype)
    return (torch.stack(losses) if losses else empty), (torch.stack(changes) if changes else empty)
'''

LANDSCAPE_INPLACE_RESTORE = '''
import torch


class _ci_Snapshot:
    """The values of the trainable parameters and of every buffer, to put back in place."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.param_values = [p.detach().clone() for p in self.params]
        self.buffers = list(model.buffers())
        self.buffer_values = [b.detach().clone() for b in self.buffers]

    def move(self, eta, direction):
        with torch.no_grad():
            for p, p0, d in zip(self.params, self.param_values, direction):
                p.copy_(p0 - eta * d)

    def restore(self):
        with torch.no_grad():
            for p, p0 in zip(self.params, self.param_values):
                p.copy_(p0)
            for b, b0 in zip(self.buffers, self.buffer_values):
                b.copy_(b0)


def loss_along_gradient(model, loss_fn, x, y, step_sizes):
    """Loss and change of the gradient when stepping along the negative gradient."""
    snapshot = _ci_Snapshot(model)
    params = snapshot.params

    def loss_and_gradient():
        loss = loss_fn(model(x), y)
        if params and loss.requires_grad:
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        else:
            grads = [None] * len(params)
        grads = [torch.zeros_like(p) if gr is None else gr.detach() for p, gr in zip(params, grads)]
        snapshot.restore()  # undo what the forward pass did to the buffers
        return loss.detach(), grads

    losses, changes = [], []
    try:
        loss0, g = loss_and_gradient()
        for eta in step_sizes:
            snapshot.move(float(eta), g)
            loss, grads = loss_and_gradient()
            losses.append(loss)
            flat = [(a - b).flatten() for a, b in zip(grads, g)]
            changes.append(torch.linalg.vector_norm(torch.cat(flat)) if flat
                           else torch.zeros((), dtype=loss.dtype))
    finally:
        snapshot.restore()
    if not losses:
        return torch.zeros(0, dtype=loss0.dtype), torch.zeros(0, dtype=loss0.dtype)
    return torch.stack(losses), torch.stack(changes)
'''

RIGHT: list[CorrectImplementation] = [
    CorrectImplementation("hook-list-concat", "layer_input_stats", STATS_HOOK_LIST_CONCAT),
    CorrectImplementation("handle-dict-chan-float64", "layer_input_stats", STATS_HANDLE_DICT_CHAN),
    CorrectImplementation("pre-hook-class-total-variance", "layer_input_stats", STATS_PRE_HOOK_CLASS),
    CorrectImplementation("module-keyed-float64-concat", "layer_input_stats", STATS_MODULE_KEYED_FLOAT64),
    CorrectImplementation("deepcopy-per-step-backward", "loss_along_gradient", LANDSCAPE_DEEPCOPY),
    CorrectImplementation("functional-call-cloned-buffers", "loss_along_gradient", LANDSCAPE_FUNCTIONAL_CALL),
    CorrectImplementation("in-place-snapshot-restore", "loss_along_gradient", LANDSCAPE_INPLACE_RESTORE),
]

# ---------------------------------------------------------------------------
# drift_with_and_without_bn

DRIFT_STACKED = '''
import torch


def drift_with_and_without_bn(steps=100, every=10, lr=0.1, seed=0):
    """Statistics stacked into (L, features) tensors in named_modules order; drifts as nested lists."""
    out = {"steps": [], "without_bn": [], "with_bn": []}
    for key, use_bn in (("with_bn", True), ("without_bn", False)):
        net = make_mlp(use_bn, seed=seed)
        names = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]

        def snapshot():
            stats = layer_input_stats(net, X_DIGITS)
            return [stats[n] for n in names]

        first = snapshot()
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        measured = []
        for t in range(steps):
            opt.zero_grad()
            F.cross_entropy(net(X_DIGITS), Y_DIGITS).backward()
            opt.step()
            if (t + 1) % every == 0:
                d = torch.stack([((mu - mu0).abs().mean() + (sd - sd0).abs().mean()) / sd0.mean()
                                 for (mu, sd), (mu0, sd0) in zip(snapshot(), first)])
                out[key].append(d.tolist())
                measured.append(t + 1)
        out["steps"] = measured
    return out
'''

DRIFT_MANUAL_SGD = '''
import numpy as np
import torch


def drift_with_and_without_bn(steps=100, every=10, lr=0.1, seed=0):
    """Gradient descent written out (no optimizer object); statistics as NumPy arrays."""

    def stats(model):
        return {name: (m.numpy(), s.numpy()) for name, (m, s) in layer_input_stats(model, X_DIGITS).items()}

    table = {}
    for use_bn in (False, True):
        model = make_mlp(use_bn, seed=seed)
        first = stats(model)
        history = []
        step = 0
        while step < steps:
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(X_DIGITS), Y_DIGITS)
            loss.backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= lr * parameter.grad
            step += 1
            if step % every == 0:
                now = stats(model)
                history.append([(np.abs(now[k][0] - first[k][0]).mean() + np.abs(now[k][1] - first[k][1]).mean())
                                / first[k][1].mean() for k in first])
        table["with_bn" if use_bn else "without_bn"] = np.array(history)
    table["steps"] = np.arange(every, steps + 1, every)
    return table
'''

DRIFT_SNAPSHOTS = '''
import copy

import torch


def drift_with_and_without_bn(steps=100, every=10, lr=0.1, seed=0):
    """Copies of the model kept at every measured step; all statistics taken at the end."""
    checkpoints = list(range(every, steps + 1, every))
    result = {"steps": checkpoints}
    for label, flag in (("without_bn", False), ("with_bn", True)):
        model = make_mlp(flag, seed=seed)
        saved = [copy.deepcopy(model)]
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            F.cross_entropy(model(X_DIGITS), Y_DIGITS).backward()
            optimizer.step()
            if step in checkpoints:
                saved.append(copy.deepcopy(model))
        stats = [layer_input_stats(snapshot, X_DIGITS) for snapshot in saved]
        base = stats[0]
        result[label] = torch.tensor([
            [float(((s[k][0] - base[k][0]).abs().mean() + (s[k][1] - base[k][1]).abs().mean()) / base[k][1].mean())
             for k in base] for s in stats[1:]])
    return result
'''

RIGHT += [
    CorrectImplementation("stacked-named-order", "drift_with_and_without_bn", DRIFT_STACKED),
    CorrectImplementation("manual-sgd-numpy", "drift_with_and_without_bn", DRIFT_MANUAL_SGD),
    CorrectImplementation("deepcopy-snapshots", "drift_with_and_without_bn", DRIFT_SNAPSHOTS),
]
