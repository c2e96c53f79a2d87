"""The chapter "Pitfalls in practice" keeps its promises.

Two kinds of checks. Structural ones read the MyST source (the strict site build
executes it): figures with captions and names used in the text, known citation
keys, fixed seeds and one thread, the quiz and the Assignment section at the
end, no import of book/_code, no graded function. The others pin, with a short
computation, the claims that the chapter makes and that were once stated
wrongly, so that a later edit cannot bring the wrong version back unnoticed.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests import chapter_checks as checks

CHAPTER = checks.Chapter("pitfalls")


# --------------------------------------------------------------------------
# Structure


def test_every_figure_has_a_caption_and_a_name_that_the_text_uses():
    checks.check_figures(CHAPTER, "fig-pitfalls-", minimum=10)
    for name in ("fig-pitfalls-small-batch-shape", "fig-pitfalls-ghost", "fig-pitfalls-variance-shift",
                 "fig-pitfalls-residual-scale", "fig-pitfalls-zero-gamma", "fig-pitfalls-finetune-variants"):
        assert f"name: {name}" in CHAPTER.text, name


def test_cited_keys_exist_and_the_new_sections_cite_their_sources():
    checks.check_citations(CHAPTER, required=(
        "Ioffe2015", "Luo2019Regularization", "Hoffer2017", "Li2019Disharmony", "Goyal2017", "He2016ResNet",
        "He2016Identity", "Li2017AdaBN", "Wu2021Rethinking", "Li2020DDP", "Peng2018MegDet", "Hsieh2020",
        "Li2021FedBN", "Micikevicius2018"))


def test_seeds_and_the_thread_count_are_fixed():
    checks.check_seeds_and_threads(CHAPTER)


def test_chapter_ends_with_the_quiz_and_the_assignment():
    checks.check_ends_with_assignment(CHAPTER, "pitfalls-assignment")
    checks.check_quiz_before_assignment(CHAPTER, "pitfalls-assignment")


def test_chapter_runs_outside_the_repository():
    checks.check_runs_outside_the_repository(CHAPTER)
    assert "from _code" not in CHAPTER.text and "use_course_style" not in CHAPTER.text


def test_no_graded_function_and_no_hand_written_merge_or_fold():
    """fuse_conv_bn, merge_batch_stats and freeze_batchnorm stay the student's work."""
    checks.check_no_graded_code(CHAPTER)
    code = CHAPTER.code
    # merging shard statistics by sums or by the law of total variance is math only
    assert "total_sq" not in code and "counts.sum()" not in code
    # folding is done by PyTorch's own fusion, never by scaling weights by hand
    assert "fuse_conv_bn_eval" in code
    assert not re.search(r"running_var\s*\+", code), "a hand-written fold divides by sqrt(running_var + eps)"
    # freezing is shown as a loop pattern, never as a reusable helper that overrides train()
    assert "def train(" not in code and ".train = " not in code


def test_symbols_follow_the_notation_page():
    checks.check_notation(CHAPTER)
    prose = CHAPTER.prose
    assert not re.search(r"\\sqrt\{B\}|x_B\b|\(B ?- ?1\)/B", prose), "the batch size is N, the count m"
    assert "\\rho" in prose and "{term}`momentum`" in prose


def test_checklist_links_fine_tuning_decisions_to_their_sections():
    checklist = CHAPTER.text[CHAPTER.text.index("(pitfalls-checklist)="):CHAPTER.text.index("(pitfalls-assignment)=")]
    for label in ("pitfalls-reestimate", "pitfalls-finetuning-affine", "pitfalls-finetuning-lr", "pitfalls-dropout",
                  "pitfalls-zero-gamma", "pitfalls-ddp-buffers", "pitfalls-syncbn", "pitfalls-per-worker"):
        assert re.search(rf"\{{ref\}}`(?:[^`<]*<)?{label}>?`", checklist), label
        assert f"({label})=" in CHAPTER.text, label


def test_the_wrong_small_batch_and_shard_claims_are_gone():
    text = " ".join(CHAPTER.text.split())
    assert "more spread out than the running statistics will produce" not in text
    assert "The running statistics, a running average over the shards, miss" not in text
    assert "mean square of exactly one" in text
    assert "broadcast_buffers=True" in text and "convert_sync_batchnorm" in text


# --------------------------------------------------------------------------
# Claims, pinned by computation


@pytest.mark.parametrize("m", [2, 3, 4, 8, 32, 256])
def test_biased_batch_normalization_has_mean_square_one_for_every_batch_size(m):
    """mean(x_hat^2) = var_B / (var_B + eps): 1 whatever m, so small batches do not shrink the spread."""
    gen = torch.Generator().manual_seed(m)
    x = 3.0 + 2.0 * torch.randn(m, 5, generator=gen, dtype=torch.float64)
    eps = 1e-5
    x_hat = F.batch_norm(x, None, None, training=True, eps=eps)
    var_b = x.var(dim=0, unbiased=False)
    assert torch.allclose(x_hat.pow(2).mean(dim=0), var_b / (var_b + eps), rtol=1e-12)
    assert torch.allclose(x_hat.pow(2).mean(dim=0), torch.ones(5, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("m", [2, 3, 4, 16])
def test_normalized_values_are_bounded_by_sqrt_m_minus_one(m):
    """|x_hat| <= sqrt(m - 1); the bound is reached by one value apart from m - 1 equal ones; m = 2 gives +-1."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, m, 3, generator=gen, dtype=torch.float64)
    x_hat = torch.stack([F.batch_norm(batch, None, None, training=True, eps=1e-12) for batch in x])
    assert x_hat.abs().max() <= math.sqrt(m - 1) + 1e-9
    outlier = torch.zeros(m, 1, dtype=torch.float64)
    outlier[0] = 5.0
    extreme = F.batch_norm(outlier, None, None, training=True, eps=1e-12)
    assert extreme[0].item() == pytest.approx(math.sqrt(m - 1), rel=1e-9)
    if m == 2:
        assert torch.allclose(x_hat.abs(), torch.ones_like(x_hat), atol=1e-9)


def test_inverted_dropout_inflates_the_training_variance_of_a_zero_mean_unit_by_one_over_q():
    """The variance shift of Li et al. (2019): Var_eval / Var_train = q for one zero-mean unit."""
    torch.manual_seed(0)
    x = torch.randn(400_000)
    for p in (0.2, 0.5):
        dropped = nn.Dropout(p).train()(x)
        assert (x.var() / dropped.var()).item() == pytest.approx(1 - p, rel=0.02)


def test_a_bias_before_batchnorm_changes_nothing_in_training_and_gets_no_gradient():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3).double()
    bn = nn.BatchNorm2d(3).double().train()
    x = torch.randn(8, 2, 6, 6, dtype=torch.float64)
    before = bn(conv(x))
    with torch.no_grad():
        conv.bias.add_(7.0)
    after = bn(conv(x))
    assert torch.allclose(before, after, atol=1e-12)
    (after * torch.randn_like(after)).sum().backward()
    assert conv.bias.grad.abs().max() < 1e-10 < conv.weight.grad.abs().max()


def test_zero_gamma_blocks_the_branch_gradient_but_not_the_gradient_of_gamma():
    """dL/dgamma = sum dL/dy * x_hat does not contain gamma; the weights before BN get zero at gamma = 0."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(4)
    nn.init.zeros_(bn.weight)
    x = torch.relu(torch.randn(8, 4, 5, 5))
    out = torch.relu(x + bn(conv(x)))
    assert torch.equal(out, x)                       # the block starts as the identity
    F.mse_loss(out, torch.randn_like(out)).backward()
    assert bn.weight.grad.abs().max() > 0
    assert conv.weight.grad.abs().max() == 0


def test_eval_mode_batchnorm_trains_gamma_and_beta_and_keeps_its_statistics():
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
    bn.eval()
    bn(torch.randn(6, 4) + 3.0).pow(2).sum().backward()
    assert bn.weight.grad.abs().min() > 0 and bn.bias.grad.abs().min() > 0
    assert torch.equal(bn.running_mean, torch.full((4,), 0.5))


def test_the_loss_with_batchnorm_depends_on_the_batch_per_worker():
    """Goyal et al. keep the per-worker batch fixed because it is part of the loss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    x, y = torch.randn(64, 5), torch.randint(3, (64,))
    with torch.no_grad():
        losses = [sum(F.cross_entropy(model(xb), yb) for xb, yb in zip(x.split(n), y.split(n))).item() / (64 // n)
                  for n in (4, 64)]
    assert abs(losses[0] - losses[1]) > 1e-3


def test_zero_momentum_leaves_the_running_statistics_unchanged():
    """The chapter simulates DDP's surviving buffers by giving the other devices momentum 0."""
    bn = nn.BatchNorm1d(3, momentum=0.0).train()
    bn(torch.randn(10, 3) + 4.0)
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
