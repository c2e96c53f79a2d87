"""Hidden tests of ``bn_math``: batch normalization forward and backward in NumPy.

The reference (``autograder/references/bn_math.py``, grader only) is PyTorch:
``torch.nn.functional.batch_norm`` in training mode for the forward pass and
autograd for the backward pass. The inputs are drawn per student; their shapes
and scales are chosen so that the usual mistakes change the result visibly:

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

from autograder.checks.core import Assignment, Namespace, Outputs, Probe, ProbeError, student_rng
from autograder.checks.core import experiment_numbers, fraction, student_seed, with_stand_ins

# ---------------------------------------------------------------------------
# Inputs


def _features(seed: int, n: int, d: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """An (n, d) batch whose columns have different means and spreads."""
    rng = student_rng(seed)
    column_scale = scale * rng.uniform(0.5, 2.0, size=d)
    column_offset = offset + rng.normal(0.0, 3.0, size=d)
    return rng.normal(size=(n, d)) * column_scale + column_offset


def _affine(seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = student_rng(seed)
    return rng.uniform(0.5, 2.5, size=d), rng.normal(1.0, 1.0, size=d)


def _images(seed: int, shape: tuple[int, int, int, int], scale: float = 1.0) -> np.ndarray:
    """An (N, C, H, W) batch whose channels have different means and spreads."""
    rng = student_rng(seed)
    n, c, h, w = shape
    channel_scale = scale * rng.uniform(0.5, 2.0, size=(1, c, 1, 1))
    channel_offset = rng.normal(0.0, 3.0, size=(1, c, 1, 1))
    # A spatial pattern shared by every image makes per-pixel statistics differ
    # from per-channel ones.
    pattern = rng.normal(0.0, 2.0, size=(1, 1, h, w))
    return rng.normal(size=shape) * channel_scale + channel_offset + pattern


def _output_gradient(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = student_rng(seed)
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


def _backward_probe(seed: int, n: int, d: int, eps: float | None, scale: float = 1.0,
                    backward: str = "batchnorm_backward"):
    """``backward`` (the staged or the simplified one) on the cache of the student's forward."""

    def run(ns: Namespace) -> Outputs:
        x = _features(seed, n, d, scale)
        gamma, beta = _affine(seed + 1, d)
        dout = _output_gradient(seed + 2, (n, d))
        _, cache = _call_forward(ns, "batchnorm_forward", x, gamma, beta, eps)
        return _gradients(ns[backward], backward, dout, cache)

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
# Given-runs: when the forward pass is wrong, the functions built on it are
# judged against what the student's own forward does (one mistake, one
# deduction). A key ``k@expected`` is what ``k`` must equal given the
# student's forward; ``plausible:out`` must be within 50 % of PyTorch's, so
# that a forward that is not a batch norm at all earns nothing downstream.


def _numerical_vjp(f: Any, value: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """The gradient of ``sum(f(value) * dout)`` by central differences."""
    gradient = np.zeros_like(value, dtype=np.float64)
    flat = gradient.reshape(-1)
    for index in range(value.size):
        step = 1e-5 * (1.0 + abs(float(value.flat[index])))
        plus, minus = value.copy(), value.copy()
        plus.flat[index] += step
        minus.flat[index] -= step
        flat[index] = float(np.sum((np.asarray(f(plus)) - np.asarray(f(minus))) * dout)) / (2 * step)
    return gradient


def _own_gradients(ns: Namespace, forward: str, backward: str, x: np.ndarray, gamma: np.ndarray,
                   beta: np.ndarray, dout: np.ndarray, eps: float | None) -> Outputs:
    def out_of(x_: np.ndarray, gamma_: np.ndarray, beta_: np.ndarray) -> np.ndarray:
        return _call_forward(ns, forward, x_, gamma_, beta_, eps)[0]

    out, cache = _call_forward(ns, forward, x, gamma, beta, eps)
    outputs = _gradients(ns[backward], backward, dout, cache)
    outputs.update({"input:x": x, "input:gamma": gamma, "input:beta": beta, "input:dout": dout,
                    "input:eps": np.array(1e-5 if eps is None else eps)})
    outputs["dx@expected"] = _numerical_vjp(lambda v: out_of(v, gamma, beta), x, dout)
    outputs["dgamma@expected"] = _numerical_vjp(lambda v: out_of(x, v, beta), gamma, dout)
    outputs["dbeta@expected"] = _numerical_vjp(lambda v: out_of(x, gamma, v), beta, dout)
    outputs["plausible:out"] = out
    return outputs


def _backward_given(seed: int, n: int, d: int, eps: float | None, scale: float = 1.0,
                    backward: str = "batchnorm_backward"):
    def run(ns: Namespace) -> Outputs:
        x = _features(seed, n, d, scale)
        gamma, beta = _affine(seed + 1, d)
        dout = _output_gradient(seed + 2, (n, d))
        return _own_gradients(ns, "batchnorm_forward", backward, x, gamma, beta, dout, eps)

    return run


def _spatial_backward_given(seed: int, shape: tuple[int, int, int, int], eps: float | None):
    """The spatial backward must be the gradient of the student's spatial forward, or equal the
    student's own vanilla backward on channels-last rows (when it is built on it)."""

    def run(ns: Namespace) -> Outputs:
        x = _images(seed, shape)
        gamma, beta = _affine(seed + 1, shape[1])
        dout = _output_gradient(seed + 2, shape)
        outputs = _own_gradients(ns, "spatial_batchnorm_forward", "spatial_batchnorm_backward", x, gamma, beta,
                                 dout, eps)
        n, c, h, w = shape

        def rows(a: np.ndarray) -> np.ndarray:
            return a.transpose(0, 2, 3, 1).reshape(-1, c)

        _, cache = _call_forward(ns, "batchnorm_forward", rows(x), gamma, beta, eps)
        composed = _gradients(ns["batchnorm_backward"], "batchnorm_backward", rows(dout), cache)
        composed["dx"] = composed["dx"].reshape(n, h, w, c).transpose(0, 3, 1, 2)
        if all(np.allclose(outputs[key], composed[key], rtol=1e-9, atol=1e-12) for key in composed):
            outputs.update({f"{key}@expected": value for key, value in composed.items()})
        return outputs

    return run


def _spatial_forward_given(seed: int, shape: tuple[int, int, int, int], eps: float | None, scale: float = 1.0):
    """The spatial forward must equal the student's own vanilla forward on channels-last rows."""

    def run(ns: Namespace) -> Outputs:
        x = _images(seed, shape, scale)
        gamma, beta = _affine(seed + 1, shape[1])
        n, c, h, w = shape
        out, _ = _call_forward(ns, "spatial_batchnorm_forward", x, gamma, beta, eps)
        rows, _ = _call_forward(ns, "batchnorm_forward", x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
        return {"out": out, "out@expected": rows.reshape(n, h, w, c).transpose(0, 3, 1, 2), "plausible:out": out}

    return run


_FORWARD_MISTAKES = ("UNBIASED_VARIANCE", "EPS_OUTSIDE_SQRT", "NO_EPS", "WRONG_AXIS", "SWAPPED_AFFINE", "NOT_CENTERED",
                     "EPS_FIXED", "DEFAULT_EPS_1E6", "VARIANCE_AROUND_ZERO", "X_MODIFIED_IN_PLACE",
                     "LAST_FEATURE_SKIPPED", "FORWARD_FLOAT32")
_BACKWARD_MISTAKES = ("NO_STATISTICS_GRADIENT", "NO_MEAN_PATH", "NO_VARIANCE_PATH", "DGAMMA_WITHOUT_XHAT",
                      "DGAMMA_TIMES_GAMMA", "BACKWARD_DEFAULT_EPS", "UNBIASED_VARIANCE", "EPS_OUTSIDE_SQRT",
                      "MEANS_OVER_N_MINUS_ONE", "DX_WITHOUT_GAMMA", "BACKWARD_FLOAT32", "VARIANCE_TERM_WITHOUT_XHAT")
_SPATIAL_MISTAKES = ("SPATIAL_RESHAPE", "SPATIAL_PER_PIXEL", "UNBIASED_VARIANCE", "EPS_OUTSIDE_SQRT",
                     "SPATIAL_OUT_NOT_TRANSPOSED_BACK", "SPATIAL_DX_NOT_TRANSPOSED_BACK")

_GRADIENT_LABELS = {"dx": "`dx`", "dgamma": "`dgamma`", "dbeta": "`dbeta`"}
_FORWARD_LABELS = {"out": "`out`", "x_unchanged": "whether `x` is left unchanged"}
# Float64 throughout: a right answer agrees with PyTorch to about 1e-12, float32 arithmetic only to about 1e-7.
_F64 = {"rtol": 1e-9, "atol": 1e-11}
_FORWARD = ("batchnorm_forward",)
_BACKWARD = ("batchnorm_forward", "batchnorm_backward")
_SPATIAL_FORWARD = ("batchnorm_forward", "spatial_batchnorm_forward")
_SPATIAL_BACKWARD = ("batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward",
                     "spatial_batchnorm_backward")

# ---------------------------------------------------------------------------
# batchnorm_backward_alt: the simplified backward, on the same cache


_ALT_BACKWARD = ("batchnorm_forward", "batchnorm_backward_alt")


def _backward_check(name: str, targets: tuple[str, ...], seed: int, n: int, d: int, eps: float | None,
                    scale: float = 1.0) -> Probe:
    """A probe of a backward pass (the last target) and its given-run, on the same inputs."""
    backward = targets[-1]
    return Probe(name, targets, _backward_probe(seed, n, d, eps, scale, backward), mistakes=_BACKWARD_MISTAKES,
                 labels=_GRADIENT_LABELS, **_F64, given=_backward_given(seed, n, d, eps, scale, backward),
                 given_check="backward_at_student_statistics")


# ---------------------------------------------------------------------------
# The experiment: init_scale_sweep
#
# Training runs differ between correct implementations (the order of the random
# draws, of the floating-point sums), so the probe returns what any correct one
# shows on a sweep of three scales, 60 steps: which networks train and which do
# not, with wide margins (measured over many seeds: with batch norm at least 0.9
# at scales 0.01 and 1 and 0.5 at 10; without, at most 0.12 at 0.01 and 10 and at
# least 0.85 at 1).

_SWEEP_SCALES = (0.01, 1.0, 10.0)


def _stand_in_numpy_batchnorm() -> dict[str, Any]:
    """For the experiment's given-run: batch norm with the *unbiased* variance and its exact gradient.

    A known mistake (the hidden tests of the layer fail it), which trains a network
    just as well: with it in place of the student's layer, the experiment is judged
    on its own.
    """

    def forward(x, gamma, beta, eps=1e-5):
        mean = x.mean(axis=0)
        inv_std = 1.0 / np.sqrt(x.var(axis=0, ddof=1) + eps)
        x_hat = (x - mean) * inv_std
        return gamma * x_hat + beta, ("stand-in", x_hat, inv_std, gamma)

    def backward(dout, cache):
        _, x_hat, inv_std, gamma = cache
        n = dout.shape[0]
        g = dout * gamma
        dx = inv_std * (g - g.mean(axis=0) - x_hat * (g * x_hat).sum(axis=0) / (n - 1))
        return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)

    return {"batchnorm_forward": forward, "batchnorm_backward": backward, "batchnorm_backward_alt": backward}


def _init_scale_probe(seed: int):
    def run(ns: Namespace) -> Outputs:
        result = ns["init_scale_sweep"](list(_SWEEP_SCALES), seed=student_seed(seed) % 2**32, steps=60)
        numbers = experiment_numbers(result, "init_scale_sweep", ("with_bn", "without_bn"), len(_SWEEP_SCALES))
        bn, plain = numbers["with_bn"], numbers["without_bn"]
        return {
            "fractions": fraction(np.concatenate([bn, plain])),
            "bn_small": np.array(bool(bn[0] > 0.7)),
            "plain_small": np.array(bool(plain[0] < 0.3)),
            "both_he": np.array(bool(min(bn[1], plain[1]) > 0.7)),
            "plain_large": np.array(bool(plain[2] < 0.3)),
            "bn_large": np.array(bool(bn[2] > plain[2] + 0.2)),
        }

    return run


_SWEEP_LABELS = {
    "fractions": "whether every accuracy is a number in [0, 1]",
    "bn_small": "whether the network with batch norm trains from scale 0.01 (validation accuracy above 0.7)",
    "plain_small": "whether the network without batch norm fails from scale 0.01 (accuracy below 0.3)",
    "both_he": "whether both networks train from scale 1, He initialization (accuracy above 0.7)",
    "plain_large": "whether the network without batch norm fails from scale 10 (accuracy below 0.3)",
    "bn_large": "whether, at scale 10, the network with batch norm beats the one without by more than 0.2",
}
_SWEEP = ("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "init_scale_sweep")


ASSIGNMENT = Assignment(
    name="bn_math",
    kind="numpy",
    tests={
        "test_batchnorm_forward": (
            Probe("forward on a (64, 7) batch with the default eps", _FORWARD,
                  _forward_probe(10, 64, 7, None), mistakes=_FORWARD_MISTAKES, labels=_FORWARD_LABELS, **_F64),
            Probe("forward on a (2, 5) batch: a batch of 2", _FORWARD, _forward_probe(11, 2, 5, 1e-5),
                  mistakes=_FORWARD_MISTAKES, labels=_FORWARD_LABELS, **_F64),
            Probe("forward with eps=0.5 and features of tiny variance", _FORWARD,
                  _forward_probe(12, 9, 4, 0.5, scale=1e-3), mistakes=_FORWARD_MISTAKES, labels=_FORWARD_LABELS,
                  **_F64),
            Probe("forward on a (6, 3) batch of features with a huge scale (1e4) and offset (1e3)", _FORWARD,
                  _forward_probe(13, 6, 3, 1e-5, scale=1e4, offset=1e3), mistakes=_FORWARD_MISTAKES,
                  labels=_FORWARD_LABELS, **_F64),
            Probe("forward on a (3, 11) batch with eps=1e-3", _FORWARD,
                  _forward_probe(14, 3, 11, 1e-3), mistakes=_FORWARD_MISTAKES, labels=_FORWARD_LABELS, **_F64),
        ),
        "test_batchnorm_backward": (
            _backward_check("backward on a (16, 5) batch with the default eps", _BACKWARD, 20, 16, 5, None),
            _backward_check("backward on a (2, 3) batch: a batch of 2", _BACKWARD, 21, 2, 3, 1e-5),
            _backward_check("backward with eps=0.5 and features of tiny variance",
                            _BACKWARD, 22, 7, 4, 0.5, scale=1e-3),
            _backward_check("backward on a (4, 9) batch with eps=1e-2", _BACKWARD, 23, 4, 9, 1e-2),
        ),
        "test_spatial_batchnorm_forward": (
            Probe("spatial forward on a (2, 3, 4, 5) batch with the default eps", _SPATIAL_FORWARD,
                  _spatial_forward_probe(30, (2, 3, 4, 5), None), mistakes=_SPATIAL_MISTAKES,
                  labels=_FORWARD_LABELS, **_F64,
                  given=_spatial_forward_given(30, (2, 3, 4, 5), None)),
            Probe("spatial forward on a (5, 4, 2, 3) batch with eps=0.5 and tiny variance", _SPATIAL_FORWARD,
                  _spatial_forward_probe(31, (5, 4, 2, 3), 0.5, scale=1e-2), mistakes=_SPATIAL_MISTAKES,
                  labels=_FORWARD_LABELS, **_F64,
                  given=_spatial_forward_given(31, (5, 4, 2, 3), 0.5, scale=1e-2)),
            Probe("spatial forward on a batch of one (1, 2, 3, 3) image", _SPATIAL_FORWARD,
                  _spatial_forward_probe(32, (1, 2, 3, 3), 1e-5), mistakes=_SPATIAL_MISTAKES,
                  labels=_FORWARD_LABELS, **_F64,
                  given=_spatial_forward_given(32, (1, 2, 3, 3), 1e-5)),
        ),
        "test_spatial_batchnorm_backward": (
            Probe("spatial backward on a (2, 3, 4, 5) batch with the default eps", _SPATIAL_BACKWARD,
                  _spatial_backward_probe(40, (2, 3, 4, 5), None), mistakes=_SPATIAL_MISTAKES + _BACKWARD_MISTAKES,
                  labels=_GRADIENT_LABELS, **_F64, given=_spatial_backward_given(40, (2, 3, 4, 5), None),
                  given_check="backward_at_student_statistics"),
            Probe("spatial backward on a (3, 2, 3, 2) batch with eps=0.1", _SPATIAL_BACKWARD,
                  _spatial_backward_probe(41, (3, 2, 3, 2), 0.1), mistakes=_SPATIAL_MISTAKES + _BACKWARD_MISTAKES,
                  labels=_GRADIENT_LABELS, **_F64, given=_spatial_backward_given(41, (3, 2, 3, 2), 0.1),
                  given_check="backward_at_student_statistics"),
        ),
        "test_batchnorm_backward_alt": (
            _backward_check("simplified backward on a (16, 5) batch with the default eps",
                            _ALT_BACKWARD, 50, 16, 5, None),
            _backward_check("simplified backward on a batch of 2", _ALT_BACKWARD, 51, 2, 3, 1e-5),
            _backward_check("simplified backward with eps=0.5 and features of tiny variance",
                            _ALT_BACKWARD, 52, 7, 4, 0.5, scale=1e-3),
            _backward_check("simplified backward on a (4, 9) batch with eps=1e-2", _ALT_BACKWARD, 53, 4, 9, 1e-2),
        ),
        "test_init_scale_sweep": (
            Probe("a sweep of the scales 0.01, 1 and 10, 60 SGD steps each, with a seed of its own", _SWEEP,
                  _init_scale_probe(60), labels=_SWEEP_LABELS,
                  mistakes=("SWEEP_SCALE_NOT_APPLIED", "SWEEP_SWAPPED", "SWEEP_UNTRAINED"),
                  given=with_stand_ins(_init_scale_probe(60), _stand_in_numpy_batchnorm)),
        ),
    },
    library=("batch_norm", "native_batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "StandardScaler"),
)
