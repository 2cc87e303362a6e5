"""Paper-scale readiness check on a GPU, one command, JSON out (random weights, nothing downloaded).

Parts, each under its own time limit (a part that fails or runs out of time records ``error`` and the rest go on):

  env         device, torch / CUDA versions, the selective-scan backend "auto" picks (and why, if it falls back)
  flops       forward FLOPs of one sample (fvcore, mambapro.complexity; MAC convention as the paper, x2 for FLOPs)
  train       presets F and G at the rgbnt201 paper profile (ViT-B-16-quickgelu, batch 64, 256x128): training
              throughput (samples/s; each sample is 3 modality images) and peak memory, with AMP (fp16) as
              mambapro.engine.train, and MFU = training FLOPs / step time / the device's peak dense fp16 FLOP/s
              (training FLOPs = forward x 3, or x 2 for F, whose frozen tower has no weight gradients)
  scan_check  mamba-ssm's kernel (and the chunked backend) against the sequential reference in fp64: outputs and
              gradients, fp32 and fp16 inputs, max abs error and max rel error (= max abs error / max |reference|)
  forward     the whole F model's forward (eval, batch 64) with each available scan backend: median ms

On the CPU (or with ``--tiny``) it runs the same parts at tiny sizes (mambapro-tiny, 64x32, batch 8; backends native,
chunked, reference; one CPU thread): seconds.  Budget on a GPU: at most 9 minutes (the parts' limits, ``LIMITS``).

    python benchmarks/gpu_check.py [--tiny] [--out results/gpu_check.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import signal
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro import scan  # noqa: E402
from mambapro.config import resolve_config  # noqa: E402

# Peak dense fp16 / bf16 tensor-core FLOP/s (no sparsity), matched in order against torch.cuda.get_device_name().
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("A100", 312e12))
NUM_CLASSES, NUM_CAMERAS = 171, 4
# scan_shape: B, D, N, L of the scan check (paper: the inter-modality SSM of MA, batch 4)
PAPER = {"profile": "rgbnt201", "batch": 64, "warmup": 3, "steps": 20, "scan_shape": (4, 1024, 16, 384)}
TINY = {"profile": "default", "batch": 8, "warmup": 1, "steps": 2, "scan_shape": (2, 32, 8, 40)}
LIMITS = {"env": 30, "flops": 120, "train_F": 120, "train_G": 120, "scan_check": 60, "forward": 90}  # seconds


class PartTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`PartTimeout` in the main thread after ``seconds`` (SIGALRM; no limit where unavailable)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise PartTimeout(f"timed out after {seconds:.0f} s")

    outer, start = signal.getitimer(signal.ITIMER_REAL)[0], time.monotonic()  # e.g. pytest-timeout's alarm
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.01))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(sizes: dict, preset: str, **overrides):
    """The profile's configuration of ``preset`` with random weights."""
    return resolve_config(sizes["profile"], preset, {"backbone": {"pretrained": None, "timm_pretrained": None},
                                                     "data": {"batch_size": sizes["batch"], "num_instances": 4},
                                                     **overrides})


def batch(cfg, device: torch.device, n: int | None = None, seed: int = 0):
    """Random images for the three modalities, cameras, and PK-like ids (4 instances each)."""
    n = n or cfg.data.batch_size
    g = torch.Generator().manual_seed(seed)
    images = {m: torch.randn(n, 3, *cfg.data.image_size, generator=g).to(device) for m in ("RGB", "NI", "TI")}
    cams = torch.randint(0, NUM_CAMERAS, (n,), generator=g).to(device)
    pids = torch.arange(n).div(cfg.data.num_instances, rounding_mode="floor").to(device)
    return images, cams, pids


def autocast(device: torch.device, amp: bool):
    """As the engine: fp16 autocast on CUDA with ``train.amp``, fp32 otherwise."""
    return torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else contextlib.nullcontext()


def build(cfg, device: torch.device):
    from mambapro.model import build_model

    torch.manual_seed(0)
    return build_model(cfg, NUM_CLASSES, NUM_CAMERAS).to(device)


def set_backend(model: torch.nn.Module, backend: str) -> None:
    for m in model.modules():
        if hasattr(m, "scan_backend"):
            m.scan_backend = backend


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_FLOPS if key in name), None)


# --------------------------------------------------------------------------------------------------------------
# Parts


def part_env(device: torch.device, sizes: dict) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "peak_tflops": (peak_flops(device) or 0) / 1e12 or None, "profile": sizes["profile"]}
    if device.type == "cuda":
        out["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
    out["scan_backend"] = scan.describe_backend("auto", device)
    out["kernel_import_error"] = scan._cuda_kernel()[1] or None
    return out


class _Features(torch.nn.Module):
    """model(images, cams).feature with plain tensor inputs, for fvcore's tracer."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, rgb, ni, ti, cams):
        return self.model({"RGB": rgb, "NI": ni, "TI": ti}, cams).feature


def part_flops(device: torch.device, sizes: dict) -> dict:
    from mambapro.complexity import count_flops

    with warnings.catch_warnings():  # fvcore.nn's import: torch.jit.script is deprecated (toolchain notes)
        warnings.simplefilter("ignore", FutureWarning)
        import fvcore.nn  # noqa: F401

    cfg = config(sizes, "F")
    model = build(cfg, device)
    images, cams, _ = batch(cfg, device, n=1)
    macs = count_flops(_Features(model), (images["RGB"], images["NI"], images["TI"], cams))
    return {"forward_gmacs_per_sample": macs / 1e9, "forward_gflops_per_sample": 2 * macs / 1e9}


def part_train(device: torch.device, sizes: dict, preset: str, forward_flops: float | None, limit: float) -> dict:
    from mambapro.engine import make_optimizer
    from mambapro.losses import ReIDLoss

    cfg = config(sizes, preset)
    model = build(cfg, device).train()
    criterion, optimizer = ReIDLoss(cfg.loss), make_optimizer(model, cfg)
    amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, cams, pids = batch(cfg, device)

    def step() -> float:
        with autocast(device, amp):
            loss, _ = criterion(model(images, cams), pids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    start = time.perf_counter()
    for _ in range(sizes["warmup"]):  # allocator, cuDNN / cuBLAS choices, the native kernel's first build
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, loss = [], None
    while len(times) < sizes["steps"] and time.perf_counter() - start < 0.6 * limit:
        t = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    out = {"batch": cfg.data.batch_size, "image_size": list(cfg.data.image_size), "amp": amp,
           "frozen_tower": cfg.backbone.frozen, "steps": len(times), "step_ms": 1e3 * step_s,
           "samples_per_s": cfg.data.batch_size / step_s, "images_per_s": 3 * cfg.data.batch_size / step_s,
           "loss": float(loss), "scan_backends": sorted(set(getattr(model.aggregation, "scan_backends", [])))}
    out["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    if forward_flops:
        train_flops = forward_flops * (2 if cfg.backbone.frozen else 3)
        out["train_gflops_per_sample"] = train_flops / 1e9
        peak = peak_flops(device)
        out["mfu"] = train_flops * out["samples_per_s"] / peak if peak else None
    return out


def _errors(actual: torch.Tensor, expected: torch.Tensor) -> dict:
    diff = (actual.double() - expected).abs().max().item()
    return {"max_abs": diff, "max_rel": diff / max(expected.abs().max().item(), 1e-30)}


def _scan_inputs(shape, device, seed=0):
    b, d, n, length = shape
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    args = {"u": torch.randn(b, d, length, generator=g), "delta": 0.1 * torch.randn(b, d, length, generator=g),
            "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),  # -exp(A_log) at its initialisation
            "B": torch.randn(b, n, length, generator=g), "C": torch.randn(b, n, length, generator=g),
            "D": torch.ones(d), "z": torch.randn(b, d, length, generator=g),
            "delta_bias": dt + torch.log(-torch.expm1(-dt))}  # inverse softplus of Mamba's dt initialisation
    return {k: v.to(device) for k, v in args.items()}


def part_scan_check(device: torch.device, sizes: dict) -> dict:
    """Each backend's output and gradients against the reference in fp64 on the same (rounded) inputs."""
    out = {"shape_BDNL": list(sizes["scan_shape"]), "kernel_available": scan._cuda_kernel()[0] is not None,
           "note": "reference in fp64 on the same inputs; max_rel = max |error| / max |reference|"}
    backends = fast_backends(device) + ["chunked"]
    for dtype in (torch.float32, torch.float16):
        args = _scan_inputs(sizes["scan_shape"], device)
        for k in ("u", "delta", "B", "C", "z"):  # the kernel's input dtype; A, D, delta_bias stay fp32
            args[k] = args[k].to(dtype)
        gout = torch.randn(args["u"].shape, generator=torch.Generator().manual_seed(1)).to(device)
        y_ref, g_ref = _scan_with_grads("reference", {k: v.double() for k, v in args.items()}, gout.double())
        for backend in backends:
            key = f"{backend}_{str(dtype).removeprefix('torch.')}"
            try:
                y, g = _scan_with_grads(backend, args, gout.to(dtype))
                out[key] = {"out": _errors(y, y_ref), "grad": {k: _errors(g[k], g_ref[k]) for k in g_ref}}
            except Exception as e:  # noqa: BLE001 - recorded in the JSON
                out[key] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _scan_with_grads(backend: str, args: dict, gout: torch.Tensor):
    leaves = {k: v.detach().requires_grad_() for k, v in args.items()}
    y = scan.selective_scan(**leaves, delta_softplus=True, backend=backend)
    grads = torch.autograd.grad(y, list(leaves.values()), gout)
    return y.detach(), dict(zip(leaves, grads))


def fast_backends(device: torch.device) -> list[str]:
    """The device's kernel backend when it is available: "cuda" (mamba-ssm) or "native" (C, CPU)."""
    if device.type == "cuda":
        return ["cuda"] if scan._cuda_kernel()[0] is not None else []
    from mambapro import native_scan

    return ["native"] if native_scan.available() else []


def part_forward(device: torch.device, sizes: dict, limit: float) -> dict:
    cfg = config(sizes, "F")
    model = build(cfg, device).eval()
    images, cams, _ = batch(cfg, device)
    amp = cfg.train.amp and device.type == "cuda"
    backends = fast_backends(device) + ["chunked", "reference"]
    out, start = {"batch": cfg.data.batch_size}, time.perf_counter()
    for i, backend in enumerate(backends):
        set_backend(model, backend)
        times = []
        share = (limit * 0.8 - (time.perf_counter() - start)) / (len(backends) - i)
        t_backend = time.perf_counter()
        with torch.no_grad(), autocast(device, amp):
            model(images, cams)  # warm-up
            sync(device)
            while len(times) < sizes["steps"] and (not times or time.perf_counter() - t_backend < share):
                t = time.perf_counter()
                model(images, cams)
                sync(device)
                times.append(time.perf_counter() - t)
        out[backend] = {"ms": 1e3 * statistics.median(times), "repeats": len(times)}
    return out


# --------------------------------------------------------------------------------------------------------------


def run_all(device: torch.device, sizes: dict, limits: dict = LIMITS) -> dict:
    result, seconds = {"tiny": sizes is TINY}, {}

    def part(name, fn, *args):
        t = time.perf_counter()
        try:
            with time_limit(limits[name]):
                result[name] = fn(*args)
        except Exception as e:  # noqa: BLE001 - each part is independent; its error goes into the JSON
            result[name] = {"error": f"{type(e).__name__}: {e}",
                            "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]}
        finally:
            seconds[name] = round(time.perf_counter() - t, 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()

    part("env", part_env, device, sizes)
    part("flops", part_flops, device, sizes)
    fwd = result["flops"].get("forward_gflops_per_sample")
    for preset in ("F", "G"):
        part(f"train_{preset}", part_train, device, sizes, preset, fwd and fwd * 1e9, limits[f"train_{preset}"])
    part("scan_check", part_scan_check, device, sizes)
    part("forward", part_forward, device, sizes, limits["forward"])
    result["seconds"] = seconds
    result["total_seconds"] = round(sum(seconds.values()), 2)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the default without CUDA)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = TINY if args.tiny or device.type != "cuda" else PAPER
    threads = torch.get_num_threads()
    if device.type == "cpu":  # tiny ops: a second thread mostly waits at barriers on a shared machine (10x slower)
        torch.set_num_threads(1)
    try:
        result = run_all(device, sizes)
    finally:
        torch.set_num_threads(threads)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
