"""The data interface of the training engine: :func:`build_data` reads ``cfg.data.dataset`` under ``cfg.data.root``
and returns PK-sampled training batches (sec. 3.2) and a test loader holding every unique test sample once, with
the query / gallery index arrays and the protocol of the dataset (sec. 5).

Every batch is ``{"images": {"RGB", "NI", "TI": [B, 3, H, W]}, "pid", "camid", "sceneid", "index": [B] int64}``;
``index`` is the position in the training split (train loader) or in the test loader's order (test loader).
Augmentation draws come from per-draw seeds chosen by the sampler from (seed, epoch), and the loaders use private
generators, so batches are identical for any ``num_workers`` and data loading never touches the global RNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mambapro.config import Config
from mambapro.data.readers import DataError, ReIDDataset, Sample, hold_out_identities, load_images, read_dataset
from mambapro.data.sampler import PKBatchSampler
from mambapro.data.transforms import MultiModalTransform, build_transform, split_resize

__all__ = ["ReIDData", "ReIDImageDataset", "build_data", "test_order"]


class ReIDImageDataset(Dataset):
    """Samples -> transformed tensors.  Keys are an index, or ``(index, augmentation_seed)`` from the PK sampler.

    With ``cache=True`` each sample's decoded images, already through the transform's deterministic steps (resize,
    to-tensor, normalise: :func:`~mambapro.data.transforms.split_resize`), are kept in memory after their first
    read, so later epochs only run the random steps on tensors: the same tensors as without the cache, without the
    decoding, resizing and PIL round trips.  Off at paper scale, where every loader worker would hold a copy."""

    def __init__(self, samples: Sequence[Sample], transform: MultiModalTransform, cache: bool = False):
        self.samples, self.transform = list(samples), transform
        self.resize, self.rest = split_resize(transform) if cache else (None, transform)
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _images(self, index: int) -> dict:
        if self.resize is None:
            return load_images(self.samples[index])
        if index not in self._cache:
            self._cache[index] = {m: self.resize(im) for m, im in load_images(self.samples[index]).items()}
        return self._cache[index]

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        s = self.samples[index]
        return {"images": self.rest(self._images(index), seed), "pid": s.pid, "camid": s.camid,
                "sceneid": s.sceneid, "index": index}


def test_order(data: ReIDDataset) -> tuple[list[Sample], np.ndarray, np.ndarray]:
    """Unique test samples (query first, then the gallery's new ones) and the query / gallery positions in that
    order.  For RGBNT201 (query = gallery = test) both index arrays are 0..N-1."""
    samples: list[Sample] = []
    where: dict[tuple, int] = {}

    def add(s: Sample) -> int:
        key = (s.paths, s.boxes)
        if key not in where:
            where[key] = len(samples)
            samples.append(s)
        elif samples[where[key]] != s:
            raise DataError(f"{s.paths[0]} is listed twice with different labels: {samples[where[key]]} and {s}")
        return where[key]

    query = np.array([add(s) for s in data.query], dtype=np.int64)
    gallery = np.array([add(s) for s in data.gallery], dtype=np.int64)
    return samples, query, gallery


@dataclass
class ReIDData:
    train_loader: DataLoader
    test_loader: DataLoader
    query_index: np.ndarray
    gallery_index: np.ndarray
    test_meta: dict[str, np.ndarray]  # pids, camids, sceneids in test-loader order
    num_classes: int
    num_cameras: int
    protocol: str  # "camera" (RGBNT201, RGBNT100) or "scene" (MSVR310)
    dataset: ReIDDataset

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's PK order and augmentation seeds (call before iterating ``train_loader``)."""
        self.train_loader.batch_sampler.set_epoch(epoch)


def build_data(cfg: Config, seed: int, rank: int = 0, world: int = 1) -> ReIDData:
    """Loaders for ``cfg.data`` (dataset, root, image_size, batch_size, num_instances, test_batch_size, num_workers,
    shared_augmentation, pad, erasing_prob, cache_images; validation_ids > 0: the validation split of
    :func:`~mambapro.data.readers.hold_out_identities` replaces the test split), deterministic for ``seed``.
    Process ``rank`` of ``world`` (torchrun) loads only its slice of every PK batch of ``data.batch_size`` samples
    (:class:`~mambapro.data.sampler.PKBatchSampler`)."""
    d = cfg.data
    data = read_dataset(d.dataset, d.root)
    if d.validation_ids:
        data = hold_out_identities(data, d.validation_ids, d.validation_seed)
    size = tuple(d.image_size)
    train_tf = MultiModalTransform(build_transform(size, True, d.pad, d.erasing_prob), shared=d.shared_augmentation)
    test_tf = MultiModalTransform(build_transform(size, False))
    # persistent: the worker pools live across epochs (augmentation seeds come from the sampler, not the workers)
    workers = {"num_workers": d.num_workers, "pin_memory": torch.cuda.is_available(),
               "persistent_workers": d.num_workers > 0}
    sampler = PKBatchSampler([s.pid for s in data.train], d.batch_size, d.num_instances, seed=seed, rank=rank,
                             world=world)
    train_loader = DataLoader(ReIDImageDataset(data.train, train_tf, d.cache_images), batch_sampler=sampler,
                              generator=torch.Generator().manual_seed(seed), **workers)
    samples, query_index, gallery_index = test_order(data)
    test_loader = DataLoader(ReIDImageDataset(samples, test_tf, d.cache_images), batch_size=d.test_batch_size,
                             shuffle=False, generator=torch.Generator().manual_seed(seed), **workers)
    meta = {"pids": np.array([s.pid for s in samples], dtype=np.int64),
            "camids": np.array([s.camid for s in samples], dtype=np.int64),
            "sceneids": np.array([s.sceneid for s in samples], dtype=np.int64)}
    return ReIDData(train_loader, test_loader, query_index, gallery_index, meta, data.num_classes, data.num_cameras,
                    data.protocol, data)
