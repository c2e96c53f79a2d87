"""Wrong implementations of the train_eval exercises that real students write.

Each one is the reference answer cell with a single edit, so that the mistake,
and nothing else, is what the hidden tests must catch.
"""

from tests.catalog import WrongImplementation as W

_BATCHNORM = '''
class BatchNorm(torch.nn.Module):
    """Batch normalization over dimension 1, as torch.nn.BatchNorm1d and BatchNorm2d.

    Input: (N, C), (N, C, L) or (N, C, H, W), with C = num_features.
    Output: the same shape as the input.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance under the square root.
        momentum: weight of the new batch in the running statistics,
            or None for the cumulative average.
        affine: learn a per-channel scale `weight` and shift `bias`, shape (C,).
        track_running_stats: keep `running_mean`, `running_var`, shape (C,),
            and `num_batches_tracked`, shape (), for evaluation mode.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features))
            self.bias = torch.nn.Parameter(torch.zeros(num_features))
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
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {x.dim()}D input)")
        dims = [0] + list(range(2, x.dim()))       # every dimension but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)       # a (C,) tensor broadcast over x
        n = x.numel() // x.shape[1]                 # values per channel

        if self.training or not self.track_running_stats:
            if n == 1:
                raise ValueError(f"Expected more than 1 value per channel when training, "
                                 f"got input size {tuple(x.shape)}")
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            if self.training and self.track_running_stats:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / self.num_batches_tracked.item()
                else:
                    factor = self.momentum
                with torch.no_grad():
                    self.running_mean.mul_(1 - factor).add_(factor * mean)
                    self.running_var.mul_(1 - factor).add_(factor * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var

        out = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out
'''

_RECALIBRATE = '''
def recalibrate_bn(model, batches):
    """Re-estimate the running statistics of every batch normalization layer of `model`.

    Args:
        model: a torch.nn.Module with torch's BatchNorm layers and/or BatchNorm layers of this notebook.
        batches: an iterable of batches, each a tensor or a tuple/list whose first element is the input.

    Returns:
        model, in evaluation mode, each layer's running statistics the cumulative average over
        `batches` and its momentum as before.
    """
    layers = [m for m in model.modules()
              if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, BatchNorm))]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        if layer.track_running_stats:
            layer.running_mean.zero_()
            layer.running_var.fill_(1.0)
            layer.num_batches_tracked.zero_()
        layer.momentum = None
    try:
        model.train()
        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                model(batch)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return model.eval()
'''


def _edit(source: str, old: str, new: str) -> str:
    """``source`` with the one occurrence of ``old`` replaced by ``new``."""
    assert source.count(old) == 1, old
    return source.replace(old, new)


def _bn(old: str, new: str) -> str:
    return _edit(_BATCHNORM, old, new)


def _recalibrate(old: str, new: str) -> str:
    return _edit(_RECALIBRATE, old, new)


WRONG = [
    # BatchNorm
    W("keras-momentum", "BatchNorm", _bn(
        "factor = self.momentum\n",
        "factor = 1 - self.momentum  # Keras: momentum=0.99 keeps 99 % of the old value\n"),
      shows="KERAS_MOMENTUM"),
    W("biased-running-var", "BatchNorm", _bn(
        "add_(factor * var * n / (n - 1))", "add_(factor * var)"), shows="BIASED_RUNNING_VAR"),
    W("unbiased-normalization", "BatchNorm", _bn(
        "var = x.var(dim=dims, unbiased=False)", "var = x.var(dim=dims)"), shows="UNBIASED_NORMALIZATION"),
    W("running-stats-not-detached", "BatchNorm", _bn(
        """                with torch.no_grad():
                    self.running_mean.mul_(1 - factor).add_(factor * mean)
                    self.running_var.mul_(1 - factor).add_(factor * var * n / (n - 1))""",
        """                self.running_mean = (1 - factor) * self.running_mean + factor * mean
                self.running_var = (1 - factor) * self.running_var + factor * var * n / (n - 1)"""),
      shows="NOT_DETACHED"),
    W("counter-not-incremented", "BatchNorm", _bn(
        """                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / self.num_batches_tracked.item()""",
        """                if self.momentum is None:
                    factor = 1.0 / (self.num_batches_tracked.item() + 1)"""), shows="NO_COUNTER"),
    W("cumulative-average-off-by-one", "BatchNorm", _bn(
        "factor = 1.0 / self.num_batches_tracked.item()",
        "factor = 1.0 / (self.num_batches_tracked.item() + 1)"), shows="CUMULATIVE_OFF_BY_ONE"),
    W("momentum-none-as-default", "BatchNorm", _bn(
        """                if self.momentum is None:
                    factor = 1.0 / self.num_batches_tracked.item()
                else:
                    factor = self.momentum""",
        """                factor = 0.1 if self.momentum is None else self.momentum"""), shows="NONE_AS_DEFAULT"),
    W("eval-uses-batch-stats", "BatchNorm", _bn(
        "if self.training or not self.track_running_stats:",
        "if self.training or x.shape[0] > 1:  # batch statistics whenever there is a batch"),
      shows="EVAL_BATCH_STATS"),
    # No error, and (to avoid dividing by n - 1 = 0) no update of the running statistics from one value.
    W("no-error-for-one-value-per-channel", "BatchNorm", _bn(
        """            if n == 1:
                raise ValueError(f"Expected more than 1 value per channel when training, "
                                 f"got input size {tuple(x.shape)}")
""", "").replace("            if self.training and self.track_running_stats:\n",
                 "            if self.training and self.track_running_stats and n > 1:\n"),
      shows="NO_BATCH_OF_ONE_ERROR"),
    W("eps-outside-sqrt", "BatchNorm", _bn(
        "torch.sqrt(var.reshape(shape) + self.eps)", "(torch.sqrt(var.reshape(shape)) + self.eps)"),
      shows="EPS_OUTSIDE_SQRT"),
    W("batch-stats-detached", "BatchNorm", _bn(
        """            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)""",
        """            mean = x.mean(dim=dims).detach()
            var = x.var(dim=dims, unbiased=False).detach()"""), shows="NO_STATS_GRADIENT"),
    W("float-counter", "BatchNorm", _bn(
        'torch.tensor(0, dtype=torch.long)', 'torch.tensor(0.0)'), shows="FLOAT_COUNTER"),
    W("affine-false-keeps-tensors", "BatchNorm", _bn(
        """            self.register_parameter("weight", None)
            self.register_parameter("bias", None)""",
        """            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))"""), shows="AFFINE_FALSE_TENSORS"),
    W("running-stats-not-buffers", "BatchNorm", _bn(
        """            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))""",
        """            self.running_mean = torch.zeros(num_features)
            self.running_var = torch.ones(num_features)"""), shows="PLAIN_ATTRIBUTES"),
    W("statistics-per-position", "BatchNorm", _bn(
        "dims = [0] + list(range(2, x.dim()))       # every dimension but the channels",
        "dims = [0] + list(range(2, x.dim()))[:1]   # (only the first spatial dimension)"),
      # It raises on every (N, C, H, W) batch, and a raised exception names no known mistake; torch's message
      # says that the statistics have the wrong size for the C channels.
      named_by="must match the size of tensor"),
    # recalibrate_bn
    W("counter-not-reset", "recalibrate_bn", _recalibrate(
        "            layer.num_batches_tracked.zero_()\n", ""), shows="NO_RESET"),
    W("keeps-the-layers-momentum", "recalibrate_bn", _recalibrate(
        "        layer.momentum = None\n", ""), shows="KEEPS_MOMENTUM"),
    W("momentum-not-restored", "recalibrate_bn", _recalibrate(
        """    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
""", """    finally:
        pass
"""), shows="MOMENTUM_NOT_RESTORED"),
    W("left-in-training-mode", "recalibrate_bn", _recalibrate(
        "    return model.eval()", "    return model"), shows="LEFT_IN_TRAINING"),
    W("only-torch-layers", "recalibrate_bn", _recalibrate(
        "isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, BatchNorm))",
        "isinstance(m, torch.nn.modules.batchnorm._BatchNorm)"), shows="ONLY_TORCH_LAYERS"),
    W("pass-in-evaluation-mode", "recalibrate_bn", _recalibrate(
        "        model.train()\n", "        model.eval()\n"), shows="NO_TRAIN_PASS"),
    W("tuples-not-unpacked", "recalibrate_bn", _recalibrate(
        """                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
""", ""), named_by="must be Tensor, not list"),
    W("previous-mode-restored", "recalibrate_bn", _recalibrate(
        """    try:
        model.train()""", """    was_training = model.training
    try:
        model.train()""").replace("    return model.eval()", "    return model.train(was_training)"),
      shows="LEFT_IN_TRAINING"),
]


# ---------------------------------------------------------------------------
# The experiment


def _solution_experiment(old: str, new: str) -> str:
    """The source notebook's train_vs_eval_accuracy with one change."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "solutions" / "train_eval" / "train_eval.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "train_vs_eval_accuracy":
            source = "\n".join(line for line in "".join(cell["source"]).splitlines() if "### " not in line)
            assert old in source, old
            return source.replace(old, new)
    raise KeyError("train_vs_eval_accuracy")


WRONG += [
    W("experiment-never-calls-eval", "train_vs_eval_accuracy", _solution_experiment("    model.eval()\n", ""),
      shows="EXPERIMENT_NO_EVAL"),
    W("experiment-recalibrates-on-the-old-domain", "train_vs_eval_accuracy", _solution_experiment(
        "shift_domain(X_TRAIN).split(64)", "X_TRAIN.split(64)"), shows="EXPERIMENT_OLD_DOMAIN"),
    W("experiment-modes-swapped", "train_vs_eval_accuracy", _solution_experiment(
        '"train_mode": train_mode, "eval_mode": eval_mode', '"train_mode": eval_mode, "eval_mode": train_mode'),
      shows="EXPERIMENT_MODES_SWAPPED"),
    W("experiment-shifted-measured-in-training-mode", "train_vs_eval_accuracy", _solution_experiment(
        '"shifted": accuracy(model, shifted_val, Y_VAL)', '"shifted": accuracy(copy.deepcopy(model).train(), shifted_val, Y_VAL)'),
      shows="EXPERIMENT_SHIFTED_IN_TRAINING_MODE"),
    # The copy inherits evaluation mode from the model it was made of: "training mode" is measured in
    # evaluation mode, and batches of 2 look as good as batches of 100.
    W("experiment-training-mode-copy-left-in-evaluation-mode", "train_vs_eval_accuracy", _solution_experiment(
        "accuracy(copy.deepcopy(model).train(), X_VAL, Y_VAL, batch_size)",
        "accuracy(copy.deepcopy(model), X_VAL, Y_VAL, batch_size)"),
      named_by="training mode with batches of 2 is worse than evaluation mode"),
]



# ---------------------------------------------------------------------------
# Near misses: a right answer but for one small slip, which must still lose points (and be named).

WRONG += [
    W("default-eps-1e-6", "BatchNorm", _bn(
        "def __init__(self, num_features, eps=1e-5,", "def __init__(self, num_features, eps=1e-6,"),
      shows="DEFAULT_EPS_1E6"),
    W("cumulative-factor-in-float32", "BatchNorm", _bn(
        "factor = 1.0 / self.num_batches_tracked.item()", "factor = 1.0 / self.num_batches_tracked.float()"),
      shows="CUMULATIVE_FACTOR_FLOAT32"),
    W("bessel-correction-with-batch-size", "BatchNorm", _bn(
        "add_(factor * var * n / (n - 1))", "add_(factor * var * x.shape[0] / (x.shape[0] - 1))"),
      shows="BESSEL_WITH_BATCH_SIZE"),
    # The cumulative average counts its own steps in a Python attribute; `num_batches_tracked` is kept only for
    # the state dict. Alike from a fresh layer, but a loaded counter (7 batches already averaged) is ignored:
    # the next batch gets weight 1 instead of 1 / 8.
    W("cumulative-average-ignores-the-loaded-counter", "BatchNorm", _edit(_bn(
        "        self.track_running_stats = track_running_stats\n",
        "        self.track_running_stats = track_running_stats\n        self.steps = 0\n"),
        """                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / self.num_batches_tracked.item()""",
        """                self.num_batches_tracked.add_(1)
                self.steps += 1
                if self.momentum is None:
                    factor = 1.0 / self.steps"""),
      named_by="counter at 7"),
    W("first-batch-consumed-by-a-peek", "recalibrate_bn", _recalibrate(
        """    try:
        model.train()""", """    pairs = isinstance(next(iter(batches)), (tuple, list))  # batches of (input, label)?
    try:
        model.train()""").replace(
        """                if isinstance(batch, (tuple, list)):
                    batch = batch[0]""", """                if pairs:
                    batch = batch[0]"""), shows="FIRST_BATCH_CONSUMED"),
]
