"""The chapter "The math of batch norm" keeps the course's conventions and its claims.

Static checks of ``book/bn_math.md`` (the strict site build checks that the code
runs and that references resolve), through the shared helpers of
``tests/chapter_checks.py``, then the chapter's central claims recomputed with
PyTorch: the standard deviation after the affine step is |gamma|, gamma and beta
undo the normalization only for fixed statistics, and the gradient has the
projection form of the closed formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests import chapter_checks as checks

CHAPTER = checks.Chapter("bn_math")
LABEL = "bn-math-assignment"


def test_every_figure_has_a_caption_and_a_name_the_text_refers_to():
    checks.check_figures(CHAPTER, prefix="fig-bn-math-", minimum=6)


def test_cited_keys_exist():
    checks.check_citations(CHAPTER, required=("Ioffe2015", "Arora2019"))


def test_seeds_and_threads_are_fixed():
    checks.check_seeds_and_threads(CHAPTER)


def test_chapter_ends_with_the_assignment_section_after_its_quiz():
    checks.check_ends_with_assignment(CHAPTER, LABEL)
    checks.check_quiz_before_assignment(CHAPTER, LABEL)
    tail = CHAPTER.text[CHAPTER.text.index(f"({LABEL})="):]
    for name in ("batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward",
                 "spatial_batchnorm_backward"):
        assert f"`{name}`" in tail


def test_chapter_runs_outside_the_repository():
    checks.check_runs_outside_the_repository(CHAPTER)


def test_chapter_shows_no_graded_answer():
    checks.check_no_graded_code(CHAPTER)
    # The computations go through PyTorch's own layer and autograd.
    assert "F.batch_norm(" in CHAPTER.code and "torch.autograd.grad(" in CHAPTER.code


def test_notation_is_the_books():
    checks.check_notation(CHAPTER)
    assert "(N, D)" in CHAPTER.prose, "the chapter says once that the exercise's D is C"


def test_try_it_cell_follows_a_tip():
    tip = CHAPTER.text.index(":::{tip}\nTry it")
    following = CHAPTER.text[CHAPTER.text.index(":::\n", tip + 8) + 4:]
    assert following.lstrip("\n").startswith("```{code-cell}")


def test_text_states_the_absolute_value_of_gamma_and_fixed_statistics():
    prose = CHAPTER.prose
    assert "|\\gamma" in prose
    assert "always undo itself" not in prose
    assert "evaluation mode" in prose[prose.index("(bn-math-gamma-beta)="):prose.index("(bn-math-backward)=")]


def test_output_standard_deviation_is_the_absolute_value_of_gamma():
    torch.manual_seed(0)
    x = torch.randn(256, 4, dtype=torch.float64) * 3 + 1
    gamma = torch.tensor([-2.0, 0.5, -0.1, 3.0], dtype=torch.float64)
    out = F.batch_norm(x, None, None, gamma, torch.zeros(4, dtype=torch.float64), training=True, eps=1e-12)
    torch.testing.assert_close(out.std(dim=0, unbiased=False), gamma.abs())


def test_gamma_and_beta_undo_the_normalization_only_for_fixed_statistics():
    torch.manual_seed(0)
    a, b = torch.randn(64, 3, dtype=torch.float64), 2 + 3 * torch.randn(64, 3, dtype=torch.float64)
    mean, var = a.mean(dim=0), a.var(dim=0, unbiased=False)
    gamma, beta = torch.sqrt(var + 1e-5), mean
    train_a = F.batch_norm(a, None, None, gamma, beta, training=True, eps=1e-5)
    train_b = F.batch_norm(b, None, None, gamma, beta, training=True, eps=1e-5)
    eval_b = F.batch_norm(b, mean, var, gamma, beta, training=False, eps=1e-5)
    torch.testing.assert_close(train_a, a)
    assert (train_b - b).abs().max() > 1.0       # another batch: not the identity
    torch.testing.assert_close(eval_b, b)        # fixed statistics: the identity for every input


def test_gradient_is_the_projection_of_the_closed_form():
    torch.manual_seed(0)
    x = torch.randn(32, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(32, 3, dtype=torch.float64)
    (dx,) = torch.autograd.grad(F.batch_norm(x, None, None, training=True, eps=1e-30), x, g)
    torch.testing.assert_close(dx.sum(dim=0), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    x_hat = (x - x.mean(dim=0)) / x.std(dim=0, unbiased=False)
    torch.testing.assert_close((dx * x_hat).sum(dim=0), torch.zeros(3, dtype=torch.float64),
                               atol=1e-12, rtol=0)
