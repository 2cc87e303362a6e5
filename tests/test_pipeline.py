"""params.yaml / dvc.yaml stay in step with the typed presets; the pipeline helpers fail clearly."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mambapro.config import PRESETS, TABLES, ConfigError, build_config
from mambapro.pipeline import load_params, preset_config

ROOT = Path(__file__).resolve().parents[1]


def test_params_presets_mirror_the_typed_presets():
    params = load_params(ROOT / "params.yaml")
    assert params["presets"] == {k: v for k, v in PRESETS.items()}
    needed = {p for rows in TABLES.values() for _, p in rows}
    assert needed <= set(params["train_presets"]), needed - set(params["train_presets"])
    assert set(params["evaluate_presets"]) <= set(params["train_presets"])


def test_preset_config_layers_profile_then_preset():
    params = load_params(ROOT / "params.yaml")
    cfg = preset_config("F", params)
    ref = build_config(params["profile"], "F", params["profiles"][params["profile"]])
    assert cfg == ref


def test_every_train_stage_writes_metrics_and_checkpoints_outside_data():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    train = dvc["stages"]["train"]
    assert train["matrix"] == {"preset": "${train_presets}", "seed": "${seeds}"}  # one stage per preset and seed
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in train["outs"]]
    assert "runs/${item.preset}/seed${item.seed}" in outs and not any(o.startswith("data/") for o in outs)
    assert train["metrics"][0] == {"results/runs/${item.preset}/seed${item.seed}/metrics.json": {"cache": False}}
    # a stage depends on its own preset's parameters, not on the list of seeds (adding a seed re-runs no old stage)
    assert "presets.${item.preset}" in train["params"] and "seeds" not in train["params"]
    # fast stages: the notebook runs through mambapro.runner, and data/ is one checksum file, not 4000 files to hash
    assert "python -m mambapro.runner notebooks/train.ipynb" in train["cmd"]
    assert "build/data_manifest.md5" in train["deps"]
    assert not any(d.startswith("data") for d in train["deps"])
    assert dvc["stages"]["data_manifest"]["deps"] == ["data"]


def test_training_stages_depend_on_every_module_training_imports():
    """Each mambapro module a training run loads is a dependency of the train, evaluate and vehicle stages (and
    nothing that training does not load, such as the tables, figures or runner code)."""
    script = ("import sys, mambapro.pipeline, mambapro.engine, mambapro.model, mambapro.aggregation, mambapro.scan, "
              "mambapro.native_scan, mambapro.data.loaders, mambapro.losses, mambapro.metrics; "
              "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() if n.startswith('mambapro'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {str(Path(f).resolve().relative_to(ROOT)) for f in out.stdout.split()}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for deps in (stages["train"]["deps"], stages["evaluate"]["do"]["deps"], stages["train_vehicle"]["do"]["deps"]):
        code = {d for d in deps if d.startswith("mambapro")}
        assert code - {"mambapro/model_configs", "mambapro/csrc"} == loaded  # the scan kernel's C source
        assert {"mambapro/model_configs", "mambapro/csrc"} <= code and "mambapro" not in code


def test_bad_params_name_the_file_and_key(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("profile: default\nseeds: [0]\nprofiles: {default: {}}\n")
    with pytest.raises(ConfigError, match=r"params.yaml: missing key 'presets'"):
        load_params(p)
    p.write_text("profile: gpu\nseeds: [0]\nprofiles: {default: {}}\npresets: {}\n")
    with pytest.raises(ConfigError, match="profile 'gpu' has no entry"):
        load_params(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    params = {"profile": "default", "seeds": [0], "profiles": {"default": {}},
              "presets": {"X": {"adapter": {"k": 1}}}}
    with pytest.raises(ConfigError, match=r"presets.X: unknown key adapter.k"):
        preset_config("X", params)
    with pytest.raises(ConfigError, match="unknown preset 'Y'"):
        preset_config("Y", params)


def test_train_and_evaluate_notebooks_run_a_preset_end_to_end(tmp_path):
    """The DVC stages' notebooks, run as the stages run them (in-process, mambapro.runner), on the tiny synthetic
    benchmark: per-seed metrics, evaluation and a loud tables failure."""
    pytest.importorskip("papermill")
    from mambapro.data.synthetic import generate
    from mambapro.runner import execute
    from mambapro.tables import MissingResultError, build_all_tables, load_metrics

    generate(tmp_path / "data", seed=0, size="tiny")
    params = load_params(ROOT / "params.yaml")
    params.update(seeds=[0], train_presets=["C"], evaluate_presets=["C"])
    params["profiles"]["default"] = {
        "data": {"root": str(tmp_path / "data"), "image_size": [32, 16], "batch_size": 8, "test_batch_size": 16},
        "train": {"epochs": 2, "warmup_epochs": 1},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    common = {"preset": "C", "params_file": str(tmp_path / "params.yaml"), "runs_dir": str(tmp_path / "runs"),
              "results_dir": str(tmp_path / "results" / "runs")}
    for name, extra in (("train", {"seed": 0}), ("evaluate", {})):
        execute(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), {**common, **extra},
                log_output=False, cwd=str(ROOT))
    import json

    assert (tmp_path / "results" / "runs" / "C" / "seed0" / "metrics.json").is_file()
    metrics = load_metrics(tmp_path / "results", "C")
    assert metrics["summary"]["seeds"] == [0] and len(metrics["runs"][0]["history"]) == 2
    assert metrics["runs"][0]["best"]["mAP"] == max(h["mAP"] for h in metrics["runs"][0]["history"])
    evaluation = json.loads((tmp_path / "results" / "runs" / "C" / "evaluation.json").read_text())
    assert set(evaluation["mean"]) == {"full", "rerank", *(f"missing_{m}" for m in ("r", "n", "t", "rn", "rt", "nt"))}
    assert evaluation["mean"]["full"]["mAP"] == pytest.approx(metrics["runs"][0]["best"]["mAP"])
    with pytest.raises(MissingResultError, match="A"):  # row A of Table 3 was never trained
        build_all_tables(tmp_path / "results", tmp_path / "tables", profile="default")
    assert not (tmp_path / "tables").exists()
