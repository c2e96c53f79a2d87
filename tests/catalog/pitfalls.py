"""Wrong implementations of the pitfalls exercises that real students write."""

from tests.catalog import WrongImplementation as W

_FUSE = '''
def fuse_conv_bn(conv, bn):
    mean, var = bn.running_mean, bn.running_var
    gamma = bn.weight if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    fused = copy.deepcopy(conv)
    {body}
    return fused
'''


def _fuse(body: str) -> str:
    return _FUSE.format(body=body.strip().replace("\n", "\n    "))


_MERGE = '''
def merge_batch_stats(means, variances, counts):
    weights = counts.to(means.dtype).reshape(-1, 1)
    total = weights.sum()
    {body}
    return mean, var
'''


def _merge(body: str) -> str:
    return _MERGE.format(body=body.strip().replace("\n", "\n    "))


_FREEZE = '''
def freeze_batchnorm(model):
    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    {body}
    return model
'''


def _freeze(body: str) -> str:
    return _FREEZE.format(body=body.strip().replace("\n", "\n    "))


WRONG = [
    # ----------------------------------------------------------------- fuse_conv_bn
    W("fuse-eps-ignored", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / torch.sqrt(var)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter((bias - mean) * scale + beta)
"""), shows="FUSE_NO_EPS"),
    W("fuse-conv-bias-dropped", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / torch.sqrt(var + bn.eps)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter(beta - mean * scale)
"""), shows="FUSE_DROPS_CONV_BIAS"),
    W("fuse-conv-bias-not-scaled", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / torch.sqrt(var + bn.eps)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter(bias + beta - mean * scale)
"""), shows="FUSE_UNSCALED_CONV_BIAS"),
    W("fuse-variance-not-std", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / (var + bn.eps)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter((bias - mean) * scale + beta)
"""), shows="FUSE_NO_SQRT"),
    W("fuse-new-conv-loses-settings", "fuse_conv_bn", '''
def fuse_conv_bn(conv, bn):
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      stride=conv.stride, padding=conv.padding).to(conv.weight.dtype)
    with torch.no_grad():
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + beta)
    return fused
''', shows="FUSE_LOSES_SETTINGS"),
    W("fuse-modifies-conv-in-place", "fuse_conv_bn", '''
def fuse_conv_bn(conv, bn):
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + beta
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(new_bias)
    return conv
''', shows="FUSE_IN_PLACE"),
    W("fuse-assumes-affine", "fuse_conv_bn", '''
def fuse_conv_bn(conv, bn):
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused
''', named_by="unsupported operand type(s) for /: 'NoneType'"),
    W("fuse-no-bias-when-conv-has-none", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / torch.sqrt(var + bn.eps)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    if conv.bias is not None:
        fused.bias = nn.Parameter((bias - mean) * scale + beta)
"""), named_by='the fused convolution has no bias'),
    W("fuse-uses-torch-fusion", "fuse_conv_bn", '''
def fuse_conv_bn(conv, bn):
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    return fuse_conv_bn_eval(conv, bn)
''', named_by='is outside the allowed imports',
      couples=(("test_folding_check", "the experiment calls it, and a function built on a library call earns no "
                "credit"),)),
    # ------------------------------------------------------------ merge_batch_stats
    W("merge-plain-averages", "merge_batch_stats", _merge("""
mean = means.mean(dim=0)
var = variances.mean(dim=0)
"""), shows="MERGE_EQUAL_WEIGHTS"),
    W("merge-averages-variances", "merge_batch_stats", _merge("""
mean = (weights * means).sum(dim=0) / total
var = (weights * variances).sum(dim=0) / total
"""), shows="MERGE_AVERAGE_VARIANCES"),
    W("merge-equal-weight-between-term", "merge_batch_stats", _merge("""
mean = (weights * means).sum(dim=0) / total
var = (weights * variances).sum(dim=0) / total + ((means - mean) ** 2).mean(dim=0)
"""), shows="MERGE_EQUAL_WEIGHT_BETWEEN"),
    W("merge-sum-of-squares", "merge_batch_stats", _merge("""
mean = (weights * means).sum(dim=0) / total
var = (weights * (variances + means ** 2)).sum(dim=0) / total - mean ** 2
"""), shows="MERGE_SUM_OF_SQUARES"),
    W("merge-unbiased", "merge_batch_stats", _merge("""
mean = (weights * means).sum(dim=0) / total
var = (weights * (variances + (means - mean) ** 2)).sum(dim=0) / (total - 1)
"""), shows="MERGE_UNBIASED"),
    W("merge-modifies-input", "merge_batch_stats", _merge("""
mean = (weights * means).sum(dim=0) / total
variances += (means - mean) ** 2
var = (weights * variances).sum(dim=0) / total
"""), shows="MERGE_IN_PLACE"),
    # ------------------------------------------------------------- freeze_batchnorm
    W("freeze-requires-grad-only", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.requires_grad_(False)
"""), shows="FREEZE_REQUIRES_GRAD_ONLY"),
    W("freeze-eval-once", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.eval()
    layer.requires_grad_(False)
"""), shows="FREEZE_REQUIRES_GRAD_ONLY"),
    W("freeze-momentum-zero", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.momentum = 0.0
    layer.requires_grad_(False)
"""), shows="FREEZE_MOMENTUM_ZERO"),
    W("freeze-no-running-stats-tracking", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.track_running_stats = False
    layer.requires_grad_(False)
    layer.eval()
"""), shows="FREEZE_MOMENTUM_ZERO"),
    W("freeze-keeps-stale-gradients", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.requires_grad_(False)
    layer.train = functools.partial(stay_in_eval, layer)
    layer.eval()
"""), shows="FREEZE_STALE_GRADIENTS"),
    W("freeze-parameters-still-trainable", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.train = functools.partial(stay_in_eval, layer)
    layer.eval()
"""), shows="FREEZE_NO_REQUIRES_GRAD"),
    W("freeze-only-batchnorm2d", "freeze_batchnorm", _freeze("""
for layer in model.modules():
    if isinstance(layer, nn.BatchNorm2d):
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
"""), shows="FREEZE_ONLY_2D"),
    W("freeze-whole-model", "freeze_batchnorm", _freeze("""
model.requires_grad_(False)
for layer in bn_layers(model):
    for parameter in layer.parameters():
        parameter.grad = None
    layer.train = functools.partial(stay_in_eval, layer)
    layer.eval()
"""), named_by='switched off the gradients of layers that are not BatchNorm'),
    W("freeze-returns-a-copy", "freeze_batchnorm", '''
def freeze_batchnorm(model):
    def stay_in_eval(layer, mode=True):
        return nn.Module.train(layer, False)

    model = copy.deepcopy(model)
    for layer in bn_layers(model):
        layer.requires_grad_(False)
        layer.train = functools.partial(stay_in_eval, layer)
        layer.eval()
    return model
''', named_by='should freeze the model in place and return it'),
    W("freeze-replaces-layers-with-buffers", "freeze_batchnorm", '''
def freeze_batchnorm(model):
    class FrozenBatchNorm(nn.Module):
        def __init__(self, bn):
            super().__init__()
            n = bn.num_features
            weight = bn.weight if bn.weight is not None else torch.ones(n, dtype=bn.running_mean.dtype)
            bias = bn.bias if bn.bias is not None else torch.zeros(n, dtype=bn.running_mean.dtype)
            self.register_buffer("weight", weight.detach().clone())
            self.register_buffer("bias", bias.detach().clone())
            self.register_buffer("running_mean", bn.running_mean.clone())
            self.register_buffer("running_var", bn.running_var.clone())
            self.eps = bn.eps

        def forward(self, x):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            scale = self.weight / torch.sqrt(self.running_var + self.eps)
            shift = self.bias - self.running_mean * scale
            return x * scale.reshape(shape) + shift.reshape(shape)

    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, FrozenBatchNorm(child))
        else:
            freeze_batchnorm(child)
    return model
''', named_by='with a computed attribute name'),
]

# Near misses: a right answer but for one small slip, which must still lose points (and be named).
WRONG += [
    W("fuse-eps-fixed-at-1e-5", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = gamma / torch.sqrt(var + 1e-5)  # BatchNorm's default eps
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter((bias - mean) * scale + beta)
"""), shows="FUSE_FIXED_EPS"),
    W("fuse-scale-in-float32", "fuse_conv_bn", _fuse("""
with torch.no_grad():
    scale = (gamma / torch.sqrt(var + bn.eps)).float()  # weights are float32 anyway
    fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter((bias - mean) * scale + beta)
"""), shows="FUSE_FLOAT32"),
    W("merge-pairwise-loop-drops-last-shard", "merge_batch_stats", '''
def merge_batch_stats(means, variances, counts):
    mean, var, n = means[0], variances[0], counts[0].to(means.dtype)
    for k in range(1, len(counts) - 1):
        n_k = counts[k].to(means.dtype)
        total = n + n_k
        delta = means[k] - mean
        mean = mean + delta * n_k / total
        var = (n * var + n_k * variances[k]) / total + delta ** 2 * n * n_k / total ** 2
        n = total
    return mean, var
''', shows="MERGE_LAST_SHARD_DROPPED"),
    W("freeze-bias-grad-kept", "freeze_batchnorm", _freeze("""
for layer in bn_layers(model):
    layer.requires_grad_(False)
    if layer.weight is not None:
        layer.weight.grad = None
    layer.train = functools.partial(stay_in_eval, layer)
    layer.eval()
"""), shows="FREEZE_BIAS_GRAD_KEPT"),
]


# ---------------------------------------------------------------------------
# The experiment and the bug hunt


def _solution_cell(grade_id: str, *changes: tuple[str, str]) -> str:
    """The source notebook's answer to ``grade_id``, markers removed, with ``changes`` applied."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "solutions" / "pitfalls" / "pitfalls.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id and cell["cell_type"] == "code":
            source = "\n".join(line for line in "".join(cell["source"]).splitlines() if "### " not in line)
            for old, new in changes:
                assert old in source, old
                source = source.replace(old, new)
            return source
    raise KeyError(grade_id)


WRONG += [
    W("folding-model-left-in-training-mode", "folding_check", _solution_cell(
        "folding_check", ("epochs=epochs, seed=seed).eval()", "epochs=epochs, seed=seed)")),
      shows="FOLDING_TRAIN_MODE"),
    W("folding-batchnorm-kept", "folding_check", _solution_cell(
        "folding_check", ("            folded.append(fuse_conv_bn(layers[i], layers[i + 1]))\n            i += 2",
                          "            folded += [fuse_conv_bn(layers[i], layers[i + 1]), layers[i + 1]]\n"
                          "            i += 2")), shows="FOLDING_BN_KEPT"),
    W("folding-compared-with-itself-before-training", "folding_check", _solution_cell(
        "folding_check", ("model = train_model(make_cnn(seed), X_TRAIN, Y_TRAIN, epochs=epochs, seed=seed).eval()",
                          "model = make_cnn(seed).eval()")),
      named_by="whether the trained CNN reaches 0.7"),
    W("bug-hunt-still-serves-in-training-mode", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve", ("    net.eval()  # fix: serve with the running statistics\n", "")),
      shows="BUG_SERVED_IN_TRAINING_MODE"),
    W("bug-hunt-backbone-statistics-still-move", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve", ("        backbone.eval()  # fix: net.train() put the frozen backbone's BatchNorm "
                                "layers back in training mode\n", "")), shows="BUG_BACKBONE_STATISTICS_MOVE"),
    W("bug-hunt-batch-of-one-still-trained", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve", ("            if len(rows) < 2:  # fix: a batch of one cannot be batch-normalized in training "
                                "mode\n                continue\n", "")), shows="BUG_BATCH_OF_ONE"),
    W("bug-hunt-whole-model-in-eval-for-training", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve", ("        net.train()\n", "        net.eval()\n")), shows="BUG_HEAD_FROZEN_TOO"),
    # The gradients cleared between backward() and step(): every step is zero, the head never learns.
    W("bug-hunt-gradients-cleared-before-the-step", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve", ("            sgd.zero_grad()\n            F.cross_entropy(net(x_train[rows]), "
                                "y_train[rows]).backward()\n",
                                "            F.cross_entropy(net(x_train[rows]), y_train[rows]).backward()\n"
                                "            sgd.zero_grad()\n")),
      named_by="whether the fine-tuned model reaches 0.6"),
    W("bug-hunt-backbone-frozen-once-only", "fine_tune_and_serve", _solution_cell(
        "fine_tune_and_serve",
        ("        backbone.eval()  # fix: net.train() put the frozen backbone's BatchNorm layers back in training mode\n",
         ""), ("    net = nn.Sequential(backbone, head)\n", "    backbone.eval()\n    net = nn.Sequential(backbone, head)\n")),
      shows="BUG_BACKBONE_STATISTICS_MOVE"),
]

