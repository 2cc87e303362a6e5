"""Paper-scale check on a GPU, one command, JSON out (random weights, nothing downloaded).  Parts, each under its
own time limit (``LIMITS``, under 10 minutes in all; a failing part records ``error`` and the rest go on):

  env         device, driver, torch / CUDA versions, the scan backend "auto" picks (and why, if it falls back)
  flops       forward FLOPs of one sample (fvcore, MACs x 2, as mambapro.complexity), and each profile's and preset's
              training step **counted** (forward + backward under torch.utils.flop_counter: autograd skips frozen
              weights' gradients, so F's backward is what runs; the scan through the chunked backend).  Check:
              ``train_over_forward`` ~ 2 + FLOP share of layers with trainable weights (backward = activation
              gradients ~1x + weight gradients; Kaplan et al. 2020 sec. 2.1, Narayanan et al. 2021 sec. 5.1)
  train       F and G at every paper profile's official batch (rgbnt201, msvr310: 64; rgbnt100: 128 = 8 ids x 16;
              official-implementation.md sec. 3.2) in fp16 (autocast + GradScaler, official) and bf16 (no scaler):
              step time, samples/s, peak memory, MFU = counted FLOPs x samples/s / peak dense fp16 = bf16 FLOP/s
  host_bound  F at batch 32 / 64 / 128: step time (synchronised) and the host's issue time; a step time that
              barely grows with the batch (4x the samples, < 2x the time) means the GPU waits for Python
  scan_check  mamba-ssm's kernel and the chunked backend against the fp64 reference (fp32, fp16 inputs)
  forward     F's forward (eval, batch 64) with each available scan backend
  engine      mambapro.engine.train for one epoch of F (rgbnt201's batch, K, workers) on a generated RGBNT201
              tree of textured JPEGs: start-up, s/iteration, loader images/s, evaluation and checkpoint time

``--set section.key=JSON`` reaches every configuration (the engine's options, e.g. ``--set train.compile=true``);
on the CPU (or ``--tiny``) everything runs at tiny sizes (mambapro-tiny, image sides / 4, batch 8): a CI dry run.

    python benchmarks/gpu_check.py [--tiny] [--out results/gpu/gpu_check.json] [--precision bf16] [--set K=V]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro import scan  # noqa: E402
from mambapro.config import apply_overrides, resolve_config  # noqa: E402

# Peak dense fp16 / bf16 tensor-core FLOP/s (no sparsity), matched in order against torch.cuda.get_device_name().
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("A100", 312e12))
NUM_CLASSES, NUM_CAMERAS = 171, 4
PROFILES = ("rgbnt201", "msvr310", "rgbnt100")  # each with its official batch (profiles.yaml)
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16}
# scan_shape: B, D, N, L of the scan check (paper: the inter-modality SSM of MA, batch 4)
PAPER = {"tiny": False, "batch": None, "warmup": 3, "steps": 10, "host_batches": (32, 64, 128),
         "scan_shape": (4, 1024, 16, 384), "engine_ids": (48, 24, 16), "workers": None, "count_batch": 4}
TINY = {"tiny": True, "batch": 8, "warmup": 1, "steps": 1, "host_batches": (4, 8, 16),
        "scan_shape": (2, 32, 8, 40), "engine_ids": (6, 4, 4), "workers": 0, "count_batch": 4}
LIMITS = {"env": 20, "flops": 60, "train": 240, "host_bound": 60, "scan_check": 45, "forward": 40, "engine": 120}


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


def config(sizes: dict, profile: str, preset: str, batch: int | None = None, **overrides):
    """``preset`` under ``profile`` with random weights, at ``batch`` (default: the profile's official batch, or the
    tiny batch), K = the profile's images per id (fewer if the batch needs it), then ``--set``."""
    base = resolve_config(profile)
    batch = batch or sizes["batch"] or base.data.batch_size
    k = min(base.data.num_instances, batch // 2)
    over = {"backbone": {"pretrained": None, "timm_pretrained": None},
            "data": {"batch_size": batch, "num_instances": k}}
    if sizes["tiny"]:
        over["backbone"]["arch"] = "mambapro-tiny"
        over["data"]["image_size"] = [side // 4 for side in base.data.image_size]
    for section, values in overrides.items():
        over.setdefault(section, {}).update(values)
    cfg = resolve_config(profile, preset, over)
    return apply_overrides(cfg, sizes.get("set") or {}, where="--set") if sizes.get("set") else cfg


def batch(cfg, device: torch.device, n: int | None = None, seed: int = 0):
    """Random images for the three modalities, cameras, and PK ids (``data.num_instances`` each)."""
    n = n or cfg.data.batch_size
    g = torch.Generator().manual_seed(seed)
    images = {m: torch.randn(n, 3, *cfg.data.image_size, generator=g).to(device) for m in ("RGB", "NI", "TI")}
    cams = torch.randint(0, NUM_CAMERAS, (n,), generator=g).to(device)
    pids = torch.arange(n).div(cfg.data.num_instances, rounding_mode="floor").to(device)
    return images, cams, pids


def autocast(device: torch.device, precision: str | None):
    """fp16 or bf16 autocast on CUDA; fp32 on the CPU or with ``precision`` None."""
    if device.type == "cuda" and precision:
        return torch.autocast("cuda", dtype=PRECISIONS[precision])
    return contextlib.nullcontext()


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


def make_step(cfg, device: torch.device, precision: str | None):
    """(model, step(images, cams, pids) -> loss): the engine's training step (optimizer, loss), with fp16 autocast
    and GradScaler, or bf16 autocast without a scaler, or fp32."""
    from mambapro.engine import make_optimizer
    from mambapro.losses import ReIDLoss

    model = build(cfg, device).train()
    criterion, optimizer = ReIDLoss(cfg.loss), make_optimizer(model, cfg)
    precision = precision if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def step(images, cams, pids):
        with autocast(device, precision):
            loss, _ = criterion(model(images, cams), pids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return model, step


def time_steps(step, args, device: torch.device, sizes: dict, budget: float) -> dict:
    """Median / min step time (device-synchronised), the host's issue time (until ``step`` returns), peak memory."""
    start = time.perf_counter()
    for _ in range(sizes["warmup"]):  # allocator, cuDNN / cuBLAS choices, the native kernel's first build
        step(*args)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, issue, loss = [], [], None
    while len(steps) < sizes["steps"] and (not steps or time.perf_counter() - start < budget):
        t = time.perf_counter()
        loss = step(*args)
        issue.append(time.perf_counter() - t)
        sync(device)
        steps.append(time.perf_counter() - t)
    return {"steps": len(steps), "step_ms": 1e3 * statistics.median(steps), "step_ms_min": 1e3 * min(steps),
            "host_issue_ms": 1e3 * statistics.median(issue), "loss": float(loss),
            "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------------------
# Parts


def part_env(device: torch.device, sizes: dict) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "peak_tflops": (peak_flops(device) or 0) / 1e12 or None, "driver": None, "set": sizes.get("set") or {}}
    if device.type == "cuda":
        out["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.split("\n")[0] or None
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


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """aten.convolution_backward: each requested gradient (input, weight) costs what the forward convolution costs,
    2 x (output elements) x (weight elements per output channel).  torch 2.14's own formula ignores ``groups``, so
    it counts MA's depthwise convolutions' backward ``channels`` times over (x26 at tiny size)."""
    output_mask = args[7]
    return 2 * math.prod(grad_out_shape) * math.prod(w_shape[1:]) * (bool(output_mask[0]) + bool(output_mask[1]))


def count_step_flops(cfg, device: torch.device, n: int) -> dict:
    """FLOPs of one fp32 training step (forward, then forward + backward) counted by FlopCounterMode, per sample
    (matrix products, convolutions and attention; element-wise ops are not counted, as in MFU)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mambapro.losses import ReIDLoss

    cfg = apply_overrides(cfg, {"data": {"num_instances": 2}})
    model = build(cfg, device).train()
    set_backend(model, "chunked")  # counted op by op (the CUDA kernel is opaque to the counter)
    criterion = ReIDLoss(cfg.loss)
    images, cams, pids = batch(cfg, device, n=n)
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as forward:
        criterion(model(images, cams), pids)
    with FlopCounterMode(display=False, custom_mapping=mapping) as whole:
        criterion(model(images, cams), pids)[0].backward()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fwd, total = forward.get_total_flops() / n, whole.get_total_flops() / n
    return {"forward_gflops": fwd / 1e9, "train_gflops": total / 1e9, "train_over_forward": total / fwd,
            "trainable_params_m": trainable / 1e6}


def part_flops(device: torch.device, sizes: dict) -> dict:
    from mambapro.complexity import count_flops

    with warnings.catch_warnings():  # fvcore.nn's import warns that torch.jit.script is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        import fvcore.nn  # noqa: F401

    cfg = config(sizes, "rgbnt201", "F")
    model = build(cfg, device)
    images, cams, _ = batch(cfg, device, n=1)
    macs = count_flops(_Features(model), (images["RGB"], images["NI"], images["TI"], cams))
    del model
    out = {"forward_gmacs_per_sample": macs / 1e9, "forward_gflops_per_sample": 2 * macs / 1e9, "counted": {},
           "note": "counted: fp32 forward and forward + backward of one training step per sample "
                   "(torch.utils.flop_counter); MFU uses train_gflops"}
    for profile in PROFILES:
        for preset in ("F", "G"):
            out["counted"][f"{profile}/{preset}"] = count_step_flops(config(sizes, profile, preset), device,
                                                                     sizes["count_batch"])
            _free(device)
    return out


def part_train(device: torch.device, sizes: dict, flops: dict, precisions: list[str], limit: float) -> dict:
    """F and G at every profile's official batch, in each precision: steps, memory, MFU."""
    runs = [(p, s, q) for p in PROFILES for s in ("F", "G") for q in precisions]
    out, start, peak = {}, time.perf_counter(), peak_flops(device)
    for i, (profile, preset, precision) in enumerate(runs):
        key = f"{profile}/{preset}/{precision}"
        left = limit * 0.9 - (time.perf_counter() - start)
        if left <= 0:
            out[key] = {"skipped": "time limit"}
            continue
        try:
            cfg = config(sizes, profile, preset)
            model, step = make_step(cfg, device, precision)
            rec = {"batch": cfg.data.batch_size, "image_size": list(cfg.data.image_size),
                   "precision": precision if device.type == "cuda" else "fp32", "frozen_tower": cfg.backbone.frozen,
                   **time_steps(step, batch(cfg, device), device, sizes, left / (len(runs) - i))}
            rec["samples_per_s"] = cfg.data.batch_size / (rec["step_ms"] / 1e3)
            counted = (flops or {}).get("counted", {}).get(f"{profile}/{preset}")
            if counted:
                rec["train_gflops_per_sample"] = counted["train_gflops"]
                rec["mfu"] = counted["train_gflops"] * 1e9 * rec["samples_per_s"] / peak if peak else None
            out[key] = rec
            del model, step
        except Exception as e:  # noqa: BLE001 - one configuration's error (e.g. out of memory) goes into the JSON
            out[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
        _free(device)
    return out


def part_host_bound(device: torch.device, sizes: dict, precisions: list[str], limit: float) -> dict:
    """F's step time across batches: flat time over a 4x batch = the GPU waits for the host."""
    out, start = {"precision": precisions[0] if device.type == "cuda" else "fp32", "batches": {}}, time.perf_counter()
    for i, b in enumerate(sizes["host_batches"]):
        cfg = config(sizes, "rgbnt201", "F", batch=b)
        model, step = make_step(cfg, device, precisions[0])
        left = (limit * 0.9 - (time.perf_counter() - start)) / (len(sizes["host_batches"]) - i)
        rec = out["batches"][str(b)] = time_steps(step, batch(cfg, device), device, sizes, max(left, 0))
        rec["per_sample_ms"] = rec["step_ms"] / b
        del model, step
        _free(device)
    lo, hi = (out["batches"][str(b)]["step_ms"] for b in (sizes["host_batches"][0], sizes["host_batches"][-1]))
    growth = sizes["host_batches"][-1] / sizes["host_batches"][0]
    out["time_growth"], out["host_bound"] = hi / lo, hi / lo < growth / 2
    out["note"] = (f"time_growth = step time at batch {sizes['host_batches'][-1]} / at {sizes['host_batches'][0]} "
                   f"({growth:.0f}x the samples); host_bound when below {growth / 2:.0f}")
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


def part_forward(device: torch.device, sizes: dict, precisions: list[str], limit: float) -> dict:
    cfg = config(sizes, "rgbnt201", "F")
    model = build(cfg, device).eval()
    images, cams, _ = batch(cfg, device)
    backends = fast_backends(device) + ["chunked", "reference"]
    out, start = {"batch": cfg.data.batch_size}, time.perf_counter()
    for i, backend in enumerate(backends):
        set_backend(model, backend)
        times = []
        share = (limit * 0.8 - (time.perf_counter() - start)) / (len(backends) - i)
        t_backend = time.perf_counter()
        with torch.no_grad(), autocast(device, precisions[0]):
            model(images, cams)  # warm-up
            sync(device)
            while len(times) < sizes["steps"] + 1 and (not times or time.perf_counter() - t_backend < share):
                t = time.perf_counter()
                model(images, cams)
                sync(device)
                times.append(time.perf_counter() - t)
        out[backend] = {"ms": 1e3 * statistics.median(times), "ms_min": 1e3 * min(times), "repeats": len(times)}
    return out


def write_fake_rgbnt201(root: Path, ids: int, per_id: int, test_ids: int, wh: tuple[int, int]) -> int:
    """An RGBNT201-layout tree (official-implementation.md sec. 3.1) of textured JPEGs (smooth blobs + noise, so
    that decoding costs what a photo costs); returns the number of files."""
    import numpy as np
    from PIL import Image

    rng, count = np.random.default_rng(0), 0
    w, h = wh
    for split, first, n_ids, per in (("train_171", 0, ids, per_id), ("test", 1000, test_ids, 8)):
        for m in ("RGB", "NI", "TI"):
            (root / "RGBNT201" / split / m).mkdir(parents=True, exist_ok=True)
        for pid in range(first, first + n_ids):
            for k in range(per):
                coarse = rng.integers(0, 256, size=(max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
                base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
                for m in ("RGB", "NI", "TI"):
                    pixels = (base + rng.integers(-16, 17, size=base.shape)).clip(0, 255).astype(np.uint8)
                    im = Image.fromarray(pixels if m == "RGB" else pixels[..., :1].repeat(3, axis=2))
                    im.save(root / "RGBNT201" / split / m / f"{pid:06d}_cam{k % 4 + 1}_{k:04d}.jpg", quality=90)
                    count += 1
    return count


class _StampedLoader:
    """A DataLoader that records when each batch reaches the training loop (everything else is delegated)."""

    def __init__(self, loader, stamps: list[float]):
        self._loader, self._stamps = loader, stamps

    def __iter__(self):
        for item in self._loader:
            self._stamps.append(time.perf_counter())
            yield item

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _timing(original, seconds: list[float]):
    """``original`` wrapped so that each call's duration is appended to ``seconds``."""
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t)
    return timed


def part_engine(device: torch.device, sizes: dict, work: Path) -> dict:
    """One epoch of mambapro.engine.train (preset F, profile rgbnt201: its batch, K, workers), then its evaluation
    and checkpoints, on a generated tree; and the train loader alone."""
    from mambapro import engine
    from mambapro.data import loaders

    ids, per_id, test_ids = sizes["engine_ids"]
    paper_hw = resolve_config("rgbnt201").data.image_size
    wh = (paper_hw[1] // 4, paper_hw[0] // 4) if sizes["tiny"] else (paper_hw[1], paper_hw[0])
    t = time.perf_counter()
    files = write_fake_rgbnt201(work / "data", ids, per_id, test_ids, wh)
    out = {"tree": {"files": files, "train_ids": ids, "per_id": per_id, "image_wh": list(wh),
                    "seconds": time.perf_counter() - t}}
    train_over = {"epochs": 1, "warmup_epochs": 0, "eval_every": 1, "device": device.type}
    data_over = {"root": str(work / "data")}
    if sizes["workers"] is not None:
        data_over["num_workers"] = sizes["workers"]
    cfg = config(sizes, "rgbnt201", "F", data=data_over, train=train_over)
    out["batch"], out["num_workers"] = cfg.data.batch_size, cfg.data.num_workers

    data = loaders.build_data(cfg, 0)  # the train loader alone: decode + augment throughput
    data.set_epoch(1)
    t0, first, images = time.perf_counter(), None, 0
    for i, item in enumerate(data.train_loader):
        if first is None:
            first, t1 = time.perf_counter() - t0, time.perf_counter()
        else:
            images += sum(x.shape[0] for x in item["images"].values())
        if i >= 20:
            break
    steady = time.perf_counter() - t1
    out["loader"] = {"first_batch_s": first, "images_per_s": images / steady if images and steady > 0 else None,
                     "batches_per_epoch": len(data.train_loader)}
    del data

    stamps, evals, saves = [], [], []
    build_data = loaders.build_data

    def stamped_build(*args, **kwargs):
        built = build_data(*args, **kwargs)
        built.train_loader = _StampedLoader(built.train_loader, stamps)
        return built

    run_dir, t0 = work / "run", time.perf_counter()
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack.enter_context(mock.patch.object(loaders, "build_data", stamped_build))
        for name, sink in (("evaluate", evals), ("save_checkpoint", saves), ("save_torch", saves)):  # those it has
            if hasattr(engine, name):
                stack.enter_context(mock.patch.object(engine, name, _timing(getattr(engine, name), sink)))
        result = engine.train(cfg, run_dir, 0, resume=False, progress=False)
    total = time.perf_counter() - t0
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    steady = gaps[2:] or gaps
    out.update({"iterations": len(stamps), "total_s": total,
                "startup_s": stamps[0] - t0 if stamps else None,
                "s_per_iteration": statistics.median(steady) if steady else None,
                "evaluation_s": sum(evals), "checkpoint_s": sum(saves), "checkpoint_writes": len(saves),
                "checkpoint_bytes": {p.name: p.stat().st_size for p in sorted(run_dir.glob("*.pt"))},
                "peak_gpu_memory_gb": result.get("peak_gpu_memory_gb"),
                "note": "s_per_iteration: median gap between batches reaching the loop (step + waiting for data)"})
    return out


# --------------------------------------------------------------------------------------------------------------


def run_all(device: torch.device, sizes: dict, precisions: list[str], work: Path, limits: dict = LIMITS,
            parts: tuple[str, ...] | None = None) -> dict:
    result, seconds = {"tiny": sizes["tiny"]}, {}

    def part(name, fn, *args):
        if parts and name not in parts:
            return
        t = time.perf_counter()
        try:
            with time_limit(limits[name]):
                result[name] = fn(*args)
        except Exception as e:  # noqa: BLE001 - each part is independent; its error goes into the JSON
            result[name] = {"error": f"{type(e).__name__}: {e}",
                            "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]}
        finally:
            seconds[name] = round(time.perf_counter() - t, 2)
            _free(device)

    part("env", part_env, device, sizes)
    part("flops", part_flops, device, sizes)
    flops = result.get("flops") if "error" not in result.get("flops", {"error": 1}) else None
    part("train", part_train, device, sizes, flops, precisions, limits["train"])
    part("host_bound", part_host_bound, device, sizes, precisions, limits["host_bound"])
    part("scan_check", part_scan_check, device, sizes)
    part("forward", part_forward, device, sizes, precisions, limits["forward"])
    part("engine", part_engine, device, sizes, work)
    result["seconds"] = seconds
    result["total_seconds"] = round(sum(seconds.values()), 2)
    return result


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set {item!r}: expected section.key=JSON (e.g. train.amp=false)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the default without CUDA)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                   help="override applied to every configuration (repeatable)")
    p.add_argument("--precision", action="append", choices=sorted(PRECISIONS), help="default: fp16 and bf16")
    p.add_argument("--parts", help="comma-separated subset of: " + ", ".join(LIMITS))
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = dict(TINY if args.tiny or device.type != "cuda" else PAPER, set=_parse_set(args.set))
    config(sizes, "rgbnt201", "F")  # a bad --set fails now, naming the key
    precisions, parts = args.precision or ["fp16", "bf16"], tuple(args.parts.split(",")) if args.parts else None
    threads = torch.get_num_threads()
    if device.type == "cpu":  # tiny ops: a second thread mostly waits at barriers on a shared machine (10x slower)
        torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as work:  # the engine part's generated tree and run
            result = run_all(device, sizes, precisions, Path(work), parts=parts)
    finally:
        torch.set_num_threads(threads)
    text = json.dumps(result, indent=1)
    if args.out:  # written to a temporary name, then renamed
        args.out.parent.mkdir(parents=True, exist_ok=True)
        (tmp_out := args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")).write_text(text + "\n")
        tmp_out.replace(args.out)
    print(text)
    return result


if __name__ == "__main__":
    main()
