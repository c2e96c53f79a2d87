"""Hidden tests of ``bn_math``: batch normalization forward and backward in NumPy.

The reference is PyTorch: ``torch.nn.functional.batch_norm`` in training mode
for the forward pass and autograd for the backward pass. The inputs are chosen
so that the usual mistakes change the result visibly:

- a batch of two, where the unbiased variance is twice the biased one;
- a large ``eps`` with features of tiny variance, where ``eps`` outside the
  square root, or no ``eps`` at all, changes every output;
- features with a huge scale and offset, where a forgotten mean subtraction or
  a variance computed around zero shows;
- non-square shapes, where statistics over the wrong axis cannot hide;
- gamma and beta far from 1 and 0, and of different sizes, so that swapping
  them or dropping one shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autograder.checks.core import Assignment, Mistake, Namespace, Outputs, Probe, ProbeError

# ---------------------------------------------------------------------------
# Inputs


def _features(seed: int, n: int, d: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """An (n, d) batch whose columns have different means and spreads."""
    rng = np.random.default_rng(seed)
    column_scale = scale * rng.uniform(0.5, 2.0, size=d)
    column_offset = offset + rng.normal(0.0, 3.0, size=d)
    return rng.normal(size=(n, d)) * column_scale + column_offset


def _affine(seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.5, size=d), rng.normal(1.0, 1.0, size=d)


def _images(seed: int, shape: tuple[int, int, int, int], scale: float = 1.0) -> np.ndarray:
    """An (N, C, H, W) batch whose channels have different means and spreads."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    channel_scale = scale * rng.uniform(0.5, 2.0, size=(1, c, 1, 1))
    channel_offset = rng.normal(0.0, 3.0, size=(1, c, 1, 1))
    # A spatial pattern shared by every image makes per-pixel statistics differ
    # from per-channel ones.
    pattern = rng.normal(0.0, 2.0, size=(1, 1, h, w))
    return rng.normal(size=shape) * channel_scale + channel_offset + pattern


def _output_gradient(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A non-zero mean per feature: the mean terms of the backward pass matter.
    return rng.normal(size=shape) + rng.normal(0.0, 1.0, size=(1,) + shape[1:])


# ---------------------------------------------------------------------------
# Probes


def _call_forward(ns: Namespace, name: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                  eps: float | None) -> tuple[np.ndarray, Any]:
    forward = ns[name]
    result = forward(x, gamma, beta) if eps is None else forward(x, gamma, beta, eps=eps)
    if not isinstance(result, tuple) or len(result) != 2:
        raise ProbeError(f"{name} should return a tuple (out, cache), got {type(result).__name__}")
    out, cache = result
    return np.asarray(out), cache


def _forward_probe(x_seed: int, n: int, d: int, eps: float | None, scale: float = 1.0,
                   offset: float = 0.0):
    def run(ns: Namespace) -> Outputs:
        x = _features(x_seed, n, d, scale, offset)
        gamma, beta = _affine(x_seed + 1, d)
        x_before = x.copy()
        out, _ = _call_forward(ns, "batchnorm_forward", x, gamma, beta, eps)
        return {"out": out, "x_unchanged": np.array(np.array_equal(x, x_before))}

    return run


def _backward_probe(seed: int, n: int, d: int, eps: float | None, scale: float = 1.0):
    def run(ns: Namespace) -> Outputs:
        x = _features(seed, n, d, scale)
        gamma, beta = _affine(seed + 1, d)
        dout = _output_gradient(seed + 2, (n, d))
        _, cache = _call_forward(ns, "batchnorm_forward", x, gamma, beta, eps)
        return _gradients(ns["batchnorm_backward"], "batchnorm_backward", dout, cache)

    return run


def _spatial_forward_probe(seed: int, shape: tuple[int, int, int, int], eps: float | None,
                           scale: float = 1.0):
    def run(ns: Namespace) -> Outputs:
        x = _images(seed, shape, scale)
        gamma, beta = _affine(seed + 1, shape[1])
        x_before = x.copy()
        out, _ = _call_forward(ns, "spatial_batchnorm_forward", x, gamma, beta, eps)
        return {"out": out, "x_unchanged": np.array(np.array_equal(x, x_before))}

    return run


def _spatial_backward_probe(seed: int, shape: tuple[int, int, int, int], eps: float | None):
    def run(ns: Namespace) -> Outputs:
        x = _images(seed, shape)
        gamma, beta = _affine(seed + 1, shape[1])
        dout = _output_gradient(seed + 2, shape)
        _, cache = _call_forward(ns, "spatial_batchnorm_forward", x, gamma, beta, eps)
        return _gradients(ns["spatial_batchnorm_backward"], "spatial_batchnorm_backward", dout, cache)

    return run


def _gradients(backward: Any, name: str, dout: np.ndarray, cache: Any) -> Outputs:
    result = backward(dout, cache)
    if not isinstance(result, tuple) or len(result) != 3:
        raise ProbeError(f"{name} should return a tuple (dx, dgamma, dbeta), got {type(result).__name__}")
    dx, dgamma, dbeta = (np.asarray(g) for g in result)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


# ---------------------------------------------------------------------------
# The reference: PyTorch


def reference() -> Namespace:
    import torch
    import torch.nn.functional as F

    def forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
        bt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        out = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
        return out.detach().numpy(), (xt, gt, bt, out)

    def backward(dout: np.ndarray, cache: Any):
        xt, gt, bt, out = cache
        grads = torch.autograd.grad(out, (xt, gt, bt), torch.tensor(dout, dtype=torch.float64))
        return tuple(g.numpy() for g in grads)

    return {
        "batchnorm_forward": forward,
        "batchnorm_backward": backward,
        "spatial_batchnorm_forward": forward,
        "spatial_batchnorm_backward": backward,
    }


# ---------------------------------------------------------------------------
# Known mistakes, written as a student would, to name them in feedback.


def _numpy_batchnorm(ddof: int = 0, eps_inside: bool = True, use_eps: bool = True,
                     axis: int = 0, swap_affine: bool = False, center: bool = True,
                     full_backward: bool = True, dgamma_uses_xhat: bool = True):
    """Forward and backward of (N, D) batch norm with one switch flipped."""

    def forward(x, gamma, beta, eps=1e-5):
        eps = eps if use_eps else 0.0
        mean = x.mean(axis=axis, keepdims=True) if center else np.zeros_like(x[:1])
        var = x.var(axis=axis, ddof=ddof, keepdims=True) if center else (x ** 2).mean(axis=axis, keepdims=True)
        std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
        xhat = (x - mean) / std
        out = beta * xhat + gamma if swap_affine else gamma * xhat + beta
        return out, (xhat, std, gamma)

    def backward(dout, cache):
        xhat, std, gamma = cache
        n = dout.shape[0]
        dbeta = dout.sum(axis=0)
        dgamma = (dout * xhat).sum(axis=0) if dgamma_uses_xhat else dout.sum(axis=0)
        dxhat = dout * gamma
        if full_backward:
            dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
        else:
            dx = dxhat / std
        return dx, dgamma, dbeta

    return forward, backward


def _spatial(forward, backward):
    """Lift (N, D) functions to (N, C, H, W) the right way (channels last, then back)."""

    def spatial_forward(x, gamma, beta, eps=1e-5):
        n, c, h, w = x.shape
        out, cache = forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
        return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), (cache, x.shape)

    def spatial_backward(dout, cache):
        inner, shape = cache
        n, c, h, w = shape
        dx, dgamma, dbeta = backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), inner)
        return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta

    return spatial_forward, spatial_backward


def _spatial_reshape_without_transpose(forward, backward):
    """The classic bug: ``x.reshape(-1, C)`` on an (N, C, H, W) array mixes channels."""

    def spatial_forward(x, gamma, beta, eps=1e-5):
        n, c, h, w = x.shape
        out, cache = forward(x.reshape(-1, c), gamma, beta, eps)
        return out.reshape(n, c, h, w), (cache, x.shape)

    def spatial_backward(dout, cache):
        inner, shape = cache
        n, c = shape[:2]
        dx, dgamma, dbeta = backward(dout.reshape(-1, c), inner)
        return dx.reshape(shape), dgamma, dbeta

    return spatial_forward, spatial_backward


def _spatial_per_pixel():
    """Statistics over the batch only, one mean per (C, H, W) position."""

    def spatial_forward(x, gamma, beta, eps=1e-5):
        mean = x.mean(axis=0, keepdims=True)
        var = x.var(axis=0, keepdims=True)
        xhat = (x - mean) / np.sqrt(var + eps)
        return gamma[None, :, None, None] * xhat + beta[None, :, None, None], None

    return spatial_forward


def _mistake(description: str, **switches) -> Mistake:
    forward, backward = _numpy_batchnorm(**switches)
    spatial_forward, spatial_backward = _spatial(forward, backward)
    return Mistake(description, {
        "batchnorm_forward": forward,
        "batchnorm_backward": backward,
        "spatial_batchnorm_forward": spatial_forward,
        "spatial_batchnorm_backward": spatial_backward,
    })


UNBIASED_VARIANCE = _mistake(
    "the unbiased variance (dividing by N - 1): batch norm normalizes with the biased one (dividing by N)",
    ddof=1)
EPS_OUTSIDE_SQRT = _mistake(
    "eps added outside the square root: the denominator is sqrt(var + eps), not sqrt(var) + eps",
    eps_inside=False)
NO_EPS = _mistake("eps left out of the denominator", use_eps=False)
WRONG_AXIS = _mistake(
    "statistics over the wrong axis: one mean per sample (axis=1) instead of one per feature (axis=0)", axis=1)
SWAPPED_AFFINE = _mistake("gamma and beta swapped: the output is gamma * x_hat + beta", swap_affine=True)
NOT_CENTERED = _mistake("the mean was not subtracted before scaling", center=False)
NO_STATISTICS_GRADIENT = _mistake(
    "the gradient through the batch mean and variance left out: dx must include the terms that come from "
    "mu_B and sigma_B depending on every x_i", full_backward=False)
DGAMMA_WITHOUT_XHAT = _mistake("dgamma summed dout alone: it is the sum of dout * x_hat", dgamma_uses_xhat=False)

_forward_2d, _backward_2d = _numpy_batchnorm()
SPATIAL_RESHAPE = Mistake(
    "x reshaped to (-1, C) without moving the channel axis last first: transpose to (N, H, W, C) before "
    "reshaping, or reduce over axes (0, 2, 3)",
    dict(zip(("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
             _spatial_reshape_without_transpose(_forward_2d, _backward_2d))))
SPATIAL_PER_PIXEL = Mistake(
    "statistics per pixel (over N only): a channel's statistics are taken over N, H and W together",
    {"spatial_batchnorm_forward": _spatial_per_pixel()})

_FORWARD_MISTAKES = (UNBIASED_VARIANCE, EPS_OUTSIDE_SQRT, NO_EPS, WRONG_AXIS, SWAPPED_AFFINE, NOT_CENTERED)
_BACKWARD_MISTAKES = (NO_STATISTICS_GRADIENT, DGAMMA_WITHOUT_XHAT, UNBIASED_VARIANCE, EPS_OUTSIDE_SQRT)
_SPATIAL_MISTAKES = (SPATIAL_RESHAPE, SPATIAL_PER_PIXEL, UNBIASED_VARIANCE, EPS_OUTSIDE_SQRT)

_GRADIENT_LABELS = {"dx": "`dx`", "dgamma": "`dgamma`", "dbeta": "`dbeta`"}

# ---------------------------------------------------------------------------

ASSIGNMENT = Assignment(
    name="bn_math",
    reference=reference,
    tests={
        "test_batchnorm_forward": (
            Probe("forward on a (64, 7) batch with the default eps", ("batchnorm_forward",),
                  _forward_probe(10, 64, 7, None), mistakes=_FORWARD_MISTAKES),
            Probe("forward on a batch of 2", ("batchnorm_forward",),
                  _forward_probe(11, 2, 5, 1e-5), mistakes=_FORWARD_MISTAKES),
            Probe("forward with eps=0.5 and features of tiny variance", ("batchnorm_forward",),
                  _forward_probe(12, 9, 4, 0.5, scale=1e-3), mistakes=_FORWARD_MISTAKES),
            Probe("forward on features with a huge scale and offset", ("batchnorm_forward",),
                  _forward_probe(13, 6, 3, 1e-5, scale=1e4, offset=1e3), mistakes=_FORWARD_MISTAKES),
            Probe("forward on a (3, 11) batch", ("batchnorm_forward",),
                  _forward_probe(14, 3, 11, 1e-3), mistakes=_FORWARD_MISTAKES),
        ),
        "test_batchnorm_backward": (
            Probe("backward on a (16, 5) batch", ("batchnorm_forward", "batchnorm_backward"),
                  _backward_probe(20, 16, 5, None), mistakes=_BACKWARD_MISTAKES, labels=_GRADIENT_LABELS),
            Probe("backward on a batch of 2", ("batchnorm_forward", "batchnorm_backward"),
                  _backward_probe(21, 2, 3, 1e-5), mistakes=_BACKWARD_MISTAKES, labels=_GRADIENT_LABELS),
            Probe("backward with eps=0.5 and features of tiny variance",
                  ("batchnorm_forward", "batchnorm_backward"),
                  _backward_probe(22, 7, 4, 0.5, scale=1e-3), mistakes=_BACKWARD_MISTAKES,
                  labels=_GRADIENT_LABELS),
            Probe("backward on a (4, 9) batch", ("batchnorm_forward", "batchnorm_backward"),
                  _backward_probe(23, 4, 9, 1e-2), mistakes=_BACKWARD_MISTAKES, labels=_GRADIENT_LABELS),
        ),
        "test_spatial_batchnorm_forward": (
            Probe("spatial forward on a (2, 3, 4, 5) batch", ("spatial_batchnorm_forward",),
                  _spatial_forward_probe(30, (2, 3, 4, 5), None), mistakes=_SPATIAL_MISTAKES),
            Probe("spatial forward on a (5, 4, 2, 3) batch with eps=0.5", ("spatial_batchnorm_forward",),
                  _spatial_forward_probe(31, (5, 4, 2, 3), 0.5, scale=1e-2), mistakes=_SPATIAL_MISTAKES),
            Probe("spatial forward on a (1, 2, 3, 3) batch", ("spatial_batchnorm_forward",),
                  _spatial_forward_probe(32, (1, 2, 3, 3), 1e-5), mistakes=_SPATIAL_MISTAKES),
        ),
        "test_spatial_batchnorm_backward": (
            Probe("spatial backward on a (2, 3, 4, 5) batch",
                  ("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
                  _spatial_backward_probe(40, (2, 3, 4, 5), None), mistakes=_SPATIAL_MISTAKES + _BACKWARD_MISTAKES,
                  labels=_GRADIENT_LABELS),
            Probe("spatial backward on a (3, 2, 3, 2) batch with eps=0.1",
                  ("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
                  _spatial_backward_probe(41, (3, 2, 3, 2), 0.1), mistakes=_SPATIAL_MISTAKES + _BACKWARD_MISTAKES,
                  labels=_GRADIENT_LABELS),
        ),
    },
    forbidden={
        name: ("torch", "torch.nn.functional.batch_norm", "torch.batch_norm")
        for name in ("batchnorm_forward", "batchnorm_backward",
                     "spatial_batchnorm_forward", "spatial_batchnorm_backward")
    },
)
