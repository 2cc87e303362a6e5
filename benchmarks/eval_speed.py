"""Evaluation speed at RGBNT100-like scale: mambapro's vectorised ranking (``mambapro.metrics``) against per-query
loops, measured in one run on the same random features.

Scale (defaults): 2,000 queries x 9,000 gallery items, 1536-d features (MambaPro's fused feature), 50 identities and
8 cameras, camera protocol.

Timed:
  distance     L2 normalisation + squared-Euclidean distance matrix (shared by every method below)
  vectorised   mambapro.metrics.evaluate_rank: chunked value sort of packed (distance, is-match) keys
  loop/official-style   the official eval_func's structure (sec. 5): one argsort of the whole matrix, then a Python
               loop over queries building each query's precision list element by element
  loop/numpy   a leaner per-query loop: per query, argsort + numpy cumsum (no per-element Python)

Each method's mAP / Rank-1 are printed to show they agree.  Times are the median and the minimum of ``--repeats``
runs (the loops run ``--loop-repeats`` times; on a shared machine the minimum is the better estimate of the
intrinsic cost); ratios are loop / vectorised of the medians from this run.

Usage: python benchmarks/eval_speed.py [--queries 2000] [--gallery 9000] [--dim 1536] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mambapro.metrics import compute_distance_matrix, evaluate_rank  # noqa: E402


def loop_official_style(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Per-query loop shaped like the official ``eval_func``: global argsort, per-query removal, CMC by cumsum,
    AP from a precision list built one element at a time."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = [h / (i + 1.0) for i, h in enumerate(hits)]
        all_ap.append((np.asarray(precision) * raw).sum() / raw.sum())
    return np.asarray(all_cmc, dtype=np.float32).mean(0), float(np.mean(all_ap))


def loop_numpy(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Per-query loop with numpy inside each query."""
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q])
        match = g_pids[order] == q_pids[q]
        raw = match[~(match & (g_camids[order] == q_camids[q]))]
        if not raw.any():
            continue
        hits = np.cumsum(raw)
        all_cmc.append(np.minimum(hits[:max_rank], 1))
        pos = np.nonzero(raw)[0]
        all_ap.append(np.mean(hits[pos] / (pos + 1)))
    return np.asarray(all_cmc, dtype=np.float64).mean(0), float(np.mean(all_ap))


def timed(fn, repeats):
    """(median seconds, minimum seconds, the last result) of ``repeats`` calls of ``fn``."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--gallery", type=int, default=9000)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--ids", type=int, default=50)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-repeats", type=int, default=1)
    a = p.parse_args(argv)

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(a.ids, a.dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, a.ids, a.queries), rng.integers(0, a.ids, a.gallery)
    q_cams, g_cams = rng.integers(0, a.cameras, a.queries), rng.integers(0, a.cameras, a.gallery)
    noise = 4.0  # identities overlap: mAP well below 100
    qf = torch.from_numpy(centres[q_pids] + noise * rng.normal(size=(a.queries, a.dim)).astype(np.float32))
    gf = torch.from_numpy(centres[g_pids] + noise * rng.normal(size=(a.gallery, a.dim)).astype(np.float32))

    def distance():
        return compute_distance_matrix(torch.nn.functional.normalize(qf, dim=1),
                                       torch.nn.functional.normalize(gf, dim=1)).numpy()

    t_dist, min_dist, dist = timed(distance, a.repeats)
    args = (dist, q_pids, g_pids, q_cams, g_cams)
    t_vec, min_vec, (cmc_v, map_v, _) = timed(lambda: evaluate_rank(*args), a.repeats)
    t_off, min_off, (cmc_o, map_o) = timed(lambda: loop_official_style(*args), a.loop_repeats)
    t_np, min_np, (cmc_n, map_n) = timed(lambda: loop_numpy(*args), a.loop_repeats)

    print(f"eval speed: {a.queries} queries x {a.gallery} gallery, {a.dim}-d, {a.ids} ids, {a.cameras} cameras, "
          f"torch threads {torch.get_num_threads()}; times: median s (min s) of {a.repeats} runs, the loops of "
          f"{a.loop_repeats}")
    print(f"  distance matrix (shared)        {t_dist:8.3f} s ({min_dist:.3f} s)")
    print(f"  {'ranking + metrics':<31} {'median':>10}{'(min)':>12} {'mAP':>7} {'R1':>7}   loop/vectorised")
    rows = (("vectorised (mambapro.metrics)", t_vec, min_vec, map_v, cmc_v[0], None),
            ("loop, official-style", t_off, min_off, map_o, cmc_o[0], t_off / t_vec),
            ("loop, numpy per query", t_np, min_np, map_n, cmc_n[0], t_np / t_vec))
    for name, t, t_min, m, r1, ratio in rows:
        print(f"  {name:<31} {t:8.3f} s ({t_min:7.3f} s) {100 * m:7.2f} {100 * r1:7.2f}   "
              + (f"{ratio:6.1f}x" if ratio else ""))
    total_v = t_dist + t_vec
    print(f"  total with distances: vectorised {total_v:.3f} s; official-style loop {t_dist + t_off:.3f} s "
          f"({(t_dist + t_off) / total_v:.1f}x); numpy loop {t_dist + t_np:.3f} s ({(t_dist + t_np) / total_v:.1f}x)")
    if abs(map_v - map_o) > 1e-6 or abs(map_v - map_n) > 1e-6:
        print("  WARNING: the methods disagree (ties in the random distances?)")


if __name__ == "__main__":
    main()
