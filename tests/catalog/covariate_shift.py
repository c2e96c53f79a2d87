"""Wrong implementations of the covariate_shift exercises that real students write."""

from tests.catalog import WrongImplementation as W

_STATS = '''
def layer_input_stats(model, x):
    rows = {{}}

    def recorder(name):
        def hook(module, args, output):
            {record}
        return hook

    handles = [module.register_forward_hook(recorder(name))
               for name, module in {modules} if isinstance(module, nn.Linear)]
    {run}

    stats = {{}}
    for name, chunks in rows.items():
        values = torch.cat(chunks)
        {stats}
    return stats
'''

_RECORD = """value = args[0].detach()
rows.setdefault(name, []).append(value.reshape(-1, value.shape[-1]))"""
_RUN = """try:
    model(x)
finally:
    for handle in handles:
        handle.remove()"""
_STATS_LINE = "stats[name] = (values.mean(dim=0), values.std(dim=0, correction=0))"


def _indent(text: str, spaces: int) -> str:
    return text.strip().replace("\n", "\n" + " " * spaces)


def _stats(record: str = _RECORD, modules: str = "model.named_modules()", run: str = _RUN,
           stats: str = _STATS_LINE) -> str:
    return _STATS.format(record=_indent(record, 12), modules=modules, run=_indent(run, 4),
                         stats=_indent(stats, 8))


_LANDSCAPE = '''
def loss_along_gradient(model, loss_fn, x, y, step_sizes):
    {setup}
    params = [p for p in probe.parameters() if p.requires_grad]

    def loss_and_gradient():
        loss = loss_fn(probe(x), y)
        {gradient}
        return loss.detach(), torch.cat([grad.reshape(-1) for grad in grads])

    start = [p.detach().clone() for p in params]
    _, g = loss_and_gradient()
    direction = [piece.view_as(p) for piece, p in zip(g.split([p.numel() for p in params]), params)]

    losses, changes = [], []
    for eta in step_sizes:
        with torch.no_grad():
            for p, p0, d in zip(params, start, direction):
                {step}
        loss, g_eta = loss_and_gradient()
        losses.append(loss)
        {change}
    {finish}
    return torch.stack(losses), torch.stack(changes)
'''

_SETUP = "probe = copy.deepcopy(model)"
_GRADIENT = "grads = torch.autograd.grad(loss, params)"
_STEP = "p.copy_(p0 - eta * d)"
_CHANGE = "changes.append(torch.linalg.vector_norm(g_eta - g))"


def _landscape(setup: str = _SETUP, gradient: str = _GRADIENT, step: str = _STEP, change: str = _CHANGE,
               finish: str = "") -> str:
    return _LANDSCAPE.format(setup=_indent(setup, 4), gradient=_indent(gradient, 8), step=_indent(step, 16),
                             change=_indent(change, 8), finish=_indent(finish, 4) or "pass")


WRONG = [
    # layer_input_stats
    W("unbiased-std", "layer_input_stats", _stats(
        stats="stats[name] = (values.mean(dim=0), values.std(dim=0))"), shows="UNBIASED_STD"),
    W("statistics-per-sample", "layer_input_stats", _stats(
        stats="stats[name] = (values.mean(dim=1), values.std(dim=1, correction=0))"), shows="PER_SAMPLE"),
    W("first-dimension-only", "layer_input_stats", _stats(
        record="rows.setdefault(name, []).append(args[0].detach())"), shows="FIRST_AXIS_ONLY"),
    W("top-level-modules-only", "layer_input_stats", _stats(modules="model.named_children()"),
      shows="TOP_LEVEL_ONLY"),
    W("last-call-overwrites", "layer_input_stats", _stats(
        record="""value = args[0].detach()
rows[name] = [value.reshape(-1, value.shape[-1])]"""), shows="LAST_CALL_ONLY"),
    W("output-instead-of-input", "layer_input_stats", _stats(
        record="""value = output.detach()
rows.setdefault(name, []).append(value.reshape(-1, value.shape[-1]))"""), shows="OUTPUT_STATS"),
    W("hooks-never-removed", "layer_input_stats", _stats(run="model(x)"), shows="HOOKS_NEVER_REMOVED"),
    W("hooks-not-removed-on-error", "layer_input_stats", _stats(run="""model(x)
for handle in handles:
    handle.remove()"""), shows="HOOKS_LEFT_ON_ERROR"),
    W("forward-in-eval-mode", "layer_input_stats", _stats(run="""model.eval()
try:
    with torch.no_grad():
        model(x)
finally:
    for handle in handles:
        handle.remove()"""), shows="SWITCHED_TO_EVAL"),
    W("eval-mode-restored-to-train", "layer_input_stats", _stats(run="""model.eval()
try:
    model(x)
finally:
    model.train()
    for handle in handles:
        handle.remove()"""), shows="EVAL_THEN_TRAIN"),
    W("graph-kept", "layer_input_stats", _stats(
        record="""value = args[0]
rows.setdefault(name, []).append(value.reshape(-1, value.shape[-1]))"""), shows="GRAPH_KEPT"),
    W("all-hooks-cleared", "layer_input_stats", _stats(run="""try:
    model(x)
finally:
    for module in model.modules():
        module._forward_hooks.clear()"""), shows="CLEARED_ALL_HOOKS"),
    # loss_along_gradient
    W("uphill-step", "loss_along_gradient", _landscape(step="p.copy_(p0 + eta * d)"), shows="UPHILL"),
    W("cumulative-steps", "loss_along_gradient", _landscape(step="p.sub_(eta * d)"), shows="CUMULATIVE"),
    W("sum-of-parameter-norms", "loss_along_gradient", _landscape(
        change="""sizes = [p.numel() for p in params]
changes.append(sum(torch.linalg.vector_norm(a - b)
                   for a, b in zip(g_eta.split(sizes), g.split(sizes))))"""), shows="SUM_OF_NORMS"),
    W("squared-norm", "loss_along_gradient", _landscape(change="changes.append(((g_eta - g) ** 2).sum())"),
      shows="SQUARED_NORM"),
    W("normalized-direction", "loss_along_gradient", _landscape(step="p.copy_(p0 - eta * d / g.norm())"),
      shows="NORMALIZED_STEP"),
    W("measured-in-eval-mode", "loss_along_gradient", _landscape(setup="""probe = copy.deepcopy(model)
probe.eval()"""), shows="MEASURED_IN_EVAL"),
    W("backward-accumulates-into-grad", "loss_along_gradient", _landscape(
        setup="probe = model",
        gradient="""loss.backward()
grads = [p.grad.clone() for p in params]""",
        finish="""with torch.no_grad():
    for p, p0 in zip(params, start):
        p.copy_(p0)"""), shows="ACCUMULATED_GRAD"),
    W("model-left-at-last-step", "loss_along_gradient", _landscape(setup="probe = model"), shows="MODEL_MODIFIED"),
    W("running-statistics-not-restored", "loss_along_gradient", _landscape(
        setup="probe = model",
        finish="""with torch.no_grad():
    for p, p0 in zip(params, start):
        p.copy_(p0)"""), shows="RUNNING_STATS_CHANGED"),
    W("gradient-keeps-graph", "loss_along_gradient", _landscape(
        gradient="grads = torch.autograd.grad(loss, params, create_graph=True)"), shows="RESULTS_KEEP_GRAPH"),
]

# Near misses: a right answer but for one small slip, which must still lose points (and be named).
WRONG += [
    W("std-with-eps", "layer_input_stats", _stats(
        stats="stats[name] = (values.mean(dim=0), torch.sqrt(values.var(dim=0, correction=0) + 1e-5))"),
      shows="STD_WITH_EPS"),
    W("statistics-in-float32", "layer_input_stats", _stats(
        record="""value = args[0].detach().float()  # float32 is precise enough for statistics
rows.setdefault(name, []).append(value.reshape(-1, value.shape[-1]))"""), shows="STATS_IN_FLOAT32"),
    W("model-itself-skipped", "layer_input_stats", _stats(
        modules="list(model.named_modules())[1:]"), shows="MODEL_ITSELF_SKIPPED"),
    W("gradients-compared-in-float32", "loss_along_gradient", _landscape(
        gradient="""grads = torch.autograd.grad(loss, params)
grads = [grad.float() for grad in grads]"""), shows="GRADIENT_IN_FLOAT32"),
]


# ---------------------------------------------------------------------------
# The experiment


def _solution_experiment(old: str, new: str) -> str:
    """The source notebook's drift_with_and_without_bn with one change."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "solutions" / "covariate_shift" / "covariate_shift.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "drift_with_and_without_bn":
            source = "\n".join(line for line in "".join(cell["source"]).splitlines() if "### " not in line)
            assert old in source, old
            return source.replace(old, new)
    raise KeyError("drift_with_and_without_bn")


WRONG += [
    W("drift-with-and-without-swapped", "drift_with_and_without_bn", _solution_experiment(
        '((False, "without_bn"), (True, "with_bn"))', '((True, "without_bn"), (False, "with_bn"))'),
      shows="DRIFT_SWAPPED"),
    W("drift-measured-from-step-zero", "drift_with_and_without_bn", _solution_experiment(
        "for step in range(1, steps + 1):", "for step in range(steps):").replace(
        "list(range(every, steps + 1, every))", "list(range(0, steps, every))"), shows="DRIFT_FROM_STEP_ZERO"),
    W("drift-hidden-layers-only", "drift_with_and_without_bn", _solution_experiment(
        "for name in start]", "for name in list(start)[1:-1]]"), named_by="should return (2, 5) drifts"),
    # The flag copied from the earlier cell that built a plain MLP: both runs train the same network, so
    # "with batch norm" drifts exactly as much as without it.
    W("drift-batch-norm-never-switched-on", "drift_with_and_without_bn", _solution_experiment(
        "model = make_mlp(batch_norm, seed=seed)", "model = make_mlp(False, seed=seed)"),
      named_by="drifts more than 3 times as much as with it"),
]

