"""One CPU code path for the math libraries, so that a run computes the same numbers on any x86-64 machine with
AVX2 (issue 13: ATen, MKL and oneDNN otherwise pick their kernels by the CPU they find, and an AVX-512 machine rounds
differently from an AVX2 one).

:func:`pin_cpu_math` sets, unless the user already has:

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised CPU kernels;
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility (matrix products), the one branch MKL
  honours on every x86-64 CPU, Intel's and AMD's (issue 21);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (the patch-embedding convolution).

Each library reads its variable when it first runs a kernel, so the pin works when ``mambapro`` is imported before
any tensor operation; ``import mambapro`` calls it.  :func:`cpu_math_report` says what is in effect (the engine
prints it and warns when the pin came too late).  MKL's branch is read back from MKL itself (:func:`mkl_branch`).
Measured on an AMD EPYC (AVX-512): MKL ignores ``MKL_CBWR=AVX2`` (and AVX, SSE4_2, ``AVX2,STRICT``) and runs
``AUTO``, whose products round differently from an Intel machine's AVX2 branch; only ``COMPATIBLE`` is honoured
(read back 3).  So the pin is ``COMPATIBLE``: one branch for both vendors, at a cost measured there on the one-core
training step (``benchmarks/train_step.py``): F +26 to +44 %, A +55 % against ``AUTO``.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# MKL's CNR branch codes (mkl_service.h: MKL_CBWR_AUTO ... MKL_CBWR_AVX512_E1), as mkl_cbwr_get(MKL_CBWR_BRANCH) says
MKL_BRANCHES = {2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX", 10: "AVX2",
                11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1"}


def pin_cpu_math() -> None:
    for key, value in PINS.items():
        os.environ.setdefault(key, value)


def mkl_branch() -> str | None:
    """The CNR branch MKL runs (``mkl_cbwr_get(MKL_CBWR_BRANCH)`` of the MKL inside torch's CPU library), e.g.
    "AVX2", "AUTO", "COMPATIBLE"; None where torch carries no MKL or the symbol is not exported."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(1)  # MKL_CBWR_BRANCH
    return MKL_BRANCHES.get(code & 0xFFFF, str(code))


def cpu_math_report() -> tuple[str, bool]:
    """(a one-line description, whether every pin is in effect: False when a kernel ran before the pin, the
    environment lost it, the CPU lacks AVX2, or MKL does not run the branch ``MKL_CBWR`` asks for)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    asked = os.environ.get("MKL_CBWR", "")
    branch = mkl_branch()
    mkl_ok = branch is None or branch == asked.split(",")[0].upper()
    ok = (all(os.environ.get(k) for k in PINS) and capability.lower() == os.environ["ATEN_CPU_CAPABILITY"].lower()
          and mkl_ok)
    mkl = f"MKL_CBWR={asked}" + ("" if mkl_ok else f" (MKL runs {branch}: not honoured on this CPU)")
    line = f"CPU math: ATen {capability}, {mkl}, ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
    return line, ok


__all__ = ["MKL_BRANCHES", "PINS", "cpu_math_report", "mkl_branch", "pin_cpu_math"]
