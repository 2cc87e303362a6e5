"""At most one host synchronisation per training step (issue 20): the engine's epoch loop, counted on the CPU by
wrapping the tensor methods that read a value back to Python; and benchmarks/dispatch_count.py at tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

from mambapro import engine
from mambapro.config import resolve_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dispatch_count.py"


@pytest.fixture(scope="module")
def dispatch_count():
    return load_script(SCRIPT)


class _CountingLoader:
    """The train loader, recording the synchronisations made between handing out a batch and asking for the next
    (the step), apart from those of loading the data."""

    def __init__(self, loader, counter, per_step):
        self.loader, self.counter, self.per_step = loader, counter, per_step

    def __iter__(self):
        for batch in self.loader:
            start = self.counter.n
            yield batch
            self.per_step.append(self.counter.calls[start:])

    def __getattr__(self, name):
        return getattr(self.loader, name)


def test_the_counter_sees_what_the_old_loop_did(dispatch_count):
    import torch

    loss = torch.tensor(1.5)
    with dispatch_count.SyncCounter() as c:
        if not torch.isfinite(loss):  # the old per-step checks: bool, item, float of each part
            pass
        loss.item()
        float(loss)
        torch.stack([loss, loss]).tolist()
    assert c.calls == ["__bool__", "item", "__float__", "tolist"]


@pytest.mark.parametrize("preset", ["F", "C"])
def test_a_training_step_synchronises_at_most_once(preset, dispatch_count, tiny_root, tmp_path):
    cfg = resolve_config("bare", preset, {
        "data": {"root": str(tiny_root), "image_size": [32, 16], "batch_size": 8, "num_instances": 4,
                 "test_batch_size": 16}, "train": {"epochs": 1, "warmup_epochs": 0}})
    run = engine.setup_run(cfg, tmp_path / "run", seed=0)
    per_step = []
    with dispatch_count.SyncCounter() as counter:
        run.data.train_loader = _CountingLoader(run.data.train_loader, counter, per_step)
        record = engine.train_epoch(run, 1)
    assert len(per_step) == 3 and record["loss"] > 0
    assert all(len(calls) <= 1 for calls in per_step), per_step  # (data loading reads CPU tensors: not counted)


def test_dispatch_count_benchmark_runs_at_tiny_size(dispatch_count):
    row = dispatch_count.measure("F", tiny=True, batch=2, compile_=False, warmup=1)
    assert row["mode"] == "eager" and row["host_syncs"] <= 1
    assert 0 < row["top_level_ops"] <= row["all_aten_ops"]


def test_dispatch_count_command_line_prints_the_table(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--no-compile", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "aten ops (top-level)" in out.stdout and "host syncs" in out.stdout
    assert (tmp_path / "r.json").is_file()
