"""Several processes train the model one process trains (mambapro/distributed.py, issue 20 item 6): a 2-process
gloo DDP run on the CPU equals the 1-process run of the same global batches; the pieces it rests on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mambapro.distributed import SyncedBatchNorm, shard_bounds, sync_batchnorm, unused_parameters

STEPS = 3


def _cfg(root, preset="F"):
    from mambapro.config import resolve_config

    # F: PFA + SRP(Fusion) + MA (BatchNorm2d inside the MA blocks, BN-neck heads), the tiny default tower
    return resolve_config("bare", preset, {"data": {"root": str(root), "image_size": [32, 16], "batch_size": 8,
                                                 "num_instances": 2}})


def _train_steps(rank: int, world: int, root, store, out, old_loss: bool = False) -> None:
    """``STEPS`` training steps on the first PK batches as process ``rank`` of ``world``; process 0 saves
    the loss, its parts and every gradient of each step to ``out`` (``old_loss``: also the loss of process 0's
    shard alone, what the engine trained on before)."""
    import torch.distributed as dist

    from mambapro.data.loaders import build_data
    from mambapro.distributed import distribute, global_batch
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = _cfg(root)
        data = build_data(cfg, seed=0, rank=rank, world=world)  # this process's slice of every batch
        torch.manual_seed(0)
        model = build_model(cfg, data.num_classes, data.num_cameras)
        net = distribute(model, cfg, torch.device("cpu"))
        criterion = ReIDLoss(cfg.loss)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
        net.train()
        records = []
        for step, batch in zip(range(STEPS), _batches(data)):
            assert batch["pid"].shape[0] == cfg.data.batch_size // world
            output = net(batch["images"], batch["camid"])
            loss, parts = criterion(*global_batch(output, batch["pid"]))
            record = {"loss": loss.detach(), "parts": {k: v.clone() for k, v in parts.items()},
                      "index": batch["index"], "find_unused": getattr(net, "find_unused_parameters", None)}
            if old_loss and step == 0:
                record["shard_loss"] = criterion(output, batch["pid"])[0].detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            record["grads"] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            record["buffers"] = {n: b.clone() for n, b in model.named_buffers()}
            opt.step()
            records.append(record)
        if rank == 0:
            torch.save(records, out)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _batches(data):
    for epoch in (1, 2):
        data.set_epoch(epoch)
        yield from data.train_loader


def _spawned(rank, world, root, store, out):
    _train_steps(rank, world, root, store, out, old_loss=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def test_two_gloo_processes_train_the_one_process_model(tiny_root, tmp_path):
    """Loss, loss parts, the gradient and the BatchNorm running statistics of the first 3 steps of preset F agree
    within 1e-5 relative between 1 process and 2 DDP processes (each decoding half of every batch).  The loss of a
    process's half alone (per-shard hard mining, the old engine) is far outside that tolerance.  Plain SGD between
    the steps: Adam would turn the float noise of zero gradients (biases before a BatchNorm) into full-size steps of
    random sign in directions the loss does not see, in one process as in two."""
    import torch.multiprocessing as mp

    _train_steps(0, 1, tiny_root, None, tmp_path / "one.pt")
    mp.spawn(_spawned, args=(2, tiny_root, tmp_path / "store", tmp_path / "two.pt"), nprocs=2, join=True)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert len(one) == len(two) == STEPS
    for step, (a, b) in enumerate(zip(one, two)):
        assert torch.equal(b["index"], a["index"][:4]), step  # process 0 decoded the first half of the same batch
        assert _rel(b["loss"], a["loss"]) < 1e-5, (step, a["loss"], b["loss"])
        assert a["parts"].keys() == b["parts"].keys()
        assert all(_rel(b["parts"][k], a["parts"][k]) < 1e-5 for k in a["parts"]), step
        assert a["grads"].keys() == b["grads"].keys() and len(a["grads"]) > 50
        whole_a, whole_b = (torch.cat([r["grads"][n].flatten() for n in a["grads"]]) for r in (a, b))
        assert _rel(whole_b, whole_a) < 1e-5, step  # the gradient (every parameter's) within 1e-5 relative
        # and no tensor is off on its own (a missing factor, a per-shard statistic: >= 1e-2); biases just before a
        # BatchNorm have a true gradient of 0 (float noise ~1e-9 of the whole): compared at 1e-4 of the whole's norm
        floor = 1e-4 * float(whole_a.norm())
        for n, g in a["grads"].items():
            assert float((b["grads"][n] - g).norm()) < 1e-4 * max(float(g.norm()), floor), (step, n)
        stats = [n for n in a["buffers"] if "running" in n]
        assert len(stats) >= 4 and all(_rel(b["buffers"][n], a["buffers"][n]) < 1e-5 for n in stats), step
    assert two[0]["find_unused"] is False  # F's unused RP parameters are left out of DDP instead
    assert _rel(two[0]["shard_loss"], one[0]["loss"]) > 1e-3


# ----------------------------------------------------------------------------------------------------------------
# The pieces, in one process


def test_shards_tile_the_batch_in_rank_order():
    for n, world in ((8, 2), (64, 4), (12, 3), (5, 1)):
        bounds = [shard_bounds(n, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))


def test_unused_parameters_are_found_from_the_graph():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare, self.frozen = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)
            self.frozen.requires_grad_(False)

        def forward(self, x):
            return self.used(x) + self.frozen(x)

    net = Net()
    assert unused_parameters(net, [net(torch.randn(4, 3))]) == ["spare.weight", "spare.bias"]
    assert unused_parameters(net, [net.spare(net(torch.randn(4, 3)).sum(1, keepdim=True).expand(4, 3))]) == []


@pytest.mark.parametrize("preset", ["A", "C", "E", "F", "G"])
def test_the_probe_forward_finds_the_unused_parameters_and_changes_nothing(tiny_root, preset):
    """What DDP leaves out of its synchronisation: exactly the first prompted layer's RP blocks under SRP (no
    previous prompts to read, as in the official code); nothing for the presets without SRP.  The probe leaves the
    random state, the buffers and the mode as they were."""
    from mambapro.distributed import _probe_roots
    from mambapro.model import build_model

    cfg = _cfg(tiny_root, preset)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5, num_cameras=3).eval()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    unused = unused_parameters(model, _probe_roots(model, cfg, torch.device("cpu")))
    assert not model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    rp = f"backbone.prompts.layers.{cfg.prompt.start_layer}.residual."
    expected = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(rp)]
    assert unused == (expected if cfg.prompt.kind.startswith("srp") else [])
    # and they get no gradient from a real loss either
    model.train()
    from mambapro.losses import ReIDLoss

    out = model({m: torch.randn(4, 3, 32, 16) for m in ("RGB", "NI", "TI")}, torch.zeros(4, dtype=torch.long))
    ReIDLoss(cfg.loss)(out, torch.tensor([0, 0, 1, 1]))[0].backward()
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad and p.grad is None) == sorted(unused)


def test_a_parameter_left_out_of_ddp_that_gets_a_gradient_stops_training():
    from mambapro.distributed import _refuse_gradient

    w = nn.Parameter(torch.ones(2))
    w.register_hook(_refuse_gradient("head.w"))
    with pytest.raises(RuntimeError, match="head.w received a gradient"):
        (w * 2).sum().backward()


def test_sync_batchnorm_keeps_names_tensors_and_one_process_numbers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Sequential(nn.BatchNorm1d(16)))
    net[3][0].bias.requires_grad_(False)
    x = torch.randn(6, 3, 2, 2)
    plain = [t.clone() for t in (net(x), net[1].running_mean, net[1].running_var, net[3][0].running_var)]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    synced = sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(),
                                          nn.Sequential(nn.BatchNorm1d(16))))
    synced[3][0].bias.requires_grad_(False)
    assert isinstance(synced[1], SyncedBatchNorm) and isinstance(synced[3][0], SyncedBatchNorm)
    assert list(synced.state_dict()) == list(state)
    assert not synced[3][0].bias.requires_grad
    got = [synced(x), synced[1].running_mean, synced[1].running_var, synced[3][0].running_var]
    assert all(torch.equal(a, b) for a, b in zip(got, plain))  # one process: nn.BatchNorm's own forward
