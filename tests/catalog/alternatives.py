"""Wrong implementations of the alternatives exercises that real students write."""

from tests.catalog import WrongImplementation as W

WRONG = [
    W("layer-norm-unbiased-variance", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    dims = tuple(range(-len(normalized_shape), 0))
    out = (x - x.mean(dim=dims, keepdim=True)) / torch.sqrt(x.var(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
''', shows="LN_UNBIASED"),
    W("layer-norm-last-dimension-only", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
''', shows="LN_LAST_DIM_ONLY"),
    W("layer-norm-rejects-int-shape", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
''', named_by="object of type 'int' has no len()"),
    W("layer-norm-calls-library", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return F.layer_norm(x, tuple(normalized_shape), weight, bias, eps)
''', named_by='uses `layer_norm`'),
    W("group-norm-groups-in-wrong-order", "group_norm", '''
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[0], x.shape[1]
    grouped = x.reshape(n, c // num_groups, num_groups, -1)
    mean = grouped.mean(dim=(1, 3), keepdim=True)
    var = grouped.var(dim=(1, 3), unbiased=False, keepdim=True)
    out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', shows="GN_GROUPS_LAST"),
    W("group-norm-statistics-per-channel", "group_norm", '''
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[0], x.shape[1]
    grouped = x.reshape(n, c, -1)  # one group per channel: num_groups ignored
    mean = grouped.mean(dim=-1, keepdim=True)
    var = grouped.var(dim=-1, unbiased=False, keepdim=True)
    out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', shows="GN_INSTANCE"),
    W("group-norm-eps-outside-sqrt", "group_norm", '''
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[0], x.shape[1]
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(dim=-1, keepdim=True)
    std = grouped.var(dim=-1, unbiased=False, keepdim=True).sqrt()
    out = ((grouped - mean) / (std + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', shows="GN_EPS_OUTSIDE"),
    W("group-norm-only-images", "group_norm", '''
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c, h, w = x.shape
    grouped = x.reshape(n, num_groups, c // num_groups, h, w)
    mean = grouped.mean(dim=(2, 3, 4), keepdim=True)
    var = grouped.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
    out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    if weight is not None:
        out = out * weight.view(1, c, 1, 1)
    if bias is not None:
        out = out + bias.view(1, c, 1, 1)
    return out
''', named_by='not enough values to unpack (expected 4'),
    W("group-norm-statistics-detached", "group_norm", '''
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[0], x.shape[1]
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(dim=-1, keepdim=True).detach()
    var = grouped.var(dim=-1, unbiased=False, keepdim=True).detach()
    out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', shows="GN_DETACHED"),
    W("instance-norm-batch-statistics", "instance_norm", '''
def instance_norm(x, weight=None, bias=None, eps=1e-5):
    dims = (0,) + tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', shows="IN_BATCH"),
    W("instance-norm-ignores-bias", "instance_norm", '''
def instance_norm(x, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape((1, x.shape[1]) + (1,) * (x.dim() - 2))
    return out
''', shows="IN_NO_BIAS"),
    W("instance-norm-through-batch-norm", "instance_norm", '''
def instance_norm(x, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[0], x.shape[1]
    out = F.batch_norm(x.reshape(1, n * c, -1), None, None, training=True, eps=eps).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
''', named_by='uses `batch_norm`'),
    W("rms-norm-subtracts-mean", "rms_norm", '''
def rms_norm(x, normalized_shape, weight=None, eps=None):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    dims = tuple(range(-len(normalized_shape), 0))
    centered = x - x.mean(dim=dims, keepdim=True)
    out = centered / torch.sqrt(centered.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out
''', shows="RMS_CENTERED"),
    W("rms-norm-default-eps-1e-6", "rms_norm", '''
def rms_norm(x, normalized_shape, weight=None, eps=None):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    if eps is None:
        eps = 1e-6
    dims = tuple(range(-len(normalized_shape), 0))
    out = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out
''', shows="RMS_EPS_1E6"),
    W("rms-norm-float64-eps-always", "rms_norm", '''
def rms_norm(x, normalized_shape, weight=None, eps=None):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    if eps is None:
        eps = torch.finfo(torch.float64).eps
    dims = tuple(range(-len(normalized_shape), 0))
    out = x / torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out
''', shows="RMS_EPS_ZERO"),
    W("rms-norm-upcasts-to-float64", "rms_norm", '''
def rms_norm(x, normalized_shape, weight=None, eps=None):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    dims = tuple(range(-len(normalized_shape), 0))
    x64 = x.double()
    out = x64 / torch.sqrt(x64.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight.double()
    return out
''', shows="RMS_UPCAST"),
    W("weight-norm-norm-over-dim", "weight_norm", '''
def weight_norm(v, g, dim=0):
    return g * v / v.norm(dim=dim, keepdim=True)
''', shows="WN_OVER_DIM"),
    W("weight-norm-minus-one-is-last-axis", "weight_norm", '''
def weight_norm(v, g, dim=0):
    dim = dim % v.dim()
    other = [d for d in range(v.dim()) if d != dim]
    return g * v / torch.sqrt(v.pow(2).sum(dim=other, keepdim=True))
''', shows="WN_MINUS_ONE"),
    W("weight-norm-only-dim-zero", "weight_norm", '''
def weight_norm(v, g, dim=0):
    norm = v.reshape(v.shape[0], -1).norm(dim=1)
    return g * v / norm.reshape((-1,) + (1,) * (v.dim() - 1))
''', shows="WN_OVER_DIM"),
    W("weight-norm-calls-library", "weight_norm", '''
def weight_norm(v, g, dim=0):
    return g * v / torch.norm_except_dim(v, 2, dim)
''', named_by='uses `norm_except_dim`'),
    W("batch-renorm-r-d-not-detached", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max)
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max)
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_NOT_DETACHED"),
    W("batch-renorm-r-clipped-from-zero", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 0.0, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_R_FROM_ZERO"),
    W("batch-renorm-unbiased-batch-variance", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_UNBIASED"),
    W("batch-renorm-updates-running-statistics", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    var_b = x.var(dim=0, unbiased=False)
    sigma_b = torch.sqrt(var_b + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    with torch.no_grad():
        running_mean.mul_(0.99).add_(0.01 * mean_b)
        running_var.mul_(0.99).add_(0.01 * var_b)
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_UPDATES_RUNNING"),
    W("batch-renorm-clip-only-above", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b / sigma, max=r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, max=d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_R_FROM_ZERO"),
]

# Near misses: a right answer but for one small slip, which must still lose points (and be named).
WRONG += [
    W("layer-norm-in-float32", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    dims = tuple(range(-len(normalized_shape), 0))
    x32 = x.float()  # statistics in float32, as on a GPU
    mean = x32.mean(dim=dims, keepdim=True)
    var = x32.var(dim=dims, unbiased=False, keepdim=True)
    out = ((x32 - mean) / torch.sqrt(var + eps)).to(x.dtype)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
''', shows="LN_FLOAT32"),
    W("layer-norm-default-eps-1e-6", "layer_norm", '''
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-6):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
''', shows="LN_DEFAULT_EPS_1E6"),
    W("rms-norm-float32-eps-always", "rms_norm", '''
def rms_norm(x, normalized_shape, weight=None, eps=None):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    if eps is None:
        eps = torch.finfo(torch.float32).eps
    dims = tuple(range(-len(normalized_shape), 0))
    out = x / torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out
''', shows="RMS_EPS_FLOAT32"),
    W("weight-norm-eps-in-the-norm", "weight_norm", '''
def weight_norm(v, g, dim=0):
    if dim is None or dim == -1:
        norm = torch.sqrt(v.pow(2).sum())
    else:
        dim = dim % v.dim()
        other_dims = [d for d in range(v.dim()) if d != dim]
        norm = torch.sqrt(v.pow(2).sum(dim=other_dims, keepdim=True))
    return g * v / (norm + 1e-8)  # never divide by zero
''', shows="WN_NORM_PLUS_EPS"),
    W("batch-renorm-sigma-without-eps", "batch_renorm", '''
def batch_renorm(x, weight, bias, running_mean, running_var, r_max, d_max, eps=1e-5):
    mean_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    sigma = torch.sqrt(running_var)
    r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
    d = torch.clamp((mean_b - running_mean) / sigma, -d_max, d_max).detach()
    return weight * ((x - mean_b) / sigma_b * r + d) + bias
''', shows="BR_SIGMA_NO_EPS"),
]


# ---------------------------------------------------------------------------
# The experiment


def _solution_experiment(old: str, new: str) -> str:
    """The source notebook's groupnorm_vs_batchnorm_small_batch with one change."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "solutions" / "alternatives" / "alternatives.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "groupnorm_vs_batchnorm_small_batch":
            source = "\n".join(line for line in "".join(cell["source"]).splitlines() if "### " not in line)
            assert old in source, old
            return source.replace(old, new)
    raise KeyError("groupnorm_vs_batchnorm_small_batch")


WRONG += [
    W("small-batch-results-swapped", "groupnorm_vs_batchnorm_small_batch", _solution_experiment(
        '(("group_norm", GroupNormLayer), ("batch_norm", BatchNormLayer))',
        '(("group_norm", BatchNormLayer), ("batch_norm", GroupNormLayer))'), shows="SMALL_BATCH_SWAPPED"),
    W("small-batch-running-statistics-never-updated", "groupnorm_vs_batchnorm_small_batch", _solution_experiment(
        """                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_var.lerp_(var * n / (n - 1), self.momentum)
""", ""), shows="SMALL_BATCH_NO_RUNNING_STATISTICS"),
    W("small-batch-always-trained-with-32", "groupnorm_vs_batchnorm_small_batch", _solution_experiment(
        "X_TRAIN, Y_TRAIN, batch_size, epochs=epochs", "X_TRAIN, Y_TRAIN, 32, epochs=epochs"),
      shows="SMALL_BATCH_FIXED_SIZE"),
]

