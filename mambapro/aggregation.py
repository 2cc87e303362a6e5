"""Multi-modal aggregation after the backbone: Mamba Aggregation (MA, paper Eqs. 13-19, Fig. 3) and every alternative
of Tables 6 and 11.  Structure, widths and initialisation follow the official ``AAM`` (official-implementation.md
sec. 1.5); parameter and FLOP conventions follow secs. 6-7.

``build_aggregator(cfg, dim, grid)`` returns an :class:`Aggregator` (None for kind "none").  Its ``forward(tokens)``
takes the three backbone outputs [B, 1+N, D] (order RGB, NI, TI; index 0 the CLS token, N = grid[0]·grid[1] patch
tokens in row-major order) and returns f_ma = [f_final^r, f_final^n, f_final^t] of shape [B, 3D] (Eq. 19).

Kinds, and how ``num_blocks`` applies (Table 6 counts ``params(blocks[0]) + params(reduction)``):

* ``"ma"``: ``num_blocks`` MA blocks, each intra-modality then inter-modality (official ``MM_SS2D``; Fig. 9d);
* ``"intra_ma"`` / ``"inter_ma"``: ``num_blocks`` stacked stages of only one kind (Table 6 rows Intra-MA / Inter-MA);
* ``"transformer"``: ``num_blocks`` standard pre-LN ViT blocks (width D, MLP 4D, qkv bias; timm's ``Block``) over all
  3N tokens jointly; no positional or modality embedding (none is counted in the paper's 4.73 M), so the block is
  equivariant to swapping two modalities' token sets, and only the per-modality reductions tell them apart;
* ``"ma_trans"`` (Table 11, MA(Trans)): MA with each Mamba stage replaced by Transformer blocks: three intra blocks
  (one per modality, over its N tokens) then one inter block over the 3N tokens, ``num_blocks`` times;
* ``"sum"``: the token-wise sum of the three modalities' patch tokens, shared by all modalities; no parameters,
  ``num_blocks`` ignored (a second sum would only rescale).  Table 6's 1.58 M are the reductions alone (sec. 7);
* ``"concat"``: Linear(3D -> D, bias) on the channel-concatenated patch tokens, shared by all modalities;
  ``num_blocks`` ignored (after one fusion there is one stream).  Sec. 7 infers it from 2.37 M and 0.10 GFLOPs.

After the blocks, each modality's reduction (Eq. 18; official ``AAM.py:38-45``) is
f_final^M = Linear_M(2D -> D)(LayerNorm_M(2D)([f_cls^M, mean(f_ir^M)])); the raw backbone CLS is used (it does not
pass through the blocks).

Official behaviour, and the paper's where they differ (sec. 1.5, sec. 10 item 7-8):

* MA width D = 512 (CLIP's projected tokens), d_inner = expand·D = 1024, d_state N = 16, dt_rank = ceil(D/16) = 32,
  3×3 depthwise conv with bias on the 2-D patch grid, then BatchNorm2d and SiLU; ``in_proj``/``out_proj`` without
  bias; ``out_proj`` shared by the three modalities; an extra LayerNorm (``out_norm``) inside the SSM before the
  SiLU(z) gate (not in the paper); no pre-norm; residual around every stage;
* initialisation: the official ``AAM._init_weights`` re-initialises *every* Linear, ``dt_proj`` included
  (trunc_normal 0.02, zero bias, so Δ ≈ softplus(0) at init); LayerNorm weight 1 / bias 0; conv keeps PyTorch's
  default, BN weight 1 / bias 0; A_log = log(1..N) (S4D-real), D = 1.  ``dt_init="mamba"`` restores Mamba's dt
  initialisation instead (weight U(±dt_rank^-0.5), bias = softplus^-1 of a log-uniform dt in [1e-3, 0.1]);
* ``bidirectional`` (official ``MAMBA_BI``, off): a second SSM per scan, with its own parameters, on the flipped
  sequence, its output flipped back and added.

Parameter counts at paper scale (D = 512, grid 16×8), one block + the 1,580,544 of the three reductions, as Table 6
counts them (sec. 7): Sum 1,580,544; Concat 2,367,488; Transformer 4,732,928; Intra-MA 5,643,776; Inter-MA 5,406,208;
MA 9,469,440; MA(Trans) 14,190,080.  The whole two-block MA module has 17,358,336, so Table 3's F = 56,816,640 +
17,358,336 = 74.17 M and G = 160.32 M by arithmetic, while the paper prints 74.20 / 160.34: a 0.025 M gap that no
counting rule consistent with Table 6 explains (sec. 7; BN buffers or biases on in/out_proj would fit F but break
Table 6 by +0.01 M), so we report 74.17.

Every kind is an entry of :data:`mambapro.registry.AGGREGATORS` (registered at the end of this module): a block
factory ``(dim, grid, cfg) -> nn.Module`` with the facts ``scan`` (it runs the selective scan: its Mamba
hyper-parameters are checked and the engine reports the scan backend), ``stacked`` (``num_blocks`` applies) and
``paper`` (its rows in the paper's aggregation tables as (table, label) pairs, () for none).

FLOPs (fvcore, batch 1, one MAC = one FLOP, with :func:`mambapro.complexity.flop_handles`): one MA block +
reductions 1.41 G (paper 1.42), Intra-MA and Inter-MA 0.71 G each, Transformer 1.36 G, Concat 0.10 G, Sum 0.0016 G
(the paper prints 0.01; fvcore does not count the additions of the sum), MA(Trans) 2.62 G (the paper's 1.81 G is
not reproduced, sec. 7).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from mambapro.config import MODALITIES, AggregationConfig
from mambapro.registry import AGGREGATORS
from mambapro.scan import resolve_backend, selective_scan

NUM_MODALITIES = len(MODALITIES)


# --------------------------------------------------------------------------------------------------------------
# Mamba pieces (official SSM, SS2D_intra, SS2D_inter, MM_SS2D)


class SSM(nn.Module):
    """Official ``SSM`` core (``mamba.py:218-334``): x_proj -> (dt, B, C), Δ_raw = W_dt·dt (weight only), selective
    scan with dt_proj.bias as delta_bias and softplus, then ``out_norm``.  After a forward, ``self.backend`` names the
    scan backend that ran."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, scan_backend: str = "auto"):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.scan_backend = scan_backend
        self.backend: str | None = None

    @torch.no_grad()
    def mamba_dt_init(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's dt initialisation (``SSM.dt_init``, ``mamba.py:256-282``), which the official code then wipes."""
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(self.dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d_inner] -> [B, L, d_inner]."""
        dt, b_in, c_in = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        self.backend = resolve_backend(self.scan_backend, x.device)
        y = selective_scan(
            x.transpose(1, 2), delta, -torch.exp(self.A_log.float()), b_in.transpose(1, 2).contiguous(),
            c_in.transpose(1, 2).contiguous(), self.D.float(), delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True, backend=self.backend,
        )
        return self.out_norm(y.transpose(1, 2))


class MambaStage(nn.Module):
    """One official ``SS2D_intra`` (``inter=False``: one SSM per modality, Eqs. 13-15) or ``SS2D_inter``
    (``inter=True``: one SSM over the concatenated sequence r, n, t, Eqs. 16-17).  Per modality: in_proj ->
    (x, z); x -> depthwise conv on the patch grid -> BN -> SiLU -> SSM; y ⊙ SiLU(z); shared out_proj; residual."""

    def __init__(self, dim: int, grid: tuple[int, int], cfg: AggregationConfig, inter: bool):
        super().__init__()
        d_inner = cfg.expand * dim
        dt_rank = cfg.dt_rank if cfg.dt_rank is not None else math.ceil(dim / 16)
        self.grid, self.inter = tuple(grid), inter
        self.in_proj = nn.ModuleList(nn.Linear(dim, 2 * d_inner, bias=False) for _ in MODALITIES)
        self.conv = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(d_inner, d_inner, cfg.d_conv, padding=(cfg.d_conv - 1) // 2, groups=d_inner, bias=True),
                nn.BatchNorm2d(d_inner),
                nn.SiLU(),
            )
            for _ in MODALITIES
        )
        n_ssm = 1 if inter else NUM_MODALITIES
        self.ssm = nn.ModuleList(SSM(d_inner, cfg.d_state, dt_rank, cfg.scan_backend) for _ in range(n_ssm))
        self.ssm_backward = (
            nn.ModuleList(SSM(d_inner, cfg.d_state, dt_rank, cfg.scan_backend) for _ in range(n_ssm))
            if cfg.bidirectional else None
        )
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def _scan(self, index: int, x: torch.Tensor) -> torch.Tensor:
        y = self.ssm[index](x)
        if self.ssm_backward is not None:
            y = y + self.ssm_backward[index](x.flip(1)).flip(1)
        return y

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        b, n, _ = xs[0].shape
        h, w = self.grid
        convolved, gates = [], []
        for m, x in enumerate(xs):
            x_in, z = self.in_proj[m](x).chunk(2, dim=-1)
            x_in = self.conv[m](x_in.reshape(b, h, w, -1).permute(0, 3, 1, 2))
            convolved.append(x_in.permute(0, 2, 3, 1).reshape(b, n, -1))
            gates.append(z)
        if self.inter:
            y = self._scan(0, torch.cat(convolved, dim=1))
        else:
            y = torch.cat([self._scan(m, x) for m, x in enumerate(convolved)], dim=1)
        out = self.out_proj(y * F.silu(torch.cat(gates, dim=1)))
        return [x + o for x, o in zip(xs, out.split(n, dim=1))]


class MABlock(nn.Module):
    """One MA block (official ``MM_SS2D``): intra-modality stage, then inter-modality stage."""

    def __init__(self, dim: int, grid: tuple[int, int], cfg: AggregationConfig):
        super().__init__()
        self.intra = MambaStage(dim, grid, cfg, inter=False)
        self.inter = MambaStage(dim, grid, cfg, inter=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.inter(self.intra(xs))


# --------------------------------------------------------------------------------------------------------------
# Alternatives of Tables 6 and 11


def _vit_block(dim: int) -> Block:
    """Standard pre-LN ViT block (timm): width D, MLP 4D, qkv bias; 3,152,384 parameters at D = 512.  8 heads as in
    the official AAM's earlier transformer variant (fewer when D is not a multiple of 8); heads change no count."""
    return Block(dim, num_heads=math.gcd(dim, 8), mlp_ratio=4.0, qkv_bias=True)


class JointTransformer(nn.Module):
    """Table 6 "Transformer": one ViT block over the 3N concatenated patch tokens, split back per modality."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = _vit_block(dim)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.block(torch.cat(xs, dim=1)).split(xs[0].shape[1], dim=1))


class TransMABlock(nn.Module):
    """Table 11 "MA(Trans)": intra stage = one ViT block per modality, inter stage = one ViT block over all 3N tokens
    (4 × 3,152,384 parameters at D = 512)."""

    def __init__(self, dim: int):
        super().__init__()
        self.intra = nn.ModuleList(_vit_block(dim) for _ in MODALITIES)
        self.inter = JointTransformer(dim)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.inter([blk(x) for blk, x in zip(self.intra, xs)])


class SumFusion(nn.Module):
    """Table 6 "Sum": every modality's post-aggregation tokens are the token-wise sum of the three (no parameters)."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = xs[0] + xs[1] + xs[2]
        return [fused] * NUM_MODALITIES


class ConcatFusion(nn.Module):
    """Table 6 "Concat": Linear(3D -> D) on the channel-concatenated patch tokens, shared by every modality."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(NUM_MODALITIES * dim, dim)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.proj(torch.cat(xs, dim=-1))] * NUM_MODALITIES


# --------------------------------------------------------------------------------------------------------------
# Reduction and the aggregator


class ModalityReduction(nn.Module):
    """Eq. 18 for the three modalities: f_final^M = Linear_M(2D -> D)(LN_M(2D)([f_cls^M, mean(f_ir^M)])); output is
    their concatenation [B, 3D] (Eq. 19).  1,580,544 parameters at D = 512."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim)) for _ in MODALITIES)

    def forward(self, cls: list[torch.Tensor], tokens: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(
            [head(torch.cat([c, t.mean(dim=1)], dim=-1)) for head, c, t in zip(self.heads, cls, tokens)], dim=-1
        )


class Aggregator(nn.Module):
    """Blocks over the per-modality patch tokens, then the per-modality reductions (module docstring)."""

    def __init__(self, kind: str, dim: int, grid: tuple[int, int], blocks: nn.ModuleList):
        super().__init__()
        self.kind, self.dim, self.grid = kind, dim, tuple(grid)
        self.blocks = blocks
        self.reduction = ModalityReduction(dim)

    @property
    def scan_backends(self) -> list[str | None]:
        """The backend each SSM used in its last forward (empty for kinds without an SSM)."""
        return [m.backend for m in self.modules() if isinstance(m, SSM)]

    def _split(self, tokens) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if not isinstance(tokens, (list, tuple)) or len(tokens) != NUM_MODALITIES:
            raise ValueError(f"aggregator ({self.kind}): expected a list of {NUM_MODALITIES} tensors (order "
                             f"{', '.join(MODALITIES)}), got {type(tokens).__name__} of length "
                             f"{len(tokens) if hasattr(tokens, '__len__') else '?'}")
        n = self.grid[0] * self.grid[1]
        expected = (tokens[0].shape[0] if tokens[0].dim() else -1, 1 + n, self.dim)
        for name, t in zip(MODALITIES, tokens):
            if tuple(t.shape) != expected:
                raise ValueError(
                    f"aggregator ({self.kind}): {name} tokens have shape {tuple(t.shape)}, expected [B, 1+N, D] = "
                    f"{list(expected)} for grid {self.grid[0]}x{self.grid[1]} and D = {self.dim}"
                )
        return [t[:, 0] for t in tokens], [t[:, 1:] for t in tokens]

    def forward_tokens(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality patch tokens after aggregation, f_ir^M, each [B, N, D] (for Grad-CAM and Fig. 6)."""
        return self._blocks(self._split(tokens)[1])

    def _blocks(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for block in self.blocks:
            xs = block(xs)
        return xs

    def forward(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """f_ma, [B, 3D] (Eq. 19)."""
        cls, patches = self._split(tokens)
        return self.reduction(cls, self._blocks(patches))


def _official_init(module: nn.Module) -> None:
    """``AAM._init_weights`` (``AAM.py:16-25``): every Linear trunc_normal(0.02) with zero bias; LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_aggregator(cfg: AggregationConfig, dim: int, grid: tuple[int, int]) -> Aggregator | None:
    """The aggregator named by ``cfg.kind`` for token width ``dim`` on a ``grid = (h, w)`` patch grid (given by the
    backbone: 16×8 for 256×128 persons, 8×16 for 128×256 vehicles); None for kind "none"."""
    entry = AGGREGATORS.get(cfg.kind)  # an unknown kind lists the registered ones
    if entry.obj is None:
        return None
    if cfg.dt_init not in ("official", "mamba"):
        raise ValueError(f"aggregation.dt_init = {cfg.dt_init!r} is not one of: official, mamba")
    if len(tuple(grid)) != 2 or any(int(g) != g or g < 1 for g in grid):
        raise ValueError(f"aggregation: grid must be two positive integers (h, w), got {grid!r}")
    if dim < 1:
        raise ValueError(f"aggregation: dim must be positive, got {dim}")
    if cfg.num_blocks < 1:
        raise ValueError(f"aggregation.num_blocks = {cfg.num_blocks} must be >= 1")
    if entry.facts["scan"]:
        if cfg.d_conv < 1 or cfg.d_conv % 2 == 0:
            raise ValueError(f"aggregation.d_conv = {cfg.d_conv} must be odd (the conv keeps the patch grid)")
        for key in ("d_state", "expand"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"aggregation.{key} = {getattr(cfg, key)} must be >= 1")
        if cfg.dt_rank is not None and cfg.dt_rank < 1:
            raise ValueError(f"aggregation.dt_rank = {cfg.dt_rank} must be >= 1 or None")
    grid = (int(grid[0]), int(grid[1]))
    count = cfg.num_blocks if entry.facts["stacked"] else 1
    aggregator = Aggregator(cfg.kind, dim, grid, nn.ModuleList(entry.obj(dim, grid, cfg) for _ in range(count)))
    aggregator.apply(_official_init)
    if cfg.dt_init == "mamba":
        for module in aggregator.modules():
            if isinstance(module, SSM):
                module.mamba_dt_init()
    return aggregator


# --------------------------------------------------------------------------------------------------------------
# The registered kinds (:data:`mambapro.registry.AGGREGATORS`): one block's factory (dim, grid, cfg) and its facts;
# the registration order is the order of the configuration's choices.

AGGREGATORS.register("none", None, scan=False, stacked=False, paper=())  # Table 3 rows A-E: no aggregation
AGGREGATORS.register("sum", lambda dim, grid, cfg: SumFusion(), scan=False, stacked=False,
                     paper=(("table6", "Sum"),))
AGGREGATORS.register("concat", lambda dim, grid, cfg: ConcatFusion(dim), scan=False, stacked=False,
                     paper=(("table6", "Concat"),))
AGGREGATORS.register("transformer", lambda dim, grid, cfg: JointTransformer(dim), scan=False, stacked=True,
                     paper=(("table6", "Transformer"),))
AGGREGATORS.register("intra_ma", lambda dim, grid, cfg: MambaStage(dim, grid, cfg, inter=False), scan=True,
                     stacked=True, paper=(("table6", "Intra-MA"),))
AGGREGATORS.register("inter_ma", lambda dim, grid, cfg: MambaStage(dim, grid, cfg, inter=True), scan=True,
                     stacked=True, paper=(("table6", "Inter-MA"),))
AGGREGATORS.register("ma", lambda dim, grid, cfg: MABlock(dim, grid, cfg), scan=True, stacked=True,
                     paper=(("table6", "MA"), ("table11", "MA(Mamba)")))
AGGREGATORS.register("ma_trans", lambda dim, grid, cfg: TransMABlock(dim), scan=False, stacked=True,
                     paper=(("table11", "MA(Trans)"),))


__all__ = [
    "Aggregator", "ConcatFusion", "JointTransformer", "MABlock", "MambaStage", "ModalityReduction", "SSM",
    "SumFusion", "TransMABlock", "build_aggregator",
]
