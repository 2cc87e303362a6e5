"""The paper-scale speed options (issue 20) and what they keep: ``train.compile``, ``train.amp_dtype: bfloat16``,
``train.tf32`` (with ``train.deterministic: false``), ``train.checkpoint_every``, persistent loader workers.

Equality with eager fp32 is checked on the CPU for one F step at the paper's input shapes (256 x 128 images, batch
2, three modalities) on the tiny tower (width 48, 4 layers, patch 8: 512 tokens per image) instead of ViT-B/16,
which would take minutes to compile on one core."""

from __future__ import annotations

import json
import types

import pytest
import torch

from mambapro import engine
from mambapro.config import ConfigError, resolve_config


def _one_step(compile_: bool = False, autocast: torch.dtype | None = None):
    """Loss, its parts and the gradients of one engine step of F at 256 x 128, batch 4 (2 identities x 2: a
    triplet needs a positive other than the sample itself, whose distance is float noise around 0)."""
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    cfg = resolve_config("bare", "F", {"data.image_size": [256, 128], "train.compile": compile_})
    engine.seed_everything(0)
    torch.set_num_threads(1)
    model = build_model(cfg, num_classes=4, num_cameras=2).train()
    g = torch.Generator().manual_seed(1)
    images = {m: torch.randn(4, 3, 256, 128, generator=g) for m in ("RGB", "NI", "TI")}
    run = types.SimpleNamespace(cfg=cfg, device=torch.device("cpu"), model=model,
                                net=torch.compile(model) if compile_ else model, criterion=ReIDLoss(cfg.loss),
                                optimizer=engine.make_optimizer(model, cfg),
                                scaler=engine.make_scaler(cfg, torch.device("cpu")))
    with torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False):
        loss, parts = engine.train_step(run, images, torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1]))
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach().float(), {k: v.float() for k, v in parts.items()}, grads


def _close_grads(got, want, rel, per_tensor=True):
    """The whole gradient within ``rel`` of its norm, and each tensor's within ``rel`` of its own norm plus
    ``rel`` x 1e-3 of the whole (a gradient that is float noise, e.g. a bias right before a BatchNorm, differs
    whatever its size).  Parameters after Adam's first step are not compared: such a noise gradient moves its
    parameter by +-lr either way."""
    assert got.keys() == want.keys() and want
    whole = torch.cat([g.flatten() for g in want.values()]).norm()
    assert torch.cat([(got[n] - g).flatten() for n, g in want.items()]).norm() <= rel * whole
    for n, g in want.items():
        assert not per_tensor or (got[n] - g).norm() <= rel * (g.norm() + 1e-3 * whole), n


@pytest.fixture(scope="module")
def eager():
    return _one_step()


def test_compiled_step_equals_eager_within_float_tolerance(eager):
    loss, parts, grads = _one_step(compile_=True)
    torch.testing.assert_close(loss, eager[0], rtol=1e-4, atol=1e-5)
    for k in parts:
        torch.testing.assert_close(parts[k], eager[1][k], rtol=1e-4, atol=1e-5)
    _close_grads(grads, eager[2], 1e-3)


def test_bf16_autocast_step_is_close_to_fp32(eager):
    loss, parts, grads = _one_step(autocast=torch.bfloat16)
    assert not torch.equal(loss, eager[0])  # bf16 did run
    for k in ("ori_id", "fuse_id"):
        torch.testing.assert_close(parts[k], eager[1][k], rtol=1e-2, atol=1e-3)
    # the triplet distances (|x|^2 + |y|^2 - 2xy of close random-init features) lose most to bf16's 8-bit
    # mantissa: measured ori_tri 2.22 vs 1.89 fp32, whole loss +9 %, whole gradient 7 % off
    torch.testing.assert_close(loss, eager[0], rtol=0.15, atol=1e-2)
    _close_grads(grads, eager[2], 0.15, per_tensor=False)  # single tensors: up to ~20 % (adapters' fc1)


def test_bf16_autocasts_in_bfloat16_without_a_scaler(monkeypatch):
    made = []
    monkeypatch.setattr(torch, "autocast", lambda *a, **kw: ("autocast", a, kw))
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **kw: made.append(kw["enabled"]))
    cuda = torch.device("cuda", 0)
    assert engine._autocast(cuda, True, "bfloat16") == ("autocast", ("cuda",), {"dtype": torch.bfloat16})
    assert engine._autocast(cuda, True) == ("autocast", ("cuda",), {"dtype": torch.float16})  # the default
    engine.make_scaler(resolve_config("bare", "F", {"train.amp_dtype": "bfloat16"}), cuda)
    engine.make_scaler(resolve_config("bare", "F"), cuda)
    engine.make_scaler(resolve_config("bare", "F"), torch.device("cpu"))
    assert made == [False, True, False]
    with pytest.raises(ConfigError, match="train.amp_dtype = 'float8'"):
        resolve_config("bare", "F", {"train.amp_dtype": "float8"})


def test_tf32_only_without_determinism_and_untouched_by_default(monkeypatch):
    precision = torch.get_float32_matmul_precision()
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    try:
        torch.set_float32_matmul_precision("highest")
        engine.seed_everything(0)
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
        assert torch.are_deterministic_algorithms_enabled()
        engine.seed_everything(0, deterministic=False, tf32=True)
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    finally:
        engine.seed_everything(0)
        torch.set_float32_matmul_precision(precision)
    with pytest.raises(ConfigError, match="train.tf32 = True must be false while train.deterministic is true"):
        resolve_config("bare", "F", {"train.tf32": True})
    assert resolve_config("bare", "F", {"train.tf32": True, "train.deterministic": False}).train.tf32


def _cfg(root, **train):
    return resolve_config("bare", "E", {
        "data": {"root": str(root), "image_size": [32, 16], "batch_size": 8, "num_instances": 4,
                 "test_batch_size": 16}, "train": {"epochs": 4, "warmup_epochs": 1, "eval_every": 1, **train}})


def _metrics(result):
    return {k: result[k] for k in ("last", "best", "history")}


def test_checkpoint_every_n_epochs_resumes_exactly(tiny_root, tmp_path):
    train = engine.train
    full = train(_cfg(tiny_root), tmp_path / "full", seed=1, progress=False)
    sparse = _cfg(tiny_root, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):  # 3 iterations per epoch: killed inside epoch 3, before its last.pt
        train(sparse, tmp_path / "run", seed=1, progress=False, stop_after_iters=8)
    from mambapro.checkpoints import load_checkpoint

    assert not (tmp_path / "run" / "last.pt").exists()  # epochs 1 and 2 wrote none
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 4: last.pt is epoch 3's
        train(sparse, tmp_path / "run", seed=1, progress=False, stop_after_iters=11)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    resumed = train(sparse, tmp_path / "run", seed=1, progress=False)
    assert _metrics(resumed) == _metrics(full)  # and the same numbers as last.pt after every epoch
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 4  # the last epoch is always written
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["train"]["checkpoint_every"] == 3


def test_loader_workers_persist_across_epochs(tiny_root):
    from mambapro.config import apply_overrides
    from mambapro.data.loaders import build_data

    with_workers = build_data(apply_overrides(_cfg(tiny_root), {"data": {"num_workers": 1}}), seed=0)
    assert with_workers.train_loader.persistent_workers and with_workers.test_loader.persistent_workers
    assert not build_data(_cfg(tiny_root), seed=0).train_loader.persistent_workers  # num_workers 0: none to keep
