"""Hidden tests of ``train_eval``: a BatchNorm module and the re-estimation of its statistics.

The reference (``autograder/references/train_eval.py``, grader only) is PyTorch
itself: ``BatchNorm`` is ``torch.nn.BatchNorm1d``/``2d`` in one class, and
``recalibrate_bn`` is torch's own procedure. The inputs are drawn per student,
and the probes are chosen so that the usual mistakes change their outputs:

- batches of 2 to 5 values per channel, where the unbiased variance differs
  from the biased one by a factor of up to 2;
- several training steps with batches of different sizes, so that the running
  statistics, the counter and the cumulative average (``momentum=None``) are
  all visible, and a Keras-style momentum (the weight of the old value) shows;
- a state dict saved with a non-zero counter, so that ``momentum=None`` must
  continue the average from the loaded count;
- evaluation steps between training steps, which must neither update nor count;
- inputs that require gradients, so that running statistics that keep an
  autograd graph show;
- gradients of a weighted sum of the outputs in both modes.

Every probe uses float64 (the module is converted with ``.double()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autograder.checks.core import (Assignment, Namespace, Outputs, Probe, ProbeError, raised,
                                   student_generator, student_seed)
from autograder.checks.core import as_array as _shared_array
from autograder.checks.core import experiment_numbers, fraction, with_stand_ins

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def as_array(value: Any) -> np.ndarray:
    """A copy of a tensor's values: buffers updated in place later must not change it."""
    return np.array(_shared_array(value), copy=True)

# ---------------------------------------------------------------------------
# Inputs


def _input(seed: int, shape: tuple[int, ...], requires_grad: bool = False):
    """A float64 batch whose channels (dimension 1) have different means and spreads."""
    import torch

    generator = student_generator(seed)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    scale = 0.5 + 2.0 * torch.rand(channels, generator=generator, dtype=torch.float64)
    offset = 3.0 * torch.randn(channels, generator=generator, dtype=torch.float64)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale.view(view) + offset.view(view)
    return x.requires_grad_(requires_grad)


def _affine_values(seed: int, channels: int):
    import torch

    generator = student_generator(seed)
    weight = 0.5 + 2.0 * torch.rand(channels, generator=generator, dtype=torch.float64)
    bias = torch.randn(channels, generator=generator, dtype=torch.float64)
    return weight, bias


def _module(ns: Namespace, channels: int, options: dict[str, Any], seed: int = 0):
    """``BatchNorm(channels, **options)`` in float64, with a non-trivial weight and bias."""
    import torch

    layer = ns["BatchNorm"](channels, **options)
    if not isinstance(layer, torch.nn.Module):
        raise ProbeError(f"BatchNorm(...) is a {type(layer).__name__}, not a torch.nn.Module")
    layer = layer.double()
    if options.get("affine", True):
        weight, bias = _affine_values(seed + 1000, channels)
        for name, value in (("weight", weight), ("bias", bias)):
            parameter = getattr(layer, name, None)
            if not isinstance(parameter, torch.nn.Parameter):
                raise ProbeError(f"BatchNorm(...).{name} is not a torch.nn.Parameter (affine=True)")
            with torch.no_grad():
                parameter.copy_(value)
    return layer


def _options_text(channels: int, options: dict[str, Any]) -> str:
    inner = ", ".join([str(channels)] + [f"{key}={value!r}" for key, value in options.items()])
    return f"BatchNorm({inner})"


def _buffers(layer: Any, suffix: str, options: dict[str, Any]) -> Outputs:
    """The running statistics and the counter, which must exist when they are tracked."""
    outputs: Outputs = {}
    for name in _BUFFERS:
        value = getattr(layer, name, None)
        if value is None:
            raise ProbeError(f"{_options_text(3, options).split('(')[0]}(...).{name} is None, "
                             "but track_running_stats=True: it should be a buffer")
        outputs[f"{name}{suffix}"] = as_array(value)
    return outputs


def _detached(layer: Any) -> np.ndarray:
    tensors = [getattr(layer, name, None) for name in ("running_mean", "running_var")]
    return np.array(all(t is None or (not t.requires_grad and t.grad_fn is None) for t in tensors))


def _step_labels(steps: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    for step in range(steps):
        labels[f"out_{step}"] = f"the output of call {step + 1}"
        for name in _BUFFERS:
            labels[f"{name}_{step}"] = f"`{name}` after call {step + 1}"
    labels["detached"] = "whether the running statistics are free of autograd history"
    labels["counter_dtype"] = "the dtype of `num_batches_tracked`"
    return labels


# ---------------------------------------------------------------------------
# Probes: structure and state dicts


def _structure_probe(channels: int, options: dict[str, Any]):
    def run(ns: Namespace) -> Outputs:
        layer = ns["BatchNorm"](channels, **options)
        parameters = [f"{name}{tuple(p.shape)}" for name, p in layer.named_parameters()]
        buffers = [f"{name}{tuple(b.shape)}:{b.dtype}" for name, b in layer.named_buffers()]
        none = [name for name in ("weight", "bias") + _BUFFERS
                if hasattr(layer, name) and getattr(layer, name) is None]
        outputs: Outputs = {
            "parameters": np.array(", ".join(sorted(parameters)) or "none"),
            "buffers": np.array(", ".join(sorted(buffers)) or "none"),
            "state_dict_keys": np.array(", ".join(sorted(layer.state_dict())) or "none"),
            "none_attributes": np.array(", ".join(none) or "none"),
        }
        for name, value in list(layer.named_parameters()) + list(layer.named_buffers()):
            outputs[f"initial {name}"] = as_array(value).astype(np.float64)
        # One call in each mode: the output has the input's shape.
        x = _input(1, (4, channels, 3)).float()
        outputs["output shape in training mode"] = np.array(tuple(layer.train()(x).shape))
        outputs["output shape in evaluation mode"] = np.array(tuple(layer.eval()(x).shape))
        return outputs

    return run


_STRUCTURE_LABELS = {
    "parameters": "the parameters (name and shape)",
    "buffers": "the buffers (name, shape and dtype)",
    "state_dict_keys": "the state dict's keys",
    "none_attributes": "the attributes that are None",
}


def _state_dict_from_torch_probe(seed: int):
    """Load a state dict as torch saves it (float32, counter 7), then evaluate and train."""
    import torch

    def run(ns: Namespace) -> Outputs:
        generator = student_generator(seed)
        channels = 4
        state = {
            "weight": 0.5 + torch.rand(channels, generator=generator),
            "bias": torch.randn(channels, generator=generator),
            "running_mean": 2.0 * torch.randn(channels, generator=generator),
            "running_var": 0.5 + 3.0 * torch.rand(channels, generator=generator),
            "num_batches_tracked": torch.tensor(7, dtype=torch.long),
        }
        layer = ns["BatchNorm"](channels, momentum=None).double()
        layer.load_state_dict(state, strict=True)
        layer.eval()
        outputs: Outputs = {"out_eval": as_array(layer(_input(seed + 1, (5, channels))))}
        layer.train()
        outputs["out_train"] = as_array(layer(_input(seed + 2, (3, channels, 2))))
        outputs.update(_buffers(layer, "_after", {"momentum": None}))
        return outputs

    return run


def _state_dict_to_torch_probe(seed: int):
    """The state dict after two training steps: keys, dtypes and values as torch's."""

    def run(ns: Namespace) -> Outputs:
        layer = _module(ns, 3, {"momentum": 0.2}, seed).train()
        layer(_input(seed + 1, (4, 3, 2, 2)))
        layer(_input(seed + 2, (2, 3, 3, 1)))
        state = layer.state_dict()
        outputs: Outputs = {
            "keys": np.array(", ".join(sorted(state))),
            "dtypes": np.array(", ".join(f"{k}:{state[k].dtype}" for k in sorted(state))),
        }
        for key, value in state.items():
            outputs[f"state {key}"] = as_array(value)
        return outputs

    return run


# ---------------------------------------------------------------------------
# Probes: training and evaluation


def _training_probe(seed: int, shapes: list[tuple[int, ...]], options: dict[str, Any]):
    """Several training steps; the outputs and the buffers after each."""

    def run(ns: Namespace) -> Outputs:
        channels = shapes[0][1]
        layer = _module(ns, channels, options, seed).train()
        tracked = options.get("track_running_stats", True)
        outputs: Outputs = {}
        for step, shape in enumerate(shapes):
            out = layer(_input(seed + step + 1, shape, requires_grad=True))
            outputs[f"out_{step}"] = as_array(out)
            if tracked:
                outputs.update(_buffers(layer, f"_{step}", options))
        if tracked:
            outputs["detached"] = _detached(layer)
            outputs["counter_dtype"] = np.array(str(layer.num_batches_tracked.dtype))
        return outputs

    return run


def _batch_of_one_probe(seed: int):
    """A batch with one value per channel raises ValueError wherever it would be normalized with its own
    statistics (training, or evaluation without running statistics); one example with positions does not."""

    def run(ns: Namespace) -> Outputs:
        layer = _module(ns, 3, {}, seed).train()
        outputs: Outputs = {}
        for key, shape in (("raised (1, 3)", (1, 3)), ("raised (1, 3, 1)", (1, 3, 1)),
                           ("raised (1, 3, 1, 1)", (1, 3, 1, 1))):
            try:
                layer(_input(seed + 1, shape))
                outputs[key] = np.array("nothing")
            except NotImplementedError:
                raise
            except Exception as error:  # noqa: BLE001 - the type is the output
                outputs[key] = raised(error)
        outputs["out (1, 3, 4)"] = as_array(layer(_input(seed + 2, (1, 3, 4))))
        outputs["out (2, 3)"] = as_array(layer(_input(seed + 3, (2, 3))))
        layer.eval()
        outputs["eval out (1, 3)"] = as_array(layer(_input(seed + 4, (1, 3))))
        # Without running statistics, evaluation mode normalizes with the batch's own: one value cannot be.
        untracked = _module(ns, 3, {"track_running_stats": False}, seed).eval()
        try:
            untracked(_input(seed + 5, (1, 3)))
            outputs["eval untracked raised (1, 3)"] = np.array("nothing")
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - the type is the output
            outputs["eval untracked raised (1, 3)"] = raised(error)
        return outputs

    return run


_BATCH_OF_ONE_LABELS = {
    "raised (1, 3)": "the exception raised by a (1, 3) training batch",
    "raised (1, 3, 1)": "the exception raised by a (1, 3, 1) training batch",
    "raised (1, 3, 1, 1)": "the exception raised by a (1, 3, 1, 1) training batch",
    "out (1, 3, 4)": "the training output for a (1, 3, 4) batch (one example, four positions)",
    "out (2, 3)": "the training output for a (2, 3) batch",
    "eval out (1, 3)": "the evaluation output for a (1, 3) batch",
}


def _eval_probe(seed: int, schedule: list[tuple[str, tuple[int, ...]]], options: dict[str, Any]):
    """A sequence of calls in training ("train") and evaluation ("eval") mode."""

    def run(ns: Namespace) -> Outputs:
        channels = schedule[0][1][1]
        layer = _module(ns, channels, options, seed)
        tracked = options.get("track_running_stats", True)
        outputs: Outputs = {}
        for step, (mode, shape) in enumerate(schedule):
            layer.train(mode == "train")
            out = layer(_input(seed + step + 1, shape, requires_grad=True))
            outputs[f"out_{step}"] = as_array(out)
            if tracked:
                outputs.update(_buffers(layer, f"_{step}", options))
        if tracked:
            outputs["detached"] = _detached(layer)
        return outputs

    return run


def _gradient_probe(seed: int, warmup: list[tuple[int, ...]], mode: str, shape: tuple[int, ...],
                    options: dict[str, Any]):
    """Gradients of sum(out * g) with respect to the input, weight and bias."""
    import torch

    def run(ns: Namespace) -> Outputs:
        layer = _module(ns, shape[1], options, seed).train()
        with torch.no_grad():
            for step, warm_shape in enumerate(warmup):
                layer(_input(seed + 100 + step, warm_shape))
        layer.train(mode == "train")
        x = _input(seed + 1, shape, requires_grad=True)
        out = layer(x)
        g = torch.randn(out.shape, generator=student_generator(seed + 2), dtype=torch.float64)
        (out * g).sum().backward()
        if x.grad is None:
            raise ProbeError("no gradient reached the input: is the output computed from x with tensor operations?")
        outputs: Outputs = {"out": as_array(out), "dx": as_array(x.grad)}
        if options.get("affine", True):
            for name in ("weight", "bias"):
                grad = getattr(layer, name).grad
                if grad is None:
                    raise ProbeError(f"no gradient reached BatchNorm's {name}: does the output use it?")
                outputs[f"d{name}"] = as_array(grad)
        return outputs

    return run


_GRADIENT_LABELS = {"out": "the output", "dx": "the gradient of the input",
                    "dweight": "the gradient of `weight`", "dbias": "the gradient of `bias`"}


# ---------------------------------------------------------------------------
# Probes: recalibrate_bn


def _torch_mlp(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(student_seed(seed))
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 5), nn.BatchNorm1d(5, momentum=0.3), nn.Tanh(),
                         nn.Linear(5, 3)).double()


def _torch_cnn(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(student_seed(seed))
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=None), nn.ReLU(),
                         nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16, 5), nn.BatchNorm1d(5, track_running_stats=False),
                         nn.Linear(5, 2)).double()


def _own_mlp(ns: Namespace, seed: int):
    import torch
    from torch import nn

    if "BatchNorm" not in ns:
        raise ProbeError("BatchNorm is not defined (did its cell run without errors?)")
    BatchNorm = ns["BatchNorm"]
    torch.manual_seed(student_seed(seed))
    return nn.Sequential(nn.Linear(4, 6), BatchNorm(6), nn.ReLU(),
                         nn.Linear(6, 5), BatchNorm(5, momentum=None), nn.ReLU(),
                         nn.Linear(5, 3)).double()


def _stand_in_batchnorm() -> Any:
    """PyTorch's batch norm for 2-D to 4-D input: stands in for the student's BatchNorm in the given-run of
    ``recalibrate_bn`` on a model of the student's layers, which then judges recalibrate_bn on its own."""
    from torch import nn

    class StandInBatchNorm(nn.modules.batchnorm._BatchNorm):
        def _check_input_dim(self, input: Any) -> None:
            if input.dim() not in (2, 3, 4):
                raise ValueError(f"expected 2-D, 3-D or 4-D input (got {input.dim()}-D input)")

    return StandInBatchNorm


def _norm_layers(model: Any) -> list[Any]:
    """The layers with a running-statistics interface, in module order."""
    return [m for m in model.modules() if hasattr(m, "track_running_stats") and hasattr(m, "momentum")]


def _recalibrate_probe(seed: int, build: str, input_shape: tuple[int, ...], sizes: list[int], wrap: str,
                       start_mode: str):
    import torch

    def run(ns: Namespace) -> Outputs:
        model = {"mlp": lambda: _torch_mlp(seed), "cnn": lambda: _torch_cnn(seed),
                 "own": lambda: _own_mlp(ns, seed)}[build]()
        # Give the running statistics and counters a history to forget.
        model.train()
        with torch.no_grad():
            for step in range(3):
                model(_input(seed + 50 + step, (6,) + input_shape) * 2.0 + 1.0)
        model.train(start_mode == "train")
        parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
        momenta = [layer.momentum for layer in _norm_layers(model)]

        inputs = [_input(seed + step, (size,) + input_shape) for step, size in enumerate(sizes)]
        labels = [torch.arange(size) % 2 for size in sizes]
        if wrap == "tensors":
            batches: Any = inputs
        elif wrap == "tuples":
            batches = ((x, y) for x, y in zip(inputs, labels))  # a generator: one pass only
        else:
            batches = [[x, y] for x, y in zip(inputs, labels)]
        returned = ns["recalibrate_bn"](model, batches)

        outputs: Outputs = {"returns the model": np.array(returned is model)}
        for index, layer in enumerate(_norm_layers(model)):
            momentum = layer.momentum
            outputs[f"layer {index} momentum"] = np.array(-1.0 if momentum is None else float(momentum))
            outputs[f"layer {index} momentum is None"] = np.array(momentum is None)
            for name in _BUFFERS:
                value = getattr(layer, name, None)
                if value is not None:
                    outputs[f"layer {index} {name}"] = as_array(value)
        outputs["momenta restored"] = np.array(
            [layer.momentum for layer in _norm_layers(model)] == momenta)
        outputs["modules in training mode"] = np.array(
            ", ".join(name or "model" for name, m in model.named_modules() if m.training) or "none")
        outputs["parameters unchanged"] = np.array(
            all(torch.equal(parameters[name], p.detach()) for name, p in model.named_parameters()))
        with torch.no_grad():
            outputs["eval output"] = as_array(model(_input(seed + 99, (5,) + input_shape)))
        return outputs

    return run


# ---------------------------------------------------------------------------
# Known mistakes each probe may name (defined in references/train_eval.py)

_STATE_MISTAKES = ("FLOAT_COUNTER", "PLAIN_ATTRIBUTES", "AFFINE_FALSE_TENSORS", "CUMULATIVE_OFF_BY_ONE",
                   "NONE_AS_DEFAULT", "KERAS_MOMENTUM", "BIASED_RUNNING_VAR", "CUMULATIVE_FACTOR_FLOAT32",
                   "BESSEL_WITH_BATCH_SIZE")
_TRAIN_MISTAKES = ("KERAS_MOMENTUM", "BIASED_RUNNING_VAR", "UNBIASED_NORMALIZATION", "NOT_DETACHED", "NO_COUNTER",
                   "CUMULATIVE_OFF_BY_ONE", "NONE_AS_DEFAULT", "EPS_OUTSIDE_SQRT", "FLOAT_COUNTER", "DEFAULT_EPS_1E6",
                   "CUMULATIVE_FACTOR_FLOAT32", "BESSEL_WITH_BATCH_SIZE")
_EVAL_MISTAKES = ("EVAL_BATCH_STATS", "UPDATES_IN_EVAL", "COUNTS_IN_EVAL", "KERAS_MOMENTUM", "BIASED_RUNNING_VAR",
                  "NOT_DETACHED", "EPS_OUTSIDE_SQRT", "DEFAULT_EPS_1E6", "CUMULATIVE_FACTOR_FLOAT32",
                  "BESSEL_WITH_BATCH_SIZE")
_GRADIENT_MISTAKES = ("NO_STATS_GRADIENT", "UNBIASED_NORMALIZATION", "EVAL_BATCH_STATS", "EPS_OUTSIDE_SQRT",
                      "DEFAULT_EPS_1E6", "BESSEL_WITH_BATCH_SIZE")
_RECALIBRATE_MISTAKES = ("NO_RESET", "KEEPS_MOMENTUM", "MOMENTUM_NOT_RESTORED", "LEFT_IN_TRAINING",
                         "MODE_RESTORED", "NO_TRAIN_PASS",
                         "FIRST_BATCH_CONSUMED")

# ---------------------------------------------------------------------------

# Float64 throughout: a right answer agrees with PyTorch to about 1e-13, float32 arithmetic only to about 1e-7.
_F64 = {"rtol": 1e-9, "atol": 1e-11}

_TRAIN_SHAPES_2D = [(4, 3), (2, 3), (5, 3)]
_TRAIN_SHAPES_4D = [(2, 3, 2, 2), (3, 3, 1, 2), (2, 3, 3, 1)]

# ---------------------------------------------------------------------------
# The experiment: train_vs_eval_accuracy
#
# Trained networks differ between correct implementations, so the probe returns
# what any correct one shows, with wide margins (measured over 24 seeds with two
# epochs: evaluation mode 0.89 to 0.97 at every batch size; training mode with
# batches of 2 0.58 to 0.69, at least 0.25 below evaluation mode, with batches of
# 100 within 0.07 of it; the shifted digits 0.09 to 0.36 before recalibration, at
# least 0.6 below evaluation mode, and 0.78 to 0.94 after).


def _stand_in_layers() -> dict[str, Any]:
    """For the experiment's given-run: known mistakes that do not matter to it.

    ``BatchNorm``: PyTorch's layer with eps fixed at 1e-3 whatever it is given;
    ``recalibrate_bn``: a recalibration that leaves every momentum at None.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    class StandInBatchNorm(_BatchNorm):
        def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
            super().__init__(num_features, 1e-3, momentum, affine, track_running_stats)

        def _check_input_dim(self, input: Any) -> None:
            if input.dim() not in (2, 3, 4):
                raise ValueError(f"expected 2-D, 3-D or 4-D input (got {input.dim()}-D input)")

    def recalibrate_keeping_momentum_none(model, batches):
        for layer in model.modules():
            if getattr(layer, "track_running_stats", False) and getattr(layer, "running_mean", None) is not None:
                with torch.no_grad():
                    layer.running_mean.zero_()
                    layer.running_var.fill_(1.0)
                    layer.num_batches_tracked.zero_()
                layer.momentum = None
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
        return model.eval()

    return {"BatchNorm": StandInBatchNorm, "recalibrate_bn": recalibrate_keeping_momentum_none}


def _experiment_probe(seed: int):
    def run(ns: Namespace) -> Outputs:
        result = ns["train_vs_eval_accuracy"]([2, 100], seed=student_seed(seed) % 2**31, epochs=2)
        curves = experiment_numbers(result, "train_vs_eval_accuracy", ("train_mode", "eval_mode"), 2)
        shift = experiment_numbers(result, "train_vs_eval_accuracy", ("shifted", "shifted_recalibrated"))
        train, evaluation = curves["train_mode"], curves["eval_mode"]
        before, after = float(shift["shifted"]), float(shift["shifted_recalibrated"])
        return {
            "fractions": fraction(np.concatenate([train, evaluation, [before, after]])),
            "trained": np.array(bool(evaluation[1] > 0.8)),
            "eval_constant": np.array(bool(abs(evaluation[0] - evaluation[1]) <= 0.01)),
            "train_small": np.array(bool(train[0] < evaluation[0] - 0.1)),
            "train_large": np.array(bool(abs(train[1] - evaluation[1]) <= 0.1)),
            "shift_hurts": np.array(bool(before < evaluation[1] - 0.2)),
            "recalibration_helps": np.array(bool(after > before + 0.2 and after > 0.7)),
        }

    return run


_EXPERIMENT_LABELS = {
    "fractions": "whether every accuracy is a number in [0, 1]",
    "trained": "whether the trained model reaches 0.8 in evaluation mode",
    "eval_constant": "whether the evaluation-mode accuracy is the same with batches of 2 and of 100 "
                     "(within 0.01)",
    "train_small": "whether training mode with batches of 2 is worse than evaluation mode by more than 0.1",
    "train_large": "whether training mode with batches of 100 is within 0.1 of evaluation mode",
    "shift_hurts": "whether the shifted digits lose more than 0.2 of accuracy in evaluation mode",
    "recalibration_helps": "whether recalibrating on the shifted training images gains more than 0.2 on the "
                           "shifted digits (and reaches 0.7)",
}
_EXPERIMENT = ("BatchNorm", "recalibrate_bn", "train_vs_eval_accuracy")


ASSIGNMENT = Assignment(
    name="train_eval",
    kind="torch",
    tests={
        "test_BatchNorm_structure": (
            Probe("parameters and buffers of BatchNorm(5)", ("BatchNorm",), _structure_probe(5, {}),
                  mistakes=_STATE_MISTAKES, **_F64, labels=_STRUCTURE_LABELS),
            Probe("parameters and buffers of BatchNorm(4, affine=False)", ("BatchNorm",),
                  _structure_probe(4, {"affine": False}), mistakes=_STATE_MISTAKES, **_F64, labels=_STRUCTURE_LABELS),
            Probe("parameters and buffers of BatchNorm(3, track_running_stats=False)", ("BatchNorm",),
                  _structure_probe(3, {"track_running_stats": False}), mistakes=_STATE_MISTAKES, **_F64,
                  labels=_STRUCTURE_LABELS),
            Probe("loading a state dict saved by torch (counter at 7), then evaluating and training with "
                  "momentum=None", ("BatchNorm",), _state_dict_from_torch_probe(10), mistakes=_STATE_MISTAKES, **_F64),
            Probe("the state dict after two training steps, as torch would load it", ("BatchNorm",),
                  _state_dict_to_torch_probe(20), mistakes=_STATE_MISTAKES, **_F64),
        ),
        "test_BatchNorm_train": (
            Probe("three training steps on (N, 3) batches of 4, 2 and 5", ("BatchNorm",),
                  _training_probe(30, _TRAIN_SHAPES_2D, {}), mistakes=_TRAIN_MISTAKES, **_F64,
                  labels=_step_labels(3)),
            Probe("three training steps on (N, 3, L) batches with momentum=0.3 and eps=0.1", ("BatchNorm",),
                  _training_probe(31, [(2, 3, 2), (3, 3, 1), (1, 3, 4)], {"momentum": 0.3, "eps": 0.1}),
                  mistakes=_TRAIN_MISTAKES, **_F64, labels=_step_labels(3)),
            Probe("three training steps on (N, 3, H, W) batches", ("BatchNorm",),
                  _training_probe(32, _TRAIN_SHAPES_4D, {}), mistakes=_TRAIN_MISTAKES, **_F64, labels=_step_labels(3)),
            Probe("four training steps with momentum=None (the cumulative average)", ("BatchNorm",),
                  _training_probe(33, [(3, 2), (2, 2), (6, 2), (2, 2)], {"momentum": None}),
                  mistakes=_TRAIN_MISTAKES, **_F64, labels=_step_labels(4)),
            Probe("two training steps on (N, 4, 2) batches with affine=False", ("BatchNorm",),
                  _training_probe(34, [(3, 4, 2), (2, 4, 2)], {"affine": False}),
                  mistakes=_TRAIN_MISTAKES, **_F64, labels=_step_labels(2)),
            Probe("training steps on a (3, 4) and a (2, 4, 3, 1) batch with track_running_stats=False",
                  ("BatchNorm",),
                  _training_probe(35, [(3, 4), (2, 4, 3, 1)], {"track_running_stats": False}),
                  mistakes=_TRAIN_MISTAKES, **_F64, labels=_step_labels(2)),
            Probe("training batches with a single value per channel", ("BatchNorm",), _batch_of_one_probe(36),
                  mistakes=("NO_BATCH_OF_ONE_ERROR",), **_F64, labels=_BATCH_OF_ONE_LABELS),
        ),
        "test_BatchNorm_eval": (
            Probe("evaluation mode before any training step", ("BatchNorm",),
                  _eval_probe(40, [("eval", (3, 4)), ("eval", (1, 4))], {}),
                  mistakes=_EVAL_MISTAKES, **_F64, labels=_step_labels(2)),
            Probe("training, evaluation, training, evaluation on (N, 3) batches", ("BatchNorm",),
                  _eval_probe(41, [("train", (4, 3)), ("train", (2, 3)), ("eval", (3, 3)), ("eval", (1, 3)),
                                   ("train", (3, 3)), ("eval", (2, 3))], {}),
                  mistakes=_EVAL_MISTAKES, **_F64, labels=_step_labels(6)),
            Probe("training and evaluation on (N, 2, H, W) batches with momentum=0.5 and eps=0.01",
                  ("BatchNorm",),
                  _eval_probe(42, [("train", (2, 2, 2, 3)), ("eval", (3, 2, 2, 2)), ("train", (1, 2, 3, 2)),
                                   ("eval", (1, 2, 1, 1))], {"momentum": 0.5, "eps": 0.01}),
                  mistakes=_EVAL_MISTAKES, **_F64, labels=_step_labels(4)),
            Probe("training and evaluation with momentum=None on (N, 3, L) batches", ("BatchNorm",),
                  _eval_probe(43, [("train", (2, 3, 2)), ("eval", (2, 3, 2)), ("train", (3, 3, 1)),
                                   ("eval", (1, 3, 3))], {"momentum": None}),
                  mistakes=_EVAL_MISTAKES, **_F64, labels=_step_labels(4)),
            Probe("evaluation mode with track_running_stats=False (batch statistics)", ("BatchNorm",),
                  _eval_probe(44, [("train", (3, 3)), ("eval", (4, 3)), ("eval", (2, 3, 2, 2))],
                              {"track_running_stats": False}),
                  mistakes=_EVAL_MISTAKES, **_F64, labels=_step_labels(3)),
        ),
        "test_BatchNorm_gradients": (
            Probe("gradients in training mode, (N, C) batch of 3", ("BatchNorm",),
                  _gradient_probe(50, [], "train", (3, 4), {}), mistakes=_GRADIENT_MISTAKES, **_F64,
                  labels=_GRADIENT_LABELS),
            Probe("gradients in training mode, (N, C, H, W) batch with eps=0.1", ("BatchNorm",),
                  _gradient_probe(51, [], "train", (2, 3, 2, 2), {"eps": 0.1}), mistakes=_GRADIENT_MISTAKES, **_F64,
                  labels=_GRADIENT_LABELS),
            Probe("gradients in evaluation mode after two training steps", ("BatchNorm",),
                  _gradient_probe(52, [(4, 3, 2), (2, 3, 2)], "eval", (3, 3, 2), {}),
                  mistakes=_GRADIENT_MISTAKES, **_F64, labels=_GRADIENT_LABELS),
            Probe("gradients with affine=False in training mode", ("BatchNorm",),
                  _gradient_probe(53, [], "train", (2, 3, 3), {"affine": False}), mistakes=_GRADIENT_MISTAKES, **_F64,
                  labels=_GRADIENT_LABELS),
            Probe("gradients in evaluation mode with track_running_stats=False", ("BatchNorm",),
                  _gradient_probe(54, [(3, 2)], "eval", (4, 2), {"track_running_stats": False}),
                  mistakes=_GRADIENT_MISTAKES, **_F64, labels=_GRADIENT_LABELS),
        ),
        "test_recalibrate_bn": (
            Probe("an MLP with torch's BatchNorm1d layers, batches given as a list of tensors",
                  ("recalibrate_bn",), _recalibrate_probe(60, "mlp", (4,), [8, 3, 5, 2], "tensors", "eval"),
                  mistakes=_RECALIBRATE_MISTAKES, **_F64),
            Probe("a CNN with BatchNorm2d (momentum=None, affine=False) and BatchNorm1d "
                  "(track_running_stats=False) layers, (input, label) batches from a generator",
                  ("recalibrate_bn",), _recalibrate_probe(61, "cnn", (2, 4, 4), [3, 2, 4], "tuples", "train"),
                  mistakes=_RECALIBRATE_MISTAKES, **_F64),
            Probe("an MLP built from your own BatchNorm, batches given as [input, label] lists",
                  ("BatchNorm", "recalibrate_bn"), _recalibrate_probe(62, "own", (4,), [4, 6, 2], "lists", "train"),
                  mistakes=_RECALIBRATE_MISTAKES + ("ONLY_TORCH_LAYERS",), **_F64,
                  given=with_stand_ins(_recalibrate_probe(62, "own", (4,), [4, 6, 2], "lists", "train"),
                                       lambda: {"BatchNorm": _stand_in_batchnorm()})),
        ),
        "test_train_vs_eval_accuracy": (
            Probe("a CNN of your BatchNorm layers trained for 2 epochs with a seed of its own, measured with "
                  "batches of 2 and of 100 and on shifted digits", _EXPERIMENT, _experiment_probe(70),
                  labels=_EXPERIMENT_LABELS, given=with_stand_ins(_experiment_probe(70), _stand_in_layers),
                  mistakes=("EXPERIMENT_NO_EVAL", "EXPERIMENT_OLD_DOMAIN", "EXPERIMENT_MODES_SWAPPED",
                            "EXPERIMENT_SHIFTED_IN_TRAINING_MODE")),
        ),
    },
    # torch's batch norm functions in all their spellings, its lazy layers,
    # instance norm (which with running statistics is batch norm per example)
    # and torch's own recalibration.
    library=("batch_norm", "native_batch_norm", "_native_batch_norm_legit",
             "_native_batch_norm_legit_no_training", "cudnn_batch_norm", "miopen_batch_norm", "instance_norm",
             "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "_LazyNormBase", "InstanceNorm1d",
             "InstanceNorm2d", "InstanceNorm3d", "update_bn"),
    # The layer classes too, but recalibrate_bn must find torch's BatchNorm layers
    # in a model: it may name them in isinstance, nowhere else (so not as a base
    # class of BatchNorm). Not also in `library`, which would deny them there too.
    type_checks=("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "_BatchNorm", "_NormBase"),
)
