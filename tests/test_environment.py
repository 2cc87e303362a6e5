"""One CPU code path for the math libraries (mambapro.environment) and the native scan's portable flags: the
sources of cross-machine difference issue 13 names (ATen's CPU-capability dispatch, MKL / oneDNN dispatch,
-march=native)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mambapro import environment, native_scan

FLAGS = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
needs_avx2 = pytest.mark.skipif("avx2" not in FLAGS, reason="needs an AVX2 CPU")


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in environment.PINS}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.strip()


def test_pins_are_defaults_the_user_can_override(monkeypatch):
    for key in environment.PINS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    environment.pin_cpu_math()
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert os.environ["MKL_CBWR"] == "AVX2"


@needs_avx2
def test_importing_mambapro_pins_atens_dispatch():
    code = ("import mambapro, torch; torch.ones(8).exp(); from mambapro.environment import cpu_math_report; "
            "print(*cpu_math_report(), sep='|')")
    line, ok = _python(code).split("|")
    assert line == "CPU math: ATen AVX2, MKL_CBWR=COMPATIBLE, ONEDNN_MAX_CPU_ISA=AVX2" and ok == "True"


INTEL = "GenuineIntel" in FLAGS


def test_mkl_reports_the_branch_it_runs_not_the_one_asked_for():
    """MKL_CBWR=COMPATIBLE is honoured on every x86-64 CPU; AVX2 only on Intel's (measured: an AMD EPYC runs AUTO
    and reports it, mkl_cbwr_get(MKL_CBWR_BRANCH) = 2)."""
    code = ("import mambapro, torch; torch.ones(8, 8) @ torch.ones(8, 8); from mambapro.environment import "
            "cpu_math_report, mkl_branch; print(mkl_branch(), *cpu_math_report(), sep='|')")
    branch, line, ok = _python(code).split("|")  # the pin
    if branch == "None":
        pytest.skip("this torch carries no readable MKL")
    assert branch == "COMPATIBLE" and "MKL_CBWR=COMPATIBLE," in line and ok == "True"
    branch, line, ok = _python(code, MKL_CBWR="AVX2").split("|")
    if INTEL:
        assert branch == "AVX2" and ok == "True"
    else:
        assert branch == "AUTO" and "(MKL runs AUTO: not honoured on this CPU)" in line and ok == "False"


@pytest.mark.skipif("avx512f" not in FLAGS, reason="needs an AVX-512 CPU (where the pin changes the dispatch)")
def test_a_kernel_before_the_import_is_reported():
    code = ("import torch; torch.ones(8).exp(); import mambapro; from mambapro.environment import cpu_math_report; "
            "print(*cpu_math_report(), sep='|')")
    line, ok = _python(code).split("|")
    assert line.startswith("CPU math: ATen AVX512") and ok == "False"


def test_native_scan_targets_one_instruction_set_not_the_build_machine():
    assert not any(f.startswith("-march=native") or f.startswith("-mtune=native") for f in native_scan.COMPILE_FLAGS)
    assert "-ffp-contract=off" in native_scan.COMPILE_FLAGS  # the C source's rounding, no fused multiply-adds
    has_v3 = {"avx2", "fma", "bmi2", "movbe"} <= FLAGS
    assert ("-march=x86-64-v3" in native_scan.COMPILE_FLAGS) == has_v3
