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
