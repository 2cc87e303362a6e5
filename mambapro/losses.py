"""ReID objective (paper Eqs. 20-21; official-implementation.md sec. 2): for every (logits, feature) pair of the
model output, 0.25 * label-smoothing cross-entropy + 1.0 * batch-hard triplet loss, summed over the pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambapro.config import LossConfig


def euclidean_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, 1e-12)) (official ``triplet_loss.py:16-31``)."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * x @ x.t()
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: torch.Tensor, pids: torch.Tensor, margin: float | None = None) -> torch.Tensor:
    """Batch-hard triplet loss on un-normalised features: for each anchor the farthest positive (itself included)
    and the nearest negative.  ``margin=None``: soft margin, mean log(1 + exp(-(d_an - d_ap))) (official
    ``NO_MARGIN=True``); otherwise mean max(0, d_ap - d_an + margin).

    Branch-free (no host synchronisation on a GPU): an anchor without a negative gets d_an = +inf, so its term and
    gradient are exactly 0; a batch of one identity gives loss 0.  The PK sampler never forms such a batch (it
    needs P >= 2 identities, :func:`mambapro.data.sampler.pk_batches`)."""
    if features.dim() != 2 or features.shape[0] != pids.shape[0]:
        raise ValueError(f"triplet loss: features {list(features.shape)} do not match pids {list(pids.shape)}")
    dist = euclidean_distances(features)
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


class ReIDLoss(nn.Module):
    """``ReIDLoss(cfg.loss)(output, pids) -> (total, parts)``; ``parts`` holds each pair's unweighted ``<name>_id``
    and ``<name>_tri`` values (detached)."""

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, output, pids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not output.pairs:
            raise ValueError("the model output has no loss pairs: call the model in training mode (model.train())")
        names = list(output.pair_names) or [f"pair{i}" for i in range(len(output.pairs))]
        total, parts = 0.0, {}
        for name, (logits, feature) in zip(names, output.pairs):
            ce = F.cross_entropy(logits.float(), pids, label_smoothing=self.cfg.label_smoothing)
            tri = batch_hard_triplet(feature.float(), pids, self.cfg.triplet_margin)
            total = total + self.cfg.id_weight * ce + self.cfg.triplet_weight * tri
            parts[f"{name}_id"], parts[f"{name}_tri"] = ce.detach(), tri.detach()
        return total, parts
