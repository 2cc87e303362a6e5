"""MambaPro: shared backbone over RGB / NIR / TIR, BN-neck heads, optional aggregation, and the optimiser's parameter
groups (official-implementation.md secs. 0, 1.6, 1.7, 4).

Heads (sec. 1.6), each BatchNorm1d with frozen zero bias (weight 1) + Linear(no bias, normal std 0.001):

- ``head``: BN(out_dim) + Linear(out_dim -> C), shared by the three modalities' CLS (used when ``loss.direct`` is
  False, DIRECT=0);
- ``ori_head``: BN(3 out_dim) + Linear on the concatenated CLS f_cls (DIRECT=1);
- ``fuse_head``: the same on the aggregation output f_ma (only with an aggregator).

Only the heads whose scores enter the loss are built (the official code builds all and leaves the unused one without
gradient; the paper's parameter counts exclude heads either way).  Retrieval feature (``ModelOutput.feature``):
pre-BN f_ma with an aggregator, else pre-BN f_cls, as the paper and the official eval path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mambapro.aggregation import build_aggregator
from mambapro.backbone import Backbone
from mambapro.config import MODALITIES, Config, TrainConfig

HEAD_PREFIXES = ("head.", "ori_head.", "fuse_head.")


@dataclass
class ModelOutput:
    """``feature`` [B, 3 D] retrieval feature; ``pairs`` (logits, feature) loss pairs (training mode only; DIRECT=1:
    f_cls then f_ma, DIRECT=0: RGB, NIR, TIR CLS then f_ma); ``tokens`` per-modality backbone tokens [B, 1 + N, D];
    ``pair_names`` one name per pair ("ori", "RGB", "NI", "TI", "fuse") for logging."""

    feature: torch.Tensor
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    pair_names: list[str] = field(default_factory=list)


class BNNeckHead(nn.Module):
    """BatchNorm1d (bias frozen at 0) then a bias-free classifier (official ``make_model.py:97-102,165-175``)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bn(feature))


class MambaPro(nn.Module):
    """``model(images, cams) -> ModelOutput`` with ``images = {"RGB": x, "NI": x, "TI": x}``, each [B, 3, H, W], and
    ``cams`` camera ids [B].  Attributes ``grid`` (h, w) and ``out_dim`` D come from the backbone; ``tower`` reuses
    an already built backbone tower (see :class:`~mambapro.backbone.Backbone`)."""

    def __init__(self, cfg: Config, num_classes: int, num_cameras: int, tower: nn.Module | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes = {num_classes} must be >= 1")
        self.backbone = Backbone(cfg, num_cameras, tower)
        self.grid, self.out_dim = self.backbone.grid, self.backbone.out_dim
        self.direct = cfg.loss.direct
        d = self.out_dim
        self.aggregation = build_aggregator(cfg.aggregation, d, self.grid)  # None for kind "none" (rows A-E)
        if self.direct:
            self.ori_head = BNNeckHead(len(MODALITIES) * d, num_classes)
        else:
            self.head = BNNeckHead(d, num_classes)
        if self.aggregation is not None:
            self.fuse_head = BNNeckHead(len(MODALITIES) * d, num_classes)

    def forward(self, images: dict[str, torch.Tensor], cams: torch.Tensor | None = None) -> ModelOutput:
        missing = [m for m in MODALITIES if m not in images]
        if missing:
            raise ValueError(f"images is missing modalities {missing}; expected keys {list(MODALITIES)}")
        tokens = {m: self.backbone(images[m], m, cams) for m in MODALITIES}
        cls = [tokens[m][:, 0] for m in MODALITIES]
        ori = torch.cat(cls, dim=1)
        fuse = self.aggregation([tokens[m] for m in MODALITIES]) if self.aggregation is not None else None
        feature = fuse if fuse is not None else ori
        if not self.training:
            return ModelOutput(feature, [], tokens)
        if self.direct:
            pairs, names = [(self.ori_head(ori), ori)], ["ori"]
        else:
            pairs, names = [(self.head(c), c) for c in cls], list(MODALITIES)
        if fuse is not None:
            pairs.append((self.fuse_head(fuse), fuse))
            names.append("fuse")
        return ModelOutput(feature, pairs, tokens, names)


def build_model(cfg: Config, num_classes: int, num_cameras: int, tower: nn.Module | None = None) -> MambaPro:
    return MambaPro(cfg, num_classes, num_cameras, tower)


def is_backbone_own(name: str) -> bool:
    """A parameter of the pretrained tower (not an added module): gets ``backbone_lr`` under CLIP(F)."""
    return name.startswith("backbone.tower.")


def param_groups(model: nn.Module, train_cfg: TrainConfig) -> list[dict]:
    """Adam parameter groups as the official ``make_optimizer`` (sec. 4): one group per trainable tensor with lr
    ``base_lr`` and ``weight_decay``; names containing "bias" get ``base_lr * bias_lr_factor`` and
    ``weight_decay_bias``; the tower's own parameters (trainable only under CLIP(F)) get ``backbone_lr``, biases
    included.  Each group carries ``name`` (the parameter's) and ``kind`` ("backbone" or "added")."""
    groups = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bias = "bias" in name
        lr = train_cfg.base_lr * train_cfg.bias_lr_factor if bias else train_cfg.base_lr
        kind = "added"
        if is_backbone_own(name):
            lr, kind = train_cfg.backbone_lr, "backbone"
        wd = train_cfg.weight_decay_bias if bias else train_cfg.weight_decay
        groups.append({"params": [p], "lr": lr, "weight_decay": wd, "name": name, "kind": kind})
    return groups
