"""Fig. 1(b) analogue: aggregation cost of Mamba Aggregation vs a Transformer block as the token count grows.

Both aggregators at paper width (D = 512), one block each plus the three per-modality reductions (the Table 6
convention), batch 1, n patch tokens per modality on an (h, w) grid with h·w = n (the most square factorisation,
h >= w; n = 128 gives the person grid 16×8), total tokens 3n from 3×128 to 3×8192.

* FLOPs: fvcore (one MAC = one FLOP) with the selective-scan and attention handles of
  ``mambapro.aggregation.fvcore_handles`` (scan: 9·B·L·D·N + B·D·L, official sec. 6), at every size.
* CPU time per sample: median forward time (eval, no grad) over ``--repeats`` runs, MA and Transformer interleaved,
  for sizes up to ``--max-tokens-time`` tokens per modality (larger sizes are FLOPs-only).

Writes <out>.csv, <out>.png and <out>.pdf (each to a temporary name, then renamed).

Usage: python benchmarks/aggregation_cost.py [--out results/fig1b_aggregation_cost] [--max-tokens-time 8192] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro.aggregation import build_aggregator, fvcore_handles  # noqa: E402
from mambapro.config import AggregationConfig  # noqa: E402

DIM = 512
TOKENS_PER_MODALITY = (128, 256, 512, 1024, 2048, 4096, 8192)
KINDS = {"ma": "MA (Mamba)", "transformer": "Transformer"}


def grid_for(n: int) -> tuple[int, int]:
    """(h, w) with h·w = n and h >= w, as square as possible."""
    h = next(d for d in range(math.isqrt(n), n + 1) if n % d == 0 and d * d >= n)
    return h, n // h


def gflops(model, inputs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, (inputs,)).set_op_handle(**fvcore_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def measure(max_tokens_time: int, repeats: int, sizes=TOKENS_PER_MODALITY) -> list[dict]:
    rows = []
    for n in sizes:
        grid = grid_for(n)
        torch.manual_seed(0)
        models = {k: build_aggregator(AggregationConfig(kind=k, num_blocks=1), DIM, grid).eval() for k in KINDS}
        inputs = [torch.randn(1, 1 + n, DIM) for _ in range(3)]
        row = {"tokens_per_modality": n, "total_tokens": 3 * n, "grid_h": grid[0], "grid_w": grid[1]}
        for kind, model in models.items():
            row[f"{kind}_gflops"] = gflops(model, inputs)
        row["flops_ratio_transformer_over_ma"] = row["transformer_gflops"] / row["ma_gflops"]
        if n <= max_tokens_time:
            samples = {k: [] for k in KINDS}
            with torch.no_grad():
                for model in models.values():
                    model(inputs)  # warm-up
                for r in range(repeats):
                    for kind in (list(KINDS) if r % 2 == 0 else list(KINDS)[::-1]):
                        start = time.perf_counter()
                        models[kind](inputs)
                        samples[kind].append(time.perf_counter() - start)
            for kind in KINDS:
                row[f"{kind}_cpu_ms"] = 1e3 * statistics.median(samples[kind])
            row["time_ratio_transformer_over_ma"] = row["transformer_cpu_ms"] / row["ma_cpu_ms"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


COLUMNS = ("tokens_per_modality", "total_tokens", "grid_h", "grid_w", "ma_gflops", "transformer_gflops",
           "flops_ratio_transformer_over_ma", "ma_cpu_ms", "transformer_cpu_ms", "time_ratio_transformer_over_ma")


def format_row(row: dict) -> str:
    timing = (f"  CPU ms MA {row['ma_cpu_ms']:9.1f}  Transformer {row['transformer_cpu_ms']:9.1f}  "
              f"ratio {row['time_ratio_transformer_over_ma']:5.2f}" if "ma_cpu_ms" in row else "  (not timed)")
    return (f"3x{row['tokens_per_modality']:<5} ({row['grid_h']}x{row['grid_w']})  GFLOPs MA "
            f"{row['ma_gflops']:8.3f}  Transformer {row['transformer_gflops']:8.3f}  ratio "
            f"{row['flops_ratio_transformer_over_ma']:5.2f}{timing}")


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, ""))
                             for k in COLUMNS})
    os.replace(tmp, path)


def plot(rows: list[dict], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    tokens = [r["total_tokens"] for r in rows]
    fig, (ax_f, ax_t) = plt.subplots(1, 2, figsize=(11, 4.4))
    styles = {"ma": dict(marker="o", color="tab:green"), "transformer": dict(marker="s", color="tab:red")}
    for kind, label in KINDS.items():
        ax_f.plot(tokens, [r[f"{kind}_gflops"] for r in rows], label=label, linewidth=2, **styles[kind])
        timed = [r for r in rows if f"{kind}_cpu_ms" in r]
        ax_t.plot([r["total_tokens"] for r in timed], [r[f"{kind}_cpu_ms"] for r in timed], label=label,
                  linewidth=2, **styles[kind])
    last = rows[-1]["total_tokens"]
    for row in rows:
        if row["tokens_per_modality"] in (2048, 8192):  # ratio written between the two curves
            x, mid = row["total_tokens"], math.sqrt(row["transformer_gflops"] * row["ma_gflops"])
            ax_f.vlines(x, row["ma_gflops"], row["transformer_gflops"], colors="grey", linestyles=":")
            ax_f.annotate(f"{row['flops_ratio_transformer_over_ma']:.1f}×", (x, mid), textcoords="offset points",
                          xytext=(-6, 0) if x == last else (6, 0), ha="right" if x == last else "left",
                          va="center", fontsize=11)
    ax_f.set(xscale="log", yscale="log", xlabel="total tokens (3 modalities × n)", ylabel="GFLOPs per sample",
             title="(a) FLOPs (fvcore), one block + reductions")
    ax_t.set(xscale="log", yscale="log", xlabel="total tokens (3 modalities × n)",
             ylabel="CPU forward time per sample (ms)",
             title=f"(b) CPU time, {torch.get_num_threads()} threads, batch 1 (median)")
    for ax in (ax_f, ax_t):
        ax.set_xticks(tokens, [f"3×{t // 3}" for t in tokens], rotation=30)
        ax.minorticks_off()
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 1.8)  # headroom for the labels
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=11)
        ax.xaxis.label.set_size(12)
        ax.yaxis.label.set_size(12)
    fig.suptitle(f"Aggregation cost at D = {DIM}: Mamba Aggregation vs Transformer (Fig. 1(b) analogue; "
                 "labels: Transformer / MA FLOPs)", fontsize=12)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        final = stem.with_name(f"{stem.name}.{ext}")
        tmp = stem.with_name(f"{stem.name}.tmp.{ext}")
        fig.savefig(tmp, dpi=150)
        os.replace(tmp, final)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/fig1b_aggregation_cost",
                        help="output path stem: writes <out>.csv, <out>.png, <out>.pdf")
    parser.add_argument("--max-tokens-time", type=int, default=8192,
                        help="time only sizes with at most this many tokens per modality (FLOPs cover all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per size and aggregator")
    parser.add_argument("--quick", action="store_true", help="sizes 3x128 .. 3x2048, FLOPs only above 3x512")
    args = parser.parse_args(argv)
    stem = Path(args.out)
    if stem.suffix in (".csv", ".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    sizes = TOKENS_PER_MODALITY[:5] if args.quick else TOKENS_PER_MODALITY
    max_time = min(args.max_tokens_time, 512) if args.quick else args.max_tokens_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; D = {DIM}, batch 1, one block + reductions")
    rows = measure(max_time, args.repeats, sizes)
    write_csv(rows, stem.with_name(stem.name + ".csv"))
    plot(rows, stem)
    print(f"wrote {stem}.csv, {stem}.png, {stem}.pdf")


if __name__ == "__main__":
    main()
