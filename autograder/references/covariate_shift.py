"""The PyTorch reference and the known mistakes of ``covariate_shift`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations. The reference is written
independently of the notebook's solution: forward pre-hooks and
``torch.Tensor.var(correction=0)`` for ``layer_input_stats``,
``torch.func.functional_call`` on cloned parameters and buffers for
``loss_along_gradient``.
"""

from __future__ import annotations

from typing import Any

from autograder.checks.core import Mistake, Namespace

# ---------------------------------------------------------------------------
# The reference: PyTorch


def reference() -> Namespace:
    import torch
    from torch.func import functional_call

    def layer_input_stats(model, x):
        linears = {}
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and module not in linears.values():
                linears[name] = module
        seen: dict[str, list[torch.Tensor]] = {name: [] for name in linears}
        handles = []
        for name, module in linears.items():
            def hook(module, args, name=name):
                inp = args[0].detach()
                seen[name].append(inp.reshape(-1, inp.shape[-1]))
            handles.append(module.register_forward_pre_hook(hook))
        try:
            model(x)
        finally:
            for handle in handles:
                handle.remove()
        stats = {}
        for name, chunks in seen.items():
            if chunks:
                rows = torch.cat(chunks)
                stats[name] = (rows.mean(dim=0), rows.var(dim=0, correction=0).sqrt())
        return stats

    def loss_along_gradient(model, loss_fn, x, y, step_sizes):
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        theta = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}

        def loss_and_grad(point):
            params = {n: t.clone().requires_grad_() for n, t in point.items()}
            buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
            loss = loss_fn(functional_call(model, {**params, **fixed, **buffers}, (x,)), y)
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
            grads = [torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, grads)]
            return loss.detach(), torch.cat([g.reshape(-1) for g in grads])

        _, g = loss_and_grad(theta)
        sizes = [theta[n].numel() for n in names]
        direction = dict(zip(names, (piece.view_as(theta[n]) for n, piece in zip(names, g.split(sizes)))))
        losses, changes = [], []
        for eta in step_sizes:
            eta = float(eta)
            loss, g_eta = loss_and_grad({n: theta[n] - eta * direction[n] for n in names})
            losses.append(loss)
            changes.append(torch.linalg.vector_norm(g_eta - g))
        return torch.stack(losses), torch.stack(changes)

    return {"layer_input_stats": layer_input_stats, "loss_along_gradient": loss_along_gradient}


# ---------------------------------------------------------------------------
# Known mistakes, written as a student would, to name them in feedback.


def _stats_variant(*, correction: int = 0, axis: str = "features", modules: str = "all",
                   keep: str = "all", remove: str = "finally", record: str = "input",
                   detach: bool = True, mode: str | None = None, restore_mode: str | None = None,
                   eps: float = 0.0, dtype: str | None = None):
    """layer_input_stats with one switch flipped.

    ``modules``: ``"all"``, ``"children"`` or ``"all but the model"`` (``named_modules()`` without its
    first entry, the model itself); ``eps``: added to the variance under the square root; ``dtype``: the
    recorded inputs converted to it (``"float32"``) before the statistics.
    """

    def layer_input_stats(model, x):
        import torch

        if modules == "all":
            named = list(model.named_modules())
        elif modules == "all but the model":
            named = list(model.named_modules())[1:]
        else:
            named = list(model.named_children())
        seen: dict[str, list[torch.Tensor]] = {}
        handles = []
        for name, module in named:
            if not isinstance(module, torch.nn.Linear):
                continue

            def hook(module, inputs, output, name=name):
                value = inputs[0] if record == "input" else output
                value = value.detach() if detach else value
                value = value.float() if dtype == "float32" else value
                if axis in ("features", "samples"):
                    value = value.reshape(-1, value.shape[-1])
                if keep == "last":
                    seen[name] = [value]
                elif keep == "first":
                    seen.setdefault(name, [value])
                else:
                    seen.setdefault(name, []).append(value)
            handles.append(module.register_forward_hook(hook))
        if mode is not None:
            model.train(mode == "train")
        if remove == "finally":
            try:
                model(x)
            finally:
                for handle in handles:
                    handle.remove()
        elif remove == "clear":  # every forward hook goes, the user's own too
            try:
                model(x)
            finally:
                for module in model.modules():
                    module._forward_hooks.clear()
        else:
            model(x)
            if remove == "after":
                for handle in handles:
                    handle.remove()
        if restore_mode is not None:
            model.train(restore_mode == "train")
        stats = {}
        for name, chunks in seen.items():
            values = torch.cat(chunks)
            dim = -1 if axis == "samples" else 0
            std = (values.var(dim=dim, correction=correction) + eps).sqrt() if eps else \
                values.std(dim=dim, correction=correction)
            stats[name] = (values.mean(dim=dim), std)
        return stats

    return layer_input_stats


def _stats_mistake(description: str, **switches: Any) -> Mistake:
    return Mistake(description, {"layer_input_stats": _stats_variant(**switches)})


UNBIASED_STD = _stats_mistake(
    "the unbiased standard deviation (dividing by n - 1, torch's default for .std()): use the biased one, "
    ".std(dim=0, correction=0) or unbiased=False", correction=1)
PER_SAMPLE = _stats_mistake(
    "statistics over the wrong axis: one value per sample instead of one per input feature (reduce over "
    "every dimension but the last)", axis="samples")
FIRST_AXIS_ONLY = _stats_mistake(
    "statistics over the first dimension only: an input of shape (A, B, in_features) has A * B samples per "
    "feature (reshape to (-1, in_features) first)", axis="first")
TOP_LEVEL_ONLY = _stats_mistake(
    "only the model's direct children were hooked: nested Linear layers need model.named_modules(), which "
    "walks the whole tree (and names the model itself \"\")", modules="children")
LAST_CALL_ONLY = _stats_mistake(
    "only the last call of a layer that is called twice was kept: pool the inputs of every call",
    keep="last")
FIRST_CALL_ONLY = _stats_mistake(
    "only the first call of a layer that is called twice was kept: pool the inputs of every call",
    keep="first")
HOOKS_NEVER_REMOVED = _stats_mistake(
    "the hooks were never removed: keep the handles that register_forward_hook returns and call "
    "handle.remove()", remove="never")
HOOKS_LEFT_ON_ERROR = _stats_mistake(
    "the hooks stay registered when the forward pass raises: remove them in a finally block", remove="after")
OUTPUT_STATS = _stats_mistake(
    "the statistics of each layer's output, not of its input (the hook gets (module, inputs, output); "
    "the input is inputs[0])", record="output")
SWITCHED_TO_EVAL = _stats_mistake(
    "the model was switched to eval mode: run the forward pass in the mode the model is in and leave it "
    "there", mode="eval")
SWITCHED_TO_TRAIN = _stats_mistake(
    "the model was switched to training mode: run the forward pass in the mode the model is in and leave it "
    "there", mode="train")
EVAL_THEN_TRAIN = _stats_mistake(
    "the forward pass ran in eval mode, then model.train() was called: run it in the model's own mode and "
    "leave that alone (model.train() does not restore a model that was in eval mode)",
    mode="eval", restore_mode="train")
CLEARED_ALL_HOOKS = _stats_mistake(
    "every forward hook of the model was cleared, the user's own too: remove only your own hooks, with the "
    "handles that register_forward_hook returns", remove="clear")
STD_WITH_EPS = _stats_mistake(
    "an eps added to the variance (sqrt(var + eps)): these are plain statistics, the standard deviation "
    "is sqrt(var) with nothing added", eps=1e-5)
STATS_IN_FLOAT32 = _stats_mistake(
    "the inputs converted to float32 (.float()) before the statistics: keep their dtype, float64 here "
    "(float32 keeps only about 7 significant digits)", dtype="float32")
MODEL_ITSELF_SKIPPED = _stats_mistake(
    "the model itself skipped (named_modules() without its first entry): a model that is itself a Linear "
    "layer is one of the layers, named \"\"", modules="all but the model")
GRAPH_KEPT = _stats_mistake(
    "the statistics carry autograd history: detach the recorded inputs (or compute under torch.no_grad())",
    detach=False)


def _landscape_variant(*, sign: float = -1.0, start: str = "theta", direction: str = "fixed",
                       norm: str = "joint", mode: str | None = None, grads: str = "autograd",
                       restore: str = "copy", normalize: bool = False, detach: bool = True,
                       grad_dtype: str | None = None):
    """loss_along_gradient with one switch flipped, written on the model in place or on a copy.

    ``grad_dtype``: the gradients converted to it (``"float32"``) before they are compared.
    """

    def loss_along_gradient(model, loss_fn, x, y, step_sizes):
        import copy

        import torch

        work = copy.deepcopy(model) if restore == "copy" else model
        saved = {n: t.detach().clone() for n, t in work.state_dict().items()}
        if mode is not None:
            work.train(mode == "train")
        params = [p for p in work.parameters() if p.requires_grad]

        def gradient():
            loss = loss_fn(work(x), y)
            if grads == "backward":  # accumulates into whatever .grad held
                loss.backward()
                found = [p.grad.clone() for p in params]
            elif grads == "zeroed":  # right values, but .grad is overwritten
                work.zero_grad()
                loss.backward()
                found = [p.grad.clone() for p in params]
            else:
                found = list(torch.autograd.grad(loss, params))
            if grad_dtype == "float32":
                found = [f.float() for f in found]
            return (loss.detach() if detach else loss), found

        _, g0 = gradient()
        current = [p.detach().clone() for p in params]
        g = g0
        losses, changes = [], []
        for eta in step_sizes:
            eta = float(eta)
            base = [p.detach().clone() for p in params] if start == "previous" else current
            step = g if direction == "recomputed" else g0
            if normalize:
                length = torch.cat([d.reshape(-1) for d in g0]).norm()
                step = [d / length for d in step]
            with torch.no_grad():
                for p, b, d in zip(params, base, step):
                    p.copy_(b + sign * eta * d)
            loss, g_eta = gradient()
            diffs = [a - b for a, b in zip(g_eta, g0)]
            if norm == "joint":
                change = torch.cat([d.reshape(-1) for d in diffs]).norm()
            elif norm == "sum":
                change = sum(d.norm() for d in diffs)
            else:  # squared
                change = sum((d ** 2).sum() for d in diffs)
            losses.append(loss)
            changes.append(change.detach() if detach else change)
            g = g_eta
        if restore == "params":  # parameters put back, running statistics not
            with torch.no_grad():
                for p, c in zip(params, current):
                    p.copy_(c)
        elif restore == "state":
            work.load_state_dict(saved)
        return torch.stack(losses), torch.stack(changes)

    return loss_along_gradient


def _landscape_mistake(description: str, **switches: Any) -> Mistake:
    return Mistake(description, {"loss_along_gradient": _landscape_variant(**switches)})


UPHILL = _landscape_mistake(
    "steps along +g: the step is theta - eta * g, downhill", sign=1.0)
CUMULATIVE = _landscape_mistake(
    "cumulative steps: every step size is measured from the original theta, not from the previous point",
    start="previous")
TRAJECTORY = _landscape_mistake(
    "gradient descent steps, each from the previous point along a freshly computed gradient: every step "
    "starts at theta and follows the gradient g computed there", start="previous", direction="recomputed")
SUM_OF_NORMS = _landscape_mistake(
    "the sum of per-parameter norms: the change is one L2 norm over all parameters together (concatenate "
    "the gradients)", norm="sum")
SQUARED_NORM = _landscape_mistake(
    "the squared norm: take the square root", norm="squared")
MEASURED_IN_EVAL = _landscape_mistake(
    "the model was switched to eval mode: run the forward passes in the mode the model is in", mode="eval")
MEASURED_IN_TRAIN = _landscape_mistake(
    "the model was switched to training mode: run the forward passes in the mode the model is in",
    mode="train")
ACCUMULATED_GRAD = _landscape_mistake(
    "loss.backward() added to the .grad the parameters already had: zero it first, or use "
    "torch.autograd.grad, and put the original .grad back", grads="backward", restore="params")
NORMALIZED_STEP = _landscape_mistake(
    "steps along the unit vector g / ||g||: the step is eta * g itself, not normalized", normalize=True)
GRADIENT_IN_FLOAT32 = _landscape_mistake(
    "the gradients converted to float32 before their change is measured: keep their dtype, float64 here "
    "(float32 keeps only about 7 significant digits, and g(eta) - g cancels most of them)", grad_dtype="float32")
RESULTS_KEEP_GRAPH = _landscape_mistake(
    "the returned tensors carry autograd history: detach the losses and the norms (or compute them under "
    "torch.no_grad())", detach=False)
MODEL_MODIFIED = _landscape_mistake(
    "the model was left at the last step: work on a copy (copy.deepcopy) or restore the parameters",
    restore="none")
GRADS_OVERWRITTEN = _landscape_mistake(
    "the parameters' .grad was overwritten (zero_grad() and loss.backward() write into it): leave .grad "
    "as it was, by working on a copy or by using torch.autograd.grad", grads="zeroed", restore="state")
RUNNING_STATS_CHANGED = _landscape_mistake(
    "the parameters were restored but the BatchNorm running statistics were not: every training-mode "
    "forward pass updates them; work on a copy or restore the buffers too", restore="params")


MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}


# ---------------------------------------------------------------------------
# The experiment (added with it): the notebook's MLP and data, the reference's own statistics

from autograder.references.setup_cells import one_thread  # noqa: E402

_reference_of_the_instruments = reference


def reference() -> Namespace:  # noqa: F811 - extends the reference above
    namespace = dict(_reference_of_the_instruments())
    namespace["drift_with_and_without_bn"] = _reference_drift
    return namespace


@one_thread
def _reference_drift(steps=100, every=10, lr=0.1, seed=0, *, swapped=False, from_zero=False):
    """The experiment with the reference's statistics (the keywords make its known mistakes)."""
    import torch
    import torch.nn.functional as F

    from autograder.references.setup_cells import setup_namespace

    h = setup_namespace("covariate_shift")
    stats_of = _reference_of_the_instruments()["layer_input_stats"]
    x, y = h["X_DIGITS"], h["Y_DIGITS"]

    def drifts(start, now):
        return [float(((now[k][0] - start[k][0]).abs().mean() + (now[k][1] - start[k][1]).abs().mean())
                      / start[k][1].mean()) for k in start]

    result = {"steps": list(range(0, steps, every)) if from_zero else list(range(every, steps + 1, every))}
    for batch_norm, key in ((False, "without_bn"), (True, "with_bn")):
        model = h["make_mlp"](batch_norm != swapped, seed=seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        start, rows = stats_of(model, x), []
        for step in range(1, steps + 1):
            if from_zero and (step - 1) % every == 0:
                rows.append(drifts(start, stats_of(model, x)))
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if not from_zero and step % every == 0:
                rows.append(drifts(start, stats_of(model, x)))
        result[key] = rows
    return result


import functools  # noqa: E402

DRIFT_SWAPPED = Mistake("the drifts with and without batch norm swapped",
                        {"drift_with_and_without_bn": functools.partial(_reference_drift, swapped=True)})
DRIFT_FROM_STEP_ZERO = Mistake(
    "measurements taken before the step instead of after it (steps 0, every, ...): measure after steps every, "
    "2 * every, ..., steps", {"drift_with_and_without_bn": functools.partial(_reference_drift, from_zero=True)})
MISTAKES.update(DRIFT_SWAPPED=DRIFT_SWAPPED, DRIFT_FROM_STEP_ZERO=DRIFT_FROM_STEP_ZERO)
