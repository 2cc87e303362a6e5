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


def _triplet_with_host_check(features, pids, margin=None):
    """The implementation before issue 20 (item 4): the same arithmetic behind an ``if same.all()`` branch, which
    reads a GPU tensor on the host once per loss pair and step."""
    dist = euclidean_distances(features)
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    if same.all():
        raise ValueError("triplet loss: the batch holds a single identity, so there is no negative")
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    if margin is None:
        return torch.nn.functional.softplus(d_ap - d_an).mean()
    return torch.nn.functional.relu(d_ap - d_an + margin).mean()


def _value_and_grad(fn, feats, pids, margin):
    x = feats.clone().requires_grad_(True)
    loss = fn(x, pids, margin)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("margin", [None, 0.3])
def test_branch_free_triplet_is_bit_identical_to_the_host_checked_one(margin):
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        p, k, d = 2 + trial % 5, 1 + trial % 4, 3 + trial
        pids = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=gen)]
        feats = torch.randn(p * k, d, generator=gen) * (1 + trial)
        new, old = _value_and_grad(batch_hard_triplet, feats, pids, margin), _value_and_grad(
            _triplet_with_host_check, feats, pids, margin)
        assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1]), trial
    # a batch whose hardest negative ties with a positive, and a single-sample identity (only itself positive)
    feats, pids = torch.tensor([[0.0], [1.0], [1.0], [5.0]]), torch.tensor([0, 0, 1, 2])
    new, old = _value_and_grad(batch_hard_triplet, feats, pids, margin), _value_and_grad(
        _triplet_with_host_check, feats, pids, margin)
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])


@pytest.mark.parametrize("margin", [None, 0.3])
def test_single_identity_batch_gives_zero_loss_and_gradient_without_a_host_sync(margin, monkeypatch):
    """The degenerate batch (one identity: no negative) where the old code raised: every anchor's d_an is +inf, so
    the loss and its gradient are exactly 0 (finite: no NaN reaches the update), and no tensor is read on the host
    (the old code's ``if same.all()`` calls ``Tensor.__bool__``)."""
    feats, pids = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="single identity"):
        _triplet_with_host_check(feats, pids, margin)
    reads = []
    for name in ("__bool__", "item", "__float__", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name: reads.append(_n) or _o(
            self, *a))
    x = feats.clone().requires_grad_(True)
    loss = batch_hard_triplet(x, pids, margin)
    loss.backward()
    monkeypatch.undo()
    assert reads == []
    assert torch.equal(loss.detach(), torch.tensor(0.0)) and torch.equal(x.grad, torch.zeros_like(feats))
    # the host-checked version reads a tensor on the host in the same call: the counter would have seen it
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self, _o=torch.Tensor.__bool__: reads.append(1) or _o(self))
    _triplet_with_host_check(feats, torch.tensor([0, 0, 0, 1, 1, 1]), margin)
    assert reads == [1]


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
