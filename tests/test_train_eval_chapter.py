"""The chapter "Training vs evaluation" keeps the course's chapter conventions.

Static checks of ``book/train_eval.md`` (the build itself checks that the code
runs and that references resolve): every figure cell has a caption and a name
that the text refers to, the "Try it" cell follows a tip, the cited keys exist,
the chapter ends with the Assignment section that links the released notebook
with its quiz right before it, the page runs outside the repository, no cell
holds a graded answer, the population pass is credited to Ioffe & Szegedy and
PreciseBN to Wu & Johnson, and the serving sections are there. Then the claims
about PyTorch that the text states in words: what
``torch.optim.swa_utils.update_bn`` restores, and that a model traced in
training mode keeps batch statistics after ``.eval()``.
"""

from __future__ import annotations

import copy
import re
import warnings

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from tests import chapter_checks as checks
from tests.conftest import ROOT

CHAPTER = (ROOT / "book" / "train_eval.md").read_text()
CELLS = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", CHAPTER, re.S)
SHARED = checks.Chapter("train_eval")


def _bib_keys() -> set[str]:
    keys = set()
    for path in [ROOT / "book" / "references.bib", *(ROOT / "book" / "references").glob("*.bib")]:
        keys |= set(re.findall(r"^@\w+\{([^,]+),", path.read_text(), re.M))
    return keys


def test_every_figure_has_a_caption_and_a_name_used_in_the_text():
    figures = [cell for cell in CELLS if "plt.show()" in cell]
    assert len(figures) >= 4
    for cell in figures:
        caption = re.search(r"caption: (.+)", cell)
        name = re.search(r"name: (fig-[\w-]+)", cell)
        assert caption and name, cell[:200]
        assert f"{{numref}}`{name.group(1)}`" in CHAPTER, f"{name.group(1)} is never referred to"


def test_try_it_cell_follows_a_tip():
    tip = CHAPTER.index(":::{tip}")
    assert "Try it" in CHAPTER[tip:tip + 200]
    following = CHAPTER[CHAPTER.index(":::", tip + 8):]
    assert following.lstrip(":\n").startswith("```{code-cell}")


def test_cited_keys_exist():
    cited = set(re.findall(r"\{cite:[pt]\}`([^`]+)`", CHAPTER))
    keys = {key.strip() for group in cited for key in group.split(",")}
    assert keys and keys <= _bib_keys(), keys - _bib_keys()


def test_seeds_and_threads_are_fixed():
    assert "torch.manual_seed(0)" in CHAPTER and "torch.set_num_threads(" in CHAPTER


def test_ends_with_the_assignment_section():
    last = CHAPTER.rindex("\n## ")
    section = CHAPTER[last:]
    assert section.startswith("\n## Assignment")
    assert "(train-eval-assignment)=" in CHAPTER[last - 40:last]
    assert "{download}`Download the notebook <../exercises/train_eval/train_eval.ipynb>`" in section
    assert (ROOT / "exercises" / "train_eval" / "train_eval.ipynb").exists()


def test_every_drawing_cell_is_a_named_captioned_figure():
    checks.check_figures(SHARED, prefix="fig-train-eval-", minimum=5)


def test_seeds_threads_and_generators_are_fixed():
    checks.check_seeds_and_threads(SHARED)


def test_quiz_comes_right_before_the_assignment():
    checks.check_quiz_before_assignment(SHARED, "train-eval-assignment")


def test_chapter_runs_outside_the_repository():
    checks.check_runs_outside_the_repository(SHARED)


def test_chapter_shows_no_graded_answer():
    checks.check_no_graded_code(SHARED)
    # Re-estimation goes through torch's own update_bn; no module of the chapter keeps running statistics.
    assert "update_bn(" in SHARED.code


def test_notation_is_the_books():
    checks.check_notation(SHARED)
    assert "\\rho" in SHARED.prose and "momentum} = 1 - \\rho" in SHARED.prose


def test_population_pass_is_credited_to_its_authors():
    precise = " ".join(CHAPTER[CHAPTER.index("(train-eval-precise)="):CHAPTER.index("(train-eval-adabn)=")].split())
    assert "Algorithm 2 of {cite:t}`Ioffe2015`" in precise
    assert "{cite:t}`Wu2021Rethinking` analyse" in precise and "PreciseBN" in precise
    assert "{cite:t}`Wu2021Rethinking` propose" not in CHAPTER
    checks.check_citations(SHARED, required=("Ioffe2015", "Wu2021Rethinking", "Izmailov2018",
                                             "Chollet2015Keras", "Li2017AdaBN"))


def test_serving_sections_cover_keras_export_and_monitoring():
    headings = SHARED.headings
    for heading in ("Serving: the conventions of Keras and TensorFlow", "Serving: exporting with TorchScript",
                    "Serving: batch size and drift"):
        assert heading in headings, heading
    keras = CHAPTER[CHAPTER.index("(train-eval-keras)="):CHAPTER.index("(train-eval-export)=")]
    for fact in ("epsilon=1e-3", "0.99", "training=True", "trainable = False"):
        assert fact in keras, fact
    assert "torch.jit.trace" in SHARED.code and "torch.jit.load" in SHARED.code
    assert 'find_spec("onnx")' in SHARED.code
    assert "running_mean" in CHAPTER[CHAPTER.index("(train-eval-monitoring)="):]


def _probe_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=0.3), nn.ReLU(),
                         nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU())


def test_update_bn_restores_momenta_and_only_the_top_level_mode():
    model = _probe_model()
    model.train()
    model[4].eval()
    batches = [torch.randn(16, 4) for _ in range(3)]
    assert update_bn(batches, model) is None
    assert (model[1].momentum, model[4].momentum) == (0.3, 0.1)
    assert model.training and model[4].training          # the frozen layer's mode is lost
    assert model[1].num_batches_tracked.item() == 3
    with torch.no_grad():
        means = torch.stack([model[0](x).mean(dim=0) for x in batches])
    torch.testing.assert_close(model[1].running_mean, means.mean(dim=0))
    model.eval()
    update_bn(batches, model)
    assert not any(m.training for m in model.modules())


def test_update_bn_leaves_its_temporary_state_after_an_exception():
    model = _probe_model().eval()

    def loader():
        yield torch.randn(16, 4)
        raise RuntimeError("corrupt batch")

    try:
        update_bn(loader(), model)
    except RuntimeError:
        pass
    assert model[1].momentum is None and model.training


def test_a_model_traced_in_training_mode_keeps_batch_statistics():
    model = _probe_model()
    for _ in range(5):
        model(torch.randn(32, 4) * 2 + 1)
    x = torch.randn(8, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced_train = torch.jit.trace(copy.deepcopy(model).train(), x, check_trace=False)
        traced_eval = torch.jit.trace(copy.deepcopy(model).eval(), x)
    traced_train.eval()
    model.eval()
    with torch.no_grad():
        reference = model(x)
        assert (traced_train(x) - reference).abs().max() > 1e-2
        torch.testing.assert_close(traced_eval(x), reference)
