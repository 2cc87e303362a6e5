"""Adapters inside the backbone's transformer layers: the Parallel Feed-Forward Adapter (PFA; paper Eqs. 1-3,
official-implementation.md sec. 1.3) at the four positions of Table 8, and the two alternatives of Table 5, the
bottleneck adapter (BNA) and LoRA.

Per-layer parameter counts at paper scale (width 768, official sec. 7), the numbers of Tables 5 and 3:

- PFA 768 -> 1536 -> 768 with biases: 2,361,600 (Table 5 "2.36"; x 12 layers = 28,339,200, Table 3 C "28.34").
- BNA 768 -> 384 -> 768 with biases: 590,976 = 0.591 M.  The paper prints 0.60: unexplained +0.01 (official sec. 7
  finds no variant of the module that gives 0.60 while every other row of Tables 4-6 matches plain parameter counts).
- LoRA rank r: r * (768 + 768) = 98,304 / 393,216 / 589,824 for r = 64 / 256 / 384 (0.10 / 0.39 / 0.59).  The paper
  prints 0.60 for r = 384, the same unexplained +0.01 as BNA (r = 384 was evidently chosen to equal BNA's size).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from open_clip.transformer import QuickGELU
from torch import nn

from mambapro.config import AdapterConfig
from mambapro.registry import ACTIVATIONS, ADAPTER_POSITIONS, ADAPTERS

for _position in ("side_ffn", "behind_ffn", "side_mhsa", "behind_mhsa"):  # Table 8; see :func:`adapted_layer`
    ADAPTER_POSITIONS.register(_position, None)
ACTIVATIONS.register("quickgelu", QuickGELU)  # official code
ACTIVATIONS.register("gelu", nn.GELU)  # paper Eq. (2)
BNA_POSITION = "behind_ffn"  # a bottleneck adapter is sequential (Houlsby et al. 2019), paper Table 5
LORA_POSITION = "side_ffn"  # our choice: LoRA's low-rank branch sits where the PFA sits (see :class:`LoRA`)


def make_activation(name: str) -> nn.Module:
    """``"quickgelu"`` x * sigmoid(1.702 x), the official code's; ``"gelu"`` is the paper's (Eq. 2)."""
    return ACTIVATIONS.get(name).obj()


class MLPAdapter(nn.Module):
    """Linear(dim -> hidden) -> activation -> Linear(hidden -> dim), both with bias.  Initialised as the official
    block's ``_init_weights`` (sec. 1.3): weights trunc_normal(std 0.02), biases zero, so the output is not zero at
    step 0."""

    def __init__(self, dim: int, hidden: int, activation: str = "quickgelu"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PFA(MLPAdapter):
    """Parallel Feed-Forward Adapter, ascending then descending: dim -> hidden_ratio * dim -> dim (Eq. 2)."""

    def __init__(self, dim: int, hidden_ratio: float = 2.0, activation: str = "quickgelu"):
        super().__init__(dim, int(round(dim * hidden_ratio)), activation)


class BNA(MLPAdapter):
    """Bottleneck adapter of Table 5, descending then ascending: dim -> bottleneck -> dim, placed sequentially
    behind the FFN (:data:`BNA_POSITION`).  Not in the official code; same initialisation as the PFA."""

    def __init__(self, dim: int, bottleneck: int = 384, activation: str = "quickgelu"):
        super().__init__(dim, bottleneck, activation)


class LoRA(nn.Module):
    """Low-rank branch x -> (x A^T B^T) * alpha / r of Table 5: r * (dim + dim) parameters per layer, no bias.

    Follows the official ``LoRA_Linear`` (``modeling/clip/LoRA.py:91-129``, sec. 1.7, defined but unused there): A
    kaiming-uniform (a = sqrt 5), B zero (so the branch is 0 at step 0), scale alpha / r with alpha = 1.  Where the
    branch goes is not in the official code; our choice gives the paper's count of one dim -> dim low-rank update
    per layer: a side branch beside the FFN reading the post-MHSA stream, exactly where the PFA sits
    (:data:`LORA_POSITION`), so Table 5 compares the adapters' form, not their place.  Its FLOPs,
    129 * 2 * 768 * r per layer and modality, are Table 5's (0.013 / 0.051 / 0.076 G, sec. 6).
    """

    def __init__(self, dim: int, rank: int = 64, alpha: float = 1.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"adapter.rank = {rank} must be >= 1")
        self.lora_A = nn.Parameter(torch.empty(rank, dim))
        self.lora_B = nn.Parameter(torch.zeros(dim, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


def build_adapter(cfg: AdapterConfig, dim: int) -> nn.Module | None:
    """One layer's adapter for ``cfg.kind`` with its ``position`` attribute set; None for kind ``"none"``.

    ``adapter.position`` (Table 8) applies to the PFA; BNA is always sequential behind the FFN and LoRA always a
    side branch beside it (Table 5 varies the adapter, Table 8 the PFA's position)."""
    entry = ADAPTERS.get(cfg.kind)  # an unknown kind lists the registered ones
    if entry.obj is None:
        return None
    ADAPTER_POSITIONS.get(cfg.position)
    module = entry.obj(cfg, dim)
    module.position = entry.facts["position"] or cfg.position
    module.block_input = entry.facts["block_input"] and cfg.block_input
    return module


def build_adapters(cfg: AdapterConfig, dim: int, num_layers: int) -> nn.ModuleDict | None:
    """Adapters of layers ``start_layer .. num_layers - 1`` (Fig. 9c), keyed by the layer index as a string."""
    if ADAPTERS.get(cfg.kind).obj is None:
        return None
    if not 0 <= cfg.start_layer < num_layers:
        raise ValueError(f"adapter.start_layer = {cfg.start_layer} is outside 0..{num_layers - 1}")
    return nn.ModuleDict({str(i): build_adapter(cfg, dim) for i in range(cfg.start_layer, num_layers)})


# The kinds (:data:`mambapro.registry.ADAPTERS`, in the configuration's order): one layer's adapter from (cfg, dim),
# ``position`` (None: ``adapter.position``, the PFA's Table 8 choice; else the kind's fixed place) and ``block_input``
# (whether ``adapter.block_input`` applies).
ADAPTERS.register("none", None, position=None, block_input=False)
ADAPTERS.register("pfa", lambda cfg, dim: PFA(dim, cfg.hidden_ratio, cfg.activation), position=None,
                  block_input=True)
ADAPTERS.register("bna", lambda cfg, dim: BNA(dim, cfg.bottleneck, cfg.activation), position=BNA_POSITION,
                  block_input=False)
ADAPTERS.register("lora", lambda cfg, dim: LoRA(dim, cfg.rank), position=LORA_POSITION, block_input=False)


Branch = Callable[[torch.Tensor], torch.Tensor]


def adapted_layer(x: torch.Tensor, attn: Branch, ffn: Branch, adapter: nn.Module | None = None) -> torch.Tensor:
    """One pre-LN transformer layer, ``attn(x) = MHSA(LN1(x))`` and ``ffn(x) = FFN(LN2(x))``, with ``adapter`` A at
    its ``position``:

    - ``side_ffn`` (official, Eqs. 1 and 3): x' = x + attn(x); out = x' + ffn(x') + A(x').  With ``block_input``
      (paper Eq. 2, which feeds the layer input F rather than F-bar) the adapter reads x instead of x'.
    - ``behind_ffn``: x' = x + attn(x); h = ffn(x'); out = x' + h + A(h)  (sequential, Houlsby-style skip).
    - ``side_mhsa``: x' = x + attn(x) + A(x); out = x' + ffn(x').
    - ``behind_mhsa``: h = attn(x); x' = x + h + A(h); out = x' + ffn(x').

    "Side" adapters read the sub-layer's input stream, "behind" ones its output; both add to the residual stream.
    """
    if adapter is None:
        x = x + attn(x)
        return x + ffn(x)
    position = adapter.position
    if position == "side_ffn":
        y = x + attn(x)
        return y + ffn(y) + adapter(x if adapter.block_input else y)
    if position == "behind_ffn":
        y = x + attn(x)
        h = ffn(y)
        return y + h + adapter(h)
    if position == "side_mhsa":
        y = x + attn(x) + adapter(x)
        return y + ffn(y)
    if position == "behind_mhsa":
        h = attn(x)
        y = x + h + adapter(h)
        return y + ffn(y)
    raise ValueError(f"adapter position {position!r} is not one of: {', '.join(ADAPTER_POSITIONS)}")
