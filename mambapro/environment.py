"""One CPU code path for the math libraries, so that a run computes the same numbers on any x86-64 machine with
AVX2 (issue 13: ATen, MKL and oneDNN otherwise pick their kernels by the CPU they find, and an AVX-512 machine rounds
differently from an AVX2 one).

:func:`pin_cpu_math` sets, unless the user already has:

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised CPU kernels;
- ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility (matrix products);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (the patch-embedding convolution).

Each library reads its variable when it first runs a kernel, so the pin works when ``mambapro`` is imported before
any tensor operation; ``import mambapro`` calls it.  :func:`cpu_math_report` says what is in effect (the engine
prints it and warns when the pin came too late).  Measured on this project's 2-core AVX-512 machine, preset F's
one-core training step (``benchmarks/train_step.py``): ATen pin alone within noise, all three +6 %.
"""

from __future__ import annotations

import os

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_math() -> None:
    for key, value in PINS.items():
        os.environ.setdefault(key, value)


def cpu_math_report() -> tuple[str, bool]:
    """(a one-line description, whether every pin is set and ATen runs the capability its variable names: False when
    a kernel ran before the pin, the environment lost it, or the CPU lacks AVX2)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    ok = all(os.environ.get(k) for k in PINS) and capability.lower() == os.environ["ATEN_CPU_CAPABILITY"].lower()
    line = (f"CPU math: ATen {capability}, MKL_CBWR={os.environ.get('MKL_CBWR', '')}, "
            f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}")
    return line, ok


__all__ = ["PINS", "cpu_math_report", "pin_cpu_math"]
