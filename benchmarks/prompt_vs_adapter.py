"""Why SRP alone (Table 3's D) trails PFA alone (C) by more in the CPU miniature than in the paper (issue 21).

Trains C and D on the validation split of the backbone-rate study (``data.validation_ids = 10`` held-out training
identities: the test split is never read) at the default profile's ``base_lr`` and at a third and three times it --
the rate of every added module, so D's prompts and transfer blocks, and C's adapters --, and D with the paper's
random prompt initialisation (``prompt.init normal``), each over ``--seeds``.  Prints validation mAP / R-1 (last
epoch, mean ± std over seeds) beside each configuration's trainable-parameter count (Table 3's convention).

    python benchmarks/prompt_vs_adapter.py --seeds 0 1 2 --out /tmp/prompt_vs_adapter
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mambapro.complexity import model_params
from mambapro.config import resolve_config
from mambapro.engine import train
from mambapro.model import build_model

VALIDATION = {"data": {"validation_ids": 10}}


def variants(base_lr: float) -> dict[str, tuple[str, dict]]:
    """name -> (preset, overrides on top of the validation split)."""
    out = {}
    for preset in ("C", "D"):
        for factor in (1 / 3, 1.0, 3.0):
            out[f"{preset} base_lr x{factor:.2g}"] = (preset, {"train": {"base_lr": base_lr * factor}})
    out["D prompt.init normal"] = ("D", {"prompt": {"init": "normal"}})
    return out


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="/tmp/prompt_vs_adapter", help="scratch folder for the runs")
    p.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = p.parse_args(argv)
    base_lr = resolve_config(args.profile).train.base_lr
    rows = []
    for name, (preset, overrides) in variants(base_lr).items():
        if args.only and name not in args.only:
            continue
        cfg = resolve_config(args.profile, preset, {**VALIDATION, **overrides})
        params = model_params(build_model(cfg, 30, 4))
        maps, r1s, start = [], [], time.perf_counter()
        for seed in args.seeds:
            folder = Path(args.out) / name.replace(" ", "_") / f"seed{seed}"
            result = train(cfg, folder, seed, progress=False)
            maps.append(result["last"]["mAP"])
            r1s.append(result["last"]["R1"])
        rows.append((name, params, statistics.fmean(maps), _spread(maps), statistics.fmean(r1s), _spread(r1s),
                     time.perf_counter() - start))
        print(f"{name}: done ({len(args.seeds)} seeds)", flush=True)
    print(f"\nValidation split (10 held-out training ids), last epoch, mean ± std over seeds {args.seeds}")
    print(f"{'variant':<24} {'params':>8} {'mAP':>14} {'R-1':>14} {'time':>7}")
    for name, params, m, ms, r, rs, seconds in rows:
        print(f"{name:<24} {params:>8} {m:>8.2f} ± {ms:<4.2f} {r:>8.2f} ± {rs:<4.2f} {seconds:>6.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
