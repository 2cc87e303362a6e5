"""PK sampling (official ``RandomIdentitySampler``, official-implementation.md sec. 3.2): batches of P identities x K
instances, exactly P*K samples each.

Per epoch: every id's sample list (drawn K times with replacement when it has fewer than K) is shuffled and cut into
chunks of K (the remainder is dropped); then P ids are drawn at random among those with chunks left, one chunk each,
until fewer than P ids remain.  The order is a pure function of (seed, epoch), so a resumed run sees the same batches.
Each batch entry also carries a per-draw augmentation seed, so the random transforms are reproducible too,
whatever the number of loader workers.

Under ``torchrun`` (``rank``, ``world``) every process draws the same global batches with the same generator and
yields only its contiguous slice of each (:func:`mambapro.distributed.shard_bounds`): the processes together decode
each image of the batch once, with the augmentation seed the single-process run gives it, and the slices in rank
order are the single-process batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from mambapro.distributed import shard_bounds

__all__ = ["PKBatchSampler", "pk_batches"]


def pk_batches(pids: Sequence[int], batch_size: int, num_instances: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of PK batches (lists of dataset indices) for the samples' ids ``pids``."""
    if num_instances < 1 or batch_size % num_instances:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of num_instances {num_instances}")
    per_batch = batch_size // num_instances
    if per_batch < 2:
        raise ValueError(f"PK sampling needs P >= 2 identities per batch (batch {batch_size} / K {num_instances} = "
                         f"{per_batch}): the triplet loss has no negative otherwise; raise data.batch_size")
    by_pid: dict[int, list[int]] = defaultdict(list)
    for i, pid in enumerate(pids):
        by_pid[int(pid)].append(i)
    ids = sorted(by_pid)
    if len(ids) < per_batch:
        raise ValueError(f"PK sampling needs at least P = {per_batch} identities (batch {batch_size} / K "
                         f"{num_instances}), the training split has {len(ids)}")
    chunks: dict[int, list[list[int]]] = {}
    for pid in ids:
        idxs = np.asarray(by_pid[pid])
        if idxs.size < num_instances:
            idxs = rng.choice(idxs, size=num_instances, replace=True)
        idxs = rng.permutation(idxs)
        n = idxs.size // num_instances
        chunks[pid] = [idxs[c * num_instances:(c + 1) * num_instances].tolist() for c in range(n)]
    available = list(ids)
    batches = []
    while len(available) >= per_batch:
        picked = [available[i] for i in rng.choice(len(available), size=per_batch, replace=False)]
        batch = []
        for pid in picked:
            batch.extend(chunks[pid].pop(0))
            if not chunks[pid]:
                available.remove(pid)
        batches.append(batch)
    return batches


class PKBatchSampler(Sampler[list]):
    """A batch sampler for ``DataLoader(batch_sampler=...)``.  Yields lists of ``(index, augmentation_seed)``
    pairs (or plain indices with ``with_seeds=False``); call :meth:`set_epoch` before each epoch.  ``rank`` /
    ``world``: yield process ``rank``'s slice of every global batch (``batch_size`` is the global batch)."""

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0,
                 with_seeds: bool = True, rank: int = 0, world: int = 1):
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(f"process {rank} of {world} cannot take an equal share of a batch of {batch_size}: "
                             "data.batch_size must be a multiple of the number of processes")
        self.pids = [int(p) for p in pids]
        self.batch_size, self.num_instances = batch_size, num_instances
        self.rank, self.world = rank, world
        self.seed, self.epoch, self.with_seeds = int(seed), 0, with_seeds
        self._cache: tuple[int, list] | None = None
        self._epoch_batches()  # validates the arguments now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _epoch_batches(self) -> list:
        if self._cache is None or self._cache[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            batches = pk_batches(self.pids, self.batch_size, self.num_instances, rng)
            if self.with_seeds:
                seeds = rng.integers(0, 2**31 - 1, size=(len(batches), self.batch_size))
                batches = [list(zip(b, s.tolist())) for b, s in zip(batches, seeds)]
            self._cache = (self.epoch, batches)
        return self._cache[1]

    def __iter__(self) -> Iterator[list]:
        lo, hi = shard_bounds(self.batch_size, self.rank, self.world)
        yield from (list(b[lo:hi]) for b in self._epoch_batches())

    def __len__(self) -> int:
        return len(self._epoch_batches())
