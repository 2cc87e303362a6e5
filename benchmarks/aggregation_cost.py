"""Fig. 1(b) analogue: aggregation cost of Mamba Aggregation vs a Transformer block as the token count grows.

Both aggregators at paper width (D = 512), one block each plus the three per-modality reductions (the Table 6
convention), batch 1, n patch tokens per modality on an (h, w) grid with h·w = n (the most square factorisation,
h >= w; n = 128 gives the person grid 16×8), total tokens 3n from 3×128 to 3×``--max-tokens`` (default 3×8192).

* FLOPs: fvcore (one MAC = one FLOP) with the selective-scan and attention handles of
  ``mambapro.complexity.flop_handles`` (scan: 9·B·L·D·N + B·D·L, official sec. 6).  fvcore counts by tracing a
  real forward, which at 3×8192 tokens costs about as much as timing it (tens of seconds), so the count is taken
  from the structure of fvcore's own totals instead: every counted op of these aggregators costs a constant, or a
  multiple of n (linear layers, depthwise conv, norms, scan), or of n² (attention), so the fvcore total is exactly
  c0 + c1·n + c2·n².  The script traces fvcore at three small sizes (n = 16, 32, 64), solves for c0, c1, c2 in exact
  rational arithmetic, and checks the polynomial against direct fvcore counts at every size up to
  ``--fvcore-max-tokens`` (default 3×1024; it stops with an error on any mismatch).  The CSV's ``flops_source`` says
  which sizes were traced (``fvcore``) and which come from the polynomial (``fvcore_polynomial``).  The same
  polynomials give the exact crossover, the smallest n per modality where the Transformer needs at least MA's FLOPs.
* CPU time per sample: median forward time (eval, no grad, ``--threads`` intra-op threads, default 1 for a
  reproducible figure; the native scan kernel is single-threaded) over ``--repeats`` runs after one warm-up,
  MA and Transformer interleaved, sizes in increasing order while the whole run stays within ``--budget-s``
  seconds (default 120): before each size the cost of its forwards is extrapolated from the last three measured
  sizes (t = a·n + b·n², a, b >= 0, least squares on the relative error, per aggregator, ×1.1) and timing stops
  when it would not fit.  Sizes not timed are
  left empty in the CSV (``timing_status`` says why); nothing is extrapolated into the results.  The CSV also has
  each size's fastest and slowest repeat (``*_cpu_ms_min`` / ``*_max``, error bars in the figure): on a shared CPU
  the spread shows how far to trust a single size.  The time crossover is interpolated (log-log) between the two
  measured sizes around it (the last measured size where MA is slower and the next).

Writes <out>.csv, <out>.png and <out>.pdf (each to a temporary name; the three are renamed into place only after all
of them were written).  ``--quick`` (seconds, for tests): FLOPs over the same sizes, direct fvcore only at 3×128,
CPU time only up to 3×256 with one repeat.

Usage: python benchmarks/aggregation_cost.py [--out results/fig1b_aggregation_cost] [--budget-s 120] [--quick]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the time budget counts from here (torch's import included)

import argparse  # noqa: E402
import csv  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro.aggregation import build_aggregator  # noqa: E402
from mambapro.complexity import flop_handles  # noqa: E402
from mambapro.config import AggregationConfig  # noqa: E402

DIM = 512
MIN_TOKENS = 128
KINDS = {"ma": "MA (Mamba)", "transformer": "Transformer"}
FIT_SIZES = (16, 32, 64)  # tokens per modality at which fvcore is traced to fix c0 + c1·n + c2·n²
SAFETY = 1.1  # margin on the predicted cost of the next timed size
RESERVE_S = 8.0  # kept back from the budget for writing the CSV and drawing the figure
COLUMNS = ("tokens_per_modality", "total_tokens", "grid_h", "grid_w", "ma_gflops", "transformer_gflops",
           "flops_ratio_transformer_over_ma", "ma_cpu_ms", "transformer_cpu_ms", "time_ratio_transformer_over_ma",
           "flops_source", "timing_status", "cpu_threads", "timing_repeats", "ma_cpu_ms_min", "ma_cpu_ms_max",
           "transformer_cpu_ms_min", "transformer_cpu_ms_max")


def grid_for(n: int) -> tuple[int, int]:
    """(h, w) with h·w = n and h >= w, as square as possible."""
    h = next(d for d in range(math.isqrt(n), n + 1) if n % d == 0 and d * d >= n)
    return h, n // h


def sizes_up_to(max_tokens: int, min_tokens: int = MIN_TOKENS) -> list[int]:
    """min_tokens, 2·min_tokens, ... up to max_tokens (included when it is on the doubling ladder)."""
    if max_tokens < min_tokens:
        raise ValueError(f"--max-tokens {max_tokens} is below the smallest size {min_tokens}")
    sizes = [min_tokens]
    while sizes[-1] * 2 <= max_tokens:
        sizes.append(sizes[-1] * 2)
    return sizes


def build(kind: str, n: int):
    torch.manual_seed(0)
    return build_aggregator(AggregationConfig(kind=kind, num_blocks=1), DIM, grid_for(n)).eval()


def make_inputs(n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return [torch.randn(1, 1 + n, DIM, generator=generator) for _ in range(3)]


# --------------------------------------------------------------------------------------------------------------
# FLOPs


def fvcore_flops(kind: str, n: int) -> Fraction:
    """fvcore's total for one aggregator at n tokens per modality (FLOPs, one MAC = one FLOP), exactly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(build(kind, n), (make_inputs(n),)).set_op_handle(**flop_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        with torch.no_grad():
            return Fraction(analysis.total())


class FlopPolynomial:
    """fvcore's total as c0 + c1·n + c2·n², fixed by exact interpolation through three traced sizes."""

    def __init__(self, points: dict[int, Fraction]):
        if len(points) != 3:
            raise ValueError("need exactly three (n, flops) points")
        (x0, y0), (x1, y1), (x2, y2) = sorted(points.items())
        # Newton divided differences, exact in Fractions
        d01, d12 = Fraction(y1 - y0, x1 - x0), Fraction(y2 - y1, x2 - x1)
        c2 = (d12 - d01) / (x2 - x0)
        c1 = d01 - c2 * (x0 + x1)
        c0 = y0 - c1 * x0 - c2 * x0 * x0
        self.coeffs = (c0, c1, c2)

    def __call__(self, n: int) -> Fraction:
        c0, c1, c2 = self.coeffs
        return c0 + c1 * n + c2 * n * n


def flop_polynomials(fit_sizes=FIT_SIZES) -> dict[str, FlopPolynomial]:
    return {kind: FlopPolynomial({n: fvcore_flops(kind, n) for n in fit_sizes}) for kind in KINDS}


def flops_crossover(poly: dict[str, FlopPolynomial], upper: int = 1 << 20) -> int | None:
    """Smallest n (tokens per modality) from which on the Transformer's FLOPs are >= MA's (None if not below
    ``upper``).  The difference is a quadratic; with a positive n² term it is negative only between its roots."""
    diff = [t - m for t, m in zip(poly["transformer"].coeffs, poly["ma"].coeffs)]

    def ok(n: int) -> bool:
        return diff[0] + diff[1] * n + diff[2] * n * n >= 0

    if not ok(upper):
        return None
    lo, hi = 0, upper  # invariant: ok(hi); for a quadratic with diff[2] > 0, ok() flips at most once above its vertex
    if diff[2] > 0:
        lo = max(0, math.floor(-diff[1] / (2 * diff[2])))
    if ok(lo):  # the minimum is >= 0: the Transformer is never cheaper
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def count_flops(sizes: list[int], fvcore_max: int) -> tuple[list[dict], dict[str, FlopPolynomial]]:
    print(f"FLOPs: fvcore traced at n = {', '.join(map(str, FIT_SIZES))} -> exact c0 + c1·n + c2·n² per aggregator; "
          f"direct fvcore check up to 3x{fvcore_max}", flush=True)
    poly = flop_polynomials()
    rows = []
    for n in sizes:
        h, w = grid_for(n)
        row = {"tokens_per_modality": n, "total_tokens": 3 * n, "grid_h": h, "grid_w": w}
        direct = n <= fvcore_max
        for kind in KINDS:
            flops = poly[kind](n)
            if direct:
                traced = fvcore_flops(kind, n)
                if traced != flops:
                    raise RuntimeError(
                        f"{kind} at 3x{n}: fvcore counts {traced} FLOPs but c0 + c1·n + c2·n² from n = {FIT_SIZES} "
                        f"gives {flops}; the aggregator's cost is no longer a quadratic in n, so the extrapolated "
                        "sizes would be wrong"
                    )
            row[f"{kind}_gflops"] = float(flops) / 1e9
        row["flops_ratio_transformer_over_ma"] = row["transformer_gflops"] / row["ma_gflops"]
        row["flops_source"] = "fvcore" if direct else "fvcore_polynomial"
        rows.append(row)
    return rows, poly


# --------------------------------------------------------------------------------------------------------------
# CPU time


def predict_seconds(measured: list[tuple[int, float]], n: int, last: int = 3) -> float:
    """Forward time at n extrapolated from the ``last`` measured (n, seconds): t = a·n + b·n² with a, b >= 0, fitted
    by least squares on the relative error (one point: t ∝ n², the pessimistic case)."""
    if not measured:
        return 0.0
    if len(measured) == 1:
        n1, t1 = measured[0]
        return t1 * (n / n1) ** 2
    xs = [(m / t, m * m / t) for m, t in measured[-last:]]  # a·x + b·y should be 1 at every point
    sxx, sxy, syy = (sum(p[i] * p[j] for p in xs) for i, j in ((0, 0), (0, 1), (1, 1)))
    sx, sy = sum(p[0] for p in xs), sum(p[1] for p in xs)
    det = sxx * syy - sxy * sxy
    candidates = [(sx / sxx, 0.0), (0.0, sy / syy)]
    if det > 0:
        a, b = (sx * syy - sy * sxy) / det, (sy * sxx - sx * sxy) / det
        if a >= 0 and b >= 0:
            candidates.append((a, b))
    a, b = min(candidates, key=lambda c: sum((c[0] * x + c[1] * y - 1) ** 2 for x, y in xs))
    return a * n + b * n * n


def time_sizes(rows: list[dict], max_tokens_time: int, repeats: int, deadline: float) -> None:
    """Adds ``<kind>_cpu_ms`` (median) to the rows it times, smallest first, while the run fits before ``deadline``
    (a ``time.perf_counter()`` value); every row gets a ``timing_status``."""
    candidates = [r for r in rows if r["tokens_per_modality"] <= max_tokens_time]
    for row in rows:
        if row not in candidates:
            row["timing_status"] = f"not timed: above --max-tokens-time {max_tokens_time}"
    history = {k: [] for k in KINDS}
    overhead = 0.0
    stopped = False
    bar = tqdm(candidates, desc="CPU timing", unit="size", file=sys.stderr, dynamic_ncols=True)
    for row in bar:
        n = row["tokens_per_modality"]
        if stopped:
            row["timing_status"] = "not timed: time budget"
            continue
        predicted = overhead + SAFETY * (1 + repeats) * sum(predict_seconds(history[k], n) for k in KINDS)
        left = deadline - time.perf_counter()
        if left <= 0 or (history["ma"] and predicted > left):
            tqdm.write(f"CPU timing stops before 3x{n}: predicted {predicted:.0f} s, {max(left, 0):.0f} s left in "
                       "the budget")
            row["timing_status"] = "not timed: time budget"
            stopped = True
            continue
        start_point = time.perf_counter()
        models = {k: build(k, n) for k in KINDS}
        inputs = make_inputs(n)
        samples = {k: [] for k in KINDS}
        forward_s = 0.0
        with torch.no_grad():
            for kind, model in models.items():
                bar.set_postfix_str(f"3x{n} warm-up {kind}")
                start = time.perf_counter()
                model(inputs)
                forward_s += time.perf_counter() - start
            for r in range(repeats):
                for kind in (list(KINDS) if r % 2 == 0 else list(KINDS)[::-1]):
                    bar.set_postfix_str(f"3x{n} {kind} {r + 1}/{repeats}")
                    start = time.perf_counter()
                    models[kind](inputs)
                    samples[kind].append(time.perf_counter() - start)
                    forward_s += samples[kind][-1]
        del models, inputs
        overhead = max(0.0, time.perf_counter() - start_point - forward_s)  # building models and inputs
        for kind in KINDS:
            median = statistics.median(samples[kind])
            history[kind].append((n, median))
            row[f"{kind}_cpu_ms"] = 1e3 * median
            row[f"{kind}_cpu_ms_min"], row[f"{kind}_cpu_ms_max"] = 1e3 * min(samples[kind]), 1e3 * max(samples[kind])
        row["time_ratio_transformer_over_ma"] = row["transformer_cpu_ms"] / row["ma_cpu_ms"]
        row["timing_status"] = "measured"
        tqdm.write(format_row(row))
    bar.close()


def time_crossover(rows: list[dict]) -> tuple[str, float | None]:
    """Where the measured CPU-time ratio Transformer / MA reaches 1 for good: ('between', n*) interpolated in log-log
    between the last measured size below 1 and the next; ('below', None) if the Transformer is already the slower at
    every measured size; ('not_reached', None) if it is faster at the largest measured size; ('none', None) without
    measurements."""
    timed = [r for r in rows if "time_ratio_transformer_over_ma" in r]
    if not timed:
        return "none", None
    below = [i for i, r in enumerate(timed) if r["time_ratio_transformer_over_ma"] < 1]
    if not below:
        return "below", None
    i = below[-1]
    if i == len(timed) - 1:
        return "not_reached", None
    (n1, r1), (n2, r2) = ((timed[j]["tokens_per_modality"], timed[j]["time_ratio_transformer_over_ma"])
                          for j in (i, i + 1))
    frac = -math.log(r1) / (math.log(r2) - math.log(r1))
    return "between", math.exp(math.log(n1) + frac * (math.log(n2) - math.log(n1)))


# --------------------------------------------------------------------------------------------------------------
# Output


def format_row(row: dict) -> str:
    timing = (f"  CPU ms MA {row['ma_cpu_ms']:9.1f}  Transformer {row['transformer_cpu_ms']:9.1f}  "
              f"ratio {row['time_ratio_transformer_over_ma']:5.2f}" if "ma_cpu_ms" in row else "  (not timed)")
    return (f"3x{row['tokens_per_modality']:<5} ({row['grid_h']}x{row['grid_w']})  GFLOPs MA "
            f"{row['ma_gflops']:8.3f}  Transformer {row['transformer_gflops']:8.3f}  ratio "
            f"{row['flops_ratio_transformer_over_ma']:5.2f}{timing}")


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, ""))
                             for k in COLUMNS})


def _tokens_label(n: float) -> str:
    return f"3×{n:.0f}"


def plot(rows: list[dict], flops_cross: int | None, time_cross: tuple[str, float | None], threads: int,
         repeats: int, paths: dict[str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10.5, "legend.fontsize": 9.5})
    colors = {"ma": "tab:green", "transformer": "tab:red"}
    markers = {"ma": "o", "transformer": "s"}
    tokens = [r["total_tokens"] for r in rows]
    timed = [r for r in rows if "ma_cpu_ms" in r]
    untimed = [r for r in rows if "ma_cpu_ms" not in r]
    fig, (ax_f, ax_t, ax_r) = plt.subplots(3, 1, figsize=(7, 9.6), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 3, 2.2]})

    def ratio_bracket(ax, row, low_key, high_key, ratio_key, text_at):
        """Dotted bracket between the two curves at ``row``, labelled with the ratio (text at axes fraction)."""
        x, lo, hi = row["total_tokens"], row[low_key], row[high_key]
        ax.vlines(x, min(lo, hi), max(lo, hi), colors="0.3", linestyles=":", linewidth=1.5)
        ax.annotate(f"Transformer / MA at {_tokens_label(row['tokens_per_modality'])}: {row[ratio_key]:.2f}×",
                    (x, math.sqrt(lo * hi)), xytext=text_at, textcoords="axes fraction", ha="right", va="center",
                    fontsize=10, fontweight="bold", arrowprops=dict(arrowstyle="->", color="0.3", lw=1),
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.6", alpha=0.95))

    def crossover_line(ax, x, text, y_frac=0.96, va="top"):
        ax.axvline(x, color="0.35", linestyle="--", linewidth=1)
        ax.annotate(text, (x, y_frac), xycoords=("data", "axes fraction"), textcoords="offset points",
                    xytext=(4, 0), ha="left", va=va, fontsize=9.5, color="0.2")

    # (a) FLOPs
    for kind, label in KINDS.items():
        ax_f.plot(tokens, [r[f"{kind}_gflops"] for r in rows], label=label, linewidth=2, marker=markers[kind],
                  color=colors[kind])
    ratio_bracket(ax_f, rows[-1], "ma_gflops", "transformer_gflops", "flops_ratio_transformer_over_ma", (0.9, 0.9))
    if flops_cross is not None and 3 * flops_cross <= tokens[-1]:
        crossover_line(ax_f, 3 * flops_cross, f"equal FLOPs at\n{_tokens_label(flops_cross)} tokens")
    ax_f.set(yscale="log", ylabel="GFLOPs per sample (fvcore, MAC = 1)",
             title=f"(a) FLOPs: one block + reductions, D = {DIM}, batch 1")
    ax_f.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86))

    # (b) CPU time
    for kind, label in KINDS.items():
        ax_t.errorbar([r["total_tokens"] for r in timed], [r[f"{kind}_cpu_ms"] for r in timed],
                      yerr=[[r[f"{kind}_cpu_ms"] - r[f"{kind}_cpu_ms_min"] for r in timed],
                            [r[f"{kind}_cpu_ms_max"] - r[f"{kind}_cpu_ms"] for r in timed]],
                      label=label, linewidth=2, marker=markers[kind], color=colors[kind], capsize=3, elinewidth=1)
    if timed:
        ratio_bracket(ax_t, timed[-1], "ma_cpu_ms", "transformer_cpu_ms", "time_ratio_transformer_over_ma",
                      (0.9, 0.9))
    kind_t, n_t = time_cross
    if kind_t == "between":
        crossover_line(ax_t, 3 * n_t, f"equal time ≈ {_tokens_label(n_t)}\n(interpolated)", 0.04, "bottom")
    if untimed:
        ax_t.axvspan(math.sqrt(untimed[0]["total_tokens"] * (timed[-1]["total_tokens"] if timed else tokens[0])),
                     tokens[-1] * 1.25, color="0.88", zorder=0)
        ax_t.annotate("not timed (time budget)" if "budget" in untimed[0]["timing_status"] else "not timed",
                      (math.sqrt(untimed[0]["total_tokens"] * tokens[-1]), 0.5), xycoords=("data", "axes fraction"),
                      ha="center", va="center", fontsize=9.5, color="0.35", rotation=90 if len(untimed) < 3 else 0)
    ax_t.set(yscale="log", ylabel="CPU forward time per sample (ms)",
             title=f"(b) CPU time: median (bars: min-max) of {repeats}, {threads} thread{'s' if threads > 1 else ''},"
                   " batch 1")
    ax_t.legend(loc="upper left")

    # (c) ratio
    ax_r.axhline(1, color="0.3", linewidth=1)
    ax_r.plot(tokens, [r["flops_ratio_transformer_over_ma"] for r in rows], label="FLOPs", linewidth=2,
              marker="D", color="tab:blue")
    if timed:
        ax_r.plot([r["total_tokens"] for r in timed], [r["time_ratio_transformer_over_ma"] for r in timed],
                  label="CPU time", linewidth=2, marker="^", color="tab:orange")
    if flops_cross is not None and 3 * flops_cross <= tokens[-1]:
        ax_r.plot([3 * flops_cross], [1], marker="o", markersize=8, mfc="none", mec="tab:blue", mew=2)
        ax_r.annotate(_tokens_label(flops_cross), (3 * flops_cross, 1), textcoords="offset points", xytext=(0, 7),
                      ha="center", va="bottom", fontsize=9, color="tab:blue")
    if kind_t == "between":
        ax_r.plot([3 * n_t], [1], marker="o", markersize=8, mfc="none", mec="tab:orange", mew=2)
        ax_r.annotate(f"≈{_tokens_label(n_t)}", (3 * n_t, 1), textcoords="offset points", xytext=(7, -6),
                      ha="left", va="top", fontsize=9, color="tab:orange")
    ax_r.annotate("Transformer costlier", (0.99, 0.97), xycoords="axes fraction", ha="right", va="top",
                  fontsize=9, color="0.35")
    ax_r.annotate("MA costlier", (0.99, 0.03), xycoords="axes fraction", ha="right", va="bottom", fontsize=9,
                  color="0.35")
    ax_r.set(yscale="log", ylabel="Transformer / MA", xlabel="total tokens (3 modalities × n per modality)",
             title="(c) cost ratio (> 1: MA cheaper)")
    ax_r.legend(loc="upper left")

    for ax in (ax_f, ax_t, ax_r):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(tokens))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tokens_label(v / 3)))
        ax.set_xlim(tokens[0] / 1.25, tokens[-1] * 1.25)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="major", alpha=0.3)
    low, high = ax_r.get_ylim()
    ax_r.set_ylim(min(low, 0.4), max(high, 2.5) * 1.6)
    for ax in (ax_f, ax_t):
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 2.5)  # headroom for the labels
    plt.setp(ax_r.get_xticklabels(), rotation=30)
    fig.suptitle("Fig. 1(b) analogue: Mamba Aggregation vs Transformer aggregator", fontsize=12)
    fig.tight_layout()
    fig.savefig(paths["png"], format="png", dpi=150)
    fig.savefig(paths["pdf"], format="pdf")
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/fig1b_aggregation_cost",
                        help="output path stem: writes <out>.csv, <out>.png, <out>.pdf")
    parser.add_argument("--max-tokens", type=int, default=8192,
                        help="largest size, tokens per modality (sizes 128, 256, ... up to it; FLOPs cover all)")
    parser.add_argument("--max-tokens-time", type=int, default=None,
                        help="time at most this many tokens per modality (default: --max-tokens; 256 with --quick)")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="wall-time budget of the whole run in seconds; timing stops before a size that would "
                             "not fit (default 120)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed forwards per size and aggregator after one warm-up (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads while timing (default 1)")
    parser.add_argument("--fvcore-max-tokens", type=int, default=None,
                        help="trace fvcore directly (and check the polynomial) up to this size (default 1024; "
                             "128 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="seconds: FLOPs as usual, direct fvcore only at 3x128, CPU time up to 3x256, 1 repeat")
    args = parser.parse_args(argv)
    max_time = args.max_tokens_time if args.max_tokens_time is not None else (256 if args.quick else args.max_tokens)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    fvcore_max = args.fvcore_max_tokens if args.fvcore_max_tokens is not None else (128 if args.quick else 1024)
    if repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    stem = Path(args.out)
    if stem.suffix in (".csv", ".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    sizes = sizes_up_to(args.max_tokens)
    deadline = _T0 + args.budget_s - RESERVE_S

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    finals = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "png", "pdf")}
    temps = {ext: stem.with_name(f".{stem.name}.tmp{os.getpid()}.{ext}") for ext in finals}
    try:
        print(f"torch {torch.__version__}, {args.threads} thread(s); D = {DIM}, batch 1, one block + reductions; "
              f"sizes 3x{sizes[0]} .. 3x{sizes[-1]}; budget {args.budget_s:.0f} s", flush=True)
        rows, poly = count_flops(sizes, fvcore_max)
        flops_cross = flops_crossover(poly)
        for row in rows:
            row["cpu_threads"], row["timing_repeats"] = args.threads, repeats
        time_sizes(rows, max_time, repeats, deadline)
        time_cross = time_crossover(rows)
        for row in rows:
            print(format_row(row))
        write_csv(rows, temps["csv"])
        plot(rows, flops_cross, time_cross, args.threads, repeats, temps)
        for ext in ("csv", "png", "pdf"):
            os.replace(temps[ext], finals[ext])
    finally:
        torch.set_num_threads(threads_before)
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)

    last = rows[-1]
    print(f"FLOPs ratio Transformer / MA at 3x{last['tokens_per_modality']}: "
          f"{last['flops_ratio_transformer_over_ma']:.2f}")
    print("FLOPs crossover (Transformer >= MA from): "
          + (f"3x{flops_cross} tokens" if flops_cross is not None else "not reached"))
    kind_t, n_t = time_cross
    if kind_t == "between":
        where = f"about 3x{n_t:.0f} tokens (log-log interpolation between measured sizes)"
    else:
        where = {"below": "already at the smallest measured size", "none": "no sizes timed",
                 "not_reached": "not reached at the largest measured size"}[kind_t]
    print(f"CPU-time crossover (Transformer slower from): {where}")
    timed = [r for r in rows if "time_ratio_transformer_over_ma" in r]
    if timed:
        print(f"CPU-time ratio at 3x{timed[-1]['tokens_per_modality']} (largest timed): "
              f"{timed[-1]['time_ratio_transformer_over_ma']:.2f}")
    print(f"wrote {finals['csv']}, {finals['png']}, {finals['pdf']} in {time.perf_counter() - _T0:.0f} s")


if __name__ == "__main__":
    main()
