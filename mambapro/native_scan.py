"""The ``"native"`` selective-scan backend: a small C kernel (``mambapro/csrc/selective_scan_cpu.c``), compiled on
first use with the system C compiler and called through ``ctypes`` (no PyTorch headers, so it builds in about a
second).  It keeps each (batch, channel) row's states in a buffer of L·N values instead of writing [B, D, L, N]
tensors, which is what bounds the PyTorch backends on a memory-bound CPU; forward and backward match the
sequential reference (tests/test_scan.py).

The shared library is cached under ``$MAMBAPRO_CACHE_DIR`` (default ``~/.cache/mambapro``), named by a hash of the
source, the compiler and its flags, and written under a temporary name then renamed, so concurrent processes can
build it at once.  When no compiler works, :func:`available` is False and ``"auto"`` falls back to ``"chunked"``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.c"
# -ffast-math at compile time only: it lets GCC vectorise the loops over N (their sums, and the min / max / floor of
# the kernel's own exp); linking without it keeps crtfastmath (flush-to-zero for the whole process) out of the
# shared library.  One instruction set, not -march=native: x86-64-v3 (AVX2 + FMA, the ISA mambapro.environment
# pins for ATen / MKL / oneDNN) wherever the CPU has it, so that every such machine runs the same code and gets the
# same numbers; -ffp-contract=off keeps the rounding of the C source (no fused multiply-adds).  Measured on preset
# F's one-core step: -march=native 237 ms, x86-64-v3 250 ms, x86-64-v2 273 ms, baseline x86-64 472 ms (floorf
# becomes a libm call).  Other CPUs get the compiler's default target.
PORTABLE_FLAGS = ("-O3", "-ffast-math", "-ffp-contract=off", "-fPIC")


def _cpu_has_avx2() -> bool:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                     "").split()
    except OSError:
        return False
    return {"avx2", "fma", "bmi2", "movbe"} <= set(flags)


COMPILE_FLAGS = PORTABLE_FLAGS + (("-march=x86-64-v3",) if _cpu_has_avx2() else ())
_TYPES = {torch.float32: "f32", torch.float64: "f64"}


def _cache_dir() -> Path:
    return Path(os.environ.get("MAMBAPRO_CACHE_DIR") or Path.home() / ".cache" / "mambapro")


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL | None, str]:
    """The loaded kernel library, or None with the reason it could not be built."""
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (cc / gcc / $CC) on PATH"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
        key = hashlib.sha256(SOURCE.read_bytes() + " ".join(COMPILE_FLAGS).encode() + version.encode()).hexdigest()
        lib = _cache_dir() / f"selective_scan_cpu-{key[:16]}.so"
        if not lib.is_file():
            lib.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
                obj, so = Path(tmp) / "scan.o", Path(tmp) / "scan.so"
                for cmd in ([cc, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", str(obj)],
                            [cc, "-shared", str(obj), "-o", str(so), "-lm"]):
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                    if done.returncode:
                        return None, f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}"
                os.replace(so, lib)
        return ctypes.CDLL(str(lib)), ""
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"{type(err).__name__}: {err}"


def available() -> bool:
    """True when the kernel compiled (or was cached) and loaded."""
    lib, why = _library()
    if lib is None:
        log.info("native selective scan unavailable: %s", why)
    return lib is not None


def unavailable_reason() -> str:
    return _library()[1]


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _call(name: str, dtype: torch.dtype, *tensors_then_sizes) -> None:
    lib, why = _library()
    if lib is None:
        raise RuntimeError(f"native selective scan unavailable: {why}")
    fn = getattr(lib, f"{name}_{_TYPES[dtype]}")
    args = [_ptr(a) if isinstance(a, torch.Tensor) else ctypes.c_long(a) for a in tensors_then_sizes]
    if fn(*args):
        raise MemoryError(f"native selective scan ({name}): out of memory")


def scan_forward(u, dt, A, B, C) -> torch.Tensor:
    """y_t = C_t · h_t for CPU tensors of one dtype (float32 or float64): u, dt [B, D, L], A [D, N], B, C [B, N, L]
    -> [B, D, L]."""
    u, dt, A = (t.contiguous() for t in (u, dt, A))
    bt, ct = (t.transpose(1, 2).contiguous() for t in (B, C))  # the kernel reads them time-major, [B, L, N]
    b, d, length = u.shape
    y = torch.empty_like(u)
    _call("scan_fwd", u.dtype, u, dt, A, bt, ct, y, b, d, length, A.shape[1])
    return y


def scan_backward(u, dt, A, B, C, gy) -> tuple[torch.Tensor, ...]:
    """Gradients (gu, gdt, gA, gB, gC) of :func:`scan_forward` for the output gradient ``gy``."""
    u, dt, A, gy = (t.contiguous() for t in (u, dt, A, gy))
    bt, ct = (t.transpose(1, 2).contiguous() for t in (B, C))
    b, d, length = u.shape
    gu, gdt, gA, gB, gC = (torch.empty_like(t) for t in (u, u, A, bt, ct))
    _call("scan_bwd", u.dtype, u, dt, A, bt, ct, gy, gu, gdt, gA, gB, gC, b, d, length, A.shape[1])
    return gu, gdt, gA, gB.transpose(1, 2), gC.transpose(1, 2)


__all__ = ["available", "scan_backward", "scan_forward", "unavailable_reason"]
