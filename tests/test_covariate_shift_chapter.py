"""The chapter "Internal covariate shift" keeps the course's conventions and its claims.

Static checks of ``book/covariate_shift.md`` (the strict build checks that the
code runs and that references resolve): every figure has a caption and a name
the text refers to, the "Try it" cell follows a tip, every cited key exists,
extra references do not redefine keys of the shared bibliography, and the
chapter ends with the labelled Assignment section that links the released
notebook and names the graded functions. Then the one numerical claim the text
states without a figure: a batch-normalized layer is blind to the scale of its
weights, and its gradient is orthogonal to them.
"""

from __future__ import annotations

import re

import torch

from tests import chapter_checks as checks
from tests.conftest import ROOT

CHAPTER = (ROOT / "book" / "covariate_shift.md").read_text()
CELLS = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", CHAPTER, re.S)
SHARED = checks.Chapter("covariate_shift")


def _bib_keys(path) -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", path.read_text(), re.M))


def test_every_figure_has_a_caption_and_a_name_used_in_the_text():
    figures = [cell for cell in CELLS if "plt.show()" in cell]
    assert len(figures) >= 5
    for cell in figures:
        caption = re.search(r"caption: (.+)", cell)
        name = re.search(r"name: (fig-cs-[\w-]+)", cell)
        assert caption and name, cell[:200]
        assert f"{{numref}}`{name.group(1)}`" in CHAPTER, f"{name.group(1)} is never referred to"


def test_try_it_cell_follows_a_tip():
    section = CHAPTER[CHAPTER.index("## Try it"):]
    tip_end = section.index(":::\n", section.index(":::{tip}") + 8)
    assert section[tip_end + 4:].lstrip("\n").startswith("```{code-cell}")


def test_cited_keys_exist_and_extra_keys_are_new():
    shared = _bib_keys(ROOT / "book" / "references.bib")
    extra = _bib_keys(ROOT / "book" / "references" / "covariate_shift.bib")
    assert not shared & extra
    cited = {key.strip() for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", CHAPTER)
             for key in group.split(",")}
    assert cited <= shared | extra, cited - shared - extra
    checks.check_citations(SHARED, required=("Ioffe2015", "Shimodaira2000", "Santurkar2018", "Goodfellow2016",
                                             "Bjorck2018", "Luo2019Regularization", "Arora2019"))


def test_chapter_ends_with_the_assignment_section():
    assignment = CHAPTER.index("(cs-assignment)=\n## Assignment")
    assert "\n## " not in CHAPTER[assignment + 20:], "Assignment is the last section"
    tail = CHAPTER[assignment:]
    assert "{download}`Download the notebook <../exercises/covariate_shift/covariate_shift.ipynb>`" in tail
    assert (ROOT / "exercises" / "covariate_shift" / "covariate_shift.ipynb").exists()
    for name in ("layer_input_stats(model, x)", "loss_along_gradient(model, loss_fn, x, y, step_sizes)"):
        assert name in tail


def test_seeds_and_threads_are_fixed():
    code = "\n".join(CELLS)
    assert "torch.set_num_threads(" in code
    assert "torch.manual_seed(" in code and "random_state=0" in code
    checks.check_seeds_and_threads(SHARED)


def test_every_drawing_cell_is_a_named_captioned_figure():
    checks.check_figures(SHARED, prefix="fig-cs-", minimum=8)


def test_quiz_comes_right_before_the_assignment():
    checks.check_quiz_before_assignment(SHARED, "cs-assignment")
    checks.check_ends_with_assignment(SHARED, "cs-assignment")


def test_chapter_runs_outside_the_repository():
    checks.check_runs_outside_the_repository(SHARED)


def test_chapter_shows_no_graded_answer():
    checks.check_no_graded_code(SHARED)
    # The per-layer statistics and the landscape are graded: the chapter hooks
    # ReLUs for quantiles of one unit, and looks ahead inside its own training loop.
    assert "register_forward_hook" in SHARED.code and "nn.Linear)" not in SHARED.code
    assert "functional_call" not in SHARED.code


def test_notation_is_the_books():
    checks.check_notation(SHARED)
    assert "standard deviation close to $\\gamma$" not in CHAPTER


def test_noise_experiment_is_described_as_a_variant_of_santurkar():
    section = CHAPTER[CHAPTER.index("(cs-noise)="):CHAPTER.index("(cs-smoothness)=")]
    assert "variant" in section and "for each" in section and "example" in section


def test_more_views_end_with_a_verdict_on_each():
    headings = SHARED.headings
    for heading in ("Re-tuning the learning rate when adding batch norm", "Why it works: more views",
                    "Higher-order interactions between layers",
                    "Why the gradient must go through the statistics",
                    "What is known about generalization", "The verdict, view by view"):
        assert heading in headings, heading
    verdict = CHAPTER[CHAPTER.index("(cs-verdict)="):CHAPTER.index("(cs-try-it)=")]
    for view in ("Internal covariate shift", "Higher-order interactions", "Gradient through the statistics",
                 "smoother landscape", "Scale invariance", "generalization"):
        assert view in verdict, view
    # each verdict points at a measurement of the chapter
    assert verdict.count("{numref}`fig-cs-") + verdict.count("{ref}`cs-") >= 6


def test_a_mean_subtracted_outside_the_gradient_lets_the_bias_drift():
    torch.manual_seed(0)
    u = torch.randn(64, 5, dtype=torch.float64)
    target = torch.full((64,), 4.0, dtype=torch.float64)
    drift = {}
    for detach in (True, False):
        b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        for _ in range(50):
            z = u.sum(dim=1) + b
            mean = z.mean()
            out = z - (mean.detach() if detach else mean)
            loss = (out - target).pow(2).mean()
            (grad,) = torch.autograd.grad(loss, b)
            with torch.no_grad():
                b -= 0.01 * grad
        drift[detach] = b.abs().item()
    assert drift[False] < 1e-12           # the two paths cancel: no gradient but rounding
    assert drift[True] > 3.0              # 50 steps of 0.01 * 8: the bias walks away


def test_batch_norm_is_blind_to_the_scale_of_the_weights():
    torch.manual_seed(0)
    x = torch.randn(128, 10, dtype=torch.float64)
    weight = torch.randn(6, 10, dtype=torch.float64)
    readout = torch.randn(128, 6, dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(6, eps=1e-12).double()  # torch refuses eps=0 in training
    outputs, grads = {}, {}
    for a in (1.0, 7.0):
        w = (a * weight).requires_grad_()
        outputs[a] = bn(x @ w.T)
        (outputs[a] * readout).sum().backward()
        grads[a] = w.grad
    torch.testing.assert_close(outputs[7.0], outputs[1.0])
    torch.testing.assert_close(7.0 * grads[7.0], grads[1.0])  # a * grad L(aW) = grad L(W)
    torch.testing.assert_close((weight * grads[1.0]).sum(dim=1), torch.zeros(6, dtype=torch.float64),
                               atol=1e-9, rtol=0)
