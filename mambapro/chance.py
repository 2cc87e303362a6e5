"""Chance level of a test split: the mAP and Rank-1 that random features score under the split's own protocol.

A ReID table reads only beside its floor: with few identities and several true matches per query, random features
already score a few percent mAP.  The floor is measured, not derived: ``draws`` sets of i.i.d. Gaussian features
(any dimension: the ranking of i.i.d. continuous features is a uniformly random permutation) evaluated by
:func:`mambapro.metrics.evaluate_features` with the split's query / gallery order, camera / scene filtering and
protocol; the mean and standard deviation over draws are reported.

The tables measure it for the split their runs were tested on (:func:`mambapro.tables.build_profile_tables`: the
last row of every ablation table and ``tables/chance.{csv,md}``); ``python -m mambapro.chance <profile>`` prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mambapro.config import resolve_config
from mambapro.data.loaders import test_order
from mambapro.data.readers import hold_out_identities, read_dataset
from mambapro.metrics import evaluate_features

__all__ = ["chance_level", "split_chance_level", "main"]

KEYS = ("mAP", "R1", "R5", "R10", "mINP")


def chance_level(meta: dict, query_index, gallery_index, protocol: str, draws: int = 50, seed: int = 0,
                 dim: int = 16) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (over ``draws`` random feature sets) of each metric in percent:
    ``{"mAP": {"mean": .., "std": .., "n": draws}, "R1": ..}``."""
    if draws < 2:
        raise ValueError(f"draws = {draws}: need at least 2 to give a spread")
    n = len(meta["pids"])
    gen = torch.Generator().manual_seed(seed)
    per_draw = {k: [] for k in KEYS}
    for _ in range(draws):
        feats = torch.randn(n, dim, generator=gen)
        m = evaluate_features(feats, meta, query_index, gallery_index, protocol)
        for k in KEYS:
            per_draw[k].append(m[k])
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "n": draws} for k, v in per_draw.items()}


def split_chance_level(profile: str, draws: int = 50, seed: int = 0, data_root: str | Path | None = None,
                       root: str | Path = ".", preset: str | None = None) -> dict:
    """Chance level of ``profile``'s test split: its dataset from mambapro/profiles.yaml, read under ``data_root``
    (default: the profile's ``data.root``, relative to the project ``root``).  With a ``preset`` that sets
    ``data.validation_ids``: of its validation split (:func:`mambapro.data.readers.hold_out_identities`)."""
    d = resolve_config(profile, preset).data
    data = read_dataset(d.dataset, data_root or Path(root) / d.root)
    if d.validation_ids:
        data = hold_out_identities(data, d.validation_ids, d.validation_seed)
    samples, query, gallery = test_order(data)
    meta = {k: np.array([getattr(s, attr) for s in samples], dtype=np.int64)
            for k, attr in (("pids", "pid"), ("camids", "camid"), ("sceneids", "sceneid"))}
    return {"profile": profile, "dataset": d.dataset, "queries": int(query.size), "gallery": int(gallery.size),
            "identities": int(np.unique(meta["pids"][query]).size), "draws": draws, "seed": seed,
            "metrics": chance_level(meta, query, gallery, data.protocol, draws=draws, seed=seed)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", help="profile whose test split is measured (mambapro/profiles.yaml)")
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None, help="dataset folder (default: the profile's data.root)")
    args = ap.parse_args(argv)
    report = split_chance_level(args.profile, args.draws, args.seed, args.data_root)
    m = report["metrics"]
    print(f"{args.profile} ({report['dataset']}, {report['queries']} queries): chance mAP {m['mAP']['mean']:.2f} ± "
          f"{m['mAP']['std']:.2f}, R-1 {m['R1']['mean']:.2f} ± {m['R1']['std']:.2f} ({args.draws} draws)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
