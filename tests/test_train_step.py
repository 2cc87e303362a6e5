"""benchmarks/train_step.py: the sweep overhead read from .ci/repro's timing file, and one timed step of the
pipeline's exact configuration in a child process (the figure the README's before/after table comes from)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


@pytest.fixture(scope="module")
def train_step():
    return load_script(SCRIPT)


def test_sweep_overhead_is_the_idle_share_of_the_workers(train_step, tmp_path):
    times = tmp_path / "build" / "repro_times.tsv"
    times.parent.mkdir()
    # two workers: 10 s + 10 s side by side, then one 10 s stage alone -> wall 20 s x 2 workers vs 30 s busy
    times.write_text("# workers 2\ntrain@A-0\t100\t110\ntrain@A-1\t100\t110\ntrain@F-0\t110\t120\n")
    train_step.ROOT = tmp_path
    line = train_step.sweep_overhead(times)
    assert "3 stages, 2 workers" in line and "overhead 33.3 %" in line
    times.unlink()
    assert "no build/repro_times.tsv" in train_step.sweep_overhead(times)


def test_one_timed_child(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--child", "A", "--steps", "2", "--warmup", "1"],
                         capture_output=True, text=True, check=True, timeout=300)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["preset"] == "A" and len(res["ms"]) == 2 and all(t > 0 for t in res["ms"])
