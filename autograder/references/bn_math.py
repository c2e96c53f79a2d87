"""The PyTorch reference and the known mistakes of ``bn_math`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autograder.checks.core import Mistake, Namespace

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
                     backward_paths: str = "both", dgamma_uses_xhat: bool = True,
                     dgamma_times_gamma: bool = False, backward_eps: float | None = None):
    """Forward and backward of (N, D) batch norm with one switch flipped.

    ``backward_paths``: which of the paths through the batch statistics the
    backward keeps (``"both"``, ``"mean"``, ``"variance"`` or ``"none"``);
    ``backward_eps``: an eps the backward uses whatever the forward's was.
    """

    def forward(x, gamma, beta, eps=1e-5):
        eps = eps if use_eps else 0.0
        mean = x.mean(axis=axis, keepdims=True) if center else np.zeros_like(x[:1])
        var = x.var(axis=axis, ddof=ddof, keepdims=True) if center else (x ** 2).mean(axis=axis, keepdims=True)
        std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
        xhat = (x - mean) / std
        out = beta * xhat + gamma if swap_affine else gamma * xhat + beta
        return out, (x, mean, var, std, gamma)

    def backward(dout, cache):
        x, mean, var, std, gamma = cache
        if backward_eps is not None:
            std = np.sqrt(var + backward_eps)
        xhat = (x - mean) / std
        dbeta = dout.sum(axis=0)
        dgamma = (dout * xhat).sum(axis=0) if dgamma_uses_xhat else dout.sum(axis=0)
        if dgamma_times_gamma:
            dgamma = dgamma * gamma
        dxhat = dout * gamma
        mean_term = dxhat.mean(axis=0) if backward_paths in ("both", "mean") else 0.0
        variance_term = xhat * (dxhat * xhat).mean(axis=0) if backward_paths in ("both", "variance") else 0.0
        dx = (dxhat - mean_term - variance_term) / std
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
    "mu_B and sigma_B depending on every x_i", backward_paths="none")
NO_MEAN_PATH = _mistake(
    "the path through the batch mean left out of dx (the term -mean(dx_hat) / sigma)", backward_paths="variance")
NO_VARIANCE_PATH = _mistake(
    "the path through the batch variance left out of dx (the term -x_hat * mean(dx_hat * x_hat) / sigma)",
    backward_paths="mean")
DGAMMA_TIMES_GAMMA = _mistake("dgamma multiplied by gamma: it is the sum of dout * x_hat, with no gamma",
                              dgamma_times_gamma=True)
BACKWARD_DEFAULT_EPS = _mistake(
    "the backward used eps=1e-5 whatever eps the forward was given: keep the forward's eps (or its sigma) "
    "in the cache", backward_eps=1e-5)
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

MISTAKES: dict[str, Mistake] = {name: value for name, value in globals().items() if isinstance(value, Mistake)}



# ---------------------------------------------------------------------------
# Given a wrong forward pass: what a right backward pass returns on its cache


def _backward_at_student_statistics(student: dict[str, np.ndarray],
                                    reference: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The batch-norm gradients at the normalization the student's forward actually applied.

    A backward that is right reads x_hat and sigma from the forward's cache;
    a forward with a mistake (the unbiased variance, eps outside the root)
    caches its own x_hat or sigma or both, and a right backward then returns
    the usual formula at those. Each mix is one candidate. Computed here,
    from the student's forward output and the inputs of the grader's own run,
    never in the sandbox.
    """
    x, gamma, beta, dout = (reference[f"input:{k}"] for k in ("x", "gamma", "beta", "dout"))
    out = student.get("plausible:out")
    if out is None or out.shape != x.shape or np.any(np.abs(gamma) < 1e-12):
        return []
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    view = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    g, b = gamma.reshape(view), beta.reshape(view)
    eps = reference["input:eps"].item() if "input:eps" in reference else None
    centered = x - x.mean(axis=axes, keepdims=True)
    x_hat_student = (out - b) / g
    denominator = (centered * x_hat_student).sum(axis=axes, keepdims=True)
    sigma_true = np.sqrt((centered ** 2).mean(axis=axes, keepdims=True) + (1e-5 if eps is None else eps))
    x_hat_true = centered / sigma_true
    candidates = []
    sigmas = [sigma_true]
    if np.all(np.abs(denominator) > 1e-300):
        sigmas.append((centered ** 2).sum(axis=axes, keepdims=True) / denominator)
    for x_hat in (x_hat_student, x_hat_true):
        for sigma in sigmas:
            dx_hat = dout * g
            dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
                  - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) / sigma
            candidates.append({"dx": dx, "dgamma": (dout * x_hat).sum(axis=axes), "dbeta": dout.sum(axis=axes)})
    return candidates


GIVEN_CHECKS = {"backward_at_student_statistics": _backward_at_student_statistics}
