"""The source policy: correct code in any style passes; every route to the library's own version is named."""

from __future__ import annotations

import pytest
import torch

from autograder.checks import load_assignment
from autograder.policy import check_cell, check_notebook

TRAIN_EVAL = load_assignment("train_eval")
ALTERNATIVES = load_assignment("alternatives")
BN_MATH = load_assignment("bn_math")

ACCEPTED = {
    "state dict helper": (TRAIN_EVAL, """
import torch
from torch import nn

class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self._saved = None
        self.register_buffer("running_mean", torch.zeros(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
"""),
    "isinstance against torch's base class": (TRAIN_EVAL, """
import copy, functools, types
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

def recalibrate_bn(model, batches):
    layers = [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, _BatchNorm, BatchNorm))]
    saved = {m: m.momentum for m in layers}
    for m in layers:
        m.reset_running_stats()
        m.train = types.MethodType(lambda self, mode=True: self, m)
    run = functools.partial(model, )
    with torch.no_grad():
        for batch in batches:
            run(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return copy.deepcopy(model).eval()
"""),
    "hooks and a literal getattr": (TRAIN_EVAL, """
def helper(model):
    handles = [m.register_forward_hook(lambda mod, inp, out: None) for m in model.modules()]
    for h in handles:
        h.remove()
    return getattr(model, "training", False), hasattr(model, "weight")
"""),
    "einsum, a comment and a docstring naming the library": (ALTERNATIVES, '''
import torch
import torch.nn.functional as F  # not F.layer_norm: that would earn nothing

def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Like torch.nn.functional.layer_norm, written out."""
    dims = tuple(range(-len(normalized_shape), 0))
    mean = torch.einsum("...->...", x).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=dims, unbiased=False, keepdim=True) + eps)
'''),
    "the library's names as the student's own variables and strings": (TRAIN_EVAL, """
def compare(layer, x):
    batch_norm = layer
    label = "torch.nn.functional.batch_norm"
    return batch_norm(x), label
"""),
    "an unused torch import in NumPy code": (BN_MATH, """
import numpy as np
import torch

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0)
    return gamma * (x - mean) / np.sqrt(x.var(axis=0) + eps) + beta, None
"""),
}

REJECTED = {
    "the functional call": (TRAIN_EVAL, "import torch.nn.functional as F\ny = F.batch_norm(x, None, None)", "batch_norm"),
    "an alias made in another cell": (ALTERNATIVES, "import torch\nln = torch.nn.functional.layer_norm", "layer_norm"),
    "a from-import": (ALTERNATIVES, "from torch.nn.functional import group_norm as gn", "group_norm"),
    "a computed getattr": (ALTERNATIVES, "import torch.nn.functional as F\nf = getattr(F, 'layer' + '_norm')",
                           "computed attribute"),
    "getattr passed as a value": (ALTERNATIVES, "import functools\nf = functools.reduce(getattr, ['a'], x)",
                                  "called directly"),
    "__import__": (BN_MATH, "t = __import__('torch')", "__import__"),
    "importlib": (BN_MATH, "import importlib", "allowed imports"),
    "sys.modules": (BN_MATH, "import sys\nt = sys.modules['torch']", "allowed imports"),
    "a dunder escape": (ALTERNATIVES, "f = ().__class__.__base__.__subclasses__()", "__class__"),
    "a frame": (ALTERNATIVES, "def f(g):\n    return g.gi_frame.f_globals", "gi_frame"),
    "torch.ops": (ALTERNATIVES, "import torch\nf = torch.ops.aten.native_layer_norm", "ops"),
    "torch._C": (ALTERNATIVES, "import torch\nf = torch._C._nn", "_C"),
    "a private attribute through an alias": (ALTERNATIVES, "import torch as t\nf = t._C._nn", "_C"),
    "a private attribute through a submodule's alias": (TRAIN_EVAL, "import torch.nn as tnn\nb = tnn.modules._functions",
                                                        "_functions"),
    "the grading package": (BN_MATH, "import autograder.worker", "allowed imports"),
    "eval": (BN_MATH, "eval('1')", "eval"),
    "subclassing torch's BatchNorm": (TRAIN_EVAL,
                                      "from torch import nn\nclass BatchNorm(nn.BatchNorm2d):\n    pass", "BatchNorm2d"),
    "a pickle loaded with code": (BN_MATH, "import numpy as np\nnp.load('a.npy', allow_pickle=True)", "allow_pickle"),
    "a star import": (ALTERNATIVES, "from torch.nn.functional import *", "import *"),
    "update_bn": (TRAIN_EVAL, "import torch\ntorch.optim.swa_utils.update_bn(loader, model)", "update_bn"),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_ordinary_correct_code_is_within_the_policy(name):
    assignment, source = ACCEPTED[name]
    assert check_cell(source, 0, assignment) == [], name


@pytest.mark.parametrize("name", list(REJECTED))
def test_each_route_to_the_library_is_named_with_its_line(name):
    assignment, source, words = REJECTED[name]
    found = check_cell(source, 3, assignment)
    assert found, f"{name} passed the policy"
    assert any(words in violation.what for violation in found), [v.what for v in found]
    assert all(violation.cell == 3 and violation.line >= 1 for violation in found)


LIBRARY_MODULES = {"torch": torch, "torch.nn.functional": torch.nn.functional}
NORMALIZATIONS = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


@pytest.mark.parametrize("assignment", [BN_MATH, TRAIN_EVAL, ALTERNATIVES], ids=lambda a: a.name)
def test_every_library_function_of_a_denied_normalization_is_denied(assignment):
    """Where ``F.<kind>`` earns nothing, neither does any function of torch's whose name holds that kind
    (``torch.native_batch_norm``, ``torch.quantized_batch_norm``, ...), found in torch itself, not in a list."""
    denied = [kind for kind in NORMALIZATIONS
              if check_cell(f"import torch.nn.functional as F\nf = F.{kind}", 0, assignment)]
    assert denied
    open_routes = [f"{module}.{name}" for module, namespace in LIBRARY_MODULES.items() for name in dir(namespace)
                   for kind in denied if kind in name
                   and not check_cell(f"import {module}\nf = {module}.{name}", 0, assignment)]
    assert not open_routes, f"library versions of {denied} that the policy lets through: {open_routes}"


def test_a_violation_costs_the_cells_names_and_the_names_built_on_them():
    cells = ["import torch\nimport torch.nn.functional as F\ndef layer_norm(x, s):\n    return F.layer_norm(x, s)",
             "def group_norm(x, g):\n    return x",
             "def instance_norm(x):\n    return layer_norm(x, x.shape[1:])"]
    report = check_notebook(cells, [True, True, True], ALTERNATIVES)
    assert set(report.affected) == {"layer_norm", "instance_norm"}


def test_a_violation_outside_any_answer_cell_costs_every_name():
    cells = ["def layer_norm(x, s):\n    return x", "import os"]
    report = check_notebook(cells, [True, True], ALTERNATIVES)
    assert set(report.affected) == set(ALTERNATIVES.graded_names)


def test_locked_course_cells_are_not_checked():
    report = check_notebook(["import os"], [False], ALTERNATIVES)
    assert not report.violations
