"""The hidden tests of ``train_eval`` themselves: reference, mistakes, forbidden calls.

- the reference ``BatchNorm`` is torch's BatchNorm1d/2d, and its
  ``recalibrate_bn`` is ``torch.optim.swa_utils.update_bn`` followed by ``eval()``;
- the from-scratch layer the mistakes are built from passes every probe when no
  switch is flipped, so that a mistake differs from the reference only by its
  one mistake;
- every mistake changes the outputs of at least one probe that lists it, and
  never produces NaN (which the comparison cannot describe);
- a ``BatchNorm`` that calls torch's batch norm gets no credit, in the real grader.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from autograder.checks.core import compare
from autograder.references import train_eval as references
from autograder.spec import load_spec
from tests.conftest import source_notebook, with_answer

SPEC = load_spec("train_eval")
REFERENCE = SPEC.reference()
PROBES = [(grade_id, index, probe) for grade_id, probes in SPEC.tests.items()
          for index, probe in enumerate(probes)]
MISTAKES = sorted(SPEC.mistakes.items())


def _outputs(probe, namespace):
    return probe.run(namespace)


@pytest.mark.parametrize(("shape", "torch_class"), [((5, 3), torch.nn.BatchNorm1d),
                                                     ((4, 3, 2), torch.nn.BatchNorm1d),
                                                     ((2, 3, 2, 2), torch.nn.BatchNorm2d)])
@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"affine": False, "momentum": 0.3},
                                     {"track_running_stats": False}])
def test_reference_batchnorm_is_torch(shape, torch_class, options):
    generator = torch.Generator().manual_seed(0)
    ours, theirs = REFERENCE["BatchNorm"](3, **options), torch_class(3, **options)
    for mode in ["train", "train", "eval", "train", "eval"]:
        ours.train(mode == "train")
        theirs.train(mode == "train")
        x = torch.randn(shape, generator=generator)
        torch.testing.assert_close(ours(x), theirs(x))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value)


def test_reference_recalibration_is_update_bn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4, momentum=0.2),
                                torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2))
    model(torch.randn(6, 3) + 2.0)
    batches = [(torch.randn(n, 3), torch.zeros(n)) for n in (4, 7, 2)]
    expected = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, expected)
    returned = REFERENCE["recalibrate_bn"](model, batches)
    assert returned is model and not any(m.training for m in model.modules())
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert [m.momentum for m in model.modules() if hasattr(m, "momentum")] == [0.2, 0.1]


@pytest.mark.parametrize(("grade_id", "index", "probe"), PROBES, ids=[f"{g}-{i}" for g, i, _ in PROBES])
def test_scratch_layer_without_mistake_passes_every_probe(grade_id, index, probe):
    namespace = dict(REFERENCE, BatchNorm=references._scratch_batchnorm(),
                     recalibrate_bn=references._wrong_recalibrate())
    expected = _outputs(probe, REFERENCE)
    assert not compare(expected, _outputs(probe, namespace), probe.rtol, probe.atol)


@pytest.mark.parametrize(("name", "mistake"), MISTAKES, ids=[name for name, _ in MISTAKES])
def test_every_mistake_is_visible_and_finite(name, mistake):
    namespace = dict(REFERENCE, **mistake.implementations)
    detected = False
    for _, _, probe in PROBES:
        if name not in probe.mistakes:
            continue
        try:
            outputs = _outputs(probe, namespace)
        except Exception:  # noqa: BLE001 - a mistake may crash on some probe: then it names nothing there
            continue
        for key, value in outputs.items():
            assert not (value.dtype.kind == "f" and np.isnan(value).any()), f"{name}: NaN in {key}"
        detected |= bool(compare(_outputs(probe, REFERENCE), outputs, probe.rtol, probe.atol))
    assert detected, f"{name} passes every probe that lists it"


_FUNCTIONAL_FORWARD = '''
class BatchNorm(torch.nn.BatchNorm2d):
    """Calls torch's own layer."""

    def _check_input_dim(self, input):
        pass
'''

_F_BATCH_NORM = '''
import torch.nn.functional as F


class BatchNorm(torch.nn.Module):
    """Calls torch.nn.functional.batch_norm through an alias."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.eps, self.momentum, self.affine, self.track_running_stats = eps, momentum, affine, track_running_stats
        self.weight = torch.nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features) if track_running_stats else None)
        self.register_buffer("running_var", torch.ones(num_features) if track_running_stats else None)
        self.register_buffer("num_batches_tracked",
                             torch.tensor(0, dtype=torch.long) if track_running_stats else None)

    def forward(self, x):
        norm = getattr(F, "batch" + "_norm")
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                    self.training or not self.track_running_stats, momentum, self.eps)
'''


@pytest.mark.parametrize("source", [_FUNCTIONAL_FORWARD, _F_BATCH_NORM], ids=["subclass", "functional"])
def test_batchnorm_calling_torch_gets_no_credit(source, grader):
    notebook = with_answer(source_notebook("train_eval"), "BatchNorm", source)
    verdicts = grader.grade(notebook, "train_eval").verdicts
    for grade_id, verdict in verdicts.items():
        if grade_id.startswith("test_BatchNorm"):
            assert verdict.passed == 0, (grade_id, verdict.messages)
            assert any("no automatic credit" in message for message in verdict.messages), verdict.messages


def test_only_a_loaded_counter_shows_a_cumulative_average_that_counts_its_own_steps():
    """A layer that counts its momentum=None steps in a Python attribute agrees with PyTorch from a fresh start;
    the probe that loads a state dict saved after 7 batches is the one that sees it restart the average."""
    from tests.catalog.train_eval import WRONG

    wrong = next(w for w in WRONG if w.name == "cumulative-average-ignores-the-loaded-counter")
    namespace = {"torch": torch}
    exec(wrong.source, namespace)  # noqa: S102 - a catalog entry, the course's own test code
    student = dict(REFERENCE, BatchNorm=namespace["BatchNorm"])
    differing = {}
    for _, _, probe in PROBES:
        if probe.targets == ("BatchNorm",):
            problems = compare(_outputs(probe, REFERENCE), _outputs(probe, student), probe.rtol, probe.atol)
            if problems:
                differing[probe.name] = sorted(key for key, _ in problems)
    assert len(differing) == 1 and "counter at 7" in next(iter(differing)), differing
    assert next(iter(differing.values())) == ["running_mean_after", "running_var_after"]
