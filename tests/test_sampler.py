"""PK sampler (official sec. 3.2): batch shape, with-replacement ids, stopping rule, (seed, epoch) determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mambapro.data.sampler import PKBatchSampler, pk_batches


def _pids(counts: dict[int, int]) -> list[int]:
    return [pid for pid, n in counts.items() for _ in range(n)]


def test_every_batch_is_p_ids_times_k_instances():
    pids = _pids({p: 5 + p % 7 for p in range(30)})
    sampler = PKBatchSampler(pids, batch_size=32, num_instances=4, seed=0, with_seeds=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for b in batches:
        assert len(b) == 32
        per_id = Counter(pids[i] for i in b)
        assert len(per_id) == 8 and set(per_id.values()) == {4}
    # ids with >= K images: an index is used at most once per epoch, and only whole chunks of K are used
    used = Counter(i for b in batches for i in b)
    assert max(used.values()) == 1
    for pid, n in Counter(pids[i] for i in used).items():
        assert n % 4 == 0 and n <= (pids.count(pid) // 4) * 4


def test_ids_with_fewer_than_k_images_are_sampled_with_replacement():
    pids = _pids({0: 8, 1: 4, 2: 4, 3: 2})  # id 3 has 2 images, K = 4
    rng = np.random.default_rng(0)
    seen_small = 0
    for _ in range(20):
        batches = pk_batches(pids, batch_size=8, num_instances=4, rng=rng)
        # chunks: id0 2, id1 1, id2 1, id3 1 (4 draws from 2 images) = 5 chunks, P = 2 -> always exactly 2 batches
        assert len(batches) == 2
        for b in batches:
            small = [i for i in b if pids[i] == 3]
            if small:
                seen_small += 1
                assert len(small) == 4 and set(small) <= {16, 17}
    assert seen_small > 0


def test_stops_when_fewer_than_p_ids_have_chunks_left():
    pids = _pids({0: 40, 1: 4})  # id 0 has 10 chunks, id 1 one; P = 2
    for seed in range(5):
        batches = pk_batches(pids, batch_size=8, num_instances=4, rng=np.random.default_rng(seed))
        # one batch pairs the two ids; then only id 0 has chunks left (< P ids): stop, its 9 chunks unused
        assert len(batches) == 1 and Counter(pids[i] for i in batches[0]) == {0: 4, 1: 4}


def test_order_is_a_function_of_seed_and_epoch():
    pids = _pids({p: 6 for p in range(20)})
    a = PKBatchSampler(pids, 16, 4, seed=3)
    a.set_epoch(5)
    first = list(a)
    resumed = PKBatchSampler(pids, 16, 4, seed=3)  # a resumed run: fresh object, same epoch
    resumed.set_epoch(5)
    assert list(resumed) == first
    a.set_epoch(6)
    assert list(a) != first
    assert list(PKBatchSampler(pids, 16, 4, seed=4)) != list(PKBatchSampler(pids, 16, 4, seed=3))
    # with seeds: (index, augmentation seed) pairs, seeds differ between draws
    pairs = first[0]
    assert all(isinstance(i, int) and isinstance(s, int) for i, s in pairs)
    assert len({s for b in first for _, s in b}) > 0.9 * sum(len(b) for b in first)


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of num_instances"):
        PKBatchSampler([0, 0, 1, 1], batch_size=6, num_instances=4)
    with pytest.raises(ValueError, match="at least P = 8 identities"):
        PKBatchSampler(_pids({p: 4 for p in range(5)}), batch_size=32, num_instances=4)
    # one identity per batch: the triplet loss would have no negative (it no longer checks on the host)
    with pytest.raises(ValueError, match="P >= 2 identities per batch"):
        PKBatchSampler(_pids({p: 4 for p in range(5)}), batch_size=4, num_instances=4)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        PKBatchSampler(_pids({p: 6 for p in range(20)}), 12, 4, rank=0, world=8)


@pytest.mark.parametrize("world", [2, 4])
def test_each_process_takes_its_slice_of_the_same_global_batches(world):
    """Under torchrun: the slices of processes 0..N-1, in order, are the 1-process batches (indices and
    augmentation seeds), for every epoch; every process has the same number of batches."""
    pids = _pids({p: 5 + p % 4 for p in range(24)})
    one = PKBatchSampler(pids, 16, 4, seed=7)
    shards = [PKBatchSampler(pids, 16, 4, seed=7, rank=r, world=world) for r in range(world)]
    for epoch in (1, 2):
        for s in (one, *shards):
            s.set_epoch(epoch)
        whole = list(one)
        parts = [list(s) for s in shards]
        assert all(len(p) == len(whole) == len(s) for p, s in zip(parts, shards))
        for i, batch in enumerate(whole):
            assert all(len(p[i]) == 16 // world for p in parts)
            assert [x for p in parts for x in p[i]] == batch
    # one process: the batches drawn before sharding existed (same generator calls, same order)
    rng = np.random.default_rng([7, 2])
    batches = pk_batches(pids, 16, 4, rng)
    seeds = rng.integers(0, 2**31 - 1, size=(len(batches), 16))
    assert whole == [list(zip(b, s.tolist())) for b, s in zip(batches, seeds)]


# ----------------------------------------------------------------------------------------------------------------
# The loaders built on it (mambapro.data.loaders.build_data: the engine's interface)


def _cfg(root, dataset, **data):
    from mambapro.config import resolve_config

    size = [128, 64] if dataset == "RGBNT201" else [64, 128]
    return resolve_config("bare", overrides={"data": {"root": str(root), "dataset": dataset, "image_size": size,
                                                       "batch_size": 8, "num_instances": 2, **data}})


@pytest.mark.parametrize("dataset, protocol", [("RGBNT201", "camera"), ("RGBNT100", "camera"), ("MSVR310", "scene")])
def test_build_data_interface(tiny_root, dataset, protocol):
    import torch

    from mambapro.data.loaders import build_data
    from mambapro.data.readers import read_dataset

    data = build_data(_cfg(tiny_root, dataset), seed=0)
    ref = read_dataset(dataset, tiny_root)
    assert data.protocol == protocol and data.num_classes == ref.num_classes
    assert data.num_cameras == ref.num_cameras
    data.set_epoch(1)
    batch = next(iter(data.train_loader))
    h, w = (128, 64) if dataset == "RGBNT201" else (64, 128)
    assert set(batch["images"]) == {"RGB", "NI", "TI"}
    assert all(x.shape == (8, 3, h, w) and x.dtype == torch.float32 for x in batch["images"].values())
    for key in ("pid", "camid", "sceneid", "index"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (8,)
    assert sorted(Counter(batch["pid"].tolist()).values()) == [2, 2, 2, 2]
    assert int(batch["pid"].max()) < data.num_classes  # training labels 0..C-1
    # test loader: every unique test sample once, in order; index arrays and meta line up with it
    seen = torch.cat([b["index"] for b in data.test_loader]).tolist()
    n = len(data.test_loader.dataset)
    assert seen == list(range(n))
    pids = torch.cat([b["pid"] for b in data.test_loader]).numpy()
    np.testing.assert_array_equal(pids, data.test_meta["pids"])
    assert [s.pid for s in ref.query] == data.test_meta["pids"][data.query_index].tolist()
    assert [s.camid for s in ref.gallery] == data.test_meta["camids"][data.gallery_index].tolist()
    assert [s.sceneid for s in ref.gallery] == data.test_meta["sceneids"][data.gallery_index].tolist()
    if dataset == "RGBNT201":
        assert data.query_index.tolist() == data.gallery_index.tolist() == list(range(n))
    else:
        assert n == len(ref.query) + len(ref.gallery)


def test_batches_depend_on_seed_and_epoch_only(tiny_root):
    import torch

    from mambapro.data.loaders import build_data

    def epoch_batches(workers, epoch, seed=0):
        data = build_data(_cfg(tiny_root, "RGBNT201", num_workers=workers), seed=seed)
        data.set_epoch(epoch)
        return [b for b in data.train_loader]

    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = epoch_batches(0, 2)
    assert torch.equal(torch.get_rng_state(), state)  # loading never touches the global generator
    b = epoch_batches(1, 2)  # one worker process: same batches, augmentations included
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"])
        assert all(torch.equal(x["images"][m], y["images"][m]) for m in x["images"])
    c = epoch_batches(0, 3)
    assert not all(torch.equal(x["images"]["RGB"], y["images"]["RGB"]) for x, y in zip(a, c))


def test_each_process_decodes_only_its_slice(tiny_root, monkeypatch):
    """Process 1 of 2 reads (decodes) only the second half of each PK batch, and gets the tensors the 1-process
    loader gives those samples (same augmentation draws)."""
    import torch

    from mambapro.data import loaders

    whole = loaders.build_data(_cfg(tiny_root, "RGBNT201"), seed=0)
    whole.set_epoch(2)
    expected = list(whole.train_loader)
    read = []
    original = loaders.load_images
    monkeypatch.setattr(loaders, "load_images", lambda sample: read.append(sample) or original(sample))
    half = loaders.build_data(_cfg(tiny_root, "RGBNT201"), seed=0, rank=1, world=2)
    half.set_epoch(2)
    got = list(half.train_loader)
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert torch.equal(g["index"], e["index"][4:]) and torch.equal(g["pid"], e["pid"][4:])
        assert all(torch.equal(g["images"][m], e["images"][m][4:]) for m in e["images"])
    train = half.train_loader.dataset.samples
    assert read == [train[i] for b in got for i in b["index"].tolist()]  # nothing of the other half


def test_image_cache_gives_the_same_tensors(tiny_root):
    import torch

    from mambapro.data.loaders import build_data

    def batches(cache, epoch):
        data = build_data(_cfg(tiny_root, "RGBNT201", cache_images=cache), seed=0)
        data.set_epoch(epoch)
        return data, [b["images"] for b in data.train_loader] + [b["images"] for b in data.test_loader]

    _, plain = batches(False, 2)
    data, cached = batches(True, 2)
    assert data.train_loader.dataset._cache and data.test_loader.dataset._cache  # filled on first read
    for x, y in zip(plain, cached, strict=True):
        assert all(torch.equal(x[m], y[m]) for m in x)
    data.set_epoch(3)  # a second epoch from the cache still matches an uncached one
    again = [b["images"] for b in data.train_loader]
    fresh = batches(False, 3)[1][: len(again)]
    assert all(torch.equal(x[m], y[m]) for x, y in zip(again, fresh) for m in x)
