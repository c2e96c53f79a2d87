"""Wrong implementations of the bn_math exercises that real students write."""

from tests.catalog import WrongImplementation as W

_FORWARD = '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    {body}
    cache = (x_hat, 1.0 / np.sqrt(x.var(axis=0) + eps), gamma)
    return out, cache
'''


def _forward(body: str) -> str:
    return _FORWARD.format(body=body.strip().replace("\n", "\n    "))


_BACKWARD = '''
def batchnorm_backward(dout, cache):
    x_hat, inv_std, gamma = cache
    n = dout.shape[0]
    {body}
    return dx, dgamma, dbeta
'''


def _backward(body: str) -> str:
    return _BACKWARD.format(body=body.strip().replace("\n", "\n    "))


WRONG = [
    W("unbiased-variance", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
out = gamma * x_hat + beta
"""), shows="UNBIASED_VARIANCE"),
    W("eps-outside-sqrt", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps)
out = gamma * x_hat + beta
"""), shows="EPS_OUTSIDE_SQRT"),
    W("statistics-over-features", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
out = gamma * x_hat + beta
"""), shows="WRONG_AXIS"),
    W("gamma-beta-swapped", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
out = beta * x_hat + gamma
"""), shows="SWAPPED_AFFINE"),
    W("eps-ignored", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
out = gamma * x_hat + beta
"""), shows="EPS_FIXED"),
    W("variance-around-zero", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt((x ** 2).mean(axis=0) + eps)
out = gamma * x_hat + beta
"""), shows="VARIANCE_AROUND_ZERO"),
    W("modifies-input-in-place", "batchnorm_forward", _forward("""
x -= x.mean(axis=0)
x_hat = x / np.sqrt(x.var(axis=0) + eps)
out = gamma * x_hat + beta
"""), shows="X_MODIFIED_IN_PLACE"),
    W("returns-only-out", "batchnorm_forward", '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return gamma * x_hat + beta
''',
      couples=(("test_batchnorm_backward", "the backward gets no cache to work from"),
               ("test_batchnorm_backward_alt", "the simplified backward gets no cache to work from"),
               ("test_spatial_batchnorm_forward", "it unpacks (out, cache) from batchnorm_forward"),
               ("test_spatial_batchnorm_backward", "it needs the cache of the spatial forward, which fails")),
      named_by="should return a tuple (out, cache)"),
    W("no-gradient-through-statistics", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
dx = dout * gamma * inv_std
"""), shows="NO_STATISTICS_GRADIENT"),
    W("dgamma-without-xhat", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = dout.sum(axis=0)
g = dout * gamma
dx = inv_std * (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0))
"""), shows="DGAMMA_WITHOUT_XHAT"),
    W("n-minus-one-in-backward", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
g = dout * gamma
dx = inv_std * (g - g.sum(axis=0) / (n - 1) - x_hat * (g * x_hat).sum(axis=0) / (n - 1))
"""), shows="MEANS_OVER_N_MINUS_ONE"),
    W("gamma-missing-from-dx", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
dx = inv_std * (dout - dout.mean(axis=0) - x_hat * (dout * x_hat).mean(axis=0))
"""), shows="DX_WITHOUT_GAMMA"),
    W("spatial-reshape-without-transpose", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.reshape(-1, c), gamma, beta, eps)
    return out.reshape(n, c, h, w), cache
''',
      couples=(("test_spatial_batchnorm_backward", "its cache holds channels mixed up, which a right backward reads"),),
      shows="SPATIAL_RESHAPE"),
    W("spatial-per-pixel-statistics", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.reshape(n, -1), np.repeat(gamma, h * w), np.repeat(beta, h * w), eps)
    return out.reshape(n, c, h, w), cache
''',
      couples=(("test_spatial_batchnorm_backward", "its cache holds per-pixel statistics, which a right backward reads"),),
      shows="SPATIAL_PER_PIXEL"),
    W("spatial-wrong-axes-back", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
    return out.reshape(n, c, h, w), cache
''', shows="SPATIAL_OUT_NOT_TRANSPOSED_BACK"),
    W("spatial-backward-wrong-axes-back", "spatial_batchnorm_backward", '''
def spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), cache)
    return dx.reshape(n, c, h, w), dgamma, dbeta
''', shows="SPATIAL_DX_NOT_TRANSPOSED_BACK"),
    W("uses-torch-autograd", "batchnorm_backward", '''
def batchnorm_backward(dout, cache):
    import torch
    x_hat, inv_std, gamma = cache
    x = torch.tensor(x_hat, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    out = torch.nn.functional.batch_norm(x, None, None, g, b, training=True)
    dx, dgamma, dbeta = torch.autograd.grad(out, (x, g, b), torch.tensor(dout))
    return dx.numpy() * inv_std * np.sqrt(x_hat.var(axis=0) + 1e-5), dgamma.numpy(), dbeta.numpy()
''',
      couples=(("test_spatial_batchnorm_backward", "the spatial backward calls it, and a function built on a library call earns no credit"),),
      named_by="uses `batch_norm`"),
]

# Near misses: a right answer but for one small slip, which must still lose points (and be named).
_SOLUTION_FORWARD = '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    {prologue}mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    out = gamma * x_hat + beta
    cache = (x_hat, inv_std, gamma)
    return out, cache
'''
_SOLUTION_BACKWARD = '''
def batchnorm_backward(dout, cache):
    x_hat, inv_std, gamma = cache
    {prologue}dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0))
    return dx, dgamma, dbeta
'''

WRONG += [
    W("forward-in-float32", "batchnorm_forward", _SOLUTION_FORWARD.format(
        prologue="x = x.astype(np.float32)  # float32 is enough for a neural network\n    "),
      couples=(("test_batchnorm_backward", "its cache holds float32 values, so even a right backward is only "
                "float32-accurate, and on a batch of 2 (where dx is nearly 0) that shows"),),
      shows="FORWARD_FLOAT32"),
    W("default-eps-1e-6", "batchnorm_forward", _SOLUTION_FORWARD.format(prologue="").replace(
        "eps=1e-5):", "eps=1e-6):"), shows="DEFAULT_EPS_1E6"),
    W("loop-skips-last-feature", "batchnorm_forward", '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, d = x.shape
    mean = np.zeros(d)
    var = np.ones(d)
    for j in range(d - 1):
        mean[j] = x[:, j].mean()
        var[j] = x[:, j].var()
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    out = gamma * x_hat + beta
    cache = (x_hat, inv_std, gamma)
    return out, cache
''', shows="LAST_FEATURE_SKIPPED"),
    W("backward-in-float32", "batchnorm_backward", _SOLUTION_BACKWARD.format(
        prologue="dout, x_hat, inv_std = (a.astype(np.float32) for a in (dout, x_hat, inv_std))\n    "),
      shows="BACKWARD_FLOAT32"),
]


# ---------------------------------------------------------------------------
# The simplified backward and the experiment


def _solution_cell(grade_id: str) -> str:
    """The source notebook's answer to ``grade_id``, markers removed (the base of a wrong variant)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "solutions" / "bn_math" / "bn_math.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id and cell["cell_type"] == "code":
            source = "".join(cell["source"])
            return "\n".join(line for line in source.splitlines() if "### " not in line)
    raise KeyError(grade_id)


def _sweep(old: str, new: str) -> str:
    source = _solution_cell("init_scale_sweep")
    assert old in source, old
    return source.replace(old, new)


_ALT = '''
def batchnorm_backward_alt(dout, cache):
    x_hat, inv_std, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    g = dout * gamma
    {body}
    return dx, dgamma, dbeta
'''

WRONG += [
    W("alt-without-the-mean-term", "batchnorm_backward_alt", _ALT.format(
        body="dx = inv_std * (g - x_hat * (g * x_hat).mean(axis=0))"), shows="NO_MEAN_PATH"),
    W("alt-sums-instead-of-means", "batchnorm_backward_alt", _ALT.format(
        body="dx = inv_std * (g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0))"),
      shows="MEANS_OVER_N_MINUS_ONE"),
    W("alt-gamma-left-out-of-dx", "batchnorm_backward_alt", _ALT.format(
        body="dx = inv_std * (dout - dout.mean(axis=0) - x_hat * (dout * x_hat).mean(axis=0))"),
      shows="DX_WITHOUT_GAMMA"),
    W("alt-variance-term-without-x-hat", "batchnorm_backward_alt", _ALT.format(
        body="dx = inv_std * (g - g.mean(axis=0) - (g * x_hat).mean(axis=0))"),
      shows="VARIANCE_TERM_WITHOUT_XHAT"),
    W("sweep-scale-never-applied", "init_scale_sweep", _sweep(
        "rng.normal(0.0, scale * np.sqrt(2.0 / m)", "rng.normal(0.0, np.sqrt(2.0 / m)"),
      shows="SWEEP_SCALE_NOT_APPLIED"),
    W("sweep-with-and-without-swapped", "init_scale_sweep", _sweep(
        'return {"with_bn": [accuracy_after_training(s, True) for s in scales],',
        'return {"with_bn": [accuracy_after_training(s, False) for s in scales],').replace(
        '"without_bn": [accuracy_after_training(s, False) for s in scales]}',
        '"without_bn": [accuracy_after_training(s, True) for s in scales]}'), shows="SWEEP_SWAPPED"),
    W("sweep-accuracy-before-training", "init_scale_sweep", _sweep(
        "        for _ in range(steps):", "        initial_scores, _, _ = forward(X_VAL)\n        for _ in range(steps):").replace(
        "        scores, _, _ = forward(X_VAL)\n", "        scores = initial_scores\n"), shows="SWEEP_UNTRAINED"),
    W("sweep-batch-norm-without-its-backward", "init_scale_sweep", _sweep(
        "d, dgamma, dbeta = batchnorm_backward_alt(d, bn_cache)",
        "dgamma, dbeta = np.zeros_like(gammas[i]), np.zeros_like(betas[i])"),
      named_by="whether the network with batch norm trains from scale 0.01"),
]

