"""benchmarks/aggregation_cost.py (Fig. 1(b) analogue): quick run end to end, and its FLOP / timing helpers."""

from __future__ import annotations

import csv
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "aggregation_cost.py"


@pytest.fixture(scope="module")
def ac():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--quick`` run (seconds): FLOPs 3x128 .. 3x8192, CPU time up to 3x256."""
    out = tmp_path_factory.mktemp("fig1b")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out / "fig1b"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "fig1b.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, rows, proc.stdout


def test_quick_writes_three_files_atomically(quick_run):
    out, _, _ = quick_run
    names = sorted(p.name for p in out.iterdir())
    assert names == ["fig1b.csv", "fig1b.pdf", "fig1b.png"]  # no temporary files left behind
    assert (out / "fig1b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig1b.pdf").read_bytes()[:5] == b"%PDF-"


def test_quick_flops_rows_reach_requested_max(quick_run):
    _, rows, _ = quick_run
    assert [int(r["tokens_per_modality"]) for r in rows] == [128, 256, 512, 1024, 2048, 4096, 8192]
    assert all(int(r["total_tokens"]) == 3 * int(r["tokens_per_modality"]) for r in rows)
    assert all(float(r["ma_gflops"]) > 0 and float(r["transformer_gflops"]) > 0 for r in rows)
    assert rows[0]["flops_source"] == "fvcore"  # traced directly, and the polynomial was checked against it
    assert {r["flops_source"] for r in rows[1:]} == {"fvcore_polynomial"}
    # Table 6 at the person grid (3x128): MA 1.42 G, Transformer 1.36 G
    assert float(rows[0]["ma_gflops"]) == pytest.approx(1.41, abs=0.01)
    assert float(rows[0]["transformer_gflops"]) == pytest.approx(1.36, abs=0.01)


def test_quick_timing_marks_unmeasured_sizes_missing(quick_run):
    _, rows, _ = quick_run
    for r in rows:
        if int(r["tokens_per_modality"]) <= 256:
            assert r["timing_status"] == "measured"
            assert float(r["ma_cpu_ms"]) > 0 and float(r["transformer_cpu_ms"]) > 0
            assert float(r["ma_cpu_ms_min"]) <= float(r["ma_cpu_ms"]) <= float(r["ma_cpu_ms_max"])
        else:
            assert r["timing_status"].startswith("not timed")
            assert r["ma_cpu_ms"] == r["transformer_cpu_ms"] == r["time_ratio_transformer_over_ma"] == ""


def test_flops_ratio_at_3x8192_is_at_least_5(quick_run):
    """Paper, Fig. 1(b) / Introduction: self-attention aggregation costs far more than MA on long multi-modal
    sequences; the claim checked here is Transformer / MA >= 5 in FLOPs at 3x8192 tokens."""
    _, rows, stdout = quick_run
    last = rows[-1]
    assert int(last["tokens_per_modality"]) == 8192
    ratio = float(last["transformer_gflops"]) / float(last["ma_gflops"])
    assert float(last["flops_ratio_transformer_over_ma"]) == pytest.approx(ratio, rel=1e-5)
    assert ratio >= 5
    assert "FLOPs crossover (Transformer >= MA from): 3x" in stdout


def test_sizes_up_to(ac):
    assert ac.sizes_up_to(8192) == [128, 256, 512, 1024, 2048, 4096, 8192]
    assert ac.sizes_up_to(1000) == [128, 256, 512]
    with pytest.raises(ValueError):
        ac.sizes_up_to(64)


def test_flop_polynomial_is_exact(ac):
    def f(n):
        return Fraction(7) + Fraction(3, 2) * n + 5 * n * n

    poly = ac.FlopPolynomial({n: f(n) for n in (16, 32, 64)})
    assert poly.coeffs == (7, Fraction(3, 2), 5)
    assert poly(8192) == f(8192)


def test_flops_crossover(ac):
    def poly(c0, c1, c2):
        p = ac.FlopPolynomial({1: Fraction(0), 2: Fraction(0), 3: Fraction(0)})
        p.coeffs = (Fraction(c0), Fraction(c1), Fraction(c2))
        return p

    # Transformer n + n²/100 against MA 3n: equal at n = 200
    assert ac.flops_crossover({"transformer": poly(0, 1, Fraction(1, 100)), "ma": poly(0, 3, 0)}) == 200
    assert ac.flops_crossover({"transformer": poly(1000, 3, 1), "ma": poly(0, 3, 0)}) == 1  # never cheaper
    assert ac.flops_crossover({"transformer": poly(0, 1, 0), "ma": poly(0, 3, 0)}) is None  # never costlier


def test_predict_seconds(ac):
    assert ac.predict_seconds([], 256) == 0
    assert ac.predict_seconds([(128, 1.0)], 256) == pytest.approx(4.0)  # one point: pessimistic n²
    assert ac.predict_seconds([(128, 1.0), (256, 2.0)], 512) == pytest.approx(4.0)  # linear
    assert ac.predict_seconds([(128, 1.0), (256, 4.0)], 512) == pytest.approx(16.0)  # quadratic
    # only the last three sizes count
    assert ac.predict_seconds([(32, 99.0), (64, 0.25), (128, 1.0), (256, 4.0)], 512) == pytest.approx(16.0)
    assert ac.predict_seconds([(128, 1.0), (256, 2.5), (512, 7.0)], 1024) == pytest.approx(22.0)  # a·n + b·n²
    assert 3.0 <= ac.predict_seconds([(128, 1.0), (256, 1.5)], 512) <= 4.0  # sublinear: the best linear fit


def test_time_crossover(ac):
    def rows(ratios):
        return [{"tokens_per_modality": 128 * 2**i, "time_ratio_transformer_over_ma": r}
                for i, r in enumerate(ratios)]

    kind, n = ac.time_crossover(rows([0.5, 0.9, 0.8, 2.0]))  # the last crossing counts
    assert kind == "between" and 512 < n < 1024
    assert ac.time_crossover(rows([0.5, 1.0]))[0] == "between"
    assert ac.time_crossover(rows([0.5, 1.0]))[1] == pytest.approx(256)
    assert ac.time_crossover(rows([1.2, 1.5])) == ("below", None)
    assert ac.time_crossover(rows([0.5, 0.7])) == ("not_reached", None)
    assert ac.time_crossover([{"tokens_per_modality": 128}]) == ("none", None)
