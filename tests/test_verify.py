"""mambapro.verify: a rerun's metrics against the committed ones, in a tiny git repository (no training)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mambapro import verify
from mambapro.results import METRIC_KEYS

# preset -> {seed: (last mAP, last R1)}: A's SE is 1.0 for mAP (std sqrt 2 over 2 seeds) and 2.0 for R1
RUNS = {"A": {0: (10.0, 20.0), 1: (12.0, 24.0)}, "F": {0: (40.0, 50.0), 1: (40.0, 50.0)},
        "extra": {0: (5.0, 6.0)}}


def _metrics(seed: int, mAP: float, R1: float) -> dict:
    last = {"epoch": 2, **dict.fromkeys(METRIC_KEYS, 1.0), "mAP": mAP, "R1": R1}
    history = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.5, "mAP": mAP}]
    return {"preset": "?", "seed": seed, "last": last, "best": dict(last), "history": history}


def _path(root: Path, preset: str, seed: int, namespace: str = "default") -> Path:
    return root / "results" / namespace / "runs" / preset / f"seed{seed}" / "metrics.json"


def _write(root: Path, preset: str, seed: int, run: dict, namespace: str = "default") -> None:
    path = _path(root, preset, seed, namespace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1))


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                   capture_output=True)


def _edit(root: Path, preset: str, seed: int, namespace: str = "default", **last) -> None:
    run = json.loads(_path(root, preset, seed, namespace).read_text())
    run["last"].update(last)
    _write(root, preset, seed, run, namespace)


def _rerun(root: Path, preset: str, seed: int, namespace: str = "default", after: int = 3600) -> Path:
    """A rerun's trace: a checkpoint in ``runs/<namespace>/<preset>/seed<k>/`` dated ``after`` seconds after HEAD's
    commit (negative: before it)."""
    ckpt = root / "runs" / namespace / preset / f"seed{seed}" / "last.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"weights")
    when = int(subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ct"], capture_output=True,
                              text=True, check=True).stdout) + after
    os.utime(ckpt, (when, when))
    return ckpt


@pytest.fixture
def repo(tmp_path):
    """Committed runs, each rerun since (a checkpoint newer than the commit) with the same metrics.json."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    for preset, seeds in RUNS.items():
        for seed, (mAP, R1) in seeds.items():
            _write(tmp_path, preset, seed, _metrics(seed, mAP, R1))
    _write(tmp_path, "F", 0, _metrics(0, 30.0, 40.0), "default/vehicle")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "runs")
    for preset, seeds in RUNS.items():
        for seed in seeds:
            _rerun(tmp_path, preset, seed)
    _rerun(tmp_path, "F", 0, "default/vehicle")
    return tmp_path


def _verify(root: Path, capsys, *args: str) -> tuple[int, str, str]:
    rc = verify.main(["--root", str(root), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _line(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(f"{label} "))


def test_an_unchanged_tree_is_bit_identical_per_table_row(repo, capsys):
    rc, out, _ = _verify(repo, capsys)
    assert rc == 0
    assert "table3 (default)" in out and "table6 (default)" in out and "table12 (default/vehicle)" in out
    assert "  MA [F] seed1" in out  # F under its rows' labels
    assert "not in any table (default)" in out and "extra seed0" in out
    assert "mAP bit-identical  R1 bit-identical" in _line(out, "A mean")
    assert out.strip().splitlines()[-1] == "6 run(s) compared: 6 bit-identical"


def test_differences_in_units_of_the_committed_standard_error(repo, capsys):
    _edit(repo, "A", 0, mAP=10.5, R1=21.0)
    rc, out, _ = _verify(repo, capsys, "A")
    assert rc == 0
    assert "mAP +0.50 (+0.50 SE)  R1 +1.00 (+0.50 SE)" in _line(out, "A seed0")
    assert "mAP bit-identical  R1 bit-identical" in _line(out, "A seed1")
    assert "mAP +0.25 (+0.25 SE)  R1 +0.50 (+0.25 SE)" in _line(out, "A mean")
    assert "2 run(s) compared: 1 bit-identical, 1 within 2 SE" in out


def test_beyond_the_tolerance_fails(repo, capsys):
    _edit(repo, "A", 1, R1=18.0)
    rc, out, _ = _verify(repo, capsys, "train@A-1")
    assert rc == 1
    assert "R1 -6.00 (-3.00 SE) !" in _line(out, "A seed1")
    assert "FAILED: results/default/runs/A/seed1/metrics.json" in out
    assert _verify(repo, capsys, "--tolerance", "3.5", "train@A-1")[0] == 0


def test_without_a_unit_only_bit_identity_counts(repo, capsys):
    _edit(repo, "extra", 0, mAP=5.5)
    _edit(repo, "F", 1, R1=51.0)  # F's committed seeds agree: std 0
    rc, out, _ = _verify(repo, capsys)
    assert rc == 0  # flagged, not failed: nothing to measure the difference in
    assert "mAP +0.50 n/a (one seed) !  R1 bit-identical" in _line(out, "extra seed0")
    assert "R1 +1.00 n/a (std 0) !" in _line(out, "MA [F] seed1")
    assert "2 n/a (no SE; flagged !)" in out
    rc, out, _ = _verify(repo, capsys, "--exact", "extra")
    assert rc == 1 and "last, best differ" not in out and "last differs !" in out


def test_exact_compares_the_history(repo, capsys):
    run = json.loads(_path(repo, "A", 0).read_text())
    run["history"][0]["loss"] = 3.0000001
    _write(repo, "A", 0, run)
    assert _verify(repo, capsys, "train@A-0")[0] == 0
    rc, out, _ = _verify(repo, capsys, "--exact", "train@A-0")
    assert rc == 1
    assert "mAP bit-identical  R1 bit-identical  history differs !" in _line(out, "A seed0")
    assert "1 not bit-identical (--exact)" in out
    assert _verify(repo, capsys, "--exact", "train@A-1", "F")[0] == 0


def test_against_an_older_revision(repo, capsys):
    _edit(repo, "A", 0, mAP=11.0)
    _git(repo, "commit", "-qam", "rerun")
    assert "A seed0" in _line(_verify(repo, capsys, "A")[1], "A seed0")
    rc, out, _ = _verify(repo, capsys, "--against", "HEAD~1", "A")
    assert rc == 0 and "mAP +1.00 (+1.00 SE)" in _line(out, "A seed0")
    rc, _, err = _verify(repo, capsys, "--against", "nosuchrev")
    assert rc == 2 and "'nosuchrev' is not a commit" in err


def test_vehicle_stage_and_default_selection(repo, capsys):
    _edit(repo, "F", 0, "default/vehicle", mAP=31.0)
    _write(repo, "B", 0, _metrics(0, 1.0, 2.0))  # in the working tree only: not compared by default
    rc, out, _ = _verify(repo, capsys, "train_vehicle@default-vehicle-F-0")
    assert rc == 0 and "table12 (default/vehicle)" in out and "table3" not in out
    assert "mAP +1.00 n/a (one seed) !" in _line(out, "F seed0")
    rc, out, _ = _verify(repo, capsys)
    assert "B seed0" not in out and "6 run(s) compared" in out


def test_a_run_that_was_not_rerun_is_reported_and_fails(repo, capsys):
    """The committed metrics.json compared with itself is no reproduction (the old code printed "1 bit-identical"
    and exited 0)."""
    (repo / "runs" / "default" / "A" / "seed1" / "last.pt").unlink()
    rc, out, _ = _verify(repo, capsys, "--exact", "train@A-1")
    assert rc == 1
    assert "not rerun (1)" in out and "results/default/runs/A/seed1/metrics.json  (train@A-1)" in out
    assert "0 run(s) compared (--exact): none; 1 not rerun" in out and "NOT RERUN: 1 run(s)" in out
    assert "bit-identical" not in out.replace("not bit-identical", "")
    rc, out, _ = _verify(repo, capsys)  # the default selection counts it too
    assert rc == 1 and "5 run(s) compared: 5 bit-identical; 1 not rerun" in out
    _rerun(repo, "A", 1, after=-3600)  # a checkpoint older than the commit: the committed run's own
    assert "not rerun (1)" in _verify(repo, capsys, "train@A-1")[1]
    _rerun(repo, "A", 1)
    assert _verify(repo, capsys, "--exact", "train@A-1")[0] == 0


def test_a_vehicle_run_not_rerun_names_its_stage(repo, capsys):
    (repo / "runs" / "default" / "vehicle" / "F" / "seed0" / "last.pt").unlink()
    rc, out, _ = _verify(repo, capsys, "train_vehicle@default-vehicle-F-0")
    assert rc == 1 and "(train_vehicle@default-vehicle-F-0)" in out


def test_a_new_train_notebook_is_a_rerun(repo, capsys):
    """Without checkpoints (a fresh clone), a train.ipynb that differs from the committed one shows the rerun."""
    notebook = _path(repo, "A", 1).with_name("train.ipynb")
    notebook.write_text('{"metadata": {"papermill": {"start_time": "1"}}}')
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "notebook")
    for ckpt in (repo / "runs").rglob("*.pt"):
        ckpt.unlink()
    assert "not rerun (1)" in _verify(repo, capsys, "train@A-1")[1]
    notebook.write_text('{"metadata": {"papermill": {"start_time": "2"}}}')
    rc, out, _ = _verify(repo, capsys, "--exact", "train@A-1")
    assert rc == 0 and "1 run(s) compared (--exact): 1 bit-identical" in out
    notebook = _path(repo, "A", 0).with_name("train.ipynb")  # a notebook git does not have: written since
    notebook.write_text("{}")
    assert _verify(repo, capsys, "train@A-0")[0] == 0


def test_a_missing_metrics_file_is_an_error_not_a_skip(repo, capsys):
    """With no arguments the old code compared the other runs and exited 0."""
    _path(repo, "A", 1).unlink()
    rc, out, err = _verify(repo, capsys)
    assert rc == 2 and "run(s) compared" not in out
    assert "1 committed run(s) have no metrics.json in the working tree: results/default/runs/A/seed1" in err
    assert "git checkout HEAD -- <path>" in err


def test_missing_and_invalid_files_are_named(repo, capsys):
    _path(repo, "A", 1).unlink()
    rc, _, err = _verify(repo, capsys, "train@A-1")
    assert rc == 2 and "results/default/runs/A/seed1/metrics.json in the working tree" in err
    rc, _, err = _verify(repo, capsys, "train@A-7")
    assert rc == 2 and "HEAD:results/default/runs/A/seed7/metrics.json is not committed" in err
    _path(repo, "F", 0).write_text("{not json")
    rc, _, err = _verify(repo, capsys, "F")
    assert rc == 2 and f"{_path(repo, 'F', 0)} is not valid JSON" in err
    _write(repo, "F", 0, {"seed": 0, "last": {"mAP": 1.0}, "best": {}})
    rc, _, err = _verify(repo, capsys, "F")
    assert rc == 2 and "seed0/metrics.json: 'last' lacks R1, R5, R10, mINP" in err
    rc, _, err = _verify(repo, capsys, "nope")
    assert rc == 2 and "preset 'nope'" in err and "results/default/runs/nope/seed*/metrics.json" in err


@pytest.mark.parametrize(("arg", "expected"), [
    ("train@F-0", ("default", "F", 0)),
    ("train@adapter-lora-64-1", ("default", "adapter-lora-64", 1)),
    ("train_vehicle@default-vehicle-F-0", ("default/vehicle", "F", 0)),
    ("train_vehicle@default-vehicle-adapter-lora-64-12", ("default/vehicle", "adapter-lora-64", 12)),
    ("agg-sum", (None, "agg-sum", None)),
])
def test_stage_names(arg, expected):
    assert verify.parse_target(arg, "default") == expected


@pytest.mark.parametrize("arg", ["evaluate@F", "train@F", "train_vehicle@nosuchprofile-F-0",
                                 "train_vehicle@default-vehicle-nosuchpreset-0"])
def test_other_stage_names_are_errors(arg):
    with pytest.raises(verify.VerifyError, match="train@<preset>-<seed>|no known profile"):
        verify.parse_target(arg, "default")
