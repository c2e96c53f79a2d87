"""The PyTorch behaviour that the "Pitfalls in practice" chapter and its hidden tests rely on.

If a PyTorch upgrade changes one of these, the chapter's prose or the
assignment's reference (autograder/references/pitfalls.py) must change with it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autograder.references import pitfalls as references


def test_requires_grad_false_does_not_stop_running_statistics():
    bn = nn.BatchNorm1d(3)
    bn.requires_grad_(False)
    bn.train()
    bn(torch.randn(8, 3) + 5.0)
    assert bn.running_mean.abs().min() > 0.1
    assert bn.num_batches_tracked.item() == 1


def test_model_train_undoes_eval_on_a_child():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[1].eval()
    model.train()
    assert model[1].training


def test_batch_of_one_raises_only_with_one_value_per_channel():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(4).train()(torch.randn(1, 4))
    image = torch.randn(1, 4, 3, 3)
    out = nn.BatchNorm2d(4).train()(image)
    assert torch.allclose(out, nn.functional.instance_norm(image), atol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizers_skip_none_gradients_but_not_zero_gradients(optimizer):
    def make(params):
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
        return torch.optim.AdamW(params, lr=0.1, weight_decay=0.1)

    stale, clean = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = make([stale, clean])
    (stale.sum() + clean.sum()).backward()
    opt.step()
    for p in (stale, clean):
        p.requires_grad_(False)
    clean.grad = None
    before_stale, before_clean = stale.detach().clone(), clean.detach().clone()
    for _ in range(3):
        opt.zero_grad(set_to_none=False)
        opt.step()
    assert not torch.equal(stale, before_stale), "a zero gradient is still decayed"
    assert torch.equal(clean, before_clean), "a None gradient is skipped"


def test_autocast_keeps_batchnorm_in_float32_and_half_does_not():
    block = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(torch.randn(4, 2, 5, 5))
    assert out.dtype == torch.bfloat16
    assert block[1].running_var.dtype == torch.float32 and block[1].weight.dtype == torch.float32
    assert nn.BatchNorm2d(3).half().running_var.dtype == torch.float16


def test_low_precision_input_gets_float32_statistics():
    feature = (200 + torch.randn(64, 1, 8, 8)).bfloat16()
    bn = nn.BatchNorm2d(1, momentum=1.0)
    bn(feature)
    assert torch.allclose(bn.running_var.double(), feature.double().var().reshape(1), rtol=1e-5)


def test_torch_fusion_requires_eval_mode_and_supports_what_the_probes_use():
    conv = nn.Conv2d(4, 6, 3, groups=2, bias=False).double()
    bn = nn.BatchNorm2d(6, affine=False).double()
    with pytest.raises(AssertionError):
        torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)  # bn in training mode
    conv.eval(), bn.eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    assert torch.allclose(fused(x), bn(conv(x)))
    assert fused.bias is not None and fused.groups == 2


def test_reference_merge_is_the_full_batch_statistics():
    references._self_check()


def test_reference_freeze_survives_train_deepcopy_and_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    keys = list(model.state_dict())
    frozen = references._reference_freeze(model)
    assert frozen is model and list(model.state_dict()) == keys
    for candidate in (model, copy.deepcopy(model)):
        candidate.train()
        assert not candidate[1].training and candidate[0].training
        stats = candidate[1].running_mean.clone()
        candidate(torch.randn(5, 3) + 3.0)
        assert torch.equal(candidate[1].running_mean, stats)
    copy.deepcopy(model).train()
    assert not model[1].training


# --------------------------------------------------------------------------
# Distributed training: what the chapter's section on DDP and SyncBatchNorm states


def _ddp_worker(rank, world_size, store, queue, shards, momentum):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.BatchNorm1d(3, momentum=momentum), nn.Linear(3, 2))
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for batch in shards[rank]:
            loss = ddp(batch).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm1d(3))).train()
        try:
            sync(torch.randn(4, 3))
            refused = ""
        except ValueError as err:
            refused = str(err)
        queue.put((rank, model[0].running_mean.tolist(), refused))
    finally:
        dist.destroy_process_group()


def test_ddp_keeps_the_running_statistics_of_rank_zero_and_syncbn_refuses_cpu_tensors():
    """With the default broadcast_buffers, rank 0's buffers overwrite the others before every
    forward pass: the surviving running mean averages rank 0's shards only. SyncBatchNorm in a
    process group does not synchronize CPU tensors, it raises."""
    import os
    import tempfile
    import time

    import torch.multiprocessing as mp

    momentum = 0.1
    gen = torch.Generator().manual_seed(0)
    shards = [[torch.randn(8, 3, generator=gen) + 10.0 * rank for _ in range(5)] for rank in range(2)]
    store = os.path.join(tempfile.mkdtemp(), "store")
    # spawn, not fork: this process may already run threads (OpenMP, pytest-xdist)
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = mp.start_processes(_ddp_worker, args=(2, store, queue, shards, momentum), nprocs=2,
                                   start_method="spawn", join=False)
    deadline = time.monotonic() + 120
    try:
        while not processes.join(timeout=5):      # raises with the traceback of a failed worker
            if time.monotonic() > deadline:
                pytest.fail("the DDP workers did not finish within 120 s")
        results = {rank: (torch.tensor(mean), refused)
                   for rank, mean, refused in (queue.get(timeout=10) for _ in range(2))}
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.terminate()
    expected = torch.zeros(3)
    for batch in shards[0]:
        expected = (1 - momentum) * expected + momentum * batch.mean(0)
    assert torch.allclose(results[0][0], expected, atol=1e-6)
    assert not torch.allclose(results[1][0], results[0][0], atol=1e-3)
    for _, refused in results.values():
        assert "SyncBatchNorm expected input tensor to be on GPU" in refused


def test_convert_sync_batchnorm_works_without_a_process_group_and_keeps_the_state():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(2, 2), nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert isinstance(converted[1], nn.SyncBatchNorm) and isinstance(converted[4], nn.SyncBatchNorm)
    for (key, a), (_, b) in zip(model.state_dict().items(), converted.state_dict().items()):
        assert torch.equal(a, b), key


def test_ddp_buffer_broadcast_is_on_by_default():
    import inspect

    parameters = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    default = parameters["broadcast_buffers"].default
    if "forward_sync_buffers" in parameters:      # PyTorch >= 2.13: None means True
        assert default is None and parameters["forward_sync_buffers"].default in (None, True)
    else:
        assert default is True


def _folding_outputs(max_difference: float, accuracy_change: float = 0.0) -> dict:
    """What the hidden folding_check probe makes of a run whose folded logits differ by ``max_difference``
    and whose folded accuracy differs by ``accuracy_change``."""
    from autograder.spec import load_spec

    (probe,) = load_spec("pitfalls").tests["test_folding_check"]

    def folding_check(seed=0, epochs=2, repeats=20):
        return {"accuracy": 0.91, "fused_accuracy": 0.91 + accuracy_change, "max_difference": max_difference,
                "time_ms": 2.0, "fused_time_ms": 1.5, "batchnorm_layers": 0}

    return probe.run({"folding_check": folding_check})


@pytest.mark.parametrize(("max_difference", "same"), [(0.0, True), (2e-5, True), (5e-4, True),
                                                      (2e-3, False), (0.3, False)])
def test_folding_check_wants_logits_within_1e_3_and_accepts_float32_rounding(max_difference, same):
    """Folding in float32 moves logits by about 1e-5: that passes; a fold off by 2e-3 or more (a wrong eps, a
    statistic slightly off) fails that check alone, even when the accuracy happens to be unchanged."""
    outputs = _folding_outputs(max_difference)
    assert bool(outputs["same_logits"]) is same
    assert all(bool(value) for key, value in outputs.items() if key != "same_logits")


@pytest.mark.parametrize(("accuracy_change", "same"), [(0.0, True), (0.002, True), (-0.002, True),
                                                       (0.01, False), (-0.05, False)])
def test_folding_check_wants_the_same_accuracy_up_to_one_validation_example(accuracy_change, same):
    """The folded network classifies like the original: a change of one example in ~500 (0.002) passes,
    1 % or more fails that check alone."""
    outputs = _folding_outputs(0.0, accuracy_change)
    assert bool(outputs["same_accuracy"]) is same
    assert all(bool(value) for key, value in outputs.items() if key != "same_accuracy")
