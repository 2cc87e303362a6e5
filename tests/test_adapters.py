"""Adapters (mambapro/adapters.py): PFA formula and initialisation (official sec. 1.3), the four Table 8 positions,
BNA and LoRA (Table 5), per-layer parameter counts at paper scale (official sec. 7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mambapro.adapters import BNA, PFA, LoRA, adapted_layer, build_adapter, build_adapters
from mambapro.config import AdapterConfig, resolve_config
from mambapro.registry import ADAPTERS


def test_per_layer_counts_at_paper_scale():
    # Table 5 (one layer, width 768): PFA 2.36, BNA 0.59 (paper 0.60), LoRA 0.10 / 0.39 / 0.59 (paper 0.60)
    assert sum(p.numel() for p in PFA(768).parameters()) == 2_361_600
    assert sum(p.numel() for p in BNA(768, 384).parameters()) == 590_976
    for rank, count in ((64, 98_304), (256, 393_216), (384, 589_824)):
        assert sum(p.numel() for p in LoRA(768, rank).parameters()) == count


def test_pfa_equals_its_formula_with_known_weights():
    torch.manual_seed(0)
    pfa = PFA(4, hidden_ratio=2.0)
    assert (pfa.fc1.in_features, pfa.fc1.out_features, pfa.fc2.out_features) == (4, 8, 4)
    w1, b1, w2, b2 = torch.randn(8, 4), torch.randn(8), torch.randn(4, 8), torch.randn(4)
    with torch.no_grad():
        pfa.fc1.weight.copy_(w1), pfa.fc1.bias.copy_(b1), pfa.fc2.weight.copy_(w2), pfa.fc2.bias.copy_(b2)
    x = torch.randn(2, 3, 4)
    h = x @ w1.t() + b1
    expected = (h * torch.sigmoid(1.702 * h)) @ w2.t() + b2  # QuickGELU (official)
    torch.testing.assert_close(pfa(x), expected)
    gelu = PFA(4, activation="gelu")
    gelu.load_state_dict(pfa.state_dict())
    torch.testing.assert_close(gelu(x), torch.nn.functional.gelu(h) @ w2.t() + b2)  # paper Eq. (2)


def test_pfa_initialisation_is_the_official_block_init():
    torch.manual_seed(0)
    pfa = PFA(768)
    assert torch.count_nonzero(pfa.fc1.bias) == 0 and torch.count_nonzero(pfa.fc2.bias) == 0
    for w in (pfa.fc1.weight, pfa.fc2.weight):
        assert abs(w.std().item() - 0.02) < 1e-3
    assert pfa(torch.randn(1, 5, 768)).abs().sum() > 0  # not zero-initialised: active from step 0


def test_lora_initialisation_and_scale():
    torch.manual_seed(0)
    lora = LoRA(16, rank=4)
    x = torch.randn(3, 16)
    assert torch.count_nonzero(lora(x)) == 0  # B = 0
    bound = 1 / math.sqrt(16)  # kaiming_uniform(a=sqrt 5) on fan_in 16
    assert lora.lora_A.abs().max() <= bound and lora.lora_A.abs().max() > 0.5 * bound
    with torch.no_grad():
        lora.lora_B.fill_(1.0)
    torch.testing.assert_close(lora(x), (x @ lora.lora_A.t()).sum(1, keepdim=True).expand(3, 16) / 4)


class _Scale(nn.Module):
    def __init__(self, k: float, position: str, block_input: bool = False):
        super().__init__()
        self.k, self.position, self.block_input = k, position, block_input

    def forward(self, x):
        return self.k * x


@pytest.mark.parametrize("position, block_input, expected", [
    # attn(x) = 0.5 x, ffn(y) = y + 1, A(z) = 3 z; derived by hand from the docstring's equations
    ("side_ffn", False, lambda x: 1.5 * x + (1.5 * x + 1) + 3 * 1.5 * x),  # official: A reads x' = x + attn(x)
    ("side_ffn", True, lambda x: 1.5 * x + (1.5 * x + 1) + 3 * x),  # paper Eq. (2): A reads the layer input
    ("behind_ffn", False, lambda x: 1.5 * x + (1.5 * x + 1) + 3 * (1.5 * x + 1)),
    ("side_mhsa", False, lambda x: 4.5 * x + (4.5 * x + 1)),  # x' = x + 0.5x + 3x
    ("behind_mhsa", False, lambda x: 3 * x + (3 * x + 1)),  # x' = x + 0.5x + 1.5x
])
def test_positions_of_table8(position, block_input, expected):
    x = torch.tensor([1.0, -2.0, 0.5])
    out = adapted_layer(x, lambda t: 0.5 * t, lambda t: t + 1, _Scale(3.0, position, block_input))
    torch.testing.assert_close(out, expected(x))
    plain = adapted_layer(x, lambda t: 0.5 * t, lambda t: t + 1, None)
    torch.testing.assert_close(plain, 1.5 * x + (1.5 * x + 1))


def test_build_adapter_kinds_and_positions():
    assert build_adapter(AdapterConfig(kind="none"), 8) is None
    pfa = build_adapter(AdapterConfig(kind="pfa", position="side_mhsa"), 8)
    assert isinstance(pfa, PFA) and pfa.position == "side_mhsa" and pfa.fc1.out_features == 16
    bna = build_adapter(AdapterConfig(kind="bna", bottleneck=4, position="side_mhsa"), 8)
    assert isinstance(bna, BNA) and bna.position == "behind_ffn" and bna.fc1.out_features == 4  # sequential
    lora = build_adapter(AdapterConfig(kind="lora", rank=2), 8)
    assert isinstance(lora, LoRA) and lora.position == "side_ffn" and lora.lora_A.shape == (2, 8)
    assert build_adapter(AdapterConfig(kind="pfa", block_input=True), 8).block_input


def test_layer_range_fig9c():
    adapters = build_adapters(AdapterConfig(kind="pfa", start_layer=9), 8, 12)
    assert list(adapters.keys()) == ["9", "10", "11"]
    with pytest.raises(ValueError, match="adapter.start_layer = 12"):
        build_adapters(AdapterConfig(kind="pfa", start_layer=12), 8, 12)
    with pytest.raises(ValueError, match="adapter.position = 'middle'"):
        build_adapter(AdapterConfig(kind="pfa", position="middle"), 8)


def test_a_registered_adapter_is_built_at_its_fixed_position():
    """An adapter kind registered in ADAPTERS alone passes the configuration and is built at its ``position``."""
    ADAPTERS.register("test_linear", lambda cfg, dim: nn.Linear(dim, dim), position="side_mhsa", block_input=False)
    try:
        cfg = resolve_config("bare", overrides={"adapter.kind": "test_linear"}).adapter
        adapter = build_adapter(cfg, 8)
        assert isinstance(adapter, nn.Linear) and adapter.position == "side_mhsa" and not adapter.block_input
        assert set(build_adapters(cfg, 8, 3)) == {"0", "1", "2"}
    finally:
        ADAPTERS.unregister("test_linear")
    assert build_adapter(AdapterConfig(kind="pfa", position="behind_mhsa", block_input=True), 8).block_input
