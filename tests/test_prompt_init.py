"""What prompt length means under each initialisation (official-implementation.md: prompts start at zero; paper:
"randomly initialised").  The N_pr tokens of one slot enter attention symmetrically, so with the official zero
initialisation they get identical gradients and stay one token repeated: Fig. 9a's prompt length then only changes
that token's attention weight.  With the paper's random initialisation they separate from the first step."""

import pytest
import torch

from mambapro.config import resolve_config
from mambapro.losses import ReIDLoss
from mambapro.model import build_model, param_groups

SMALL = {"data": {"image_size": [32, 16]}}


def _slot_spread_after_steps(init: str, steps: int = 3) -> float:
    """Largest difference between two prompt tokens of one slot (any layer, any modality) after ``steps`` Adam
    steps of preset F (SRP(Fusion), length 4) on random batches."""
    cfg = resolve_config("bare", "F", {**SMALL, "prompt": {"init": init}})
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=4, num_cameras=3).train()
    optimizer = torch.optim.Adam(param_groups(model, cfg.train))
    criterion = ReIDLoss(cfg.loss)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images = {m: torch.randn(8, 3, 32, 16, generator=g) for m in ("RGB", "NI", "TI")}
        cams = torch.randint(0, 3, (8,), generator=g)
        loss, _ = criterion(model(images, cams), torch.arange(2).repeat_interleave(4))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    spreads = []
    for layer in model.backbone.prompts.layers.values():
        p = layer.prompts.detach()  # [3 slots, k, D]
        spreads.append((p - p[:, :1]).abs().max().item())
    return max(spreads)


def test_zero_initialised_prompts_of_a_slot_stay_one_token():
    moved = resolve_config("bare", "F", SMALL).prompt
    assert moved.init == "zeros" and moved.length >= 2  # the official default under test
    assert _slot_spread_after_steps("zeros") <= 1e-6


@pytest.mark.parametrize("init", ["normal"])
def test_randomly_initialised_prompts_are_distinct_tokens(init):
    assert _slot_spread_after_steps(init) > 1e-2
