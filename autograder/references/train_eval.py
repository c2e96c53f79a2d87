"""The PyTorch reference and the known mistakes of ``train_eval`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations. The reference is PyTorch
itself: ``BatchNorm`` is torch's ``_BatchNorm`` accepting 2-D, 3-D and 4-D
input (``BatchNorm1d`` and ``BatchNorm2d`` in one class), and
``recalibrate_bn`` is torch's own procedure (``reset_running_stats()``,
``momentum=None``, a pass in training mode under ``torch.no_grad()``).
"""

from __future__ import annotations

from autograder.checks.core import Mistake, Namespace

# ---------------------------------------------------------------------------
# The reference: PyTorch


def reference() -> Namespace:
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    class BatchNorm(_BatchNorm):
        """torch.nn.BatchNorm1d and BatchNorm2d in one class: (N, C), (N, C, L) or (N, C, H, W) input."""

        def _check_input_dim(self, input):
            if input.dim() not in (2, 3, 4):
                raise ValueError(f"expected 2D, 3D or 4D input (got {input.dim()}D input)")

    def recalibrate_bn(model, batches):
        layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        return model.eval()

    return {"BatchNorm": BatchNorm, "recalibrate_bn": recalibrate_bn}


# ---------------------------------------------------------------------------
# Known mistakes, written as a student would, to name them in feedback.


def _scratch_batchnorm(keras_momentum: bool = False, biased_running_var: bool = False,
                       unbiased_normalization: bool = False, detach: bool = True, count: bool = True,
                       count_in_eval: bool = False, eval_batch_stats: bool = False,
                       update_in_eval: bool = False, cumulative_off_by_one: bool = False,
                       none_as_default: bool = False, eps_outside_sqrt: bool = False,
                       error_on_one: bool = True, stats_gradient: bool = True, affine_none: bool = True,
                       float_counter: bool = False, buffers: bool = True, default_eps: float = 1e-5,
                       factor_float32: bool = False, bessel_batch_size: bool = False):
    """A from-scratch BatchNorm with one switch flipped (with every default: correct).

    ``buffers``: False keeps ``running_mean`` and ``running_var`` as plain float32 attributes (the counter
    stays a buffer); ``default_eps``: the default of ``eps``; ``factor_float32``: the cumulative factor
    1 / num_batches_tracked computed in float32 (``num_batches_tracked.float()``);
    ``bessel_batch_size``: the running variance corrected with N / (N - 1), N the batch size, instead of
    n / (n - 1), n the number of values per channel.
    """
    import torch

    class BatchNorm(torch.nn.Module):
        def __init__(self, num_features, eps=default_eps, momentum=0.1, affine=True, track_running_stats=True):
            super().__init__()
            self.num_features, self.eps, self.momentum = num_features, eps, momentum
            self.affine, self.track_running_stats = affine, track_running_stats
            if affine:
                self.weight = torch.nn.Parameter(torch.ones(num_features))
                self.bias = torch.nn.Parameter(torch.zeros(num_features))
            elif affine_none:
                self.weight = None
                self.bias = None
            else:
                self.register_buffer("weight", torch.ones(num_features))
                self.register_buffer("bias", torch.zeros(num_features))
            if track_running_stats:
                counter = torch.tensor(0.0) if float_counter else torch.tensor(0, dtype=torch.long)
                if buffers:
                    self.register_buffer("running_mean", torch.zeros(num_features))
                    self.register_buffer("running_var", torch.ones(num_features))
                    self.register_buffer("num_batches_tracked", counter)
                else:
                    self.running_mean = torch.zeros(num_features)
                    self.running_var = torch.ones(num_features)
                    self.register_buffer("num_batches_tracked", counter)
            else:
                self.running_mean = self.running_var = self.num_batches_tracked = None

        def forward(self, x):
            dims = [0] + list(range(2, x.dim()))
            shape = [1, -1] + [1] * (x.dim() - 2)
            use_batch = self.training or not self.track_running_stats or eval_batch_stats
            update = (self.track_running_stats and (self.training or update_in_eval)
                      and x.numel() // x.shape[1] > 1)
            if use_batch and error_on_one and x.numel() // x.shape[1] == 1:
                raise ValueError("Expected more than 1 value per channel when training")
            if self.track_running_stats and count and (self.training or count_in_eval):
                self.num_batches_tracked += 1
            if update:
                if self.momentum is None and not none_as_default:
                    t = float(self.num_batches_tracked) + (1 if cumulative_off_by_one else 0)
                    factor = 1.0 / max(t, 1.0)
                    if factor_float32:
                        factor = 1.0 / self.num_batches_tracked.float()
                else:
                    factor = 0.1 if self.momentum is None else self.momentum
                    factor = 1.0 - factor if keras_momentum else factor
                new_mean = x.mean(dim=dims)
                new_var = x.var(dim=dims, unbiased=not biased_running_var)
                if bessel_batch_size:
                    big_n = x.shape[0]
                    new_var = x.var(dim=dims, unbiased=False) * big_n / (big_n - 1)
                if detach:
                    new_mean, new_var = new_mean.detach(), new_var.detach()
                self.running_mean = (1 - factor) * self.running_mean + factor * new_mean
                self.running_var = (1 - factor) * self.running_var + factor * new_var
            if use_batch:
                mean = x.mean(dim=dims)
                var = x.var(dim=dims, unbiased=unbiased_normalization)
                if not stats_gradient:
                    mean, var = mean.detach(), var.detach()
            else:
                mean, var = self.running_mean, self.running_var
            mean, var = mean.reshape(shape), var.reshape(shape)
            std = torch.sqrt(var) + self.eps if eps_outside_sqrt else torch.sqrt(var + self.eps)
            out = (x - mean) / std
            if self.weight is not None:
                out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
            return out

    return BatchNorm


def _batchnorm_mistake(description: str, **switches) -> Mistake:
    return Mistake(description, {"BatchNorm": _scratch_batchnorm(**switches)})


KERAS_MOMENTUM = _batchnorm_mistake(
    "a Keras-style momentum: in PyTorch's convention `momentum` is the weight of the new batch, "
    "running = (1 - momentum) * running + momentum * batch_stat", keras_momentum=True)
BIASED_RUNNING_VAR = _batchnorm_mistake(
    "the biased batch variance in `running_var`: the running variance is updated with the unbiased one "
    "(n / (n - 1) times the biased variance, n values per channel)", biased_running_var=True)
UNBIASED_NORMALIZATION = _batchnorm_mistake(
    "normalizing with the unbiased variance: the batch is normalized with the biased one "
    "(only the running variance uses the unbiased one)", unbiased_normalization=True)
NOT_DETACHED = _batchnorm_mistake(
    "running statistics that keep an autograd graph: update them from detached statistics "
    "(or under torch.no_grad())", detach=False)
NO_COUNTER = _batchnorm_mistake("`num_batches_tracked` not incremented in training mode", count=False)
COUNTS_IN_EVAL = _batchnorm_mistake(
    "`num_batches_tracked` also counting evaluation-mode calls: it counts training batches only",
    count_in_eval=True)
EVAL_BATCH_STATS = _batchnorm_mistake(
    "evaluation mode normalizing with batch statistics: with track_running_stats=True it uses the "
    "running statistics", eval_batch_stats=True)
UPDATES_IN_EVAL = _batchnorm_mistake(
    "running statistics updated in evaluation mode: they change only in training mode",
    update_in_eval=True, count_in_eval=True)
CUMULATIVE_OFF_BY_ONE = _batchnorm_mistake(
    "momentum=None averaging with 1 / (count + 1): the counter is incremented first, then the factor "
    "is 1 / num_batches_tracked", cumulative_off_by_one=True)
NONE_AS_DEFAULT = _batchnorm_mistake(
    "momentum=None treated as the default momentum: it means the cumulative average, factor "
    "1 / num_batches_tracked", none_as_default=True)
EPS_OUTSIDE_SQRT = _batchnorm_mistake(
    "eps added outside the square root: the denominator is sqrt(var + eps)", eps_outside_sqrt=True)
NO_STATS_GRADIENT = _batchnorm_mistake(
    "the batch mean and variance detached in training mode: the gradient must flow through them "
    "(only the running statistics are detached)", stats_gradient=False)
AFFINE_FALSE_TENSORS = _batchnorm_mistake(
    "affine=False keeping `weight` and `bias` tensors: torch sets both to None", affine_none=False)
FLOAT_COUNTER = _batchnorm_mistake(
    "a floating-point `num_batches_tracked`: it is a 0-dimensional torch.long tensor", float_counter=True)
PLAIN_ATTRIBUTES = _batchnorm_mistake(
    "running statistics stored as plain attributes: register them with register_buffer so that they "
    "are in the state dict and follow .double() and .to()", buffers=False)
DEFAULT_EPS_1E6 = _batchnorm_mistake(
    "a default eps of 1e-6: the default is eps=1e-5, as in torch.nn.BatchNorm1d", default_eps=1e-6)
CUMULATIVE_FACTOR_FLOAT32 = _batchnorm_mistake(
    "the cumulative factor 1 / num_batches_tracked computed in float32 (.float()): the module is float64, "
    "keep the factor a Python float (1.0 / num_batches_tracked.item())", factor_float32=True)
BESSEL_WITH_BATCH_SIZE = _batchnorm_mistake(
    "the running variance corrected with N / (N - 1), N the batch size: the correction counts the values "
    "per channel, n = N * L or N * H * W, so it is n / (n - 1)", bessel_batch_size=True)
NO_BATCH_OF_ONE_ERROR = _batchnorm_mistake(
    "no error for a training batch with one value per channel: raise ValueError", error_on_one=False)


def _wrong_recalibrate(reset_counter: bool = True, cumulative: bool = True, restore: bool = True,
                       final_eval: bool = True, train_pass: bool = True, restore_mode: bool = False,
                       own_layers: bool = True, peek_first: bool = False):
    """torch's recalibration with one step wrong.

    ``peek_first``: ``next(iter(batches))`` looks at the first batch before the loop, which consumes it
    when ``batches`` is a generator.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    def recalibrate_bn(model, batches):
        kinds = (_BatchNorm, torch.nn.Module) if own_layers else (_BatchNorm,)
        layers = [m for m in model.modules() if isinstance(m, kinds) and hasattr(m, "running_mean")
                  and hasattr(m, "momentum")]
        momenta = [layer.momentum for layer in layers]
        was_training = model.training
        for layer in layers:
            if layer.running_mean is not None:
                layer.running_mean.zero_()
                layer.running_var.fill_(1.0)
                if reset_counter:
                    layer.num_batches_tracked.zero_()
            if cumulative:
                layer.momentum = None
        model.train(train_pass)
        if peek_first:
            next(iter(batches))
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
        if restore:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
        if restore_mode:
            model.train(was_training)
        elif final_eval:
            model.eval()
        return model

    return recalibrate_bn


def _recalibrate_mistake(description: str, **switches) -> Mistake:
    return Mistake(description, {"recalibrate_bn": _wrong_recalibrate(**switches)})


NO_RESET = _recalibrate_mistake(
    "the counters not reset: with momentum=None the average must start afresh; reset "
    "`num_batches_tracked` (reset_running_stats() does)", reset_counter=False)
KEEPS_MOMENTUM = _recalibrate_mistake(
    "the running statistics updated with each layer's own momentum: set momentum=None during the pass "
    "so that every batch counts equally", cumulative=False)
MOMENTUM_NOT_RESTORED = _recalibrate_mistake(
    "momentum left at None: restore each layer's momentum after the pass", restore=False)
LEFT_IN_TRAINING = _recalibrate_mistake(
    "the model left in training mode (or in the mode it had before): recalibrate_bn returns the model "
    "in evaluation mode", final_eval=False)
MODE_RESTORED = _recalibrate_mistake(
    "the model's previous mode restored: the contract asks for evaluation mode afterwards", restore_mode=True)
NO_TRAIN_PASS = _recalibrate_mistake(
    "the pass run in evaluation mode: BatchNorm layers update their statistics only in training mode",
    train_pass=False)
FIRST_BATCH_CONSUMED = _recalibrate_mistake(
    "the first batch lost: next(iter(batches)) consumes it from a generator; read batches once, in the loop",
    peek_first=True)
ONLY_TORCH_LAYERS = Mistake(
    "only torch's BatchNorm layers recalibrated: layers of your own BatchNorm class must be too",
    {"recalibrate_bn": _wrong_recalibrate(own_layers=False), "BatchNorm": _scratch_batchnorm()})

MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}


# ---------------------------------------------------------------------------
# The experiment (added with it): PyTorch's layers in the notebook's own CNN and training loop

from autograder.references.setup_cells import one_thread  # noqa: E402

_reference_of_the_layer = reference


def reference() -> Namespace:  # noqa: F811 - extends the reference above
    namespace = dict(_reference_of_the_layer())
    namespace["train_vs_eval_accuracy"] = _reference_train_vs_eval_accuracy
    return namespace


@one_thread
def _reference_train_vs_eval_accuracy(batch_sizes, seed=0, epochs=3, *, evaluates=True, new_domain=True,
                                      swapped=False, shifted_mode="eval"):
    """The experiment with PyTorch's layers (the keywords make its known mistakes)."""
    import copy

    from autograder.references.setup_cells import setup_namespace

    h = setup_namespace("train_eval")
    layers = _reference_of_the_layer()
    model = h["train_model"](h["make_cnn"](layers["BatchNorm"], seed=seed), h["X_TRAIN"], h["Y_TRAIN"],
                             epochs=epochs, seed=seed)
    model.train(not evaluates)
    train_mode = [h["accuracy"](copy.deepcopy(model).train(), h["X_VAL"], h["Y_VAL"], b) for b in batch_sizes]
    eval_mode = [h["accuracy"](model, h["X_VAL"], h["Y_VAL"], b) for b in batch_sizes]
    shifted = h["shift_domain"](h["X_VAL"])
    source = h["shift_domain"](h["X_TRAIN"]) if new_domain else h["X_TRAIN"]
    adapted = layers["recalibrate_bn"](copy.deepcopy(model), list(source.split(64)))
    if swapped:
        train_mode, eval_mode = eval_mode, train_mode
    measured = copy.deepcopy(model).train() if shifted_mode == "train" else model
    return {"batch_sizes": list(batch_sizes), "train_mode": train_mode, "eval_mode": eval_mode,
            "shifted": h["accuracy"](measured, shifted, h["Y_VAL"]),
            "shifted_recalibrated": h["accuracy"](adapted, shifted, h["Y_VAL"])}


import functools  # noqa: E402

EXPERIMENT_NO_EVAL = Mistake(
    "the model never put in evaluation mode: its evaluation-mode accuracy used batch statistics; call "
    "model.eval() after training",
    {"train_vs_eval_accuracy": functools.partial(_reference_train_vs_eval_accuracy, evaluates=False)})
EXPERIMENT_OLD_DOMAIN = Mistake(
    "the model recalibrated on the original training images: recalibrate on the shifted ones, "
    "shift_domain(X_TRAIN), to adapt to the new scanner",
    {"train_vs_eval_accuracy": functools.partial(_reference_train_vs_eval_accuracy, new_domain=False)})
EXPERIMENT_MODES_SWAPPED = Mistake(
    "the training-mode and evaluation-mode accuracies swapped",
    {"train_vs_eval_accuracy": functools.partial(_reference_train_vs_eval_accuracy, swapped=True)})
EXPERIMENT_SHIFTED_IN_TRAINING_MODE = Mistake(
    "the shifted digits measured in training mode before recalibration: measure them in evaluation mode, "
    "with the original running statistics",
    {"train_vs_eval_accuracy": functools.partial(_reference_train_vs_eval_accuracy, shifted_mode="train")})
MISTAKES.update(EXPERIMENT_NO_EVAL=EXPERIMENT_NO_EVAL, EXPERIMENT_OLD_DOMAIN=EXPERIMENT_OLD_DOMAIN,
                EXPERIMENT_MODES_SWAPPED=EXPERIMENT_MODES_SWAPPED,
                EXPERIMENT_SHIFTED_IN_TRAINING_MODE=EXPERIMENT_SHIFTED_IN_TRAINING_MODE)
