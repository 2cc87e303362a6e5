"""Checkpoint sizes at paper scale (RGBNT201: ViT-B/16 at 256x128, 171 identities, 4 cameras), computed from the
tensors a checkpoint keeps (:func:`mambapro.checkpoints.model_state`) on a random tower: cheap on the CPU, no
training.

Preset F trains 74.7 M parameters (the paper's 74.20 M plus heads and camera embedding, official-implementation.md
sec. 7), so its trained tensors alone are 299 MB in fp32: ``last.pt`` during a run (with Adam's two moments) is
about 0.90 GB, ``best.pt`` and the finished run's ``last.pt`` about 0.30 GB, against 1.24 GB for each before
(the whole state dict plus Adam's state).
"""

import pytest
import torch

from mambapro.checkpoints import model_state
from mambapro.config import resolve_config
from mambapro.model import build_model

MB = 1e6


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _paper_model(preset: str, tower: torch.nn.Module):
    cfg = resolve_config("rgbnt201", preset, {"backbone": {"pretrained": None}})
    return build_model(cfg, 171, 4, tower=tower)


def test_preset_f_checkpoint_at_paper_scale_keeps_no_frozen_tower_tensor(model_paper_tower):
    model = _paper_model("F", model_paper_tower)
    saved = model_state(model, digest="0123456789abcdef")  # as when backbone.pretrained names a weights file
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not [k for k in saved if k.startswith("backbone.tower.")]
    weights, adam, full = _nbytes(saved.values()), 2 * _nbytes(trainable), _nbytes(model.state_dict().values())
    assert sum(p.numel() for p in trainable) == 74_706_432
    assert weights - _nbytes(trainable) < 0.2 * MB  # + BN statistics, the heads' frozen BN biases
    before, during, after = full + adam, weights + adam, weights
    print(f"preset F at paper scale: last.pt {during / MB:.0f} MB during the run, best.pt and the finished "
          f"last.pt {after / MB:.0f} MB (before: {before / MB:.0f} MB each)")
    assert before == pytest.approx(1241 * MB, rel=1e-3)
    assert during == pytest.approx(897 * MB, rel=1e-3) and after == pytest.approx(299 * MB, rel=1e-3)


def test_preset_g_checkpoint_at_paper_scale_keeps_the_whole_trained_tower(model_paper_tower):
    model = _paper_model("G", model_paper_tower)
    saved = model_state(model, digest="0123456789abcdef")
    assert saved.keys() == model.state_dict().keys()
