"""Deep multi-modal prompts: IP, SP, SRP(Separation) and SRP(Fusion) (paper Eqs. 4-12, Fig. 4, Table 4;
official-implementation.md sec. 1.4).

Every prompted layer l appends prompt tokens after the 1 + N image tokens of modality m, runs the block (attention,
FFN and adapter see them), keeps what the next layer needs and drops them.  With P_x the layer's k x D prompt of
modality x, T_x the SP transfer block of *source* modality x and p_f the carried prompt from layer l - 1:

- ``ip`` (Independent Prompt): only m's own slot, [P_m]; nothing crosses modalities or layers.
- ``sp`` (Synergistic Prompt): slots [RGB, NIR, TIR] in that fixed order; own slot P_m, cross slot x -> m is
  P_x + T_x(P_x) (official; ``sp_identity=False`` gives paper Eq. 6, T_x(P_x)).
- ``srp_fusion`` (official SRP): SP, plus from the second prompted layer on own = p_f + RP_l(p_f) + P_m with p_f the
  mean of the previous output's three slots and one RP_l per layer shared by the modalities (official;
  ``rp_identity=False`` gives paper Eq. 8, P_m + RP_l(p_f)).
- ``srp_separation``: SP plus one RP per modality and layer, RP_l^m, and p_f = m's own output slot instead of the
  mean: the residual comes "from the prompts of separate modalities" rather than "the fusion of them" (paper, Table 4
  text).  Three RP blocks per layer give the paper's 3.55 M; one RP pass per modality gives its 0.29 G (same FLOPs
  as Fusion; averaging three RP outputs instead would cost 0.31 G).  Not in the official code: our reading.

The first prompted layer's RP blocks exist (and count), but get no gradient: there is no p_f yet (official).
Prompts start at zero (official; ``init="normal"`` draws trunc_normal(0.02), the paper's "randomly initialised");
transfer and RP blocks are D -> transfer_hidden -> D with activation and Dropout(0), weights trunc_normal(0.02),
biases zero, so T(0) = 0 and every SP slot is exactly 0 at step 0.

Per-layer parameter counts at paper scale (D 768, k 4, hidden 384; official sec. 7, Table 4):
IP 9,216 (0.01 M); SP 9,216 + 3 * 590,976 = 1,782,144 (1.78); SRP(Fusion) 2,373,120 (2.37; x 12 = 28,477,440,
Table 3 D); SRP(Separation) 3,555,072 = 3.555 M, which rounds to 3.56 while the paper prints 3.55: it sits just
above the rounding midpoint, so the paper truncated it (or counted a slightly smaller variant), official sec. 7.
"""

from __future__ import annotations

import torch
from torch import nn

from mambapro.adapters import make_activation
from mambapro.config import MODALITIES, PromptConfig
from mambapro.registry import PROMPTS

# The kinds (:data:`mambapro.registry.PROMPTS`, in the configuration's order): the prompt module (None: no prompts)
# and ``rp_blocks``, the number of RP blocks per layer (0: no residual prompts; 1 shared by the three targets for
# Fusion, one per target modality for Separation; Table 4).
PROMPTS.register("none", None, rp_blocks=0)


class TransferBlock(nn.Sequential):
    """Linear(D -> hidden) -> activation -> Dropout(0) -> Linear(hidden -> D), the SP transfer block and the RP
    block (official ``adapter_{r,n,t}`` / ``adapter_transfer``, 590,976 parameters at 768 -> 384 -> 768)."""

    def __init__(self, dim: int, hidden: int, activation: str = "quickgelu"):
        super().__init__(nn.Linear(dim, hidden), make_activation(activation), nn.Dropout(0.0), nn.Linear(hidden, dim))
        for fc in (self[0], self[3]):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)


class PromptLayer(nn.Module):
    """One layer's parameters: ``prompts`` [3, k, D] (rows RGB, NIR, TIR), ``transfer`` (SP blocks by source
    modality) and ``residual`` (RP blocks: one shared, or one per target modality)."""

    def __init__(self, kind: str, dim: int, length: int, hidden: int, activation: str, init: str):
        super().__init__()
        self.prompts = nn.Parameter(torch.zeros(len(MODALITIES), length, dim))
        if init == "normal":
            nn.init.trunc_normal_(self.prompts, std=0.02)
        elif init != "zeros":
            raise ValueError(f"prompt.init = {init!r} is not one of: zeros, normal")
        self.transfer = None if kind == "ip" else nn.ModuleList(
            TransferBlock(dim, hidden, activation) for _ in MODALITIES)
        n_rp = PROMPTS.fact(kind, "rp_blocks")
        self.residual = nn.ModuleList(TransferBlock(dim, hidden, activation) for _ in range(n_rp)) if n_rp else None


class SynergisticPrompts(nn.Module):
    """Prompts of layers ``start_layer .. num_layers - 1`` (Fig. 9b), keyed by layer index in ``layers``.

    The backbone calls :meth:`tokens` before a prompted block and :meth:`carry` on the block's prompt outputs."""

    def __init__(self, cfg: PromptConfig, dim: int, num_layers: int):
        super().__init__()
        if PROMPTS.get(cfg.kind).obj is None:  # an unknown kind lists the registered ones
            raise ValueError(f"prompt.kind = {cfg.kind!r} builds no prompts; use build_prompts")
        if not 0 <= cfg.start_layer < num_layers:
            raise ValueError(f"prompt.start_layer = {cfg.start_layer} is outside 0..{num_layers - 1}")
        if cfg.length < 1:
            raise ValueError(f"prompt.length = {cfg.length} must be >= 1")
        self.kind, self.length, self.start_layer = cfg.kind, cfg.length, cfg.start_layer
        self.rp_blocks = PROMPTS.fact(cfg.kind, "rp_blocks")
        self.sp_identity, self.rp_identity = cfg.sp_identity, cfg.rp_identity
        self.layers = nn.ModuleDict({
            str(i): PromptLayer(cfg.kind, dim, cfg.length, cfg.transfer_hidden, cfg.activation, cfg.init)
            for i in range(cfg.start_layer, num_layers)
        })

    @property
    def num_tokens(self) -> int:
        """Prompt tokens appended per layer: k for IP, 3k otherwise."""
        return self.length if self.kind == "ip" else len(MODALITIES) * self.length

    def active(self, layer: int) -> bool:
        return str(layer) in self.layers

    def tokens(self, layer: int, modality: int, carried: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Prompt tokens [batch, num_tokens, D] of ``layer`` for target modality index ``modality``."""
        p = self.layers[str(layer)]
        own = p.prompts[modality].expand(batch, -1, -1)
        if self.kind == "ip":
            return own
        if carried is not None and p.residual is not None:
            rp = p.residual[0 if len(p.residual) == 1 else modality]
            own = own + rp(carried) + (carried if self.rp_identity else 0)
        slots = []
        for x in range(len(MODALITIES)):
            if x == modality:
                slots.append(own)
            else:
                transferred = p.transfer[x](p.prompts[x])  # T chosen by the SOURCE modality (official)
                if self.sp_identity:
                    transferred = p.prompts[x] + transferred
                slots.append(transferred.expand(batch, -1, -1))
        return torch.cat(slots, dim=1)

    def carry(self, prompt_out: torch.Tensor, modality: int) -> torch.Tensor | None:
        """What the next layer's RP reads: the mean of the three output slots (Fusion, Eq. 8), m's own output slot
        (Separation) or nothing (IP, SP)."""
        if self.rp_blocks == 0:
            return None
        b, _, d = prompt_out.shape
        slots = prompt_out.reshape(b, len(MODALITIES), self.length, d)
        return slots.mean(dim=1) if self.kind == "srp_fusion" else slots[:, modality]


for _kind, _rp_blocks in (("ip", 0), ("sp", 0), ("srp_separation", 3), ("srp_fusion", 1)):
    PROMPTS.register(_kind, SynergisticPrompts, rp_blocks=_rp_blocks)


def build_prompts(cfg: PromptConfig, dim: int, num_layers: int) -> SynergisticPrompts | None:
    """The prompt module registered for ``cfg.kind``, None for ``"none"``."""
    module = PROMPTS.get(cfg.kind).obj
    return None if module is None else module(cfg, dim, num_layers)
