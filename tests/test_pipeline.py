"""One configuration for every entry point; the profile-aware DVC pipeline; results survive failing stages."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mambapro.config import PRESETS, PROFILES, TABLES, ConfigError, resolve_config
from mambapro.pipeline import load_params, use

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]


def _stage_cmd(name: str, cwd: Path = ROOT) -> str:
    """The command DVC runs for stage ``name`` (templating resolved by DVC itself)."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return repo.stage.collect(name)[0].cmd


def _notebook_parameters(cmd: str) -> dict[str, str]:
    words = shlex.split(cmd)
    return {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w == "-p"}


def test_readme_one_run_command_trains_the_pipelines_train_F_0():
    from mambapro.engine import parse_command_line

    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(python -m mambapro\.engine .*)$", readme, re.M)[1]
    cfg, args = parse_command_line(shlex.split(command)[3:])
    stage = _notebook_parameters(_stage_cmd("train@F-0"))
    assert cfg == resolve_config(stage["profile"], stage["preset"]) and args.seed == int(stage["seed"])
    assert Path(args.out) == Path("runs") / stage["profile"] / "F" / "seed0"  # the stage's own checkpoint folder


def test_every_entry_point_builds_the_same_config():
    from mambapro import complexity

    params = load_params(ROOT / "params.yaml")
    vehicle = _notebook_parameters(_stage_cmd(f"train_vehicle@{params['profile_stages']['vehicle'][0]}-F-0"))
    assert vehicle["namespace"] == f"{params['profile']}/vehicle"
    old_vehicle = resolve_config("default", "F", {"data": {"dataset": "RGBNT100", "image_size": [32, 64]},
                                                  "loss": {"direct": False}})
    assert resolve_config(vehicle["profile"], "F") == old_vehicle  # the vehicle run before profiles existed
    for preset in ("A", "F", "G"):
        assert complexity.paper_config(preset) == resolve_config("rgbnt201", preset, {"backbone.pretrained": None})
    # the default profile is what the pipeline trains: the proxy CLIP, 64 x 32, 25 epochs, lr 3e-3
    f = resolve_config("default", "F")
    assert (f.backbone.pretrained, f.data.image_size, f.train.epochs, f.train.base_lr) == (
        "build/proxy_clip.pt", (64, 32), 25, 0.003)


def test_presets_and_profiles_are_defined_once_and_params_name_them():
    params = load_params(ROOT / "params.yaml")
    assert "presets" not in params and "profiles" not in params
    assert set(params["train_presets"]) == set(PRESETS)
    needed = {p for rows in TABLES.values() for _, p in rows}
    assert needed <= set(params["train_presets"]) and set(params["evaluate_presets"]) <= set(params["train_presets"])
    assert params["profile"] in PROFILES


def test_stale_profile_stages_and_bad_params_name_the_file_and_fix(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    p = tmp_path / "params.yaml"
    p.write_text(text.replace("profile: default", "profile: rgbnt201"))
    stale = r"params.yaml: profile_stages .* `python -m mambapro.pipeline use rgbnt201`"
    with pytest.raises(ConfigError, match=stale):
        load_params(p)
    assert use("rgbnt201", p) == {"proxy_clip": [], "dataset": ["rgbnt201"], "vehicle": []}  # no data/RGBNT100 here
    assert load_params(p)["profile"] == "rgbnt201" and "# the synthetic benchmark" in p.read_text()  # comments kept
    p.write_text("profile: default\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="params.yaml: missing key 'profile_stages'"):
        load_params(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'Y'"):
        resolve_config("default", "Y")


# ----------------------------------------------------------------------------------------------------------------
# The DVC pipeline in a scratch copy of the working tree


@pytest.fixture()
def scratch(tmp_path) -> Path:
    """The tracked and untracked (not ignored) files of the project, as a fresh clone would have them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    work = tmp_path / "clone"
    for f in filter(None, files):
        src, dst = ROOT / f.decode(), work / f.decode()
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    subprocess.run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm s", shell=True,
                   cwd=work, check=True)
    return work


def _dvc(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(work),  # the scratch copy's package, not the installed one
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # stage commands run this `python`
    result = subprocess.run([*DVC, *args], cwd=work, capture_output=True, text=True, env=env)
    if check and result.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
def test_plain_dry_repro_works_in_a_fresh_clone(scratch):
    out = _dvc(scratch, "repro", "--dry").stdout
    assert "proxy_clip@default" in out and "train@F-0" in out


@pytest.mark.slow
def test_paper_profiles_need_only_their_dataset_and_weights(scratch):
    """Real-layout mini datasets and a local random-init ViT-B/16 weights file: under each paper profile the dry
    run lists no proxy CLIP pre-training and no dependency on the synthetic benchmark."""
    from mambapro.data.synthetic import generate

    generate(scratch / "build" / "mini", seed=0, size="tiny")
    for folder in ("RGBNT201", "RGBNT100", "msvr310"):
        (scratch / "data" / folder).parent.mkdir(parents=True, exist_ok=True)
        (scratch / "build" / "mini" / folder).rename(scratch / "data" / folder)
    (scratch / "weights").mkdir()
    (scratch / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in: the dry run only hashes it")
    for profile in ("rgbnt201", "rgbnt100", "msvr310"):
        env = {**os.environ, "PYTHONPATH": str(scratch)}
        subprocess.run([sys.executable, "-m", "mambapro.pipeline", "use", profile], cwd=scratch, check=True, env=env)
        out = _dvc(scratch, "repro", "--dry").stdout
        assert f"dataset@{profile}" in out and "train@F-0" in out, out[-2000:]
        assert "proxy_clip" not in out and "data/synthetic" not in out and "pretrain" not in out
        vehicle = "train_vehicle@rgbnt100-F-0" in out
        assert vehicle == (profile == "rgbnt201")  # the person profile's vehicle runs, its data being present


@pytest.mark.slow
def test_a_paper_profile_with_an_empty_data_folder_keeps_data_dvc(scratch):
    """Under `use rgbnt201` with an empty data/, a plain `dvc repro train@F-0` fails on the missing dataset and
    data.dvc keeps its record.  It used to be re-recorded first (5,393 files -> 0: DVC "verifies" a changed data
    source upstream of a stage before running anything, and the dataset stage depended on `data`); the dataset stage
    now depends on the code and the weights only and runs at every repro (issue 19, item 5)."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    subprocess.run([sys.executable, "-m", "mambapro.pipeline", "use", "rgbnt201"], cwd=scratch, check=True, env=env,
                   capture_output=True)
    (scratch / "data").mkdir(exist_ok=True)
    (scratch / "weights").mkdir()
    (scratch / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in")
    recorded = (scratch / "data.dvc").read_bytes()
    result = _dvc(scratch, "repro", "train@F-0", check=False)
    assert result.returncode != 0 and "dataset@rgbnt201" in result.stdout + result.stderr
    assert "data/RGBNT201" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    assert (scratch / "data.dvc").read_bytes() == recorded
    assert "data.dvc" not in subprocess.run(["git", "status", "--porcelain"], cwd=scratch, capture_output=True,
                                            text=True, check=True).stdout


@pytest.mark.slow
def test_a_failing_training_stage_keeps_the_committed_results(scratch):
    """train@F-0 with the dataset absent fails; its committed metrics.json and train.ipynb are untouched and no
    temporary file is left."""
    run = scratch / "results" / "default" / "runs" / "F" / "seed0"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = _dvc(scratch, "repro", "--single-item", "train@F-0", check=False)
    assert result.returncode != 0, result.stdout
    assert "dataset folder not found: data/synthetic/RGBNT201" in result.stderr, result.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not [p for p in scratch.rglob("*tmp*") if ".git" not in p.parts and ".dvc" not in p.parts]


def test_train_and_evaluate_notebooks_run_a_preset_end_to_end(tmp_path, monkeypatch):
    """The DVC stages' notebooks, run as the stages run them (in-process, nbrun), on the tiny synthetic benchmark:
    per-seed metrics, evaluation and a loud tables failure."""
    pytest.importorskip("papermill")
    from mambapro import config
    from mambapro.data.synthetic import generate
    from mambapro.results import MissingResultError, load_metrics, results_dir
    from mambapro.tables import build_all_tables
    from nbrun import execute

    generate(tmp_path / "data", seed=0, size="tiny")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    params = re.sub(r"(?m)^seeds: \[.*\]$", "seeds: [0]", (ROOT / "params.yaml").read_text())
    assert "seeds: [0]\n" in params
    (tmp_path / "params.yaml").write_text(params)
    profile = {"pipeline": {"proxy_clip": True, "vehicle": None}, "config": {
        "data": {"root": str(tmp_path / "data"), "image_size": [32, 16], "batch_size": 8, "test_batch_size": 16},
        "train": {"epochs": 2, "warmup_epochs": 1}}}
    monkeypatch.setitem(config.PROFILES, "smoke", profile)
    monkeypatch.setenv("MAMBAPRO_ROOT", str(tmp_path))
    common = {"profile": "smoke", "preset": "C"}
    for name, extra in (("train", {"seed": 0}), ("evaluate", {})):
        execute(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), {**common, **extra},
                log_output=False)
    folder = results_dir("smoke", tmp_path)
    metrics = load_metrics(folder, "C")
    assert metrics["summary"]["seeds"] == [0] and len(metrics["runs"][0]["history"]) == 2
    assert metrics["runs"][0]["best"]["mAP"] == max(h["mAP"] for h in metrics["runs"][0]["history"])
    evaluation = json.loads((folder / "evaluation" / "C.json").read_text())
    assert set(evaluation["mean"]) == {"full", "rerank", *(f"missing_{m}" for m in ("r", "n", "t", "rn", "rt", "nt"))}
    assert evaluation["mean"]["full"]["mAP"] == pytest.approx(metrics["runs"][0]["best"]["mAP"])
    with pytest.raises(MissingResultError, match="A"):  # row A of Table 3 was never trained
        build_all_tables(folder, tmp_path / "tables", profile="smoke")
    assert not (tmp_path / "tables").exists()
    assert yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["matrix"] == {
        "preset": "${train_presets}", "seed": "${seeds}"}
