"""The figure glue on real (tiny) trained runs: every part writes its PNG and PDF from the runs' checkpoints."""

from pathlib import Path

import pytest
import yaml

from mambapro import figures
from mambapro.pipeline import load_params, preset_config, train_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mambapro.data.synthetic import generate

    tmp = tmp_path_factory.mktemp("figures")
    generate(tmp / "data", seed=0, size="tiny")
    params = load_params(ROOT / "params.yaml")
    params.update(seeds=[0], train_presets=["A", "C", "E", "F"])
    params["profiles"]["default"] = {
        "data": {"root": str(tmp / "data"), "image_size": [32, 16], "batch_size": 8, "test_batch_size": 16},
        "train": {"epochs": 1, "warmup_epochs": 1},
    }
    params["vehicle"]["overrides"]["data"].update(image_size=[16, 32], batch_size=8)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    for preset in params["train_presets"]:
        train_preset(preset, tmp / "params.yaml", tmp / "runs", tmp / "results" / "runs", progress=False)
    return tmp, params


def _written(paths):
    assert paths and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert {p.suffix for p in paths} == {".png", ".pdf"}


def test_every_figure_part_draws_from_the_runs(trained):
    tmp, params = trained
    out = tmp / "figures"
    _written(figures.tsne(params, tmp / "runs", out, seed=0))
    model, data = figures.load_run(preset_config("F", params), tmp / "runs" / "F", 0)
    _written(figures.alignment(model, data, out, seed=0))
    _written(figures.gradcam(model, data, out, "fig10", "persons", seed=0, samples=2))
    _written(figures.rank_list(model, data, (32, 16), out))
    _written(figures.training_curves(params, tmp / "results", out))


def test_a_missing_run_is_named(trained):
    tmp, params = trained
    with pytest.raises(FileNotFoundError, match=r"vehicle-F/seed0/best.pt"):
        figures.vehicle_run(params, tmp / "runs", 0)
