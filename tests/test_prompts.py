"""Prompts (mambapro/prompts.py): IP / SP / SRP slot equations (paper Eqs. 5-12, official sec. 1.4), slot order,
zero initialisation, the carried prompt, removal after each block and per-layer counts (Table 4, official sec. 7)."""

from __future__ import annotations

import pytest
import torch

from mambapro.backbone import Backbone
from mambapro.config import PromptConfig, resolve_config
from mambapro.prompts import SynergisticPrompts, TransferBlock


def prompts(kind, dim=4, length=2, num_layers=2, **kw):
    return SynergisticPrompts(PromptConfig(kind=kind, length=length, transfer_hidden=3, **kw), dim, num_layers)


@pytest.mark.parametrize("kind, count", [
    ("ip", 9_216), ("sp", 1_782_144), ("srp_separation", 3_555_072), ("srp_fusion", 2_373_120)])
def test_per_layer_counts_at_paper_scale(kind, count):
    # Table 4: 0.01 / 1.78 / 3.56 (paper prints 3.55) / 2.37 M
    module = SynergisticPrompts(PromptConfig(kind=kind, length=4, transfer_hidden=384), 768, 1)
    assert sum(p.numel() for p in module.layers["0"].parameters()) == count
    assert sum(p.numel() for p in TransferBlock(768, 384).parameters()) == 590_976


def _known(module: SynergisticPrompts, layer: int = 0):
    """Prompts P_x = x + 1 everywhere; transfer block T_x outputs the constant 10 (x + 1) (zero first layer)."""
    p = module.layers[str(layer)]
    with torch.no_grad():
        for x in range(3):
            p.prompts[x].fill_(x + 1)
            if p.transfer is not None:
                p.transfer[x][0].weight.zero_()
                p.transfer[x][3].bias.fill_(10 * (x + 1))
    return p


def test_sp_slot_order_and_source_transfer():
    module = prompts("sp")
    _known(module)
    for m in range(3):
        out = module.tokens(0, m, None, batch=2)
        assert out.shape == (2, 6, 4)  # [RGB-slot, NIR-slot, TIR-slot], k = 2 each
        for x in range(3):
            slot = out[:, 2 * x:2 * x + 2]
            expected = (x + 1) if x == m else (x + 1) + 10 * (x + 1)  # own P_m; cross P_x + T_x(P_x), T by source
            assert torch.all(slot == expected), (m, x)
    paper = prompts("sp", sp_identity=False)  # Eq. (6): T_x(P_x) only
    _known(paper)
    assert torch.all(paper.tokens(0, 0, None, 1)[:, 2:4] == 20)


def test_ip_has_only_its_own_prompt():
    module = prompts("ip")
    _known(module, layer=1)
    out = module.tokens(1, 2, None, batch=3)
    assert out.shape == (3, 2, 4) and torch.all(out == 3)
    assert module.num_tokens == 2 and module.carry(out, 2) is None


@pytest.mark.parametrize("kind", ["sp", "srp_fusion", "srp_separation"])
def test_zero_initialised_slots_are_zero_at_step_0(kind):
    torch.manual_seed(0)
    module = prompts(kind, dim=16, length=4)
    for m in range(3):
        assert torch.count_nonzero(module.tokens(0, m, None, batch=2)) == 0  # P = 0 and T(0) = 0
    normal = prompts(kind, dim=16, length=4, init="normal")
    assert normal.layers["0"].prompts.std() > 0.01


def test_residual_prompt_fusion_and_separation():
    carried = torch.arange(8.0).reshape(1, 2, 4)
    fusion = prompts("srp_fusion")
    p = _known(fusion, layer=1)
    assert len(p.residual) == 1  # one RP per layer, shared by the modalities
    with torch.no_grad():
        p.residual[0][0].weight.zero_()
        p.residual[0][3].bias.fill_(100.0)
    for m in range(3):
        own = fusion.tokens(1, m, carried, batch=1)[:, 2 * m:2 * m + 2]
        torch.testing.assert_close(own, (m + 1) + carried + 100.0)  # official: P_m + p_f + RP(p_f)
    paper = prompts("srp_fusion", rp_identity=False)
    _known(paper, layer=1)
    with torch.no_grad():
        paper.layers["1"].residual[0][0].weight.zero_()
        paper.layers["1"].residual[0][3].bias.fill_(100.0)
    torch.testing.assert_close(paper.tokens(1, 0, carried, 1)[:, :2], torch.full((1, 2, 4), 101.0))  # Eq. (8)

    separation = prompts("srp_separation")
    q = _known(separation, layer=1)
    assert len(q.residual) == 3  # one RP per modality
    with torch.no_grad():
        for m in range(3):
            q.residual[m][0].weight.zero_()
            q.residual[m][3].bias.fill_(1000.0 * (m + 1))
    for m in range(3):
        own = separation.tokens(1, m, carried, 1)[:, 2 * m:2 * m + 2]
        torch.testing.assert_close(own, (m + 1) + carried + 1000.0 * (m + 1))


def test_carried_prompt():
    out = torch.arange(2 * 12 * 4, dtype=torch.float).reshape(2, 12, 4)  # 3 slots of k = 4
    fusion = prompts("srp_fusion", length=4)
    torch.testing.assert_close(fusion.carry(out, 1), (out[:, 0:4] + out[:, 4:8] + out[:, 8:12]) / 3)  # Eq. (8)
    torch.testing.assert_close(prompts("srp_separation", length=4).carry(out, 1), out[:, 4:8])  # own slot
    assert prompts("sp", length=4).carry(out, 1) is None


def _tiny_backbone(kind="srp_fusion", start_layer=0, adapter="none", length=4):
    cfg = resolve_config("bare", overrides={"data": {"image_size": [32, 16]}, "adapter": {"kind": adapter},
                                             "prompt": {"kind": kind, "length": length, "start_layer": start_layer}})
    torch.manual_seed(0)
    return Backbone(cfg, num_cameras=2)


def test_prompts_appended_and_removed_in_every_prompted_layer():
    # start_layer 6 of 12 maps to layer 2 of the tiny tower's 4 (config.scale_layers); PFA sees the prompt tokens
    backbone = _tiny_backbone(start_layer=6, adapter="pfa")
    assert backbone.num_layers == 4 and list(backbone.prompts.layers.keys()) == ["2", "3"]
    seen, carried_in = {}, []

    def record(name):
        def hook(module, inputs, output):
            seen[name] = inputs[0].shape[1]
        return hook

    for i, block in enumerate(backbone.tower.transformer.resblocks):
        block.ln_1.register_forward_hook(record(f"block{i}"))
    for i, adapter in backbone.adapters.items():
        adapter.register_forward_hook(record(f"pfa{i}"))
    original = backbone.prompts.tokens

    def spy(layer, modality, carried, batch):
        carried_in.append((layer, None if carried is None else tuple(carried.shape)))
        return original(layer, modality, carried, batch)

    backbone.prompts.tokens = spy
    out = backbone(torch.randn(2, 3, 32, 16), "NI")
    n = 1 + 4 * 2
    assert out.shape == (2, n, 48)  # prompts removed after the last block
    assert [seen[f"block{i}"] for i in range(4)] == [n, n, n + 12, n + 12]  # removed after each block
    assert [seen[f"pfa{i}"] for i in "0123"] == [n, n, n + 12, n + 12]  # PFA also runs on prompt tokens
    assert carried_in == [(2, None), (3, (2, 4, 48))]  # first prompted layer: own slot = P_m, no RP


def test_rp_of_first_prompted_layer_gets_no_gradient():
    backbone = _tiny_backbone()
    backbone(torch.randn(2, 3, 32, 16), "RGB").sum().backward()
    assert all(p.grad is None for p in backbone.prompts.layers["0"].residual.parameters())  # exists, counted
    assert all(p.grad is not None for p in backbone.prompts.layers["1"].residual.parameters())
    assert backbone.prompts.layers["0"].prompts.grad.abs().sum() > 0


def test_bad_prompt_settings_are_named():
    with pytest.raises(ValueError, match="prompt.start_layer = 5"):
        SynergisticPrompts(PromptConfig(kind="sp", start_layer=5), 8, 4)
    with pytest.raises(ValueError, match="prompt.length = 0"):
        SynergisticPrompts(PromptConfig(kind="sp", length=0), 8, 4)
