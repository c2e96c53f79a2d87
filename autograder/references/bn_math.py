"""The PyTorch reference and the known mistakes of ``bn_math`` (grader only).

Never shipped to the sandbox: :func:`reference` and the default settings of
the mistake builders are correct implementations.
"""

from __future__ import annotations

from typing import Any

import functools

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
                     dgamma_times_gamma: bool = False, backward_eps: float | None = None,
                     fixed_eps: float | None = None, default_eps: float = 1e-5,
                     variance_around_zero: bool = False, in_place: bool = False,
                     skip_last_feature: bool = False, backward_divisor: str = "n",
                     dx_uses_gamma: bool = True, variance_term_uses_xhat: bool = True):
    """Forward and backward of (N, D) batch norm with one switch flipped.

    ``backward_paths``: which of the paths through the batch statistics the
    backward keeps (``"both"``, ``"mean"``, ``"variance"`` or ``"none"``);
    ``backward_eps``: an eps the backward uses whatever the forward's was;
    ``fixed_eps``: an eps the forward uses whatever it is given;
    ``default_eps``: the default of the forward's ``eps`` argument;
    ``variance_around_zero``: the variance is the mean of ``x ** 2`` (the
    numerator is still centred); ``in_place``: ``x -= mean`` on the caller's
    array; ``skip_last_feature``: a loop over features that stops one short,
    leaving the last feature's mean 0 and variance 1; ``backward_divisor``:
    ``"n-1"`` divides the sums of the backward's mean terms by N - 1;
    ``dx_uses_gamma``: False leaves gamma out of ``dx_hat``; ``variance_term_uses_xhat``: False drops
    the factor x_hat of the variance term of ``dx``.
    """

    def forward(x, gamma, beta, eps=None):
        eps = default_eps if eps is None else eps
        eps = fixed_eps if fixed_eps is not None else eps
        eps = eps if use_eps else 0.0
        mean = x.mean(axis=axis, keepdims=True) if center else np.zeros_like(x[:1])
        if variance_around_zero or not center:
            var = (x ** 2).mean(axis=axis, keepdims=True)
        else:
            var = x.var(axis=axis, ddof=ddof, keepdims=True)
        if skip_last_feature:
            mean, var = mean.copy(), var.copy()
            mean[..., -1], var[..., -1] = 0.0, 1.0
        std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
        if in_place:
            x -= mean
            xhat = x / std
            x_seen = x + mean
        else:
            xhat = (x - mean) / std
            x_seen = x
        out = beta * xhat + gamma if swap_affine else gamma * xhat + beta
        return out, (x_seen, mean, var, std, gamma)

    def backward(dout, cache):
        x, mean, var, std, gamma = cache
        if backward_eps is not None:
            std = np.sqrt(var + backward_eps)
        xhat = (x - mean) / std
        dbeta = dout.sum(axis=0)
        dgamma = (dout * xhat).sum(axis=0) if dgamma_uses_xhat else dout.sum(axis=0)
        if dgamma_times_gamma:
            dgamma = dgamma * gamma
        dxhat = dout * gamma if dx_uses_gamma else dout
        n = dout.shape[0] - (1 if backward_divisor == "n-1" else 0)
        mean_term = dxhat.sum(axis=0) / n if backward_paths in ("both", "mean") else 0.0
        variance_term = (xhat if variance_term_uses_xhat else 1.0) * (dxhat * xhat).sum(axis=0) / n \
            if backward_paths in ("both", "variance") else 0.0
        dx = (dxhat - mean_term - variance_term) / std
        return dx, dgamma, dbeta

    return forward, backward


def _spatial(forward, backward, out_back: bool = True, dx_back: bool = True):
    """Lift (N, D) functions to (N, C, H, W) the right way (channels last, then back).

    ``out_back``/``dx_back``: False reshapes the (N*H*W, C) rows of the output
    (of ``dx``) straight to (N, C, H, W), without moving the channels back.
    """

    def back(rows, n, c, h, w, transpose):
        return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2) if transpose else rows.reshape(n, c, h, w)

    def spatial_forward(x, gamma, beta, eps=1e-5):
        n, c, h, w = x.shape
        out, cache = forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
        return back(out, n, c, h, w, out_back), (cache, x.shape)

    def spatial_backward(dout, cache):
        inner, shape = cache
        n, c, h, w = shape
        dx, dgamma, dbeta = backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), inner)
        return back(dx, n, c, h, w, dx_back), dgamma, dbeta

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


def _notebook_style(forward_dtype=None, backward_dtype=None):
    """The forward and backward as the notebook writes them (a cache of x_hat, 1 / sigma and gamma), with
    the arithmetic of one of them done in ``forward_dtype`` / ``backward_dtype`` (float32 where float64 is
    required). Written step for step as a student would, so that a float32 answer matches to the bit."""

    def forward(x, gamma, beta, eps=1e-5):
        if forward_dtype is not None:
            x = x.astype(forward_dtype)
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (x - mean) * inv_std
        out = gamma * x_hat + beta
        return out, (x_hat, inv_std, gamma)

    def backward(dout, cache):
        x_hat, inv_std, gamma = cache
        if backward_dtype is not None:
            dout, x_hat, inv_std = (a.astype(backward_dtype) for a in (dout, x_hat, inv_std))
        dbeta = dout.sum(axis=0)
        dgamma = (dout * x_hat).sum(axis=0)
        dx_hat = dout * gamma
        dx = inv_std * (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0))
        return dx, dgamma, dbeta

    return forward, backward


def _mistake_of(description: str, forward, backward, **spatial_switches) -> Mistake:
    spatial_forward, spatial_backward = _spatial(forward, backward, **spatial_switches)
    return Mistake(description, {
        "batchnorm_forward": forward,
        "batchnorm_backward": backward,
        "spatial_batchnorm_forward": spatial_forward,
        "spatial_batchnorm_backward": spatial_backward,
    })


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

EPS_FIXED = _mistake("eps fixed at 1e-5 whatever eps the function is given: use its `eps` argument",
                     fixed_eps=1e-5)
DEFAULT_EPS_1E6 = _mistake("a default eps of 1e-6: the default is eps=1e-5, as in the signature (and in PyTorch)",
                           default_eps=1e-6)
VARIANCE_AROUND_ZERO = _mistake(
    "the variance taken around zero, the mean of x ** 2: it is the mean of (x - mean) ** 2 (x.var(axis=0))",
    variance_around_zero=True)
X_MODIFIED_IN_PLACE = _mistake(
    "x modified in place (x -= mean): the caller's array must stay as it was; compute x - mean into a new array",
    in_place=True)
LAST_FEATURE_SKIPPED = _mistake(
    "the last feature left out of the loop over features (range(D - 1)), so it kept mean 0 and variance 1: "
    "loop over range(D), or use x.mean(axis=0) and x.var(axis=0)", skip_last_feature=True)
MEANS_OVER_N_MINUS_ONE = _mistake(
    "the sums in dx divided by N - 1: the two mean terms of dx, mean(dx_hat) and mean(dx_hat * x_hat), "
    "are means over the N samples", backward_divisor="n-1")
DX_WITHOUT_GAMMA = _mistake(
    "gamma left out of dx: x_hat reaches the output through gamma * x_hat + beta, so dx_hat = dout * gamma",
    dx_uses_gamma=False)
VARIANCE_TERM_WITHOUT_XHAT = _mistake(
    "the variance term of dx without its factor x_hat: it is x_hat * mean(dx_hat * x_hat), one value per sample",
    variance_term_uses_xhat=False)
FORWARD_FLOAT32 = _mistake_of(
    "the forward computed in float32: keep the input's float64 (float32 keeps only about 7 significant digits)",
    *_notebook_style(forward_dtype=np.float32))
BACKWARD_FLOAT32 = _mistake_of(
    "the backward computed in float32: keep float64 throughout (float32 keeps only about 7 significant digits)",
    *_notebook_style(backward_dtype=np.float32))
SPATIAL_OUT_NOT_TRANSPOSED_BACK = _mistake_of(
    "the (N*H*W, C) output reshaped straight to (N, C, H, W), which scrambles the channels: reshape it to "
    "(N, H, W, C), then transpose(0, 3, 1, 2)", *_notebook_style(), out_back=False)
SPATIAL_DX_NOT_TRANSPOSED_BACK = _mistake_of(
    "the (N*H*W, C) dx reshaped straight to (N, C, H, W), which scrambles the channels: reshape it to "
    "(N, H, W, C), then transpose(0, 3, 1, 2)", *_notebook_style(), dx_back=False)

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
            variance_term = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
            # The closed form, and the node-by-node backward (which recovers x - mean as x_hat * sigma
            # and takes the mean path last): the two agree when x_hat is centred, as a right forward's is.
            for centred in (x_hat, x_hat - x_hat.mean(axis=axes, keepdims=True)):
                dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True) - centred * variance_term) / sigma
                candidates.append({"dx": dx, "dgamma": (dout * x_hat).sum(axis=axes),
                                   "dbeta": dout.sum(axis=axes)})
    return candidates


GIVEN_CHECKS = {"backward_at_student_statistics": _backward_at_student_statistics}


# ---------------------------------------------------------------------------
# The simplified backward and the experiment (added with them)
#
# batchnorm_backward_alt reads the same cache as batchnorm_backward and returns the
# same gradients: its reference is autograd, and every known mistake of the
# backward pass is also one of the simplified backward pass.

_reference_of_the_layer = reference


def reference() -> Namespace:  # noqa: F811 - extends the reference above
    namespace = dict(_reference_of_the_layer())
    namespace["batchnorm_backward_alt"] = namespace["batchnorm_backward"]
    namespace["init_scale_sweep"] = _reference_init_scale_sweep
    return namespace


for _known in MISTAKES.values():
    if "batchnorm_backward" in _known.implementations:
        _known.implementations.setdefault("batchnorm_backward_alt", _known.implementations["batchnorm_backward"])


def _reference_init_scale_sweep(scales, seed=0, steps=150, lr=0.1, batch_size=64, hidden=(64, 64, 64, 64), *,
                                scaled=True, swapped=False, trained=True):
    """The experiment with the notebook's own setup helpers and a NumPy batch norm (the keywords make
    its known mistakes)."""
    from autograder.references.setup_cells import setup_namespace

    helpers = setup_namespace("bn_math")
    x_train, y_train, x_val, y_val = (helpers[k] for k in ("X_TRAIN", "Y_TRAIN", "X_VAL", "Y_VAL"))
    forward_bn, backward_bn = _numpy_batchnorm()

    def run(scale, use_bn):
        rng = np.random.default_rng(seed)
        sizes = [x_train.shape[1], *hidden, 10]
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            std = np.sqrt(1.0 / fan_in) if last else (scale if scaled else 1.0) * np.sqrt(2.0 / fan_in)
            layer = {"w": rng.normal(0.0, std, size=(fan_in, fan_out)), "b": np.zeros(fan_out)}
            if use_bn and not last:
                layer.update(gamma=np.ones(fan_out), beta=np.zeros(fan_out))
            layers.append(layer)

        def forward(h):
            tape = []
            for i, layer in enumerate(layers):
                h, affine = helpers["affine_forward"](h, layer["w"], layer["b"])
                bn = relu = None
                if "gamma" in layer:
                    h, bn = forward_bn(h, layer["gamma"], layer["beta"])
                if i < len(layers) - 1:
                    h, relu = helpers["relu_forward"](h)
                tape.append((affine, bn, relu))
            return h, tape

        for _ in range(steps if trained else 0):
            batch = rng.choice(len(x_train), size=batch_size, replace=False)
            scores, tape = forward(x_train[batch])
            _, d = helpers["softmax_loss"](scores, y_train[batch])
            grads = []
            for layer, (affine, bn, relu) in zip(reversed(layers), reversed(tape)):
                if relu is not None:
                    d = helpers["relu_backward"](d, relu)
                if bn is not None:
                    d, dgamma, dbeta = backward_bn(d, bn)
                    grads += [(layer, "gamma", dgamma), (layer, "beta", dbeta)]
                d, dw, db = helpers["affine_backward"](d, affine)
                grads += [(layer, "w", dw), (layer, "b", db)]
            for layer, name, grad in grads:
                layer[name] = layer[name] - lr * grad
        scores, _ = forward(x_val)
        return float(np.mean(scores.argmax(axis=1) == y_val))

    with np.errstate(all="ignore"):
        with_bn, without_bn = [run(s, True) for s in scales], [run(s, False) for s in scales]
    if swapped:
        with_bn, without_bn = without_bn, with_bn
    return {"with_bn": with_bn, "without_bn": without_bn}


SWEEP_SCALE_NOT_APPLIED = Mistake(
    "the hidden weights drawn at the same scale whatever s is: multiply He's standard deviation sqrt(2 / fan-in) "
    "by s", {"init_scale_sweep": functools.partial(_reference_init_scale_sweep, scaled=False)})
SWEEP_SWAPPED = Mistake("the accuracies with and without batch norm swapped",
                        {"init_scale_sweep": functools.partial(_reference_init_scale_sweep, swapped=True)})
SWEEP_UNTRAINED = Mistake("the accuracy measured before training (or no training step taken)",
                          {"init_scale_sweep": functools.partial(_reference_init_scale_sweep, trained=False)})
MISTAKES.update(SWEEP_SCALE_NOT_APPLIED=SWEEP_SCALE_NOT_APPLIED, SWEEP_SWAPPED=SWEEP_SWAPPED,
                SWEEP_UNTRAINED=SWEEP_UNTRAINED)
