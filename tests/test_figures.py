"""The figure glue on real (tiny) trained runs: every part writes its files from the runs' checkpoints."""

import contextlib

import pytest

from mambapro import config, figures, results
from mambapro.pipeline import train_run

PRESETS = ["A", "C", "E", "F"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mambapro.data.synthetic import generate

    tmp = tmp_path_factory.mktemp("figures")
    generate(tmp / "data", seed=0, size="tiny")
    small = {"data": {"root": str(tmp / "data"), "image_size": [32, 16], "batch_size": 8, "test_batch_size": 16},
             "train": {"epochs": 1, "warmup_epochs": 0}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(config.PROFILES, "tiny", {"pipeline": {"proxy_clip": False, "vehicle": None}, "config": small})
        for preset in PRESETS:
            train_run("tiny", preset, 0, root=tmp, progress=False)
        yield tmp


def _written(paths):
    assert paths and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert {".png", ".pdf"} <= {p.suffix for p in paths}


def test_every_figure_part_draws_from_the_runs(trained, monkeypatch):
    monkeypatch.chdir(trained)
    out = trained / "figures"
    _written(figures.tsne("tiny", out, seed=0))
    model, data = figures.load_run(config.resolve_config("tiny", "F"), results.run_dir("tiny", "F", 0), 0)
    _written(figures.alignment(model, data, out, seed=0))
    assert (out / "fig6_shared_component.json").is_file()
    _written(figures.gradcam(model, data, out, "fig10", "persons", seed=0, samples=2, share_samples=4))
    _written(figures.rank_list(model, data, (32, 16), out))
    _written(figures.training_curves(results.results_dir("tiny"), PRESETS, out))


def test_a_missing_run_is_named(trained):
    with contextlib.chdir(trained), pytest.raises(FileNotFoundError, match=r"runs/tiny/vehicle/F/seed0/best.pt"):
        figures.vehicle_figures("tiny", "tiny", 0)


@pytest.mark.parametrize(("kind", "figure"), [("vehicle", "fig11_gradcam_vehicle"),
                                              ("person", "fig10_gradcam_person")])
def test_the_gradcam_figure_follows_the_datasets_object_fact(monkeypatch, kind, figure):
    """Fig. 10 or Fig. 11 is decided by the dataset registry's ``object`` fact (here flipped for RGBNT100), not by
    comparing the dataset's name with "RGBNT201"."""
    from mambapro.registry import DATASETS

    monkeypatch.setitem(DATASETS.get("RGBNT100").facts, "object", kind)
    drawn = []
    monkeypatch.setattr(figures, "tsne", lambda *a: [])
    monkeypatch.setattr(figures, "load_run", lambda *a: (None, None))
    monkeypatch.setattr(figures, "alignment", lambda *a: [])
    monkeypatch.setattr(figures, "gradcam", lambda model, data, out, name, *a: drawn.append(name) or [])
    monkeypatch.setattr(figures, "rank_list", lambda *a: [])
    figures.core_figures("default-vehicle", results.results_dir("x"))
    assert drawn == [figure]


def test_a_pipeline_run_records_what_ran_it(trained):
    """metrics.json of a pipeline run carries run_info (issue 20): device, torch, scan, AMP and, on the CPU, the
    branch MKL really ran (mambapro.environment)."""
    import json

    info = json.loads(results.metrics_path(results.results_dir("tiny", trained), "F", 0).read_text())["run_info"]
    assert info["device"] == "cpu" and info["scan"] == "native" and info["amp"] == "off (fp32)"
    assert info["cpu_math"].startswith("CPU math: ATen ")


def test_hyperparameter_curves_pass_both_fig9a_initialisations(tmp_path, monkeypatch):
    """Figs. 8 and 9 read every curve their panels draw: Fig. 9a's zero-init (official) and normal-init (paper)
    prompt-length curves both reach the figure."""
    from mambapro import tables, viz

    asked, drawn = [], {}
    monkeypatch.setattr(tables, "curve_data", lambda key, folder: asked.append((key, folder)) or [{"key": key}])
    monkeypatch.setattr(viz, "hyperparameter_figure",
                        lambda curves, panels, out: drawn.update({out.name: dict(curves)}) or [out])
    written = figures.hyperparameter_curves(tmp_path, tmp_path / "figs")
    assert [p.name for p in written] == ["fig8_dstate_dtrank", "fig9_depths_lengths"]
    assert {k for k, folder in asked if folder == tmp_path} == set(drawn["fig8_dstate_dtrank"]) | set(
        drawn["fig9_depths_lengths"])
    assert list(drawn["fig9_depths_lengths"]) == ["fig9a_prompt_length", "fig9a_prompt_length_normal",
                                                  "fig9b_srp_depth", "fig9c_pfa_depth", "fig9d_ma_blocks"]
    assert drawn["fig9_depths_lengths"]["fig9a_prompt_length_normal"] == [{"key": "fig9a_prompt_length_normal"}]
