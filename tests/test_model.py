"""MambaPro model (mambapro/model.py): one optimiser step per preset changes exactly the parameters that preset
trains (official sec. 1.7), heads and DIRECT modes (sec. 1.6), retrieval feature, Adam parameter groups (sec. 4)
and paper-scale output shapes (sec. 0)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mambapro.complexity import paper_config
from mambapro.config import MODALITIES, PRESETS, TrainConfig, resolve_config
from mambapro.losses import ReIDLoss
from mambapro.model import build_model, param_groups

SMALL = {"data": {"image_size": [32, 16]}}  # tiny default profile on a 4 x 2 grid: fast on two cores


def batch(b=8, size=(32, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    images = {m: torch.randn(b, 3, *size, generator=g) for m in MODALITIES}
    return images, torch.randint(0, 3, (b,), generator=g), torch.arange(b // 4).repeat_interleave(4)


def expected_trainable(cfg, model) -> set[str]:
    """What the preset says trains (official sec. 1.7), independent of requires_grad."""
    first_rp = None
    if model.backbone.prompts is not None:
        first_rp = f"backbone.prompts.layers.{min(model.backbone.prompts.layers, key=int)}.residual."
    out = set()
    for name, _ in model.named_parameters():
        if name.startswith("backbone.tower."):
            trains = not cfg.backbone.frozen  # CLIP(F) only
        elif name == "backbone.camera_embedding":
            trains = True
        elif name.startswith("backbone.adapters."):
            trains = cfg.adapter.kind != "none"
        elif name.startswith("backbone.prompts."):
            trains = not (first_rp and name.startswith(first_rp))  # exists and counts, but no p_f: no gradient
        elif name.startswith("aggregation."):
            trains = cfg.aggregation.kind != "none"
        elif name.startswith(("ori_head.", "fuse_head.", "head.")):
            trains = not name.endswith("bn.bias")  # BN-neck bias frozen
        else:
            raise AssertionError(f"unexpected parameter {name}")
        if trains:
            out.add(name)
    return out


@pytest.mark.parametrize("preset", list(PRESETS))
def test_one_step_changes_exactly_what_the_preset_trains(preset):
    cfg = resolve_config("bare", preset, SMALL)
    if cfg.aggregation.kind != "none":
        pytest.importorskip("mambapro.aggregation")
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=2, num_cameras=3).train()
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("backbone.adapters.") for n in names) == (cfg.adapter.kind != "none")
    assert any(n.startswith("backbone.prompts.") for n in names) == (cfg.prompt.kind != "none")
    assert any(n.startswith("aggregation.") for n in names) == (cfg.aggregation.kind != "none")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(param_groups(model, cfg.train))
    images, cams, pids = batch()
    loss, _ = ReIDLoss(cfg.loss)(model(images, cams), pids)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    expected = expected_trainable(cfg, model)
    assert changed == expected, (sorted(changed - expected)[:5], sorted(expected - changed)[:5])
    if cfg.backbone.frozen:
        assert not any(n.startswith("backbone.tower.") for n in changed)
    else:
        assert any(n.startswith("backbone.tower.") for n in changed)


def test_direct_modes_pairs_and_retrieval_feature():
    torch.manual_seed(0)
    images, cams, _ = batch()
    model = build_model(resolve_config("bare", "E", SMALL), num_classes=5, num_cameras=3)
    assert not hasattr(model, "head") and not hasattr(model, "fuse_head")  # DIRECT=1 without MA: only `ori`
    out = model.train()(images, cams)
    assert out.pair_names == ["ori"] and len(out.pairs) == 1
    logits, ori = out.pairs[0]
    assert logits.shape == (8, 5) and ori.shape == (8, 144)
    torch.testing.assert_close(ori, torch.cat([out.tokens[m][:, 0] for m in MODALITIES], 1))  # f_cls, pre-BN
    model.eval()
    with torch.no_grad():
        ev = model(images, cams)
    assert ev.pairs == [] and ev.feature.shape == (8, 144)
    torch.testing.assert_close(ev.feature, torch.cat([ev.tokens[m][:, 0] for m in MODALITIES], 1))

    vehicles = build_model(resolve_config("bare", "E", {**SMALL, "loss": {"direct": False}}), 5, 3).train()
    out = vehicles(images, cams)  # DIRECT=0: per-modality CLS with the shared backbone head
    assert out.pair_names == list(MODALITIES) and [f.shape for _, f in out.pairs] == [(8, 48)] * 3
    torch.testing.assert_close(out.pairs[1][1], out.tokens["NI"][:, 0])
    assert not hasattr(vehicles, "ori_head")


def test_aggregation_output_is_the_retrieval_feature():
    pytest.importorskip("mambapro.aggregation")
    torch.manual_seed(0)
    images, cams, _ = batch()
    for direct, names in ((True, ["ori", "fuse"]), (False, ["RGB", "NI", "TI", "fuse"])):
        model = build_model(resolve_config("bare", "F", {**SMALL, "loss": {"direct": direct}}), 5, 3).train()
        out = model(images, cams)
        assert out.pair_names == names and out.pairs[-1][1].shape == (8, 144)
        model.eval()
        with torch.no_grad():
            ev = model(images, cams)
            torch.testing.assert_close(ev.feature, model.aggregation([ev.tokens[m] for m in MODALITIES]))


def test_heads_are_bn_necks_with_frozen_bias():
    torch.manual_seed(0)
    model = build_model(resolve_config("bare", "A", {**SMALL, "loss": {"direct": False}}), 300, 3)
    bn, fc = model.head.bn, model.head.classifier
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0) and not bn.bias.requires_grad
    assert fc.bias is None and fc.weight.shape == (300, 48) and abs(fc.weight.std().item() - 0.001) < 1e-4


def test_zero_filled_modalities_are_accepted():
    model = build_model(resolve_config("bare", "E", SMALL), 4, 3).eval()
    images, cams, _ = batch(b=2)
    images["NI"] = torch.zeros_like(images["NI"])
    with torch.no_grad():
        assert torch.isfinite(model(images, cams).feature).all()
    with pytest.raises(ValueError, match="missing modalities"):
        model({"RGB": images["RGB"]}, cams)


def test_param_groups_follow_the_official_optimizer():
    train = TrainConfig(base_lr=1.0, backbone_lr=0.01, bias_lr_factor=2.0, weight_decay=0.1, weight_decay_bias=0.2)
    model = build_model(resolve_config("bare", "B", {**SMALL, "adapter": {"kind": "pfa"}}), 4, 3)
    groups = {g["name"]: g for g in param_groups(model, train)}
    assert all(len(g["params"]) == 1 for g in groups.values())
    expect = {
        "backbone.tower.conv1.weight": (0.01, 0.1, "backbone"),
        "backbone.tower.transformer.resblocks.0.attn.in_proj_bias": (0.01, 0.2, "backbone"),  # biases included
        "backbone.adapters.0.fc1.weight": (1.0, 0.1, "added"),
        "backbone.adapters.0.fc1.bias": (2.0, 0.2, "added"),
        "backbone.camera_embedding": (1.0, 0.1, "added"),
        "ori_head.classifier.weight": (1.0, 0.1, "added"),
    }
    for name, (lr, wd, kind) in expect.items():
        assert (groups[name]["lr"], groups[name]["weight_decay"], groups[name]["kind"]) == (lr, wd, kind), name
    assert "ori_head.bn.bias" not in groups  # frozen
    frozen = build_model(resolve_config("bare", "C", SMALL), 4, 3)
    assert {g["kind"] for g in param_groups(frozen, train)} == {"added"}


def test_paper_scale_shapes(model_paper_tower):
    cfg = paper_config("A")
    model = build_model(cfg, 171, 4, tower=model_paper_tower).eval()
    assert (model.grid, model.out_dim) == ((16, 8), 512)
    images = {m: torch.randn(1, 3, 256, 128) for m in MODALITIES}
    with torch.no_grad():
        out = model(images, torch.tensor([3]))
    assert all(out.tokens[m].shape == (1, 129, 512) for m in MODALITIES)
    assert out.feature.shape == (1, 1536)  # concatenated CLS
    assert dataclasses.is_dataclass(out)
