"""Hidden tests of ``pitfalls``: folding BatchNorm, merging shard statistics, frozen BatchNorm.

The references (``autograder/references/pitfalls.py``, grader only) are
PyTorch's own fusion for ``fuse_conv_bn``, the statistics of the full batch for
``merge_batch_stats`` (every probe builds its per-shard statistics from real
shards of data) and, for ``freeze_batchnorm``, which PyTorch lacks, a frozen
model that keeps every BatchNorm layer a BatchNorm layer. The inputs are drawn
per student.

The probes are chosen so that the usual mistakes change their outputs:

- convolutions without bias, with stride, padding, dilation, non-square kernels,
  groups, depthwise and a non-zero padding mode, BatchNorm with ``affine=False``,
  a large ``eps``, tiny variances and negative scales;
- shards of unequal sizes drawn from different distributions (so equal weights
  and averaged variances are both wrong), a shard of one, integer and float
  counts, and float32 shards whose mean is large compared to their spread (so
  the sum-of-squares shortcut cancels catastrophically);
- fine-tuning loops that call ``model.train()`` every epoch, with SGD (momentum,
  weight decay) or AdamW over all parameters, an optimizer created before the
  freeze that already holds gradients and momentum, ``zero_grad(set_to_none=False)``,
  nested modules, ``BatchNorm1d`` and ``BatchNorm2d`` and ``affine=False`` layers,
  and state dicts and deep copies of the frozen model.

Every probe runs in float64 except the float32 merge probe.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from autograder.checks.core import (Assignment, Namespace, Outputs, Probe, ProbeError, as_array,
                                   student_generator, student_seed)
from autograder.checks.core import experiment_numbers, raised, with_stand_ins

# ---------------------------------------------------------------------------
# fuse_conv_bn


def _conv_and_bn(seed: int, conv_options: dict[str, Any], bn_options: dict[str, Any]):
    """A float64 Conv2d and an eval-mode BatchNorm2d with trained-looking statistics."""
    import torch

    bn_options = dict(bn_options)
    spread = bn_options.pop("_spread", 1.0)  # scale of the running variances
    torch.manual_seed(student_seed(seed))
    conv = torch.nn.Conv2d(**conv_options).double().eval()
    channels = conv_options["out_channels"]
    bn = torch.nn.BatchNorm2d(channels, **bn_options).double().eval()
    generator = student_generator(seed + 1)
    with torch.no_grad():
        bn.running_mean.copy_(2.0 * torch.randn(channels, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(spread * (0.2 + 2.0 * torch.rand(channels, generator=generator,
                                                                 dtype=torch.float64)))
        if bn.weight is not None:
            # some negative scales: a fused weight must keep their sign
            bn.weight.copy_(torch.randn(channels, generator=generator, dtype=torch.float64) * 1.5)
            bn.bias.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    return conv, bn


def _state(module: Any) -> dict[str, Any]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _same_state(before: dict[str, Any], module: Any) -> bool:
    after = module.state_dict()
    import torch

    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


_CONV_SETTINGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                  "groups", "padding_mode")


def _fuse_probe(seed: int, conv_options: dict[str, Any], bn_options: dict[str, Any],
                x_shape: tuple[int, int, int, int]):
    def run(ns: Namespace) -> Outputs:
        import torch

        conv, bn = _conv_and_bn(seed, dict(conv_options), dict(bn_options))
        conv_state, bn_state = _state(conv), _state(bn)
        fused = ns["fuse_conv_bn"](conv, bn)
        if not isinstance(fused, torch.nn.Conv2d):
            raise ProbeError(f"fuse_conv_bn returned a {type(fused).__name__}, not a torch.nn.Conv2d")
        x = torch.randn(x_shape, generator=student_generator(seed + 2), dtype=torch.float64)
        with torch.no_grad():
            out = fused(x)
        if fused.bias is None:
            raise ProbeError("the fused convolution has no bias: BatchNorm's shift needs one")
        parameters = dict(fused.named_parameters())
        return {
            "out": as_array(out),
            "weight": as_array(fused.weight),
            "bias": as_array(fused.bias),
            "settings_kept": np.array(all(getattr(fused, s) == getattr(conv, s) for s in _CONV_SETTINGS)),
            "parameters": np.array(sorted(parameters) == ["bias", "weight"] and all(
                isinstance(p, torch.nn.Parameter) for p in parameters.values())),
            "new_module": np.array(fused is not conv and fused.weight.data_ptr() != conv.weight.data_ptr()),
            "conv_unchanged": np.array(_same_state(conv_state, conv) and not conv.training),
            "bn_unchanged": np.array(_same_state(bn_state, bn) and not bn.training),
        }

    return run


_FUSE_LABELS = {
    "out": "the fused convolution's output",
    "weight": "the fused weight",
    "bias": "the fused bias",
    "settings_kept": "whether the fused convolution keeps the convolution's settings (channels, kernel size, "
                     "stride, padding, dilation, groups, padding_mode)",
    "parameters": "whether the fused weight and bias are the module's two torch.nn.Parameters",
    "new_module": "whether the result is a new convolution that shares no weight tensor with `conv`",
    "conv_unchanged": "whether `conv` is left unchanged",
    "bn_unchanged": "whether `bn` is left unchanged (statistics, parameters and mode)",
}


def _conv(in_channels: int, out_channels: int, kernel_size: Any, **options: Any) -> dict[str, Any]:
    return dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, **options)


# ---------------------------------------------------------------------------
# merge_batch_stats


def _shards(seed: int, counts: list[int], channels: int, offset: float, spread: float, dtype: str):
    """Shards of different sizes and distributions, with their biased statistics."""
    import torch

    generator = student_generator(seed)
    data = []
    for k, n in enumerate(counts):
        centre = offset + spread * torch.randn(channels, generator=generator, dtype=torch.float64)
        scale = spread * (0.3 + torch.rand(channels, generator=generator, dtype=torch.float64))
        data.append(centre + scale * torch.randn(n, channels, generator=generator, dtype=torch.float64))
    torch_dtype = getattr(torch, dtype)
    data = [d.to(torch_dtype) for d in data]
    means = torch.stack([d.double().mean(0) for d in data]).to(torch_dtype)
    variances = torch.stack([d.double().var(0, unbiased=False) for d in data]).to(torch_dtype)
    return data, means, variances


def _merge_probe(seed: int, counts: list[int], channels: int, counts_dtype: str = "int64",
                 offset: float = 0.0, spread: float = 1.0, dtype: str = "float64"):
    def run(ns: Namespace) -> Outputs:
        import torch

        _, means, variances = _shards(seed, counts, channels, offset, spread, dtype)
        counts_tensor = torch.tensor(counts, dtype=getattr(torch, counts_dtype))
        inputs = (means.clone(), variances.clone(), counts_tensor.clone())
        result = ns["merge_batch_stats"](means, variances, counts_tensor)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProbeError(f"merge_batch_stats should return a tuple (mean, var), got {type(result).__name__}")
        mean, var = result
        unchanged = all(torch.equal(a, b) for a, b in zip(inputs, (means, variances, counts_tensor)))
        return {"mean": as_array(mean), "var": as_array(var), "inputs_unchanged": np.array(unchanged)}

    return run


_MERGE_LABELS = {"mean": "the merged mean", "var": "the merged variance",
                 "inputs_unchanged": "whether `means`, `variances` and `counts` are left unchanged"}


# ---------------------------------------------------------------------------
# freeze_batchnorm


def _make_net(seed: int, affine_last: bool = True):
    """A small float64 CNN with BatchNorm2d and BatchNorm1d layers, one of them nested."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    torch.manual_seed(student_seed(seed))
    model = nn.Sequential(
        Block(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, affine=affine_last), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 3 * 3, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 3),
    ).double()
    generator = student_generator(seed + 1)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                c = layer.num_features
                layer.running_mean.copy_(torch.randn(c, generator=generator, dtype=torch.float64))
                layer.running_var.copy_(0.5 + torch.rand(c, generator=generator, dtype=torch.float64))
                layer.num_batches_tracked.fill_(100)
                if layer.affine:
                    layer.weight.copy_(0.5 + torch.rand(c, generator=generator, dtype=torch.float64))
                    layer.bias.copy_(0.5 * torch.randn(c, generator=generator, dtype=torch.float64))
    return model


def _data(seed: int, n: int):
    """Inputs shifted and scaled away from the running statistics, and labels."""
    import torch

    generator = student_generator(seed)
    x = 2.0 + 3.0 * torch.randn(n, 1, 6, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=generator)
    return x, y


def _bn_names(model) -> list[str]:
    from torch import nn

    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _snapshot(model, names: list[str]) -> Outputs:
    """Three flat arrays: the BatchNorm layers' running statistics, their affine
    parameters, and every other parameter (in a fixed order)."""
    import torch

    modules = dict(model.named_modules())
    stats, affine = [], []
    for name in names:
        layer = modules.get(name)
        if layer is None:
            raise ProbeError(f"the frozen model has no layer named {name!r} any more: keep the BatchNorm "
                             "layers where they are")
        for attribute, bucket in (("running_mean", stats), ("running_var", stats), ("weight", affine),
                                  ("bias", affine)):
            value = getattr(layer, attribute, None)
            if value is not None:
                bucket.append(value.detach().reshape(-1))
    others = [p.detach().reshape(-1) for name, p in model.named_parameters()
              if name.rpartition(".")[0] not in names]
    return {"bn_statistics": as_array(torch.cat(stats)), "bn_affine": as_array(torch.cat(affine)),
            "other_parameters": as_array(torch.cat(others))}


def _train(model, optimizer, x, y, epochs: int, batch: int, set_to_none: bool = True) -> None:
    import torch

    for _ in range(epochs):
        model.train()  # as every training loop does, each epoch
        for start in range(0, len(x), batch):
            loss = torch.nn.functional.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
            optimizer.zero_grad(set_to_none=set_to_none)
            loss.backward()
            optimizer.step()
        model.eval()   # a validation pass at the end of the epoch
        with torch.no_grad():
            model(x[:4])


def _freeze_probe(seed: int, optimizer_name: str, before_freeze: int = 0, set_to_none: bool = True,
                  affine_last: bool = True):
    """Fine-tune a frozen model; ``before_freeze`` training steps happen before the freeze."""

    def run(ns: Namespace) -> Outputs:
        import torch

        model = _make_net(seed, affine_last)
        names = _bn_names(model)
        x, y = _data(seed + 2, 24)
        x_eval, _ = _data(seed + 3, 5)

        def optimizer_for(params):
            if optimizer_name == "sgd":
                return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.1)
            return torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)

        optimizer = None
        if before_freeze:
            optimizer = optimizer_for(model.parameters())
            _train(model, optimizer, x[:8 * before_freeze], y[:8 * before_freeze], 1, 8, set_to_none)
        model.eval()
        with torch.no_grad():
            eval_before = model(x_eval)
        frozen = ns["freeze_batchnorm"](model)
        if frozen is not model:
            raise ProbeError("freeze_batchnorm should freeze the model in place and return it")
        with torch.no_grad():
            frozen.eval()
            eval_after = frozen(x_eval)
        if not all(p.requires_grad for n, p in frozen.named_parameters() if n.rpartition(".")[0] not in names):
            raise ProbeError("freeze_batchnorm switched off the gradients of layers that are not BatchNorm: "
                             "the rest of the model must keep training")
        if optimizer is None:
            optimizer = optimizer_for(frozen.parameters())
        _train(frozen, optimizer, x, y, 3, 8, set_to_none)
        frozen.train()
        with torch.no_grad():
            train_mode = frozen(x_eval)
        end = _snapshot(frozen, names)
        return {"eval_before": as_array(eval_before), "eval_after_freeze": as_array(eval_after),
                "train_mode_output": as_array(train_mode), **end}

    return run


def _checkpoint_probe(seed: int):
    """State dicts load both ways, and a deep copy of the frozen model stays frozen."""

    def run(ns: Namespace) -> Outputs:
        import torch

        model = _make_net(seed)
        names = _bn_names(model)
        saved = copy.deepcopy(model.state_dict())
        frozen = ns["freeze_batchnorm"](model)
        keys_kept = list(frozen.state_dict()) == list(saved)
        problems = []
        try:
            frozen.load_state_dict(saved)  # an old checkpoint into the frozen model
        except Exception as error:  # noqa: BLE001 - reported as an output
            problems.append(type(error).__name__)
        fresh = _make_net(seed + 10)
        try:
            fresh.load_state_dict(frozen.state_dict())  # and back into a plain model
        except Exception as error:  # noqa: BLE001
            problems.append(type(error).__name__)
        twin = copy.deepcopy(frozen)
        x, y = _data(seed + 2, 16)
        optimizer = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)
        _train(twin, optimizer, x, y, 2, 8)
        end = _snapshot(twin, names)
        return {"state_dict_keys_kept": np.array(keys_kept),
                "checkpoints_load_both_ways": np.array(not problems),
                "copy_bn_statistics": end["bn_statistics"], "copy_bn_affine": end["bn_affine"]}

    return run


_FREEZE_LABELS = {
    "eval_before": "the eval-mode output before freezing",
    "eval_after_freeze": "the eval-mode output right after freezing (it must not change)",
    "train_mode_output": "the output after model.train() (a frozen model normalizes with its running "
                         "statistics in every mode)",
    "bn_statistics": "the vector of all BatchNorm running statistics after fine-tuning",
    "bn_affine": "the vector of all BatchNorm weights and biases after fine-tuning",
    "other_parameters": "the vector of the other layers' parameters (which must keep training) after fine-tuning",
    "copy_bn_statistics": "the vector of all BatchNorm running statistics in a deep copy of the frozen model, "
                          "after training the copy",
    "copy_bn_affine": "the vector of all BatchNorm weights and biases in a deep copy of the frozen model, "
                      "after training the copy",
    "state_dict_keys_kept": "whether the state dict keeps its keys",
    "checkpoints_load_both_ways": "whether a checkpoint saved before freezing loads into the frozen model "
                                  "and back into a plain one (strict loading)",
}


# ---------------------------------------------------------------------------
# Known mistakes each probe may name (defined in references/pitfalls.py)

# Float64 throughout (but the float32 merge probe): a right answer agrees with PyTorch to about 1e-14,
# float32 arithmetic only to about 1e-7. The float32 merge probe allows 16 ulps of the means (about 1000)
# and 1e-7 on the variances (about 0.01), 15 times what a right float32 merge is off by.
_F64 = {"rtol": 1e-9, "atol": 1e-11}

_FUSE_MISTAKES = ("FUSE_NO_EPS", "FUSE_NO_SQRT", "FUSE_DROPS_CONV_BIAS", "FUSE_UNSCALED_CONV_BIAS", "FUSE_NO_MEAN",
                  "FUSE_NO_AFFINE",
                  "FUSE_FIXED_EPS", "FUSE_FLOAT32", "FUSE_IN_PLACE", "FUSE_LOSES_SETTINGS")
_MERGE_MISTAKES = ("MERGE_EQUAL_WEIGHTS", "MERGE_AVERAGE_VARIANCES", "MERGE_EQUAL_WEIGHT_MEANS",
                   "MERGE_SUM_OF_SQUARES", "MERGE_UNBIASED",
                   "MERGE_EQUAL_WEIGHT_BETWEEN", "MERGE_IN_PLACE", "MERGE_LAST_SHARD_DROPPED")
_FREEZE_MISTAKES = ("FREEZE_REQUIRES_GRAD_ONLY", "FREEZE_EVAL_ONLY", "FREEZE_MOMENTUM_ZERO", "FREEZE_STALE_GRADIENTS",
                    "FREEZE_NO_REQUIRES_GRAD", "FREEZE_ONLY_2D",
                    "FREEZE_BIAS_GRAD_KEPT")

# ---------------------------------------------------------------------------
# The experiment: folding_check
#
# Trained networks differ between correct implementations; what every correct
# one shows (measured over 24 seeds, one epoch: accuracy 0.86 or more, folded
# and unfolded predictions identical, logits within 1e-5) is checked, with wide
# margins. The times depend on the machine and are only checked to be numbers.


def _stand_in_fuse() -> dict[str, Any]:
    """For the experiment's given-run: a fusion whose weight and bias are buffers, not Parameters (a known
    mistake, of no consequence to the experiment)."""
    import torch

    def fuse_conv_bn(conv, bn):
        fused = copy.deepcopy(conv)
        with torch.no_grad():
            scale = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.bias is not None else 0.0) - bn.running_mean * scale
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            weight = conv.weight * scale.reshape(-1, 1, 1, 1)
            del fused.weight
            del fused.bias
            fused.register_buffer("weight", weight.detach().clone())
            fused.register_buffer("bias", (bias * scale + shift).detach().clone())
        return fused

    return {"fuse_conv_bn": fuse_conv_bn}


def _folding_probe(seed: int):
    def run(ns: Namespace) -> Outputs:
        result = ns["folding_check"](seed=student_seed(seed) % 2**31, epochs=1, repeats=2)
        keys = ("accuracy", "fused_accuracy", "max_difference", "time_ms", "fused_time_ms", "batchnorm_layers")
        n = {key: float(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size == 1 else float("nan")
             for key, value in experiment_numbers(result, "folding_check", keys).items()}
        return {
            "no_batchnorm_left": np.array(n["batchnorm_layers"] == 0),
            "trained": np.array(bool(n["accuracy"] > 0.7)),
            "same_accuracy": np.array(bool(abs(n["fused_accuracy"] - n["accuracy"]) <= 0.0021)),
            "same_logits": np.array(bool(n["max_difference"] < 1e-3)),
            "times": np.array(bool(np.isfinite(n["time_ms"]) and np.isfinite(n["fused_time_ms"])
                                   and n["time_ms"] > 0 and n["fused_time_ms"] > 0)),
        }

    return run


_FOLDING_LABELS = {
    "no_batchnorm_left": "whether the folded model has no BatchNorm layer left",
    "trained": "whether the trained CNN reaches 0.7 on the validation digits",
    "same_accuracy": "whether folding leaves the accuracy unchanged",
    "same_logits": "whether the folded model's logits equal the trained model's in evaluation mode (within 1e-3)",
    "times": "whether both times are positive numbers",
}


# ---------------------------------------------------------------------------
# The bug hunt: fine_tune_and_serve
#
# Each probe exercises one of the three bugs alone: serving requests of one
# example and of several (48 training examples, no batch of one), fine-tuning with
# nothing to serve (the backbone must not change, the head must train), and 49
# training examples (a last batch of one); 6 epochs, after which a correct version
# reaches 0.73 or more on its training examples (40 seeds).


def _pretrained_pair(seed: int):
    """A "pretrained" backbone with BatchNorm1d and running statistics of its own, and a new head."""
    import torch
    from torch import nn

    torch.manual_seed(student_seed(seed))
    backbone = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
    generator = student_generator(seed + 1)
    with torch.no_grad():
        backbone[1].running_mean.copy_(torch.randn(16, generator=generator))
        backbone[1].running_var.copy_(0.5 + torch.rand(16, generator=generator))
        backbone[1].num_batches_tracked.fill_(1000)
    head = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    return backbone, head


def _clusters(seed: int, n: int):
    """n examples of 8 features in 3 well separated Gaussian classes."""
    import torch

    generator = student_generator(seed)
    centres = 3.0 * torch.randn(3, 8, generator=generator) + 1.0
    y = torch.randperm(n, generator=generator) % 3
    return centres[y] + torch.randn(n, 8, generator=generator), y


def _serve_probe(seed: int, n_train: int, request_sizes: tuple[int, ...], check: str):
    """``check``: "serving" (answers per request), "backbone" (what fine-tuning changed) or "training" (no error)."""

    def run(ns: Namespace) -> Outputs:
        import torch
        from torch import nn

        backbone, head = _pretrained_pair(seed)
        x, y = _clusters(seed + 2, n_train)
        served, _ = _clusters(seed + 3, sum(request_sizes))
        requests = list(served.split(list(request_sizes))) if request_sizes else []
        backbone_before = {k: v.clone() for k, v in backbone.state_dict().items()}
        head_statistics = head[1].running_mean.clone()
        try:
            predictions = ns["fine_tune_and_serve"](backbone, head, x, y, requests, epochs=6)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - the type is the output
            return {"raised": raised(error)}
        if not isinstance(predictions, (list, tuple)) or len(predictions) != len(requests):
            raise ProbeError("fine_tune_and_serve should return a list with one tensor of predictions per request")
        outputs: Outputs = {"raised": np.array("nothing")}
        model = nn.Sequential(backbone, head).eval()
        if check == "serving":
            with torch.no_grad():
                expected = model(served).argmax(dim=1)
            got = torch.cat([torch.as_tensor(p).reshape(-1) for p in predictions])
            outputs["consistent"] = np.array(bool(got.shape == expected.shape and torch.equal(got.long(), expected)))
        if check == "backbone":
            outputs["backbone_unchanged"] = np.array(all(torch.equal(backbone.state_dict()[k], v)
                                                         for k, v in backbone_before.items()))
        if check in ("backbone", "training"):
            with torch.no_grad():
                accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
            outputs["head_statistics_learned"] = np.array(not torch.equal(head[1].running_mean, head_statistics))
            outputs["head_trained"] = np.array(bool(accuracy > 0.6))
        return outputs

    return run


def _stand_in_freeze() -> dict[str, Any]:
    """For the bug hunt's given-run: a freeze that keeps stale gradients (a known mistake, of no consequence
    when the optimizer does not hold the frozen layers)."""
    import functools

    from torch import nn

    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    def freeze_batchnorm(model):
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.requires_grad_(False)
                layer.train = functools.partial(stay_in_eval, layer)
                layer.eval()
        return model

    return {"freeze_batchnorm": freeze_batchnorm}


_SERVE_LABELS = {
    "raised": "the exception raised (\"nothing\" when none)",
    "consistent": "whether the served predictions equal the evaluation-mode predictions of the fine-tuned model "
                  "(the same whatever the other examples of a request)",
    "backbone_unchanged": "whether the backbone's weights and running statistics are unchanged by fine-tuning",
    "head_statistics_learned": "whether the head's BatchNorm layer learned running statistics during fine-tuning",
    "head_trained": "whether the fine-tuned model reaches 0.6 on its training examples (6 epochs; chance is 0.33)",
}
_BUG_MISTAKES = ("BUG_SERVED_IN_TRAINING_MODE", "BUG_BACKBONE_STATISTICS_MOVE", "BUG_BATCH_OF_ONE",
                 "BUG_HEAD_FROZEN_TOO")
_BUG = ("freeze_batchnorm", "fine_tune_and_serve")


ASSIGNMENT = Assignment(
    name="pitfalls",
    kind="torch",
    tests={
        "test_fuse_conv_bn": (
            Probe("a 3x3 convolution with bias and padding 1", ("fuse_conv_bn",),
                  _fuse_probe(10, _conv(3, 5, 3, padding=1), {}, (2, 3, 6, 7)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
            Probe("a convolution without bias, non-square kernel, stride 2, padding 2, dilation 2",
                  ("fuse_conv_bn",),
                  _fuse_probe(11, _conv(2, 4, (3, 2), stride=2, padding=2, dilation=2, bias=False), {},
                              (3, 2, 9, 8)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
            Probe("a grouped convolution (groups=2) with bias", ("fuse_conv_bn",),
                  _fuse_probe(12, _conv(4, 6, 3, groups=2, padding=1), {}, (2, 4, 5, 5)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
            Probe("a depthwise convolution without bias and reflect padding", ("fuse_conv_bn",),
                  _fuse_probe(13, _conv(4, 4, 3, groups=4, padding=1, padding_mode="reflect", bias=False), {},
                              (2, 4, 5, 6)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
            Probe("BatchNorm with affine=False (its weight and bias are None)", ("fuse_conv_bn",),
                  _fuse_probe(14, _conv(3, 4, 1), {"affine": False}, (2, 3, 4, 4)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
            Probe("BatchNorm with eps=0.5 and tiny running variances", ("fuse_conv_bn",),
                  _fuse_probe(15, _conv(2, 3, 3, bias=False), {"eps": 0.5, "_spread": 1e-3}, (2, 2, 5, 5)),
                  mistakes=_FUSE_MISTAKES, labels=_FUSE_LABELS, **_F64),
        ),
        "test_merge_batch_stats": (
            Probe("four shards of 3, 8, 1 and 20 samples from different distributions", ("merge_batch_stats",),
                  _merge_probe(20, [3, 8, 1, 20], 5), mistakes=_MERGE_MISTAKES, labels=_MERGE_LABELS, **_F64),
            Probe("three shards of 6 samples each (equal sizes)", ("merge_batch_stats",),
                  _merge_probe(21, [6, 6, 6], 4), mistakes=_MERGE_MISTAKES, labels=_MERGE_LABELS, **_F64),
            Probe("two shards of 2 and 30 samples, counts as a float tensor", ("merge_batch_stats",),
                  _merge_probe(22, [2, 30], 3, counts_dtype="float64"), mistakes=_MERGE_MISTAKES,
                  labels=_MERGE_LABELS, **_F64),
            Probe("a single shard of 7 samples", ("merge_batch_stats",),
                  _merge_probe(23, [7], 6), mistakes=_MERGE_MISTAKES, labels=_MERGE_LABELS, **_F64),
            Probe("float32 shards whose means (about 1000) are large compared to their spread",
                  ("merge_batch_stats",),
                  _merge_probe(24, [16, 48, 32, 8], 6, offset=1000.0, spread=0.1, dtype="float32"),
                  rtol=1e-6, atol=1e-7, mistakes=_MERGE_MISTAKES, labels=_MERGE_LABELS),
        ),
        "test_freeze_batchnorm": (
            Probe("fine-tuning with SGD (momentum, weight decay) over all parameters, model.train() "
                           "every epoch", ("freeze_batchnorm",), _freeze_probe(30, "sgd"),
                           mistakes=_FREEZE_MISTAKES, labels=_FREEZE_LABELS, **_F64),
            Probe("fine-tuning with AdamW (weight decay), a BatchNorm2d with affine=False",
                           ("freeze_batchnorm",), _freeze_probe(31, "adamw", affine_last=False),
                           mistakes=_FREEZE_MISTAKES, labels=_FREEZE_LABELS, **_F64),
            Probe("an optimizer created before the freeze, after two training steps, with "
                           "zero_grad(set_to_none=False)", ("freeze_batchnorm",),
                           _freeze_probe(32, "sgd", before_freeze=2, set_to_none=False),
                           mistakes=_FREEZE_MISTAKES, labels=_FREEZE_LABELS, **_F64),
            Probe("state dicts and a deep copy of the frozen model", ("freeze_batchnorm",),
                           _checkpoint_probe(33), mistakes=_FREEZE_MISTAKES, labels=_FREEZE_LABELS, **_F64),
        ),
        "test_folding_check": (
            Probe("a CNN trained for one epoch with a seed of its own, folded", ("fuse_conv_bn", "folding_check"),
                  _folding_probe(70), labels=_FOLDING_LABELS, mistakes=("FOLDING_TRAIN_MODE", "FOLDING_BN_KEPT"),
                  given=with_stand_ins(_folding_probe(70), _stand_in_fuse)),
        ),
        "test_fine_tune_and_serve": (
            Probe("serving requests of 1, 4, 1 and 5 examples after fine-tuning on 48", _BUG,
                  _serve_probe(80, 48, (1, 4, 1, 5), "serving"), labels=_SERVE_LABELS, mistakes=_BUG_MISTAKES,
                  given=with_stand_ins(_serve_probe(80, 48, (1, 4, 1, 5), "serving"), _stand_in_freeze)),
            Probe("fine-tuning on 48 examples, nothing to serve: the backbone and the head afterwards", _BUG,
                  _serve_probe(81, 48, (), "backbone"), labels=_SERVE_LABELS, mistakes=_BUG_MISTAKES,
                  given=with_stand_ins(_serve_probe(81, 48, (), "backbone"), _stand_in_freeze)),
            Probe("fine-tuning on 49 examples (a last batch of one)", _BUG,
                  _serve_probe(82, 49, (3, 2), "training"), labels=_SERVE_LABELS, mistakes=_BUG_MISTAKES,
                  given=with_stand_ins(_serve_probe(82, 49, (3, 2), "training"), _stand_in_freeze)),
        ),
    },
    # torch's fusion of a convolution with a BatchNorm (torch.nn.utils.fusion, the
    # quantization fusers, torch.fx's fuse) and its merging of per-device batch
    # statistics (what SyncBatchNorm uses). fuse_conv_bn is also the graded
    # name itself (torch.ao.quantization.fuse_conv_bn).
    library=("fusion", "fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_modules", "fuse_conv_bn",
             "fuser_method_mappings", "fuse", "batch_norm_gather_stats_with_counts", "batch_norm_gather_stats"),
    # freeze_batchnorm must find every BatchNorm layer of a model: it may name
    # their classes in isinstance, nowhere else (which also keeps SyncBatchNorm,
    # whose forward merges per-device statistics, out of merge_batch_stats). Not
    # also in `library`, which would deny them inside isinstance too.
    type_checks=("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "_BatchNorm", "_NormBase"),
)
