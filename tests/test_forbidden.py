"""The static scan finds the library's own implementation however it is spelled."""

from __future__ import annotations

import pytest

from autograder.forbidden import defining_cell, forbidden_uses

BANNED = ("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d")


@pytest.mark.parametrize("source", [
    "import torch.nn.functional as F\ndef f(x):\n    return F.batch_norm(x, None, None, training=True)",
    "import torch\ndef f(x):\n    return torch.nn.functional.batch_norm(x, None, None, training=True)",
    "from torch.nn.functional import batch_norm\ndef f(x):\n    return batch_norm(x, None, None)",
    "from torch.nn.functional import batch_norm as bn\ndef f(x):\n    return bn(x, None, None)",
    "import torch\ndef f(x):\n    return torch.batch_norm(x, None, None, None, None, True, 0.1, 1e-5, False)",
    "import torch\ndef f(x):\n    return getattr(torch.nn.functional, 'batch_norm')(x, None, None)",
    "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return torch.nn.BatchNorm2d(3)(x)",
    "def f(x):\n    %time y = 1\n    return x.batch_norm()",
])
def test_forbidden_use_is_found(source):
    assert forbidden_uses(source, BANNED)


@pytest.mark.parametrize("source", [
    "import torch\ndef batch_norm(x):\n    return (x - x.mean(0)) / x.std(0)",
    "import torch\ndef f(x):\n    '''Like torch.nn.functional.batch_norm, by hand.'''\n    return x - x.mean(0)",
    "import torch\ndef f(model):\n    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]",
    "def f(x:\n    syntax error",
])
def test_honest_code_is_not_flagged(source):
    assert not forbidden_uses(source, BANNED)


def test_a_whole_module_ban_catches_any_use_of_it():
    assert forbidden_uses("import torch\ndef f(x):\n    return torch.tensor(x)", ("torch",)) == ["torch"]
    assert forbidden_uses("from torch import tensor\ndef f(x):\n    return tensor(x)", ("torch",)) == ["torch"]
    assert not forbidden_uses("import numpy as np\ndef f(x):\n    return np.asarray(x)", ("torch",))


def test_defining_cell_is_the_one_with_the_definition_at_line_start():
    cells = ["x = batchnorm_forward", "    def batchnorm_forward(): pass", "def batchnorm_forward(x):\n    pass"]
    assert defining_cell(cells, "batchnorm_forward") == 2
    assert defining_cell(cells, "missing") is None
