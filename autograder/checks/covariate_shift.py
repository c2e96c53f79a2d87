"""Hidden tests of ``covariate_shift``: measuring what layers see and how the loss bends.

Two graded functions:

- ``layer_input_stats(model, x)``: per-feature mean and biased standard
  deviation of the input of every ``torch.nn.Linear`` layer during one forward
  pass, recorded with forward hooks that are removed afterwards;
- ``loss_along_gradient(model, loss_fn, x, y, step_sizes)``: the loss and the
  change of the gradient at ``theta - eta * g`` for each step size, leaving the
  model exactly as it was.

The reference (``autograder/references/covariate_shift.py``, grader only) is
PyTorch, written independently of the notebook's solution. The probes build
their models in float64 with weights drawn per student from NumPy, so the
inputs do not depend on PyTorch's initializers, and they are chosen so that the
usual mistakes show:

- a batch of two, where the unbiased standard deviation is sqrt(2) times the
  biased one;
- nested containers (``Sequential`` in a ``ModuleDict`` in a module), a model
  that is itself a ``Linear`` (whose name is ``""``), a ``Linear`` called twice;
- inputs of shape ``(A, B, in_features)``;
- features with different means, and layers whose input and output sizes
  differ, so that statistics over the wrong axis or of the output cannot hide;
- ``BatchNorm1d`` in training mode (batch statistics, running statistics
  updated once) and in eval mode (running statistics), so that a function that
  switches the mode gets different numbers;
- a user's own forward hook that must survive, and a forward pass that raises
  halfway, after which no hook of ours may be left;
- repeated step sizes (steps are not cumulative), a parameter that is frozen,
  parameters whose ``.grad`` already holds something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.checks.core import Assignment, Namespace, Outputs, Probe, ProbeError, as_array, student_rng
from autograder.checks.core import experiment_numbers, student_seed, with_stand_ins

# ---------------------------------------------------------------------------
# Models and inputs (built in float64 from NumPy draws; torch is imported lazily
# so that importing this module stays cheap)


def _fill(model: Any, seed: int) -> Any:
    """Overwrite every parameter with seeded NumPy draws; the model becomes float64."""
    import torch

    model.double()
    rng = student_rng(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                values = rng.normal(0.0, 1.0 / np.sqrt(param.shape[1]), size=tuple(param.shape))
            elif name.endswith("weight"):  # normalization scales, away from 1
                values = rng.uniform(0.5, 2.0, size=tuple(param.shape))
            else:
                values = rng.normal(0.0, 0.5, size=tuple(param.shape))
            param.copy_(torch.from_numpy(values))
    return model


def _batch(seed: int, shape: tuple[int, ...], spread: float = 1.0) -> Any:
    """A float64 batch whose last-axis features have different means and spreads."""
    import torch

    rng = student_rng(seed)
    d = shape[-1]
    values = rng.normal(size=shape) * rng.uniform(0.5, 2.0, size=d) * spread + rng.normal(0.0, 2.0, size=d)
    return torch.from_numpy(values)


def _mlp(seed: int, sizes: tuple[int, ...], batch_norm: bool = False, act: str = "relu") -> Any:
    from torch import nn

    layers: list[Any] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(nn.ReLU() if act == "relu" else nn.Tanh())
    return _fill(nn.Sequential(*layers), seed)


def _nested(seed: int) -> Any:
    """Linear layers at several depths, inside a ModuleDict, a ModuleList and Sequentials."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.ModuleDict({
                "encoder": nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Sequential(nn.Linear(6, 4), nn.ReLU())),
                "skip": nn.Linear(5, 4),
            })
            self.heads = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.body["encoder"](x) + self.body["skip"](x)
            return torch.cat([self.heads[0](h), self.heads[1](h)], dim=-1)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.out = nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.tanh(self.block(x)))

    return _fill(Net(), seed)


def _shared(seed: int) -> Any:
    """One square Linear registered under two names and called twice, then a head."""
    import torch
    from torch import nn

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(4, 4)
            self.again = self.first  # the same module under a second name
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.again(torch.tanh(self.first(x))))

    return _fill(Twice(), seed)


def _single_linear(seed: int) -> Any:
    from torch import nn

    return _fill(nn.Linear(6, 2), seed)


def _breaks_halfway(seed: int) -> Any:
    """The second Linear expects 5 features and gets 3: the forward pass raises there."""
    from torch import nn

    return _fill(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2)), seed)


def _with_running_stats(model: Any, seed: int) -> Any:
    """Give every BatchNorm layer running statistics far from the initial 0 and 1."""
    import torch

    rng = student_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 2.0, size=module.num_features)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.2, 5.0, size=module.num_features)))
    return model


def _count_hooks(model: Any) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _modes(model: Any) -> np.ndarray:
    return np.array([m.training for m in model.modules()])


# ---------------------------------------------------------------------------
# Probes of layer_input_stats


def _stats_outputs(result: Any) -> Outputs:
    """Flatten the returned dict into arrays: the sorted keys, then mean and std of each."""
    if not isinstance(result, dict):
        raise ProbeError(f"layer_input_stats should return a dict, got {type(result).__name__}")
    outputs: Outputs = {"keys": np.array(sorted(str(k) for k in result), dtype=str)}
    for key in sorted(result, key=str):
        pair = result[key]
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ProbeError(f"the value for layer {key!r} should be a tuple (mean, std), "
                             f"got {type(pair).__name__}")
        mean, std = pair
        outputs[f"mean[{key}]"] = as_array(mean)
        outputs[f"std[{key}]"] = as_array(std)
    return outputs


def _stats_probe(build: Callable[[], Any], x_seed: int, x_shape: tuple[int, ...], *, mode: str = "train",
                 running_stats: bool = False, check_state: bool = False) -> Callable[[Namespace], Outputs]:
    def run(ns: Namespace) -> Outputs:
        model = build()
        if running_stats:
            _with_running_stats(model, x_seed + 1)
        model.train(mode == "train")
        modes_before = _modes(model)
        x = _batch(x_seed, x_shape)
        outputs = _stats_outputs(ns["layer_input_stats"](model, x))
        if check_state:
            outputs["modes_unchanged"] = np.array(np.array_equal(_modes(model), modes_before))
            outputs["hooks_left"] = np.array(_count_hooks(model))
            for name, buffer in model.named_buffers():
                if buffer.is_floating_point():
                    outputs[f"buffer[{name}]"] = as_array(buffer)
        return outputs

    return run


def _stats_no_graph(ns: Namespace) -> Outputs:
    """Input that requires grad, parameters that require grad: the stats must be plain tensors."""
    model = _mlp(70, (4, 5, 3))
    x = _batch(71, (6, 4)).requires_grad_()
    result = ns["layer_input_stats"](model, x)
    outputs = _stats_outputs(result)
    tensors = [t for pair in result.values() for t in pair]
    outputs["any_requires_grad"] = np.array(any(bool(getattr(t, "requires_grad", False)) for t in tensors))
    outputs["any_grad_fn"] = np.array(any(getattr(t, "grad_fn", None) is not None for t in tensors))
    outputs["param_grads_untouched"] = np.array(all(p.grad is None for p in model.parameters()))
    return outputs


def _stats_hooks_removed(ns: Namespace) -> Outputs:
    """A user's own hook survives and still fires; none of ours is left; a second call agrees."""
    model = _nested(80)
    calls: list[int] = []
    user = model.block.heads[0].register_forward_hook(lambda module, inputs, output: calls.append(1))
    x = _batch(81, (9, 5))
    first = _stats_outputs(ns["layer_input_stats"](model, x))
    hooks_after_call = _count_hooks(model)
    model(x)
    user.remove()
    second = _stats_outputs(ns["layer_input_stats"](model, x))
    outputs = {
        "hooks_left_besides_the_user_hook": np.array(hooks_after_call - 1),
        "user_hook_calls": np.array(len(calls)),
        "hooks_left_after_second_call": np.array(_count_hooks(model)),
        "same_result_twice": np.array(
            first.keys() == second.keys()
            and all(np.array_equal(first[k], second[k]) for k in first)),
    }
    return outputs


def _stats_hooks_removed_on_error(ns: Namespace) -> Outputs:
    """The forward pass raises after the first layer: the error propagates, the hooks go."""
    model = _breaks_halfway(90)
    x = _batch(91, (5, 4))
    outputs: Outputs = {}
    try:
        ns["layer_input_stats"](model, x)
    except NotImplementedError:
        raise
    except RuntimeError as error:
        outputs["raised"] = np.array(type(error).__name__)
    outputs["hooks_left"] = np.array(_count_hooks(model))
    return outputs


# ---------------------------------------------------------------------------
# Probes of loss_along_gradient


def _snapshot(model: Any) -> dict[str, np.ndarray]:
    state = {f"param[{n}]": as_array(p).copy() for n, p in model.named_parameters()}
    state.update({f"grad[{n}]": as_array(p.grad).copy() for n, p in model.named_parameters()
                  if p.grad is not None})
    state.update({f"buffer[{n}]": as_array(b).copy() for n, b in model.named_buffers()})
    return state


def _same_state(before: dict[str, np.ndarray], after: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    keys = {k for k in before if k.startswith(prefix)} | {k for k in after if k.startswith(prefix)}
    return np.array(all(k in before and k in after and np.array_equal(before[k], after[k]) for k in keys))


def _landscape_outputs(result: Any) -> Outputs:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ProbeError(f"loss_along_gradient should return a tuple (losses, changes), "
                         f"got {type(result).__name__}")
    losses, changes = result
    outputs = {"losses": as_array(losses), "changes": as_array(changes)}
    outputs["any_requires_grad"] = np.array(any(bool(getattr(t, "requires_grad", False)) for t in result))
    return outputs


def _mse(output: Any, target: Any) -> Any:
    return ((output - target) ** 2).mean()


def _cross_entropy(output: Any, target: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(output, target)


def _landscape_probe(build: Callable[[], Any], x_seed: int, x_shape: tuple[int, ...], classes: int,
                     step_sizes: Any, *, mode: str = "train", running_stats: bool = False,
                     stale_grads: bool = False, freeze: str | None = None,
                     step_sizes_as_tensor: bool = False, check: str = "values") -> Callable[[Namespace], Outputs]:
    """A probe of loss_along_gradient; ``check`` is "values" (what it returns) or "state" (the model after)."""

    def run(ns: Namespace) -> Outputs:
        import torch

        model = build()
        if running_stats:
            _with_running_stats(model, x_seed + 1)
        if freeze is not None:
            for name, param in model.named_parameters():
                if name.startswith(freeze):
                    param.requires_grad_(False)
        if stale_grads:
            rng = student_rng(x_seed + 2)
            for param in model.parameters():
                if param.requires_grad:
                    param.grad = torch.from_numpy(rng.normal(size=tuple(param.shape)))
        model.train(mode == "train")
        x = _batch(x_seed, x_shape)
        if classes:
            y = torch.from_numpy(student_rng(x_seed + 3).integers(0, classes, size=x_shape[0]))
            loss_fn = _cross_entropy
        else:
            out_features = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features
            y = _batch(x_seed + 3, (x_shape[0], out_features))
            loss_fn = _mse
        steps = torch.tensor(step_sizes, dtype=torch.float64) if step_sizes_as_tensor else list(step_sizes)
        modes_before = _modes(model)
        before = _snapshot(model)
        outputs = _landscape_outputs(ns["loss_along_gradient"](model, loss_fn, x, y, steps))
        if check == "values":
            return outputs
        after = _snapshot(model)
        outputs = {"any_requires_grad": outputs["any_requires_grad"]}
        outputs["parameters_unchanged"] = _same_state(before, after, "param[")
        outputs["buffers_unchanged"] = _same_state(before, after, "buffer[")
        outputs["grads_unchanged"] = _same_state(before, after, "grad[")
        outputs["modes_unchanged"] = np.array(np.array_equal(_modes(model), modes_before))
        return outputs

    return run


# ---------------------------------------------------------------------------
# Known mistakes each probe may name (defined in references/covariate_shift.py)

# MODEL_ITSELF_SKIPPED before TOP_LEVEL_ONLY: on a model that is itself a Linear both return nothing, and
# "the model itself skipped" is what that probe shows (the nested probes name TOP_LEVEL_ONLY).
_STATS_VALUE_MISTAKES = ("UNBIASED_STD", "PER_SAMPLE", "FIRST_AXIS_ONLY", "MODEL_ITSELF_SKIPPED", "TOP_LEVEL_ONLY",
                         "OUTPUT_STATS", "LAST_CALL_ONLY", "FIRST_CALL_ONLY", "STD_WITH_EPS", "STATS_IN_FLOAT32")
_STATS_STATE_MISTAKES = ("HOOKS_LEFT_ON_ERROR", "HOOKS_NEVER_REMOVED", "CLEARED_ALL_HOOKS", "SWITCHED_TO_EVAL",
                         "SWITCHED_TO_TRAIN", "EVAL_THEN_TRAIN", "GRAPH_KEPT")
_LANDSCAPE_VALUE_MISTAKES = ("UPHILL", "CUMULATIVE", "TRAJECTORY", "NORMALIZED_STEP", "SUM_OF_NORMS",
                             "SQUARED_NORM", "MEASURED_IN_EVAL", "MEASURED_IN_TRAIN", "ACCUMULATED_GRAD",
                             "RESULTS_KEEP_GRAPH", "GRADIENT_IN_FLOAT32")
_LANDSCAPE_STATE_MISTAKES = ("MODEL_MODIFIED", "RUNNING_STATS_CHANGED", "GRADS_OVERWRITTEN", "ACCUMULATED_GRAD",
                             "RESULTS_KEEP_GRAPH")

# Float64 throughout: a right answer agrees with PyTorch to about 1e-15, float32 arithmetic only to about 1e-7.
_F64 = {"rtol": 1e-9, "atol": 1e-11}

_STATE_LABELS = {
    "modes_unchanged": "whether every module's train/eval mode is as before",
    "hooks_left": "the number of hooks left on the model",
    "parameters_unchanged": "whether the model's parameters are as before",
    "buffers_unchanged": "whether the model's buffers (BatchNorm running statistics) are as before",
    "grads_unchanged": "whether every parameter's .grad is as before",
    "any_requires_grad": "whether a returned tensor requires grad",
    "any_grad_fn": "whether a returned tensor has a grad_fn",
    "param_grads_untouched": "whether every parameter's .grad is still None",
    "hooks_left_besides_the_user_hook": "the number of hooks left besides the user's own",
    "user_hook_calls": "the number of times the user's own hook fired",
    "hooks_left_after_second_call": "the number of hooks left after a second call",
    "same_result_twice": "whether two calls on the same input agree",
    "keys": "the set of layer names",
}

# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The experiment: drift_with_and_without_bn
#
# Trained networks differ between correct implementations, so the probe returns
# what any correct one shows, with wide margins (measured over 24 seeds, 60 steps:
# the first layer's drift exactly 0; without batch norm the drift of the hidden
# layers' inputs grows with depth, each layer at least 1.5 times the one before;
# the last hidden layer's input drifts at least 5 times more than with batch norm).


def _stand_in_stats() -> dict[str, Any]:
    """For the experiment's given-run: layer_input_stats with the *unbiased* standard deviation, a known
    mistake that changes nothing on 1797 examples."""
    import torch

    def layer_input_stats(model, x):
        stats, handles = {}, []
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                def hook(module, args, output, name=name):
                    rows = args[0].detach().reshape(-1, args[0].shape[-1])
                    stats[name] = (rows.mean(dim=0), rows.std(dim=0, correction=1))
                handles.append(module.register_forward_hook(hook))
        try:
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
        return stats

    return {"layer_input_stats": layer_input_stats}


def _drift_probe(seed: int):
    def run(ns: Namespace) -> Outputs:
        result = ns["drift_with_and_without_bn"](steps=60, every=30, seed=student_seed(seed) % 2**31)
        numbers = experiment_numbers(result, "drift_with_and_without_bn", ("steps", "without_bn", "with_bn"))
        plain, normed = numbers["without_bn"], numbers["with_bn"]
        if plain.shape != (2, 5) or normed.shape != (2, 5):
            raise ProbeError(f"drift_with_and_without_bn(steps=60, every=30) should return (2, 5) drifts for "
                             f"this MLP, got shapes {plain.shape} and {normed.shape}")
        valid = bool(np.all(np.isfinite(plain)) and np.all(np.isfinite(normed)) and np.all(plain >= 0)
                     and np.all(normed >= 0))
        last = plain[-1]
        return {
            "steps": numbers["steps"].reshape(-1),
            "valid": np.array(valid),
            "first_layer": np.array(bool(np.abs(plain[:, 0]).max() < 1e-6 and np.abs(normed[:, 0]).max() < 1e-6)),
            "deeper_more": np.array(bool(np.all(last[2:4] > 1.2 * last[1:3]) and last[1] > 0)),
            "bn_less": np.array(bool(last[3] > 3 * normed[-1, 3])),
        }

    return run


_DRIFT_LABELS = {
    "steps": "the list of measured steps",
    "valid": "whether every drift is a finite number, 0 or more",
    "first_layer": "whether the first layer's drift is 0 (its input is the data, which does not change)",
    "deeper_more": "whether, without batch norm, each deeper hidden layer's input drifts more than the one before",
    "bn_less": "whether, without batch norm, the last hidden layer's input drifts more than 3 times as much as "
               "with it",
}


ASSIGNMENT = Assignment(
    name="covariate_shift",
    kind="torch",
    tests={
        "test_layer_input_stats": (
            Probe("statistics of a ReLU MLP on a (12, 5) batch", ("layer_input_stats",),
                  _stats_probe(lambda: _mlp(10, (5, 7, 6, 3)), 11, (12, 5)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("statistics of a tanh MLP on a (2, 3) batch: a batch of 2", ("layer_input_stats",),
                  _stats_probe(lambda: _mlp(20, (3, 4, 2), act="tanh"), 21, (2, 3)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("Linear layers nested in Sequentials, a ModuleDict and a ModuleList", ("layer_input_stats",),
                  _stats_probe(lambda: _nested(30), 31, (10, 5)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a model that is itself a Linear layer", ("layer_input_stats",),
                  _stats_probe(lambda: _single_linear(40), 41, (8, 6)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("an input of shape (3, 4, 5)", ("layer_input_stats",),
                  _stats_probe(lambda: _mlp(50, (5, 6, 2)), 51, (3, 4, 5)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a Linear layer registered under two names and called twice", ("layer_input_stats",),
                  _stats_probe(lambda: _shared(60), 61, (7, 4)),
                  mistakes=_STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
        ),
        "test_layer_input_stats_side_effects": (
            Probe("a BatchNorm MLP in training mode, with running statistics: its mode, hooks and buffers after",
                  ("layer_input_stats",),
                  _stats_probe(lambda: _mlp(100, (4, 6, 5, 3), batch_norm=True), 101, (16, 4),
                               mode="train", running_stats=True, check_state=True),
                  mistakes=_STATS_STATE_MISTAKES + _STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a BatchNorm MLP in eval mode, with running statistics: its mode, hooks and buffers after",
                  ("layer_input_stats",),
                  _stats_probe(lambda: _mlp(110, (4, 6, 5, 3), batch_norm=True), 111, (16, 4),
                               mode="eval", running_stats=True, check_state=True),
                  mistakes=_STATS_STATE_MISTAKES + _STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("an input and parameters that require grad", ("layer_input_stats",), _stats_no_graph,
                  mistakes=_STATS_STATE_MISTAKES + _STATS_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("hooks removed, the user's own hook kept", ("layer_input_stats",), _stats_hooks_removed,
                  mistakes=_STATS_STATE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a forward pass that raises halfway", ("layer_input_stats",), _stats_hooks_removed_on_error,
                  mistakes=_STATS_STATE_MISTAKES, labels=_STATE_LABELS, **_F64),
        ),
        "test_loss_along_gradient": (
            Probe("a tanh MLP with a squared-error loss", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(200, (4, 6, 3), act="tanh"), 201, (10, 4), 0,
                                   [0.0, 0.05, 0.3, 1.0]),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("repeated step sizes, given as a tensor", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(210, (3, 5, 4, 2), act="tanh"), 211, (9, 3), 0,
                                   [0.2, 0.2, 0.05, 0.2], step_sizes_as_tensor=True),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a BatchNorm MLP in training mode with cross-entropy", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(220, (5, 8, 6, 4), batch_norm=True), 221, (12, 5), 4,
                                   [0.1, 0.5, 2.0], running_stats=True),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a BatchNorm MLP in eval mode", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(230, (5, 8, 4), batch_norm=True), 231, (12, 5), 4,
                                   [0.1, 1.0], mode="eval", running_stats=True),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("parameters whose .grad already holds values", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(240, (4, 5, 3), act="tanh"), 241, (8, 4), 0,
                                   [0.1, 0.4], stale_grads=True),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("a model whose first layer is frozen", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(250, (4, 6, 3), act="tanh"), 251, (8, 4), 3,
                                   [0.2, 1.0], freeze="0."),
                  mistakes=_LANDSCAPE_VALUE_MISTAKES, labels=_STATE_LABELS, **_F64),
        ),
        "test_loss_along_gradient_side_effects": (
            Probe("the model after measuring a BatchNorm MLP in training mode", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(300, (5, 8, 6, 4), batch_norm=True), 301, (12, 5), 4,
                                   [0.1, 0.5], running_stats=True, stale_grads=True, check="state"),
                  mistakes=_LANDSCAPE_STATE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("the model after measuring a BatchNorm MLP in eval mode", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(310, (5, 8, 4), batch_norm=True), 311, (12, 5), 4,
                                   [0.3], mode="eval", running_stats=True, check="state"),
                  mistakes=_LANDSCAPE_STATE_MISTAKES, labels=_STATE_LABELS, **_F64),
            Probe("the model after measuring, with a frozen first layer", ("loss_along_gradient",),
                  _landscape_probe(lambda: _mlp(320, (4, 6, 3), act="tanh"), 321, (8, 4), 0,
                                   [0.2, 1.0], freeze="0.", check="state"),
                  mistakes=_LANDSCAPE_STATE_MISTAKES, labels=_STATE_LABELS, **_F64),
        ),
        "test_drift_with_and_without_bn": (
            Probe("60 steps of full-batch gradient descent measured every 30, with a seed of its own",
                  ("layer_input_stats", "drift_with_and_without_bn"), _drift_probe(400), labels=_DRIFT_LABELS,
                  given=with_stand_ins(_drift_probe(400), _stand_in_stats),
                  mistakes=("DRIFT_SWAPPED", "DRIFT_FROM_STEP_ZERO")),
        ),
    },
    # PyTorch has no function of its own that measures either quantity.
    library=(),
    type_checks=(),
)
