"""The hidden tests of ``covariate_shift`` themselves: reference, probes, mistakes.

- the reference ``layer_input_stats`` gives, for every Linear layer at any
  depth, the statistics of what that layer receives, computed here by running
  the submodules by hand; it leaves no hook and keeps the user's own;
- the reference ``loss_along_gradient`` agrees with the closed form of a linear
  least-squares model, and leaves the model exactly as it found it;
- the probes' reference outputs are finite, so that a comparison can describe
  every difference;
- every known mistake changes the outputs of at least one probe that lists it
  (otherwise its message could never be shown), and each probe's mistakes are
  told apart on that probe or named for a reason.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from autograder.checks import covariate_shift as checks
from autograder.checks.core import matches
from autograder.spec import load_spec

SPEC = load_spec("covariate_shift")
REFERENCE = SPEC.reference()
PROBES = [(grade_id, index, probe) for grade_id, probes in SPEC.tests.items()
          for index, probe in enumerate(probes)]
MISTAKES = sorted(SPEC.mistakes.items())


def _biased(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return rows.mean(dim=0), rows.std(dim=0, correction=0)


def test_reference_stats_of_nested_layers_match_a_forward_pass_by_hand():
    model = checks._nested(1)
    x = torch.randn(7, 5, dtype=torch.float64)
    stats = REFERENCE["layer_input_stats"](model, x)

    body = model.block.body
    hidden = torch.tanh(body["encoder"][0](x))
    h = body["encoder"](x) + body["skip"](x)
    heads = torch.cat([model.block.heads[0](h), model.block.heads[1](h)], dim=-1)
    expected = {
        "block.body.encoder.0": x,
        "block.body.encoder.2.0": hidden,
        "block.body.skip": x,
        "block.heads.0": h,
        "block.heads.1": h,
        "out": torch.tanh(heads),
    }
    assert set(stats) == set(expected)
    for name, rows in expected.items():
        mean, std = _biased(rows.detach())
        torch.testing.assert_close(stats[name][0], mean)
        torch.testing.assert_close(stats[name][1], std)
        assert not stats[name][0].requires_grad and not stats[name][1].requires_grad


def test_reference_pools_the_calls_of_a_shared_layer_and_flattens_leading_dimensions():
    model = checks._shared(2)
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    stats = REFERENCE["layer_input_stats"](model, x)
    assert set(stats) == {"first", "head"}  # named_modules() names a shared module once
    first_call = x.reshape(-1, 4)
    second_call = torch.tanh(model.first(x)).reshape(-1, 4).detach()
    mean, std = _biased(torch.cat([first_call, second_call]))
    torch.testing.assert_close(stats["first"][0], mean)
    torch.testing.assert_close(stats["first"][1], std)


def test_reference_removes_its_hooks_keeps_the_users_and_the_mode():
    model = checks._mlp(3, (4, 6, 5, 3), batch_norm=True).eval()
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    REFERENCE["layer_input_stats"](model, torch.randn(5, 4, dtype=torch.float64))
    assert checks._count_hooks(model) == 1 and calls == [1]
    assert not any(m.training for m in model.modules())
    broken = checks._breaks_halfway(4)
    with pytest.raises(RuntimeError):
        REFERENCE["layer_input_stats"](broken, torch.randn(2, 4, dtype=torch.float64))
    assert checks._count_hooks(broken) == 0


def test_reference_loss_along_gradient_is_the_closed_form_of_least_squares():
    torch.manual_seed(0)
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randn(20, 1, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    a = torch.cat([x, torch.ones(20, 1, dtype=torch.float64)], dim=1)  # theta = (w, b)
    theta = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    hessian = 2.0 / 20 * a.T @ a
    g = 2.0 / 20 * a.T @ (a @ theta - y[:, 0])
    steps = [0.0, 0.1, 0.7]

    losses, changes = REFERENCE["loss_along_gradient"](model, checks._mse, x, y, steps)
    for k, eta in enumerate(steps):
        point = theta - eta * g
        torch.testing.assert_close(losses[k], ((a @ point - y[:, 0]) ** 2).mean())
        torch.testing.assert_close(changes[k], torch.linalg.vector_norm(eta * hessian @ g))


def test_reference_loss_along_gradient_leaves_the_model_as_it_was():
    model = checks._mlp(5, (4, 6, 3), batch_norm=True)
    checks._with_running_stats(model, 6)
    model[0].weight.requires_grad_(False)
    model[3].weight.grad = torch.ones_like(model[3].weight)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    losses, changes = REFERENCE["loss_along_gradient"](model, checks._cross_entropy, x, y, [0.5, 2.0])
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert torch.equal(model[3].weight.grad, torch.ones_like(model[3].weight))
    assert model[0].weight.grad is None and model.training
    assert losses.shape == changes.shape == (2,) and not losses.requires_grad


@pytest.mark.parametrize(("grade_id", "index", "probe"), PROBES, ids=[p.name for _, _, p in PROBES])
def test_reference_outputs_are_finite(grade_id, index, probe):
    outputs = probe.run(REFERENCE)
    for key, value in outputs.items():
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), key


@pytest.mark.parametrize(("name", "mistake"), MISTAKES, ids=[name for name, _ in MISTAKES])
def test_every_mistake_is_caught_by_a_probe_that_lists_it(name, mistake):
    caught = []
    for grade_id, index, probe in PROBES:
        if name not in probe.mistakes:
            continue
        expected = probe.run(REFERENCE)
        namespace = dict(REFERENCE)
        namespace.update(mistake.implementations)
        try:
            actual = probe.run(namespace)
        except Exception:  # noqa: BLE001 - a crashing mistake is caught too, but names nothing
            continue
        if not matches(expected, actual, probe.rtol, probe.atol):
            caught.append(probe.name)
    assert caught, f"{name} is listed by probes whose outputs it never changes"
