"""Comparing a student's outputs with the reference: what the student is told."""

from __future__ import annotations

import numpy as np

from autograder.checks.core import compare, fraction, matches
from autograder.hidden import run_probe
from autograder.spec import load_spec
from autograder.verdicts import Judge, StudentResult

RTOL, ATOL = 1e-6, 1e-8


def test_equal_outputs_have_no_problem():
    assert matches({"out": np.ones(3)}, {"out": np.ones(3) + 1e-12}, RTOL, ATOL)


def test_a_wrong_shape_is_named_with_both_shapes():
    [(key, problem)] = compare({"out": np.ones((2, 3))}, {"out": np.ones((3, 2))}, RTOL, ATOL)
    assert key == "out" and "(3, 2)" in problem and "(2, 3)" in problem


def test_a_numeric_difference_says_how_many_entries_and_how_large():
    [(_, problem)] = compare({"out": np.zeros(4)}, {"out": np.array([0, 0, 0.5, 0])}, RTOL, ATOL)
    assert "1 of 4 entries" in problem and "0.5" in problem


def test_nan_is_reported_as_such():
    [(_, problem)] = compare({"out": np.zeros(2)}, {"out": np.array([0, np.nan])}, RTOL, ATOL)
    assert "NaN" in problem


def test_missing_output_and_missing_exception():
    problems = dict(compare({"out": np.zeros(2), "raised": np.array("ValueError")}, {}, RTOL, ATOL))
    assert problems["out"] == "is missing"
    assert "should raise ValueError" in problems["raised"]


def test_another_exception_than_the_expected_one_is_a_difference():
    [(key, problem)] = compare({"raised": np.array("ValueError")}, {"raised": np.array("RuntimeError")}, RTOL, ATOL)
    assert key == "raised" and "RuntimeError" in problem and "ValueError" in problem


def test_boolean_outputs_must_match_exactly():
    assert compare({"flag": np.array([True, False])}, {"flag": np.array([True, True])}, RTOL, ATOL)
    assert matches({"flag": np.array([True, False])}, {"flag": np.array([True, False])}, RTOL, ATOL)


def test_an_infinity_where_the_reference_is_finite_is_reported():
    [(_, problem)] = compare({"out": np.zeros(2)}, {"out": np.array([0.0, np.inf])}, RTOL, ATOL)
    assert "infinity" in problem


def test_nan_where_the_reference_has_nan_matches():
    assert matches({"out": np.array([1.0, np.nan])}, {"out": np.array([1.0, np.nan])}, RTOL, ATOL)


def test_a_non_numeric_output_is_reported_with_its_type():
    [(_, problem)] = compare({"out": np.zeros(2)}, {"out": np.array(["a", "b"])}, RTOL, ATOL)
    assert "non-numeric" in problem


def test_an_accuracy_is_a_fraction_not_a_percentage():
    """Experiment checks take accuracies in [0, 1]: 95.0 (a percentage), -0.1 or NaN is not one."""
    assert fraction(np.array([0.0, 0.5, 1.0]))
    for wrong in ([0.5, 95.0], [-0.1, 0.5], [np.nan, 0.5]):
        assert not fraction(np.array(wrong)), wrong


def test_a_wrong_forward_is_diagnosed_as_the_unbiased_variance():
    def unbiased(x, gamma, beta, eps=1e-5):
        x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
        return gamma * x_hat + beta, None

    judge = Judge(load_spec("bn_math"))
    probe = judge.spec.tests["test_batchnorm_forward"][1]
    result = run_probe(probe.run, {"batchnorm_forward": unbiased}, probe.targets, salt=7)
    outcome = judge.judge("test_batchnorm_forward", 1, 7, result)
    assert not outcome.passed
    assert "batch of 2" in outcome.message and "unbiased variance" in outcome.message
    assert len(outcome.message) <= 300


def test_a_student_error_is_reported_without_the_reference():
    outcome = Judge(load_spec("bn_math")).judge("test_batchnorm_forward", 0, 0,
                                                StudentResult(error="raised KeyError: 'x'"))
    assert not outcome.passed and "KeyError" in outcome.message


def test_an_all_nan_output_is_a_difference_not_a_crash():
    problems = compare({"out": np.array([np.nan, np.nan])}, {"out": np.zeros(2)}, RTOL, ATOL)
    assert problems and "every entry" in problems[0][1]
    assert not matches({"out": np.array([np.nan])}, {"out": np.zeros(1)}, RTOL, ATOL)


def test_two_students_get_different_hidden_inputs():
    """The inputs are drawn from the student's salt: the same probe gives another student other values."""
    judge = Judge(load_spec("bn_math"))
    first = judge.expected("test_batchnorm_forward", 0, 1)["out"]
    second = judge.expected("test_batchnorm_forward", 0, 2)["out"]
    assert first.shape == second.shape and not np.allclose(first, second)
    assert np.array_equal(first, judge.expected("test_batchnorm_forward", 0, 1)["out"])


def test_a_mistake_that_fails_several_checks_is_told_once():
    """Seven lines saying "the unbiased variance" would hide the one check that fails for another reason."""
    from autograder.verdicts import ProbeOutcome, Verdict

    unbiased = "the unbiased variance (dividing by N - 1)"
    outcomes = (ProbeOutcome("a", False, f"forward on a batch of 2: {unbiased}", unbiased),
                ProbeOutcome("b", True),
                ProbeOutcome("c", False, f"forward with eps=0.5: {unbiased}", unbiased),
                ProbeOutcome("d", False, "forward on a huge scale: 3 of 18 entries differ", ""),
                ProbeOutcome("e", False, f"forward on (3, 11): {unbiased}", unbiased))
    report = Verdict("test_batchnorm_forward", outcomes).report()
    assert report.splitlines()[0] == "Hidden tests: 1 of 5 checks passed."
    assert report.count(unbiased) == 1 and "(the same in 2 more checks)" in report
    assert "3 of 18 entries differ" in report


# ---------------------------------------------------------------------------
# Given-runs: a function built on a wrong one is judged against the student's own


def _unbiased_forward(x, gamma, beta, eps=1e-5):
    """A forward with one mistake (the unbiased variance), its cache the inputs."""
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
    return gamma * x_hat + beta, (x, gamma, beta, eps)


def _exact_backward_of_unbiased_forward(dout, cache):
    """The exact gradient of ``_unbiased_forward`` (by autograd in float64): right for that forward."""
    import torch

    x, gamma, beta = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in cache[:3])
    x_hat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, unbiased=True) + cache[3])
    (gamma * x_hat + beta).backward(torch.as_tensor(dout, dtype=torch.float64))
    return x.grad.numpy(), gamma.grad.numpy(), beta.grad.numpy()


def _affine_forward(x, gamma, beta, eps=1e-5):
    """No normalization at all: ``gamma * x + beta``."""
    return gamma * x + beta, (x, gamma)


def _exact_backward_of_affine_forward(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(axis=0), dout.sum(axis=0)


def _given_verdict(forward, backward, salt: int = 3) -> bool:
    judge = Judge(load_spec("bn_math"))
    probe = judge.spec.tests["test_batchnorm_backward"][0]
    namespace = {"batchnorm_forward": forward, "batchnorm_backward": backward}
    given = run_probe(probe.given, namespace, probe.targets, salt=salt)
    assert given.outputs is not None, given.error
    return judge.passes_given("test_batchnorm_backward", 0, salt, given.outputs)


def test_a_right_backward_for_a_forward_with_a_mistake_passes_its_given_run():
    """One mistake, one deduction: the exact gradient of the student's own (wrong) forward is a right backward,
    though it differs from PyTorch's and from the central differences by rounding."""
    assert _given_verdict(_unbiased_forward, _exact_backward_of_unbiased_forward)


def test_the_gradient_of_a_forward_that_does_not_normalize_earns_nothing():
    """Consistent with one's own forward is not enough when that forward is not a batch norm at all."""
    assert not _given_verdict(_affine_forward, _exact_backward_of_affine_forward)


def test_a_wrong_backward_for_a_forward_with_a_mistake_fails_its_given_run():
    def half(dout, cache):
        dx, dgamma, dbeta = _exact_backward_of_unbiased_forward(dout, cache)
        return dx, dgamma, dbeta * 0.5

    assert not _given_verdict(_unbiased_forward, half)


def _judged(namespace: dict, salt: int = 3) -> dict:
    """Every test cell of bn_math judged on ``namespace``, with its given-runs, as the grader does."""
    judge = Judge(load_spec("bn_math"))
    results = {}
    for grade_id, probes in judge.spec.tests.items():
        results[grade_id] = []
        for probe in probes:
            result = run_probe(probe.run, namespace, probe.targets, salt=salt)
            given = run_probe(probe.given, namespace, probe.targets, salt=salt) if probe.given else None
            results[grade_id].append(StudentResult(result.outputs, result.error, given.outputs if given else None))
    return judge.verdicts(results, salt)


def _bn_math_namespace(**answers) -> dict:
    """The reference's functions, with ``answers`` in place of some."""
    return {**load_spec("bn_math").reference(), **answers}


def test_a_forward_that_does_not_normalize_costs_the_backward_built_on_it_too():
    """The second chance is for a backward built on a forward with a known mistake: a forward that is no
    batch norm at all (no named mistake, far from PyTorch) gives its consistent backward nothing."""
    verdicts = _judged(_bn_math_namespace(batchnorm_forward=_affine_forward,
                                          batchnorm_backward=_exact_backward_of_affine_forward))
    assert verdicts["test_batchnorm_forward"].fraction < 1
    assert verdicts["test_batchnorm_backward"].fraction == 0


def test_an_output_near_a_known_mistake_is_not_diagnosed_as_it():
    """A result ten tolerances away from the unbiased-variance mistake is some other error: the feedback
    says how it differs from PyTorch, and does not claim it is that mistake."""
    judge = Judge(load_spec("bn_math"))
    probe = judge.spec.tests["test_batchnorm_forward"][1]

    def near_unbiased(x, gamma, beta, eps=1e-5):
        out, cache = _unbiased_forward(x, gamma, beta, eps)
        return out + 10 * (probe.atol + probe.rtol * np.abs(out)), cache

    outcome = judge.judge("test_batchnorm_forward", 1, 7,
                          run_probe(probe.run, {"batchnorm_forward": near_unbiased}, probe.targets, salt=7))
    assert not outcome.passed and not outcome.mistake, outcome.message
    exact = judge.judge("test_batchnorm_forward", 1, 7,
                        run_probe(probe.run, {"batchnorm_forward": _unbiased_forward}, probe.targets, salt=7))
    assert exact.mistake


def test_a_long_error_is_cut_to_one_message():
    from autograder.verdicts import MESSAGE_CHARS

    outcome = Judge(load_spec("bn_math")).judge("test_batchnorm_forward", 0, 0,
                                                StudentResult(error="raised ValueError: " + "x" * 5000))
    assert len(outcome.message) <= MESSAGE_CHARS <= 400 and outcome.message.endswith("...")
