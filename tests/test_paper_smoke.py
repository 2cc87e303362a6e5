"""The inputs of .ci/paper_smoke (the paper profiles on mini datasets and a random-init ViT-B/16): its mini sets give
one PK batch per epoch at the real image sizes and valid queries, pass the dataset stage's checks, and its weights
format (OpenAI's keys, fp16, a plain state dict) loads into a tower.  The smoke itself runs in .ci/run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import open_clip
import pytest
import torch

from mambapro.backbone import build_clip_tower
from mambapro.config import resolve_config
from mambapro.data import synthetic
from mambapro.data.loaders import build_data
from mambapro.inputs import profile_stages, record_inputs
from mambapro.metrics import evaluate_features

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "paper_smoke"
REAL = {"rgbnt201": (256, 128), "rgbnt100": (128, 256), "msvr310": (128, 256)}


def _script_call(pattern: str) -> str:
    match = re.search(pattern, SCRIPT.read_text(), re.S)
    assert match, f"{SCRIPT} no longer has {pattern!r}; update this test with it"
    return match.group(1)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The smoke's mini sets under <root>/data (its sizes and data overrides read from the script)."""
    sizes = _script_call(r"synthetic\.SyntheticSizes\((.*?)\)\n")
    sizes = eval(f"SyntheticSizes({sizes})", {"SyntheticSizes": synthetic.SyntheticSizes})  # noqa: S307
    overrides = _script_call(r'cfg\["data"\]\.update\((.*?)\)\n')
    overrides = eval(f"dict({overrides})")  # noqa: S307
    root = tmp_path_factory.mktemp("paper_smoke")
    synthetic.SIZES["paper-smoke-test"] = sizes
    try:
        synthetic.generate(root / "data", seed=0, size="paper-smoke-test")
    finally:
        del synthetic.SIZES["paper-smoke-test"]
    return root, overrides


def test_script_is_wired_into_ci():
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert ".ci/paper_smoke" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("profile", list(REAL))
def test_mini_sets_one_batch_per_epoch_real_sizes_valid_queries(mini, profile):
    root, overrides = mini
    cfg = resolve_config(profile, "F", {"data": {**overrides, "root": str(root / "data")}})
    assert cfg.backbone.arch == "ViT-B-16-quickgelu" and tuple(cfg.data.image_size) == REAL[profile]
    data = build_data(cfg, 0)
    batches = list(data.train_loader)
    assert len(batches) == 1  # one training iteration per epoch
    assert {tuple(v.shape) for v in batches[0]["images"].values()} == {(cfg.data.batch_size, 3, *REAL[profile])}
    n = len(data.test_meta["pids"])
    metrics = evaluate_features(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), data.test_meta,
                                data.query_index, data.gallery_index, data.protocol)
    assert metrics["num_valid_queries"] == len(data.query_index) > 0


def test_mini_sets_pass_the_dataset_stage(mini, tmp_path):
    root, _ = mini
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in: the dataset stage only hashes it")
    assert profile_stages("rgbnt201", root)["vehicle"] == ["rgbnt100"]  # Table 12 / Fig. 11 runs included
    for profile in REAL:
        record = record_inputs(profile, root)  # validates every image, as `dvc repro dataset@<profile>`
        assert "weights/ViT-B-16.pt" in record["weights"]
    assert set(record_inputs("rgbnt201", root)["datasets"]) == {"RGBNT201", "RGBNT100"}


def test_fp16_state_dict_in_openai_layout_loads(tmp_path):
    """The smoke's weights file: open_clip's state dict (OpenAI's keys: visual.*, transformer.*, ...) in fp16."""
    model = open_clip.create_model("mambapro-tiny", pretrained=None)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert any(k.startswith("visual.") for k in state) and any(k.startswith("transformer.") for k in state)
    path = tmp_path / "ViT-B-16.pt"
    torch.save(state, path)
    tower = build_clip_tower("mambapro-tiny", (128, 64), str(path))
    assert tower.conv1.weight.dtype == torch.float32
    assert torch.equal(tower.conv1.weight, state["visual.conv1.weight"].float())
