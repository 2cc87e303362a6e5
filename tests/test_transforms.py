"""Transforms (official sec. 3.3) and the missing-modality zero-fill (sec. 3.4)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from mambapro.config import MISSING_SETTINGS, MODALITIES
from mambapro.data.transforms import MultiModalTransform, build_transform, zero_missing


def _image(seed: int, size=(64, 128)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_train_pipeline_is_the_official_one():
    ops = build_transform((256, 128), train=True).transforms
    assert [type(o) for o in ops] == [T.Resize, T.RandomHorizontalFlip, T.Pad, T.RandomCrop, T.ToTensor,
                                      T.Normalize, RandomErasing]
    resize, flip, pad, crop, _, norm, erase = ops
    assert list(resize.size) == [256, 128] and resize.interpolation == T.InterpolationMode.BICUBIC
    assert flip.p == 0.5 and pad.padding == 10 and pad.fill == 0 and tuple(crop.size) == (256, 128)
    assert list(norm.mean) == [0.5] * 3 and list(norm.std) == [0.5] * 3  # not CLIP's statistics
    assert erase.probability == 0.5 and erase.per_pixel and erase.max_count == 1
    assert erase.min_area == 0.02 and erase.max_area == pytest.approx(1 / 3)
    assert np.exp(erase.log_aspect_ratio[0]) == pytest.approx(0.3)
    assert np.exp(erase.log_aspect_ratio[1]) == pytest.approx(1 / 0.3)


def test_test_pipeline_resizes_and_normalises_to_minus_one_one():
    tf = build_transform((128, 64), train=False)
    assert [type(o) for o in tf.transforms] == [T.Resize, T.ToTensor, T.Normalize]
    white = tf(Image.new("RGB", (256, 128), (255, 255, 255)))
    black = tf(Image.new("RGB", (30, 90), (0, 0, 0)))
    assert white.shape == black.shape == (3, 128, 64)
    assert torch.all(white == 1.0) and torch.all(black == -1.0)


def test_seeded_draws_are_reproducible_and_leave_global_rngs_alone():
    mm = MultiModalTransform(build_transform((128, 64), train=True))
    images = {m: _image(i) for i, m in enumerate(MODALITIES)}
    torch.manual_seed(0)
    random.seed(0)
    a = mm(images, seed=1234)
    after = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(3), random.random())
    assert torch.equal(after[0], expected[0]) and after[1] == expected[1]
    b = mm(images, seed=1234)
    assert all(torch.equal(a[m], b[m]) for m in MODALITIES)
    c = mm(images, seed=1235)
    assert any(not torch.equal(a[m], c[m]) for m in MODALITIES)


def test_independent_versus_shared_augmentation():
    same = _image(7)
    images = dict.fromkeys(MODALITIES, same)  # one picture in the three slots: only the draws can differ
    tf = build_transform((128, 64), train=True, erasing_prob=1.0)
    independent = [MultiModalTransform(tf)(images, seed=s) for s in range(6)]
    assert any(not torch.equal(o["RGB"], o["NI"]) for o in independent)  # official: separate draws
    for s in range(6):
        shared = MultiModalTransform(tf, shared=True)(images, seed=s)
        assert torch.equal(shared["RGB"], shared["NI"]) and torch.equal(shared["NI"], shared["TI"])


def test_random_erasing_area_and_values():
    tf = build_transform((128, 64), train=True, erasing_prob=1.0, pad=0)
    grey = Image.new("RGB", (64, 128), (128, 128, 128))
    fractions = []
    for s in range(40):
        x = MultiModalTransform(tf)(dict.fromkeys(MODALITIES, grey), seed=s)["RGB"]
        erased = (x - 128 / 255 * 2 + 1).abs().amax(0) > 1e-3  # pixels that are not the normalised grey
        fractions.append(erased.float().mean().item())
        assert erased.any()
    # per-pixel N(0, 1) noise over a box of 2%..33% of the image (a few noise values may hit the grey exactly)
    assert 0.015 <= min(fractions) and max(fractions) <= 1 / 3 + 0.01


@pytest.mark.parametrize("setting", list(MISSING_SETTINGS))
def test_zero_missing_zeroes_exactly_the_named_modalities(setting):
    images = {m: torch.full((2, 3, 4, 4), float(i + 1)) for i, m in enumerate(MODALITIES)}
    out = zero_missing(images, setting)
    for m in MODALITIES:
        if m in MISSING_SETTINGS[setting]:
            assert torch.equal(out[m], torch.zeros(2, 3, 4, 4))
        else:
            assert out[m] is images[m]
    assert all(images[m].min() > 0 for m in MODALITIES)  # inputs untouched


def test_zero_missing_rejects_unknown_settings():
    images = {m: torch.ones(1) for m in MODALITIES}
    with pytest.raises(ValueError, match="unknown missing-modality setting 'rgb'"):
        zero_missing(images, "rgb")
    with pytest.raises(KeyError, match="lacks modality"):
        zero_missing({"RGB": torch.ones(1)}, "n")


def test_split_resize_is_exact():
    from mambapro.data.transforms import split_resize

    mm = MultiModalTransform(build_transform((128, 64), train=True, erasing_prob=1.0))
    fixed, rest = split_resize(mm)
    assert [type(o) for o in fixed.transforms] == [T.Resize, T.ToTensor, T.Normalize]
    assert [type(o) for o in rest.transform.transforms] == [T.RandomHorizontalFlip, T.Pad, T.RandomCrop,
                                                            RandomErasing]
    images = {m: _image(i, (90, 200)) for i, m in enumerate(MODALITIES)}
    small = {m: fixed(im) for m, im in images.items()}
    for seed in range(12):  # flips, crops near the padded border and erasing boxes all occur
        a, b = mm(images, seed=seed), rest(small, seed=seed)
        assert all(torch.equal(a[m], b[m]) for m in MODALITIES)
    with pytest.raises(ValueError, match="Resize"):
        split_resize(rest)
