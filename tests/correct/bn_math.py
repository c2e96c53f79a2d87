"""Correct answers for ``bn_math`` (NumPy only).

A backward pass reads the cache of the forward pass written with it, so the
backward entries come in pairs with a forward entry: ``PAIRED_FORWARD`` maps
``(target, name)`` of a backward entry to ``(target, name)`` of its forward.
Grading a backward entry means putting both into the notebook. The spatial
``delegating-*`` entries call the notebook's own ``batchnorm_forward`` and
``batchnorm_backward`` and work with any consistent pair, the reference's too.
"""

from __future__ import annotations

from tests.correct import CorrectImplementation

# ---------------------------------------------------------------------------
# batchnorm_forward / batchnorm_backward, pair 1: a staged computation graph, tuple cache

FORWARD_STAGED_TUPLE = '''
import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch normalization, one node of the computation graph per line."""
    n = x.shape[0]
    mu = x.sum(axis=0) / n
    xmu = x - mu
    sq = xmu ** 2
    var = sq.sum(axis=0) / n
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    gammax = gamma * xhat
    out = gammax + beta
    cache = (xhat, gamma, xmu, ivar, sqrtvar, var, eps)
    return out, cache
'''

BACKWARD_STAGED_TUPLE = '''
import numpy as np


def batchnorm_backward(dout, cache):
    """Backpropagation through the staged graph of batchnorm_forward, node by node."""
    xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgammax = dout
    dgamma = (dgammax * xhat).sum(axis=0)
    dxhat = dgammax * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar ** 2 * divar
    dvar = 0.5 / np.sqrt(var + eps) * dsqrtvar
    dsq = np.ones_like(dout) / n * dvar
    dxmu2 = 2.0 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=0)
    dx2 = np.ones_like(dout) / n * dmu
    dx = dx1 + dx2
    return dx, dgamma, dbeta
'''

# pair 2: closed form, dict cache

FORWARD_CLOSED_DICT = '''
import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch normalization; the cache is a dict."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)  # biased: ddof=0
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    out = gamma * x_hat + beta
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma}
    return out, cache
'''

BACKWARD_CLOSED_DICT = '''
import numpy as np


def batchnorm_backward(dout, cache):
    """The simplified closed form: dx = (g - mean(g) - x_hat * mean(g * x_hat)) / std."""
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    g = dout * gamma
    dx = inv_std * (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0))
    return dx, dgamma, dbeta
'''

# pair 3: einsum, a small dataclass as cache

FORWARD_EINSUM_CLASS = '''
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _ci_BatchNormCache:
    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray

    @property
    def n(self):
        return self.x_hat.shape[0]


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch normalization with einsum reductions; a small class as cache."""
    n = x.shape[0]
    mean = np.einsum("nd->d", x) / n
    centered = x - mean
    var = np.einsum("nd,nd->d", centered, centered) / n
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = np.einsum("nd,d->nd", centered, inv_std)
    out = np.einsum("nd,d->nd", x_hat, gamma) + beta
    return out, _ci_BatchNormCache(x_hat=x_hat, inv_std=inv_std, gamma=np.array(gamma, copy=True))
'''

BACKWARD_EINSUM_CLASS = '''
import numpy as np


def batchnorm_backward(dout, cache):
    """dx = gamma / (N std) * (N dout - dbeta - x_hat * dgamma), reductions with einsum."""
    n = cache.n
    dbeta = np.einsum("nd->d", dout)
    dgamma = np.einsum("nd,nd->d", dout, cache.x_hat)
    scale = cache.gamma * cache.inv_std / n
    dx = scale * (n * dout - dbeta - cache.x_hat * dgamma)
    return dx, dgamma, dbeta
'''

# pair 4: a namedtuple cache and an explicit per-feature Jacobian

FORWARD_NAMEDTUPLE_COLUMNS = '''
from collections import namedtuple

import numpy as np

_ci_Saved = namedtuple("_ci_Saved", ["x", "gamma", "mean", "var", "eps"])


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch normalization, column by column; a namedtuple as cache."""
    n, d = x.shape
    out = np.empty(x.shape, dtype=np.result_type(x, gamma, beta, 1.0))
    mean = np.empty(d)
    var = np.empty(d)
    for j in range(d):
        column = x[:, j]
        mean[j] = column.mean()
        var[j] = np.mean((column - mean[j]) ** 2)
        out[:, j] = gamma[j] * (column - mean[j]) / np.sqrt(var[j] + eps) + beta[j]
    return out, _ci_Saved(x=x.copy(), gamma=np.array(gamma, copy=True), mean=mean, var=var, eps=eps)
'''

BACKWARD_JACOBIAN_COLUMNS = '''
import numpy as np


def batchnorm_backward(dout, cache):
    """Per feature, the full N x N Jacobian of the output column with respect to the input
    column, d y_i / d x_k = gamma / (N std) * (N [i == k] - 1 - x_hat_i x_hat_k),
    applied to the upstream gradient."""
    x, gamma, mean, var, eps = cache.x, cache.gamma, cache.mean, cache.var, cache.eps
    n, d = x.shape
    dx = np.empty_like(dout, dtype=np.float64)
    dgamma = np.empty(d)
    dbeta = np.empty(d)
    for j in range(d):
        std = np.sqrt(var[j] + eps)
        x_hat = (x[:, j] - mean[j]) / std
        jacobian = gamma[j] / (n * std) * (n * np.eye(n) - np.ones((n, n)) - np.outer(x_hat, x_hat))
        dx[:, j] = jacobian.T @ dout[:, j]
        dgamma[j] = dout[:, j] @ x_hat
        dbeta[j] = dout[:, j].sum()
    return dx, dgamma, dbeta
'''

# ---------------------------------------------------------------------------
# spatial_batchnorm_forward / spatial_batchnorm_backward

SPATIAL_FORWARD_DELEGATING = '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Channels last, flattened to (N*H*W, C) rows, then the vanilla forward pass."""
    n, c, h, w = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)
    out_rows, row_cache = batchnorm_forward(rows, gamma, beta, eps)
    out = out_rows.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()
    return out, (row_cache, (n, c, h, w))
'''

SPATIAL_BACKWARD_DELEGATING = '''
def spatial_batchnorm_backward(dout, cache):
    """The vanilla backward pass on channels-last rows."""
    row_cache, (n, c, h, w) = cache
    drows = dout.transpose(0, 2, 3, 1).reshape(-1, c)
    dx_rows, dgamma, dbeta = batchnorm_backward(drows, row_cache)
    dx = dx_rows.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()
    return dx, dgamma, dbeta
'''

SPATIAL_FORWARD_AXES_DICT = '''
import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Per-channel statistics by reductions over the axes (0, 2, 3); a dict as cache."""
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    g = np.reshape(gamma, (1, -1, 1, 1))
    out = g * x_hat + np.reshape(beta, (1, -1, 1, 1))
    return out, {"x_hat": x_hat, "inv_std": inv_std, "gamma": g}
'''

SPATIAL_BACKWARD_AXES_DICT = '''
import numpy as np


def spatial_batchnorm_backward(dout, cache):
    """Closed form with reductions over the axes (0, 2, 3)."""
    axes = (0, 2, 3)
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    g = dout * gamma
    dx = inv_std * (g - g.mean(axis=axes, keepdims=True)
                    - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''

SPATIAL_FORWARD_MOVEAXIS_CLASS = '''
import numpy as np


class _ci_ChannelRows:
    """The cache: the input as (C, N*H*W) rows and what the staged backward pass needs."""

    def __init__(self, shape, centered, var, eps, gamma):
        self.shape = shape
        self.centered = centered
        self.var = var
        self.eps = eps
        self.gamma = gamma


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """One row per channel: np.moveaxis to (C, N, H, W), flattened to (C, N*H*W)."""
    c = x.shape[1]
    rows = np.moveaxis(x, 1, 0).reshape(c, -1)
    m = rows.shape[1]
    centered = rows - rows.sum(axis=1, keepdims=True) / m
    var = (centered * centered).sum(axis=1, keepdims=True) / m
    x_hat = centered / np.sqrt(var + eps)
    out_rows = np.asarray(gamma).reshape(c, 1) * x_hat + np.asarray(beta).reshape(c, 1)
    out = np.moveaxis(out_rows.reshape((c, x.shape[0]) + x.shape[2:]), 0, 1).copy()
    cache = _ci_ChannelRows(x.shape, centered, var, eps, np.asarray(gamma).reshape(c, 1).copy())
    return out, cache
'''

SPATIAL_BACKWARD_MOVEAXIS_CLASS = '''
import numpy as np


def spatial_batchnorm_backward(dout, cache):
    """Staged backward pass on (C, N*H*W) rows."""
    c = cache.shape[1]
    d_rows = np.moveaxis(dout, 1, 0).reshape(c, -1)
    m = d_rows.shape[1]
    std = np.sqrt(cache.var + cache.eps)
    x_hat = cache.centered / std
    dbeta = d_rows.sum(axis=1)
    dgamma = (d_rows * x_hat).sum(axis=1)
    dx_hat = d_rows * cache.gamma
    dcentered = dx_hat / std
    dstd = -(dx_hat * cache.centered).sum(axis=1, keepdims=True) / std ** 2
    dvar = dstd / (2.0 * std)
    dcentered = dcentered + 2.0 * cache.centered * dvar / m
    drows = dcentered - dcentered.sum(axis=1, keepdims=True) / m
    dx = np.moveaxis(drows.reshape((c, dout.shape[0]) + tuple(dout.shape[2:])), 0, 1).copy()
    return dx, dgamma, dbeta
'''

SPATIAL_FORWARD_CHANNEL_LOOP = '''
import numpy as np


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """A loop over the channels; the cache is a tuple of per-channel tuples."""
    out = np.empty(x.shape, dtype=np.result_type(x, gamma, beta, 1.0))
    per_channel = []
    for c in range(x.shape[1]):
        values = x[:, c]
        mean = values.mean()
        var = values.var()
        std = np.sqrt(var + eps)
        x_hat = (values - mean) / std
        out[:, c] = gamma[c] * x_hat + beta[c]
        per_channel.append((x_hat, std, gamma[c]))
    return out, tuple(per_channel)
'''

SPATIAL_BACKWARD_CHANNEL_LOOP = '''
import numpy as np


def spatial_batchnorm_backward(dout, cache):
    """A loop over the channels, the closed form for each."""
    dx = np.empty(dout.shape, dtype=np.float64)
    dgamma = np.empty(len(cache))
    dbeta = np.empty(len(cache))
    for c, (x_hat, std, gamma) in enumerate(cache):
        d = dout[:, c]
        m = d.size
        dbeta[c] = d.sum()
        dgamma[c] = (d * x_hat).sum()
        dx[:, c] = gamma / (m * std) * (m * d - dbeta[c] - x_hat * dgamma[c])
    return dx, dgamma, dbeta
'''

RIGHT: list[CorrectImplementation] = [
    CorrectImplementation("staged-tuple-forward", "batchnorm_forward", FORWARD_STAGED_TUPLE),
    CorrectImplementation("closed-dict-forward", "batchnorm_forward", FORWARD_CLOSED_DICT),
    CorrectImplementation("einsum-class-forward", "batchnorm_forward", FORWARD_EINSUM_CLASS),
    CorrectImplementation("namedtuple-column-loop-forward", "batchnorm_forward", FORWARD_NAMEDTUPLE_COLUMNS),
    CorrectImplementation("staged-graph-backward", "batchnorm_backward", BACKWARD_STAGED_TUPLE),
    CorrectImplementation("closed-form-dict-backward", "batchnorm_backward", BACKWARD_CLOSED_DICT),
    CorrectImplementation("einsum-class-backward", "batchnorm_backward", BACKWARD_EINSUM_CLASS),
    CorrectImplementation("jacobian-columns-backward", "batchnorm_backward", BACKWARD_JACOBIAN_COLUMNS),
    CorrectImplementation("delegating-transpose-forward", "spatial_batchnorm_forward", SPATIAL_FORWARD_DELEGATING),
    CorrectImplementation("axes-dict-forward", "spatial_batchnorm_forward", SPATIAL_FORWARD_AXES_DICT),
    CorrectImplementation("moveaxis-class-forward", "spatial_batchnorm_forward", SPATIAL_FORWARD_MOVEAXIS_CLASS),
    CorrectImplementation("channel-loop-forward", "spatial_batchnorm_forward", SPATIAL_FORWARD_CHANNEL_LOOP),
    CorrectImplementation("delegating-transpose-backward", "spatial_batchnorm_backward",
                          SPATIAL_BACKWARD_DELEGATING),
    CorrectImplementation("axes-dict-backward", "spatial_batchnorm_backward", SPATIAL_BACKWARD_AXES_DICT),
    CorrectImplementation("moveaxis-staged-class-backward", "spatial_batchnorm_backward",
                          SPATIAL_BACKWARD_MOVEAXIS_CLASS),
    CorrectImplementation("channel-loop-backward", "spatial_batchnorm_backward", SPATIAL_BACKWARD_CHANNEL_LOOP),
]

#: (target, name) of a backward entry -> (target, name) of the forward entry whose cache it reads.
#: The delegating spatial entries read the cache of the notebook's own vanilla pair (any pair).
PAIRED_FORWARD: dict[tuple[str, str], tuple[str, str]] = {
    ("batchnorm_backward", "staged-graph-backward"): ("batchnorm_forward", "staged-tuple-forward"),
    ("batchnorm_backward", "closed-form-dict-backward"): ("batchnorm_forward", "closed-dict-forward"),
    ("batchnorm_backward", "einsum-class-backward"): ("batchnorm_forward", "einsum-class-forward"),
    ("batchnorm_backward", "jacobian-columns-backward"): ("batchnorm_forward", "namedtuple-column-loop-forward"),
    ("spatial_batchnorm_backward", "delegating-transpose-backward"):
        ("spatial_batchnorm_forward", "delegating-transpose-forward"),
    ("spatial_batchnorm_backward", "axes-dict-backward"): ("spatial_batchnorm_forward", "axes-dict-forward"),
    ("spatial_batchnorm_backward", "moveaxis-staged-class-backward"):
        ("spatial_batchnorm_forward", "moveaxis-class-forward"),
    ("spatial_batchnorm_backward", "channel-loop-backward"): ("spatial_batchnorm_forward", "channel-loop-forward"),
}


# ---------------------------------------------------------------------------
# batchnorm_backward_alt: one per forward entry, since each reads its forward's cache

ALT_STAGED_TUPLE = '''
import numpy as np


def batchnorm_backward_alt(dout, cache):
    """dx = gamma / (N std) * (N dout - dbeta - x_hat * dgamma): the sums are the parameter gradients."""
    xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (xhat * dout).sum(axis=0)
    dx = (gamma * ivar / n) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
'''

ALT_CLOSED_DICT = '''
import numpy as np


def batchnorm_backward_alt(dout, cache):
    """Centre the scaled gradient, then remove its component along x_hat; divide by the std."""
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    g = dout * gamma
    centred = g - np.mean(g, axis=0, keepdims=True)
    along = np.mean(centred * x_hat, axis=0, keepdims=True)
    dx = (centred - x_hat * along) * inv_std
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)
'''

ALT_EINSUM_CLASS = '''
import numpy as np


def batchnorm_backward_alt(dout, cache):
    """The closed form with every reduction and broadcast written as an einsum."""
    n = cache.n
    g = np.einsum("nd,d->nd", dout, cache.gamma)
    mean_g = np.einsum("nd->d", g) / n
    mean_gx = np.einsum("nd,nd->d", g, cache.x_hat) / n
    dx = np.einsum("d,nd->nd", cache.inv_std, g - mean_g - np.einsum("nd,d->nd", cache.x_hat, mean_gx))
    return dx, np.einsum("nd,nd->d", dout, cache.x_hat), np.einsum("nd->d", dout)
'''

ALT_NAMEDTUPLE_COVARIANCE = '''
import numpy as np


def batchnorm_backward_alt(dout, cache):
    """From the saved mean and variance: dx = gamma / s * (dout - mean(dout) - (x - mu) cov(dout, x) / s^2)."""
    centred = cache.x - cache.mean
    s2 = cache.var + cache.eps
    s = np.sqrt(s2)
    covariance = (dout * centred).mean(axis=0)
    dx = cache.gamma / s * (dout - dout.mean(axis=0) - centred * covariance / s2)
    return dx, (dout * centred).sum(axis=0) / s, dout.sum(axis=0)
'''

# ---------------------------------------------------------------------------
# init_scale_sweep: three ways to write the training loop

SWEEP_CLASS = '''
import numpy as np


class _ci_Net:
    """An MLP whose layers are dicts of arrays, with a forward pass that keeps its caches."""

    def __init__(self, rng, scale, hidden, use_bn):
        sizes = [X_TRAIN.shape[1]] + list(hidden)
        self.layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layer = {"w": scale * np.sqrt(2.0 / fan_in) * rng.standard_normal((fan_in, fan_out)),
                     "b": np.zeros(fan_out)}
            if use_bn:
                layer["gamma"], layer["beta"] = np.ones(fan_out), np.zeros(fan_out)
            self.layers.append(layer)
        self.head = {"w": rng.standard_normal((sizes[-1], 10)) / np.sqrt(sizes[-1]), "b": np.zeros(10)}
        self.use_bn = use_bn

    def scores(self, x):
        self.caches = []
        for layer in self.layers:
            x, c1 = affine_forward(x, layer["w"], layer["b"])
            c2 = None
            if self.use_bn:
                x, c2 = batchnorm_forward(x, layer["gamma"], layer["beta"])
            x, c3 = relu_forward(x)
            self.caches.append((c1, c2, c3))
        out, self.head_cache = affine_forward(x, self.head["w"], self.head["b"])
        return out

    def step(self, dscores, lr):
        d, dw, db = affine_backward(dscores, self.head_cache)
        self.head["w"] -= lr * dw
        self.head["b"] -= lr * db
        for layer, (c1, c2, c3) in zip(self.layers[::-1], self.caches[::-1]):
            d = relu_backward(d, c3)
            if self.use_bn:
                d, dgamma, dbeta = batchnorm_backward(d, c2)
                layer["gamma"] -= lr * dgamma
                layer["beta"] -= lr * dbeta
            d, dw, db = affine_backward(d, c1)
            layer["w"] -= lr * dw
            layer["b"] -= lr * db


def init_scale_sweep(scales, seed=0, steps=150, lr=0.1, batch_size=64, hidden=(64, 64, 64, 64)):
    """A small class for the network; mini-batches from shuffled epochs."""
    result = {"with_bn": [], "without_bn": []}
    for use_bn, key in ((True, "with_bn"), (False, "without_bn")):
        for scale in scales:
            rng = np.random.default_rng(seed)
            net = _ci_Net(rng, scale, hidden, use_bn)
            order, position = rng.permutation(len(X_TRAIN)), 0
            with np.errstate(all="ignore"):
                for _ in range(steps):
                    if position + batch_size > len(order):
                        order, position = rng.permutation(len(X_TRAIN)), 0
                    batch = order[position:position + batch_size]
                    position += batch_size
                    _, dscores = softmax_loss(net.scores(X_TRAIN[batch]), Y_TRAIN[batch])
                    net.step(dscores, lr)
                predictions = np.argmax(net.scores(X_VAL), axis=1)
            result[key].append(float((predictions == Y_VAL).mean()))
    return result
'''

SWEEP_FUNCTIONAL = '''
import itertools

import numpy as np


def init_scale_sweep(scales, seed=0, steps=150, lr=0.1, batch_size=64, hidden=(64, 64, 64, 64)):
    """Parameters in one flat dict keyed by name; runs in itertools.product order, filled in afterwards."""
    accuracy = {}
    for use_bn, scale in itertools.product((False, True), scales):
        rng = np.random.default_rng(seed)
        sizes = [64] + list(hidden)
        depth = len(hidden)
        p = {}
        for i in range(depth):
            p[f"W{i}"] = rng.normal(size=(sizes[i], sizes[i + 1])) * (scale * (2.0 / sizes[i]) ** 0.5)
            p[f"b{i}"] = np.zeros(sizes[i + 1])
            p[f"g{i}"] = np.ones(sizes[i + 1])
            p[f"B{i}"] = np.zeros(sizes[i + 1])
        p["Wout"] = rng.normal(size=(sizes[-1], 10)) * (1.0 / sizes[-1]) ** 0.5
        p["bout"] = np.zeros(10)

        def run(x):
            tape = []
            for i in range(depth):
                z, ca = affine_forward(x, p[f"W{i}"], p[f"b{i}"])
                cb = None
                if use_bn:
                    z, cb = batchnorm_forward(z, p[f"g{i}"], p[f"B{i}"])
                x, cr = relu_forward(z)
                tape.append((ca, cb, cr))
            out, co = affine_forward(x, p["Wout"], p["bout"])
            return out, tape, co

        old = np.seterr(all="ignore")
        try:
            for _ in range(steps):
                idx = rng.choice(X_TRAIN.shape[0], batch_size, replace=False)
                out, tape, co = run(X_TRAIN[idx])
                loss, dout = softmax_loss(out, Y_TRAIN[idx])
                grads = {}
                dout, grads["Wout"], grads["bout"] = affine_backward(dout, co)
                for i in range(depth - 1, -1, -1):
                    ca, cb, cr = tape[i]
                    dout = relu_backward(dout, cr)
                    if use_bn:
                        dout, grads[f"g{i}"], grads[f"B{i}"] = batchnorm_backward_alt(dout, cb)
                    dout, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dout, ca)
                for name, grad in grads.items():
                    p[name] = p[name] - lr * grad
            out, _, _ = run(X_VAL)
        finally:
            np.seterr(**old)
        accuracy[use_bn, scale] = float(np.count_nonzero(out.argmax(1) == Y_VAL)) / len(Y_VAL)
    return {"with_bn": [accuracy[True, s] for s in scales], "without_bn": [accuracy[False, s] for s in scales]}
'''

SWEEP_STACKED = '''
import numpy as np


def init_scale_sweep(scales, seed=0, steps=150, lr=0.1, batch_size=64, hidden=(64, 64, 64, 64)):
    """One run per (scale, flag) through a local trainer; the network is a list of
    (w, b, gamma, beta) tuples rebuilt after every step, and the accuracies come back as a NumPy array."""

    def train(scale, use_bn):
        rng = np.random.default_rng(seed)
        widths = (X_TRAIN.shape[1],) + tuple(hidden)
        net = [(rng.normal(0.0, scale * np.sqrt(2.0 / a), (a, b)), np.zeros(b), np.ones(b), np.zeros(b))
               for a, b in zip(widths[:-1], widths[1:])]
        w_out = rng.normal(0.0, np.sqrt(1.0 / widths[-1]), (widths[-1], 10))
        b_out = np.zeros(10)

        def forward(h, keep):
            for w, b, gamma, beta in net:
                h, c_aff = affine_forward(h, w, b)
                c_bn = None
                if use_bn:
                    h, c_bn = batchnorm_forward(h, gamma, beta)
                h, c_relu = relu_forward(h)
                keep.append((c_aff, c_bn, c_relu))
            return affine_forward(h, w_out, b_out)

        for _ in range(steps):
            rows = rng.choice(len(Y_TRAIN), size=batch_size, replace=False)
            caches = []
            scores, c_out = forward(X_TRAIN[rows], caches)
            _, d = softmax_loss(scores, Y_TRAIN[rows])
            d, dw_out, db_out = affine_backward(d, c_out)
            new_net = []
            for (w, b, gamma, beta), (c_aff, c_bn, c_relu) in zip(net[::-1], caches[::-1]):
                d = relu_backward(d, c_relu)
                if use_bn:
                    d, dgamma, dbeta = batchnorm_backward(d, c_bn)
                    gamma, beta = gamma - lr * dgamma, beta - lr * dbeta
                d, dw, db = affine_backward(d, c_aff)
                new_net.append((w - lr * dw, b - lr * db, gamma, beta))
            net[:] = new_net[::-1]
            w_out, b_out = w_out - lr * dw_out, b_out - lr * db_out
        scores, _ = forward(X_VAL, [])
        return np.mean(np.argmax(scores, axis=1) == Y_VAL)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        table = np.array([[train(s, flag) for s in scales] for flag in (True, False)])
    return {"with_bn": table[0], "without_bn": table[1]}
'''

RIGHT += [
    CorrectImplementation("sums-staged-alt", "batchnorm_backward_alt", ALT_STAGED_TUPLE),
    CorrectImplementation("centred-projection-dict-alt", "batchnorm_backward_alt", ALT_CLOSED_DICT),
    CorrectImplementation("einsum-class-alt", "batchnorm_backward_alt", ALT_EINSUM_CLASS),
    CorrectImplementation("covariance-namedtuple-alt", "batchnorm_backward_alt", ALT_NAMEDTUPLE_COVARIANCE),
    CorrectImplementation("class-epochs-sweep", "init_scale_sweep", SWEEP_CLASS),
    CorrectImplementation("flat-dict-product-sweep", "init_scale_sweep", SWEEP_FUNCTIONAL),
    CorrectImplementation("tuple-list-array-sweep", "init_scale_sweep", SWEEP_STACKED),
]

PAIRED_FORWARD.update({
    ("batchnorm_backward_alt", "sums-staged-alt"): ("batchnorm_forward", "staged-tuple-forward"),
    ("batchnorm_backward_alt", "centred-projection-dict-alt"): ("batchnorm_forward", "closed-dict-forward"),
    ("batchnorm_backward_alt", "einsum-class-alt"): ("batchnorm_forward", "einsum-class-forward"),
    ("batchnorm_backward_alt", "covariance-namedtuple-alt"): ("batchnorm_forward", "namedtuple-column-loop-forward"),
})
