"""The device a run trains on, and what ran it (issue 20: never a silent CPU run at paper scale).

The pinned torch is built for CUDA 13, which needs a recent NVIDIA driver; with an older driver, a CPU-only build or
no GPU, torch sees no GPU and ``train.device: auto`` would train a paper-scale run on one CPU thread (about a week
per run).  The paper profiles set ``train.require_gpu``: :func:`resolve_device` then stops before any data is read,
saying why (:func:`why_no_gpu`) and the fix; ``train.device: cpu`` stays possible when asked for explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mambapro.config import Config
from mambapro.distributed import env_world as _env_world
from mambapro.registry import AGGREGATORS


class DeviceError(RuntimeError):
    """A run that must use a GPU (``train.require_gpu``: the paper profiles) on a machine where torch sees none."""


def resolve_device(name: str, require_gpu: bool = False) -> torch.device:
    """``auto``: CUDA when available, else the CPU, unless ``require_gpu`` (a paper profile's
    ``train.require_gpu``): then no usable GPU is a :class:`DeviceError` saying why (:func:`why_no_gpu`) and the fix,
    raised before any data is read.  ``cuda`` without a usable GPU is the same error.  A CUDA device without index
    is cuda:LOCAL_RANK (torchrun's per-process GPU, 0 without torchrun); under torchrun another index would put every
    process on one GPU."""
    if name == "auto" or name.startswith("cuda"):
        reason = why_no_gpu()
        if reason and (name != "auto" or require_gpu):
            what = "train.device = 'auto' under a paper profile (train.require_gpu)" if name == "auto" else \
                f"train.device = {name!r}"
            raise DeviceError(f"{what} needs a GPU, but {reason}. To train on the CPU on purpose (about a week per "
                              "paper-scale run), set train.device: cpu")
        if name == "auto":
            name = "cpu" if reason else "cuda"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index not in (None, local) and _env_world() > 1:
        raise ValueError(f"train.device = {name!r} under torchrun puts every process on one GPU; use 'auto' or "
                         f"'cuda' (each process then takes cuda:LOCAL_RANK, here cuda:{local})")
    return torch.device("cuda", local if device.index is None else device.index)


def why_no_gpu() -> str | None:
    """None when torch can use a GPU; else why not, with the fix: a CPU-only build of torch, an NVIDIA driver
    older than torch's CUDA needs, or no GPU / driver at all (issue 20: the pinned torch is built for CUDA 13)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return None
    build, driver = torch.version.cuda, nvidia_driver()
    said = next((" ".join(str(w.message).split()) for w in caught if "CUDA" in str(w.message)), "")
    if build is None:
        return (f"this torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); install a CUDA "
                "build of the same release: environment.yml for a CUDA 13 driver, environment-cuda12.yml for a "
                f"CUDA 12 one (`pip install torch=={torch.__version__.split('+')[0]} --index-url "
                "https://download.pytorch.org/whl/cu128`; README, Paper scale)")
    if driver:
        return (f"the NVIDIA driver {driver} is too old for this torch's CUDA {build}"
                + (f" (torch: {said})" if said else "")
                + "; update the driver, or install torch's CUDA 12 build (environment-cuda12.yml: `--index-url "
                "https://download.pytorch.org/whl/cu128`, a driver of CUDA 12.8 or newer; README, Paper scale)")
    return (f"no NVIDIA GPU or driver was found (torch {torch.__version__} with CUDA {build}, "
            f"torch.cuda.device_count() = 0{'; ' + said if said else ''}); run on a machine with an NVIDIA GPU and "
            "its driver")


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version (Linux), None without one."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    words = text.split()
    return next((w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit()), "present")


def run_info(cfg: Config, device: torch.device) -> dict[str, Any]:
    """What ran a run (printed first and kept in ``metrics.json`` under ``run_info``): device, NVIDIA driver, torch
    and its CUDA, the selective-scan backend, the AMP mode, the speed options and, on the CPU, the math libraries'
    code path (:func:`mambapro.environment.cpu_math_report`: which MKL branch really ran)."""
    from mambapro.scan import resolve_backend

    t = cfg.train
    amp = f"{t.amp_dtype} autocast" + (" + GradScaler" if t.amp_dtype == "float16" else "") \
        if t.amp and device.type == "cuda" else "off (fp32)"
    scan = resolve_backend(cfg.aggregation.scan_backend, device) \
        if AGGREGATORS.fact(cfg.aggregation.kind, "scan") else None
    from mambapro.environment import cpu_math_report

    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
            None, "driver": nvidia_driver(), "torch": torch.__version__, "cuda": torch.version.cuda, "scan": scan,
            "amp": amp, "deterministic": t.deterministic, "tf32": t.tf32, "compile": t.compile,
            "cpu_math": cpu_math_report()[0] if device.type == "cpu" else None}
