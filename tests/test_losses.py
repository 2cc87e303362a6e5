"""Losses (mambapro/losses.py) against hand-computed values: label-smoothing CE, Euclidean distances, soft-margin
and margin batch-hard triplet, and the per-pair 0.25 / 1.0 weighting summed over pairs (official sec. 2)."""

from __future__ import annotations

import math

import pytest
import torch

from mambapro.config import LossConfig
from mambapro.losses import ReIDLoss, batch_hard_triplet, euclidean_distances
from mambapro.model import ModelOutput


def softplus(v):
    return math.log1p(math.exp(v))


def test_label_smoothing_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    pids = torch.tensor([0, 2])
    eps, c = 0.1, 3
    total = 0.0
    for row, y in zip(logits.tolist(), pids.tolist()):
        lse = math.log(sum(math.exp(v) for v in row))
        q = [(1 - eps) * (j == y) + eps / c for j in range(c)]  # official CrossEntropyLabelSmooth
        total += -sum(qj * (vj - lse) for qj, vj in zip(q, row))
    expected = total / 2
    feats = torch.tensor([[0.0], [1.0]])
    loss, parts = ReIDLoss(LossConfig(triplet_weight=0.0))(ModelOutput(feats, [(logits, feats)], {}, ["ori"]), pids)
    assert parts["ori_id"].item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() == pytest.approx(0.25 * expected, rel=1e-6)


def test_euclidean_distances():
    d = euclidean_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert d[0, 1].item() == pytest.approx(5.0) and d[1, 0].item() == pytest.approx(5.0)
    assert d[0, 0].item() == pytest.approx(1e-6)  # sqrt(clamp(0, 1e-12))


def test_batch_hard_soft_margin_by_hand():
    feats = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor: farthest positive (self included), nearest negative
    # 0: ap 1, an 3;  1: ap 1, an 2;  3: ap 4, an 2;  7: ap 4, an 6
    expected = (softplus(1 - 3) + softplus(1 - 2) + softplus(4 - 2) + softplus(4 - 6)) / 4
    assert batch_hard_triplet(feats, pids).item() == pytest.approx(expected, rel=1e-5)
    with_margin = (max(0, 1 - 3 + 1.5) + max(0, 1 - 2 + 1.5) + max(0, 4 - 2 + 1.5) + max(0, 4 - 6 + 1.5)) / 4
    assert batch_hard_triplet(feats, pids, margin=1.5).item() == pytest.approx(with_margin, rel=1e-5)


def test_hardest_positive_includes_self():
    feats = torch.tensor([[0.0], [2.0], [5.0]])
    pids = torch.tensor([0, 1, 1])  # anchor 0 has only itself as positive: d_ap = sqrt(1e-12)
    value = batch_hard_triplet(feats, pids)
    expected = (softplus(1e-6 - 2) + softplus(3 - 2) + softplus(3 - 5)) / 3
    assert value.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="single identity"):
        batch_hard_triplet(feats, torch.zeros(3, dtype=torch.long))


def test_total_is_the_weighted_sum_over_pairs():
    torch.manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1])
    pairs = [(torch.randn(4, 5), torch.randn(4, 6)) for _ in range(4)]
    names = ["RGB", "NI", "TI", "fuse"]  # DIRECT=0: four terms
    loss, parts = ReIDLoss(LossConfig())(ModelOutput(torch.zeros(4, 18), pairs, {}, names), pids)
    expected = sum(0.25 * torch.nn.functional.cross_entropy(lg, pids, label_smoothing=0.1)
                   + batch_hard_triplet(f, pids) for lg, f in pairs)
    torch.testing.assert_close(loss, expected)
    assert sorted(parts) == sorted(f"{n}_{k}" for n in names for k in ("id", "tri"))
    with pytest.raises(ValueError, match="training mode"):
        ReIDLoss(LossConfig())(ModelOutput(torch.zeros(4, 18)), pids)
