"""benchmarks/gpu_check.py on the CPU at tiny sizes: one run gives every part with finite numbers; each part is
time-bounded without disturbing an outer alarm (pytest-timeout); the device peak table."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    return load_script(SCRIPT)


def numbers(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_tiny_run_on_cpu_gives_every_part(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    result = gpu_check.main(["--tiny", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["tiny"] is True
    assert {"env", "flops", "train_F", "train_G", "scan_check", "forward", "seconds", "total_seconds"} <= set(result)
    errors = {k: v["error"] for k, v in result.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    for path, value in numbers(result):
        assert math.isfinite(value), path
    assert result["env"]["scan_backend"].startswith("selective scan: ")
    assert result["flops"]["forward_gflops_per_sample"] > 0
    for preset, frozen in (("F", True), ("G", False)):
        train = result[f"train_{preset}"]
        assert train["samples_per_s"] > 0 and train["step_ms"] > 0 and train["frozen_tower"] is frozen
        assert train["mfu"] is None and train["peak_memory_gb"] is None  # CPU: no peak table, no CUDA memory
        forward = result["flops"]["forward_gflops_per_sample"]
        assert train["train_gflops_per_sample"] == pytest.approx((2 if frozen else 3) * forward)
    check = result["scan_check"]
    assert {"chunked_float32", "chunked_float16"} <= set(check)
    for key in (k for k in check if k.endswith(("float32", "float16"))):
        assert check[key]["out"]["max_rel"] < (1e-5 if key.endswith("32") else 1e-2), key
        assert set(check[key]["grad"]) == {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"}
    assert {"chunked", "reference"} <= set(result["forward"]) and result["forward"]["chunked"]["ms"] > 0


def test_time_limit_stops_a_part_and_restores_an_outer_alarm(gpu_check):
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        start = time.perf_counter()
        with pytest.raises(gpu_check.PartTimeout, match="timed out after"):
            with gpu_check.time_limit(0.2):
                time.sleep(5)
        assert time.perf_counter() - start < 2
        assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_peak_flops_table(gpu_check, monkeypatch):
    assert gpu_check.peak_flops(torch.device("cpu")) is None
    for name, tflops in (("NVIDIA H200", 989), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                         ("NVIDIA A100-SXM4-80GB", 312), ("Tesla T4", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, n=name: n)
        got = gpu_check.peak_flops(torch.device("cuda"))
        assert (got and round(got / 1e12)) == tflops, name
