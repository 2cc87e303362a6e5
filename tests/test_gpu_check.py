"""benchmarks/gpu_check.py on the CPU at tiny sizes (its CI dry run): one run gives every part with finite numbers
(F and G at every paper profile in both precisions, the host-bound test, one epoch of the engine's own loop); the
training FLOPs are counted, not 2x or 3x the forward; each part is time-bounded without disturbing an outer alarm
(pytest-timeout); the device peak table."""

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


@pytest.fixture(scope="module")
def tiny_run(gpu_check, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    result = gpu_check.main(["--tiny", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert not list(out.parent.glob(".*.tmp"))  # written to a temporary name, then renamed
    return result


def numbers(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_tiny_run_on_cpu_gives_every_part(tiny_run):
    result = tiny_run
    assert result["tiny"] is True
    parts = {"env", "flops", "train", "host_bound", "scan_check", "forward", "engine"}
    assert parts | {"seconds", "total_seconds"} <= set(result)
    errors = {k: v["error"] for k, v in result.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    for path, value in numbers(result):
        assert math.isfinite(value), path
    assert result["env"]["scan_backend"].startswith("selective scan: ")
    assert result["flops"]["forward_gflops_per_sample"] > 0
    check = result["scan_check"]
    assert {"chunked_float32", "chunked_float16"} <= set(check)
    for key in (k for k in check if k.endswith(("float32", "float16"))):
        assert check[key]["out"]["max_rel"] < (1e-5 if key.endswith("32") else 1e-2), key
        assert set(check[key]["grad"]) == {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"}
    assert {"chunked", "reference"} <= set(result["forward"]) and result["forward"]["chunked"]["ms_min"] > 0


def test_f_and_g_at_every_profile_in_both_precisions(tiny_run):
    train = tiny_run["train"]
    assert set(train) == {f"{p}/{s}/{q}" for p in ("rgbnt201", "msvr310", "rgbnt100") for s in "FG"
                          for q in ("fp16", "bf16")}
    for key, rec in train.items():
        profile, preset, _ = key.split("/")
        assert rec["samples_per_s"] > 0 and rec["step_ms"] >= rec["step_ms_min"] > 0 and rec["host_issue_ms"] > 0
        assert rec["frozen_tower"] is (preset == "F") and rec["precision"] == "fp32"  # the CPU: no autocast
        assert rec["image_size"] == ([64, 32] if profile == "rgbnt201" else [32, 64])  # paper sides / 4
        assert rec["mfu"] is None and rec["peak_memory_gb"] is None  # CPU: no peak table, no CUDA memory
        assert rec["train_gflops_per_sample"] == tiny_run["flops"]["counted"][f"{profile}/{preset}"]["train_gflops"]


def test_official_batches_and_images_per_id(gpu_check):
    paper = dict(gpu_check.PAPER, set={})
    for profile, batch, k in (("rgbnt201", 64, 4), ("msvr310", 64, 4), ("rgbnt100", 128, 16)):
        cfg = gpu_check.config(paper, profile, "F")
        assert (cfg.data.batch_size, cfg.data.num_instances) == (batch, k)  # official-implementation.md sec. 3.2
    assert gpu_check.PAPER["host_batches"] == (32, 64, 128)


def test_training_flops_are_counted_with_the_real_backward(tiny_run):
    """Not 2x (nor 3x) the forward: F's backward runs through the frozen tower (activation gradients) but computes
    weight gradients of the trainable modules only; G's backward is ~2x its forward."""
    counted = tiny_run["flops"]["counted"]
    for profile in ("rgbnt201", "msvr310", "rgbnt100"):
        f, g = counted[f"{profile}/F"]["train_over_forward"], counted[f"{profile}/G"]["train_over_forward"]
        assert 2.05 < f < g <= 3.05, (profile, f, g)
        assert counted[f"{profile}/F"]["trainable_params_m"] < counted[f"{profile}/G"]["trainable_params_m"]


def test_depthwise_convolution_backward_is_counted_once(gpu_check):
    """torch's formula ignores groups (MA's depthwise conv); the script's own counts each gradient as one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv1d(64, 64, 3, groups=64, padding=1)
    x = torch.randn(2, 64, 10, requires_grad=True)
    mapping = {torch.ops.aten.convolution_backward: gpu_check._conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as count:
        y = conv(x)
    forward = count.get_total_flops()
    with FlopCounterMode(display=False, custom_mapping=mapping) as count:
        conv(x).backward(torch.ones_like(y))
    assert forward == 2 * 2 * 64 * 10 * 3 and count.get_total_flops() == 3 * forward  # input + weight gradients


def test_host_bound_test_and_engine_epoch(tiny_run):
    host = tiny_run["host_bound"]
    assert set(host["batches"]) == {"4", "8", "16"} and isinstance(host["host_bound"], bool)
    assert host["time_growth"] == pytest.approx(host["batches"]["16"]["step_ms"] / host["batches"]["4"]["step_ms"])
    engine = tiny_run["engine"]
    assert engine["iterations"] == engine["loader"]["batches_per_epoch"] == 3  # 6 ids x 4 images, 2 ids a batch
    assert engine["s_per_iteration"] > 0 and engine["startup_s"] > 0 and engine["evaluation_s"] > 0
    assert engine["checkpoint_writes"] == 2 and set(engine["checkpoint_bytes"]) == {"best.pt", "last.pt"}
    assert engine["loader"]["images_per_s"] > 0 and engine["tree"]["files"] == 3 * (6 * 4 + 4 * 8)


def test_overrides_reach_every_configuration_and_bad_ones_fail_early(gpu_check):
    sizes = dict(gpu_check.TINY, set=gpu_check._parse_set(["train.amp=false", "data.erasing_prob=0.25"]))
    cfg = gpu_check.config(sizes, "rgbnt100", "G")
    assert cfg.train.amp is False and cfg.data.erasing_prob == 0.25
    with pytest.raises(Exception, match=r"unknown key train\.nope"):
        gpu_check.main(["--tiny", "--set", "train.nope=1", "--parts", "env"])
    with pytest.raises(SystemExit, match="expected section.key=JSON"):
        gpu_check._parse_set(["amp"])


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
