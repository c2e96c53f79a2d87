"""The chapter "Alternatives to batch norm" keeps the shape the course promises.

The structural checks read the MyST source only (the strict site build executes
it): the chapter ends with its quiz and Assignment section and the download
link, its figures have captions and names used in the text, it cites only known
keys, it runs outside the repository, defines no graded function, and contains
no control character (one silently shifts myst-nb's cell boundaries). The
others pin, with a short computation, the claims the chapter makes about
PyTorch and about the methods, including those that were once stated wrongly.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests import chapter_checks as checks
from tests.conftest import ROOT

CHAPTER = ROOT / "book" / "alternatives.md"


def _text() -> str:
    return CHAPTER.read_text(encoding="utf-8")


def _bib_keys() -> set[str]:
    keys: set[str] = set()
    for path in [ROOT / "book" / "references.bib", *sorted((ROOT / "book" / "references").glob("*.bib"))]:
        keys.update(re.findall(r"@\w+\{([^,\s]+),", path.read_text(encoding="utf-8")))
    return keys


def test_chapter_ends_with_the_assignment_and_its_download_link():
    text = _text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[-1] == "Assignment"
    assert "(alternatives-assignment)=\n## Assignment" in text
    assert "{download}`Download the notebook <../exercises/alternatives/alternatives.ipynb>`" in text
    assert (ROOT / "exercises" / "alternatives" / "alternatives.ipynb").exists()


def test_chapter_figures_have_captions_and_names():
    text = _text()
    names = re.findall(r"^    name: (fig-alt-[\w-]+)$", text, re.MULTILINE)
    assert set(names) >= {"fig-alt-axes", "fig-alt-batch-size"}
    assert text.count("  figure:\n    caption: |") == len(names)


def test_chapter_cites_known_keys_and_has_a_try_it_cell():
    text = _text()
    cited = {key.strip() for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", text) for key in group.split(",")}
    assert cited and cited <= _bib_keys(), cited - _bib_keys()
    for key in ("Ba2016", "Ulyanov2016", "Wu2018", "Zhang2019", "Salimans2016", "Ioffe2017", "Nam2018",
                "Luo2019Switchable", "Miyato2018", "Ma2019Diminishing", "Singh2019EvalNorm", "Chang2019",
                "He2016Identity", "Vaswani2017", "Xiong2020", "Touvron2023"):
        assert key in cited, key
    assert ":::{tip}\nTry it:" in text


def test_chapter_has_no_control_characters_and_fixed_seeds():
    text = _text()
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text)
    assert "torch.manual_seed(0)" in text and "torch.set_num_threads(" in text


# --------------------------------------------------------------------------
# Structure, with the checks shared by the chapter tests

ALT = checks.Chapter("alternatives")


def test_every_figure_is_named_in_the_text():
    checks.check_figures(ALT, "fig-alt-", minimum=7)
    for name in ("fig-alt-renorm-blowup", "fig-alt-rnn-steps", "fig-alt-padding", "fig-alt-decorrelated",
                 "fig-alt-online-adabn"):
        assert f"name: {name}" in ALT.text, name


def test_new_sections_cite_their_sources():
    checks.check_citations(ALT, required=("Cooijmans2017", "Hoffer2018", "Huang2018Decorrelated", "Segu2023BNE",
                                          "Mazankiewicz2020", "Hubara2016", "Shen2020PowerNorm", "Li2017AdaBN",
                                          "Ioffe2015"))


def test_chapter_runs_outside_the_repository_with_the_quiz_before_the_assignment():
    checks.check_runs_outside_the_repository(ALT)
    assert "use_course_style" not in ALT.text
    checks.check_quiz_before_assignment(ALT, "alternatives-assignment")
    checks.check_ends_with_assignment(ALT, "alternatives-assignment")
    checks.check_seeds_and_threads(ALT)


def test_no_graded_function_nor_a_hand_written_one():
    """layer_norm, group_norm, instance_norm, rms_norm, weight_norm and batch_renorm are the student's:
    the chapter shows PyTorch's versions and properties, never the formulas as working code."""
    checks.check_no_graded_code(ALT)
    code = ALT.code
    assert "torch._weight_norm(" not in code, "weight norm is checked through its parametrization only"
    assert ".clamp(" not in code and ".clip(" not in code, "no hand-written batch renorm (clipped r and d)"
    assert not re.search(r"/\s*torch\.sqrt\(\s*\w*mean_square", code), "no hand-written RMSNorm"
    assert not re.search(r"\.view\([^)]*num_groups|reshape\([^)]*groups", code), "no hand-written group norm"


def test_symbols_follow_the_notation_page():
    checks.check_notation(ALT)
    assert "|S|" not in ALT.text and "\\mathbb{R}^D" not in ALT.text and "(N, L, D)" not in ALT.text


def test_the_corrected_statements_are_in_place():
    text = " ".join(ALT.text.split())
    # batch renorm: moving averages of mu and sigma; PyTorch has none
    assert r"\hat\sigma \leftarrow \hat\sigma + \rho\,(\sigma_\mathcal{B} - \hat\sigma)" in text
    assert "PyTorch itself has no batch renormalization layer" in text
    assert "each with the same signature and semantics as PyTorch's functional version" not in text
    # instance norm in eval mode
    assert "in evaluation mode it still uses each image's own statistics" in text


# --------------------------------------------------------------------------
# Claims, pinned by computation


def test_instance_norm_uses_instance_statistics_in_eval_mode_unless_it_tracks_running_stats():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    default = nn.InstanceNorm2d(3)
    tracking = nn.InstanceNorm2d(3, track_running_stats=True)
    for layer in (default, tracking):
        layer.train()(x)
        layer.eval()
    assert torch.allclose(default(x), F.instance_norm(x), atol=1e-6)
    assert not torch.allclose(tracking(x), F.instance_norm(x), atol=1e-3)


def test_eval_output_is_the_batch_normalized_output_times_r_plus_d():
    """The identity behind batch renorm: (x - mu_hat)/sigma_hat = x_hat_B * r + d before clipping."""
    torch.manual_seed(0)
    x = 1.0 + 2.0 * torch.randn(16, 3, dtype=torch.float64)
    mean_hat = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    var_hat = torch.tensor([2.0, 4.0, 9.0], dtype=torch.float64)
    eps = 1e-5
    batch_normed = F.batch_norm(x, None, None, training=True, eps=eps)
    eval_normed = F.batch_norm(x, mean_hat, var_hat, training=False, eps=eps)
    r = torch.sqrt(x.var(0, unbiased=False) + eps) / torch.sqrt(var_hat + eps)
    d = (x.mean(0) - mean_hat) / torch.sqrt(var_hat + eps)
    assert torch.allclose(batch_normed * r + d, eval_normed)


def test_a_mean_held_constant_by_the_gradient_lets_a_bias_drift():
    """Ioffe and Szegedy's argument against normalizing with statistics the gradient ignores."""
    u = torch.linspace(0, 1, 32)[:, None]
    drifting = torch.zeros(1, requires_grad=True)
    centred = torch.zeros(1, requires_grad=True)
    for _ in range(20):
        for b, detach in ((drifting, True), (centred, False)):
            x = u + b
            mu = x.mean().detach() if detach else x.mean()
            (x - mu - 1.0).pow(2).mean().backward()
            with torch.no_grad():
                b -= 0.1 * b.grad
                b.grad = None
    assert drifting.item() == pytest.approx(4.0, rel=1e-5)
    assert centred.item() == 0.0


def test_weight_norm_rows_have_length_g_and_the_direction_of_v():
    from torch.nn.utils.parametrizations import weight_norm

    layer = weight_norm(nn.Linear(6, 4).double(), dim=0)
    with torch.no_grad():
        layer.parametrizations.weight.original0.uniform_(0.5, 2.0)
        w = layer.weight
        g = layer.parametrizations.weight.original0
        v = layer.parametrizations.weight.original1
        assert torch.allclose(w.norm(dim=1), g.flatten())
        assert torch.allclose(F.normalize(w, dim=1), F.normalize(v, dim=1))


def test_layer_norm_after_a_linear_map_ignores_the_input_scale():
    """Layer norm is not a reparameterization: Linear + LayerNorm gives the same output for x and 2x."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(8, 6, bias=False), nn.LayerNorm(6, eps=1e-12)).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(block(x), block(2 * x), atol=1e-9)


def test_rms_norm_default_eps_is_the_machine_epsilon():
    x = torch.randn(3, 7, dtype=torch.float64) * 1e-9
    assert torch.equal(F.rms_norm(x, (7,)), F.rms_norm(x, (7,), eps=torch.finfo(torch.float64).eps))


def test_padding_changes_batch_norm_of_real_positions_but_not_layer_norm():
    torch.manual_seed(0)
    real = torch.randn(4, 3, 6) + 2.0                    # (N, C, L)
    padded = torch.cat([real, torch.zeros(4, 3, 10)], dim=2)
    bn_real = F.batch_norm(real, None, None, training=True)
    bn_padded = F.batch_norm(padded, None, None, training=True)[:, :, :6]
    assert (bn_real - bn_padded).abs().mean() > 0.1
    ln = nn.LayerNorm(3)
    assert torch.allclose(ln(real.transpose(1, 2)), ln(padded.transpose(1, 2))[:, :6], atol=1e-6)


def test_batch_norm_then_sign_is_a_threshold_comparison():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.copy_(torch.tensor([-1.0, -0.3, 0.4, 0.8, 1.5]))
        bn.bias.normal_()
        z = 3 * torch.randn(500, 5)
        tau = bn.running_mean - bn.bias * torch.sqrt(bn.running_var + bn.eps) / bn.weight
        assert torch.equal(torch.sign(bn(z)), torch.sign(bn.weight) * torch.sign(z - tau))


def test_zca_whitening_removes_what_standardization_keeps():
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    x = torch.randn(5000, 3, dtype=torch.float64) @ mix
    standardized = F.batch_norm(x, None, None, training=True)
    centred = x - x.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred / len(x))
    white = centred @ vectors @ torch.diag(values.rsqrt()) @ vectors.T
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.corrcoef(standardized.T)[off].abs().max() > 0.3
    assert torch.corrcoef(white.T)[off].abs().max() < 1e-6
    assert math.isclose(float(white.var(0, unbiased=False).mean()), 1.0, rel_tol=1e-9)
