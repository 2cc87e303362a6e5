"""Image transforms (official-implementation.md sec. 3.3) and the missing-modality zero-fill (sec. 3.4, DeMo).

Train: Resize(size, bicubic) -> RandomHorizontalFlip(0.5) -> Pad(10) -> RandomCrop(size) -> ToTensor ->
Normalize(0.5, 0.5) -> RandomErasing(p=0.5, timm 'pixel' mode: per-pixel N(0, 1), area 0.02-1/3, aspect 0.3-3.33).
Test: Resize(size) (bilinear) -> ToTensor -> Normalize(0.5, 0.5).  The official code draws the augmentation of each
modality independently; ``shared=True`` uses one draw for the three.

Reproducibility: torchvision's and timm's transforms draw from the global torch (CPU) and Python generators, so each
call runs them under a seed of its own (given by the sampler per draw) and restores the global state afterwards:
the result depends on the seed only, not on the worker or on what ran before.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from mambapro.config import MISSING_SETTINGS, MODALITIES

__all__ = ["MultiModalTransform", "build_transform", "split_resize", "zero_missing"]

MEAN = STD = (0.5, 0.5, 0.5)  # config/defaults.py:70-72, not CLIP's


def build_transform(size: tuple[int, int], train: bool, pad: int = 10, erasing_prob: float = 0.5) -> T.Compose:
    """The official train or test pipeline for one image; ``size`` is (H, W)."""
    size = tuple(size)
    if not train:
        return T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(MEAN, STD)])
    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.Pad(pad),
        T.RandomCrop(size),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
        RandomErasing(probability=erasing_prob, mode="pixel", max_count=1, device="cpu"),
    ])


def split_resize(transform: MultiModalTransform) -> tuple[T.Compose, MultiModalTransform]:
    """Split a pipeline of :func:`build_transform` into its deterministic part (resize, to-tensor, normalise:
    cacheable) and a :class:`MultiModalTransform` of the random steps on that tensor: ``rest(fixed(x)) ==
    transform(x)`` exactly.  The random steps make the same draws from the same generators as the PIL pipeline
    (the flip's ``torch.rand``, the crop's two ``torch.randint``, timm's erasing), and padding the normalised tensor
    with -1 is padding the image with black, so the tensors are identical (tests/test_transforms.py), without a PIL
    round trip per image (an epoch of the default profile's loader: 0.70 s before, 0.30 s after)."""
    ops = transform.transform.transforms
    if not ops or not isinstance(ops[0], T.Resize):
        raise ValueError(f"expected a pipeline starting with Resize, got {ops[:1]}")
    tensor_steps = (T.ToTensor, T.Normalize)
    fixed = [ops[0]] + [op for op in ops[1:] if isinstance(op, tensor_steps)]
    random_steps = []
    for op in ops[1:]:
        if isinstance(op, tensor_steps):
            continue
        if isinstance(op, T.Pad):
            if op.padding_mode != "constant" or op.fill != 0:
                raise ValueError(f"split_resize: only black constant padding is supported, got {op}")
            op = T.Pad(op.padding, fill=-1.0)  # black in the normalised space of MEAN = STD = 0.5
        random_steps.append(op)
    return T.Compose(fixed), MultiModalTransform(T.Compose(random_steps), shared=transform.shared)


@contextmanager
def _seeded(seed: int):
    """Run with the global Python and torch CPU generators seeded, then put their states back."""
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


class MultiModalTransform:
    """Apply one single-image transform to each modality of a sample (dict of PIL images -> dict of tensors).

    With ``seed`` given, modality m runs under a seed derived from (seed, m) (independent draws, official) or under
    ``seed`` itself for every modality (``shared=True``: same flip, crop and erasing box for the three)."""

    def __init__(self, transform: Callable, shared: bool = False):
        self.transform, self.shared = transform, shared

    def __call__(self, images: Mapping, seed: int | None = None) -> dict[str, torch.Tensor]:
        if seed is None:
            return {m: self.transform(images[m]) for m in MODALITIES}
        out = {}
        for i, m in enumerate(MODALITIES):
            s = int(seed) if self.shared else int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
            with _seeded(s):
                out[m] = self.transform(images[m])
        return out


def zero_missing(images: Mapping[str, torch.Tensor], setting: str) -> dict[str, torch.Tensor]:
    """Zero the input tensors of the modalities missing under ``setting`` (one of ``config.MISSING_SETTINGS``:
    r, n, t, rn, rt, nt), as DeMo's ``TEST.MISS`` does (``DeMo/modeling/make_model.py:142-156``); the zeros are in
    normalised space (a mid-grey image).  Returns a new dict; the others are passed through."""
    if setting not in MISSING_SETTINGS:
        raise ValueError(f"unknown missing-modality setting {setting!r}; valid: {', '.join(MISSING_SETTINGS)}")
    absent = [m for m in MODALITIES if m not in images]
    if absent:
        raise KeyError(f"images lacks modality {absent} (has {sorted(images)})")
    drop = MISSING_SETTINGS[setting]
    return {m: torch.zeros_like(x) if m in drop else x for m, x in images.items()}
