"""Retrieval metrics and protocols (official sec. 5): mAP, CMC (Rank-k) and mINP on L2-normalised features with
squared-Euclidean distance (= 2 - 2cos), the camera protocol (RGBNT201 / RGBNT100: gallery items with the query's
pid AND camid are removed) and the scene protocol (MSVR310: same pid AND sceneid), plus optional k-reciprocal
re-ranking (Zhong et al., CVPR 2017; built but inert in the official code).

AP is the official formula: (1/#rel) * sum over the hits at (1-based) rank i of (#hits up to i) / i, over the gallery
left after the protocol's removal; CMC at rank k is the fraction of valid queries whose first hit is within the top
k; INP = #rel / (rank of the last hit).  Queries left without any match are skipped and counted.

Ties: the official code orders the gallery with ``np.argsort``'s default (unstable) sort, so tied distances are
ranked arbitrarily.  Here ties are broken *pessimistically*: at equal distance non-matches rank before matches.  This
is deterministic and never flatters a model whose features collapse to identical vectors.

Vectorised over queries: each chunk of queries is sorted once with numpy's (SIMD) value sort, on keys that pack the
distance's bits with a one-bit "is a match" flag (removed items get the largest key), so no per-query Python loop
and no argsort is needed.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PROTOCOLS",
    "compute_distance_matrix",
    "evaluate_features",
    "evaluate_rank",
    "rank_statistics",
    "re_ranking",
]

log = logging.getLogger(__name__)

PROTOCOLS = ("camera", "scene")
_CHUNK_ELEMENTS = 1 << 19  # queries x gallery entries per chunk: a few MB, cache-sized


# --------------------------------------------------------------------------------------------------------------
# Distances


def compute_distance_matrix(qf, gf, metric: str = "euclidean") -> torch.Tensor:
    """Distances between query and gallery features ([Q, D], [G, D]) as a float [Q, G] tensor.

    ``"euclidean"`` is the *squared* Euclidean distance ||q||^2 + ||g||^2 - 2 q.g (official ``euclidean_distance``,
    torchreid's default), clamped at 0; on L2-normalised features it equals 2 - 2cos.  ``"cosine"`` is 1 - cos.
    """
    qf, gf = torch.as_tensor(qf), torch.as_tensor(gf)
    if qf.dim() != 2 or gf.dim() != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be [Q, D] and [G, D] with the same D, got {tuple(qf.shape)} and "
                         f"{tuple(gf.shape)}")
    if not qf.is_floating_point():
        qf = qf.float()
    gf = gf.to(qf.dtype)
    if metric == "euclidean":
        dist = qf.pow(2).sum(1, keepdim=True) + gf.pow(2).sum(1)[None] - 2.0 * qf @ gf.T
        return dist.clamp_(min=0)
    if metric == "cosine":
        return 1.0 - F.normalize(qf, dim=1) @ F.normalize(gf, dim=1).T
    raise ValueError(f"unknown metric {metric!r}; valid: 'euclidean', 'cosine'")


# --------------------------------------------------------------------------------------------------------------
# Ranking


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == object:
        raise TypeError(f"{name} must be numeric, got an object array")
    return x


def _ranked_hits(d: np.ndarray, match: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Per row, the match flags of the kept gallery in rank order (non-zero = match; removed items trail as zeros).

    Fast path: one in-place value sort of unsigned keys whose numeric order is (distance, is-match) and whose lowest
    bit is the match flag; removed items get the largest key with a clear flag.
    """
    match = match & ~removed
    if d.dtype == np.float32 and not (d < 0).any():
        # non-negative float32: the bit pattern orders like the value; << 1 drops the sign bit, so -0.0 == +0.0
        keys = d.view(np.uint32) << np.uint32(1)
        np.bitwise_or(keys, match, out=keys)
        keys[removed] = np.iinfo(np.uint32).max - 1
    elif d.dtype == np.float32:  # negative distances: order-preserving map of every float32 bit pattern
        bits = d.view(np.uint32)
        flipped = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)
        keys = (flipped << np.uint64(1)) | match
        keys[removed] = np.iinfo(np.uint64).max - 1
    elif not (d < 0).any():
        keys = d.astype(np.float64, copy=False).view(np.uint64) << np.uint64(1)
        np.bitwise_or(keys, match, out=keys)
        keys[removed] = np.iinfo(np.uint64).max - 1
    else:  # 64-bit distances of both signs leave no spare bit: lexicographic (removed, distance, match) sort
        order = np.lexsort((match, d, removed), axis=-1)
        return np.take_along_axis(match, order, axis=1)
    keys.sort(axis=1)
    return np.bitwise_and(keys, 1, out=keys)


def rank_statistics(distmat, q_pids, g_pids, q_camids, g_camids, q_sceneids=None, g_sceneids=None,
                    protocol: str = "camera") -> dict[str, np.ndarray]:
    """Per-query retrieval statistics after the protocol's removal (official sec. 5, steps 1-3).

    Returns ``num_rel`` (matches left), ``first`` and ``last`` (0-based positions of the first and last match among
    the kept gallery, -1 when none) and ``ap`` (average precision, 0 when there is no match).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    d = _as_numpy(distmat, "distmat")
    if d.ndim != 2:
        raise ValueError(f"distmat must be [num_query, num_gallery], got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    if np.isnan(d).any():
        raise ValueError("distmat contains NaN (features with NaN or inf values?)")
    num_q, num_g = d.shape
    q_pids, g_pids = _as_numpy(q_pids, "q_pids").ravel(), _as_numpy(g_pids, "g_pids").ravel()
    if protocol == "camera":
        q_grp, g_grp, what = q_camids, g_camids, "camids"
    else:
        if q_sceneids is None or g_sceneids is None:
            raise ValueError("protocol 'scene' (MSVR310) needs q_sceneids and g_sceneids")
        q_grp, g_grp, what = q_sceneids, g_sceneids, "sceneids"
    q_grp, g_grp = _as_numpy(q_grp, f"q_{what}").ravel(), _as_numpy(g_grp, f"g_{what}").ravel()
    for name, arr, n in (("q_pids", q_pids, num_q), (f"q_{what}", q_grp, num_q), ("g_pids", g_pids, num_g),
                         (f"g_{what}", g_grp, num_g)):
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries but distmat is {num_q} x {num_g}")

    num_rel = np.zeros(num_q, np.int64)
    first = np.full(num_q, -1, np.int64)
    last = np.full(num_q, -1, np.int64)
    ap = np.zeros(num_q, np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // max(num_g, 1))
    for s in range(0, num_q, chunk):
        e = min(num_q, s + chunk)
        match = g_pids[None, :] == q_pids[s:e, None]
        removed = match & (g_grp[None, :] == q_grp[s:e, None])
        hits = _ranked_hits(np.ascontiguousarray(d[s:e]), match, removed)
        rows, pos = np.nonzero(hits)  # row-major: per query, hit positions in rank order
        counts = np.bincount(rows, minlength=e - s)
        if rows.size == 0:
            continue
        starts = np.cumsum(counts) - counts
        ordinal = np.arange(rows.size) - starts[rows] + 1  # hits up to and including this one
        ap[s:e] = np.bincount(rows, weights=ordinal / (pos + 1), minlength=e - s) / np.maximum(counts, 1)
        has = counts > 0
        first[s:e][has] = pos[starts[has]]
        last[s:e][has] = pos[starts[has] + counts[has] - 1]
        num_rel[s:e] = counts
    return {"num_rel": num_rel, "first": first, "last": last, "ap": ap}


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, q_sceneids=None,
                  g_sceneids=None, protocol: str = "camera", return_num_valid: bool = False,
                  return_ap: bool = False):
    """torchreid-style evaluation: ``(cmc, mAP, mINP)`` with ``cmc[k-1]`` = Rank-k, all fractions in [0, 1].

    ``protocol="camera"`` removes gallery items with the query's pid and camid (RGBNT201, RGBNT100);
    ``protocol="scene"`` removes those with the query's pid and sceneid (MSVR310, official ``eval_func_msrv``).
    Queries with no match left are skipped (logged); if none is left a ``ValueError`` says so.
    ``return_num_valid=True`` appends the number of valid queries to the returned tuple, ``return_ap=True`` then
    the valid queries' average precisions (their mean is mAP; :func:`bootstrap_interval` resamples them).
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    stats = rank_statistics(distmat, q_pids, g_pids, q_camids, g_camids, q_sceneids, g_sceneids, protocol)
    valid = stats["num_rel"] > 0
    num_valid, num_q = int(valid.sum()), valid.size
    if num_valid == 0:
        raise ValueError(f"none of the {num_q} queries has a gallery match left under the {protocol!r} protocol "
                         f"(every same-pid gallery item shares the query's "
                         f"{'camera' if protocol == 'camera' else 'scene'})")
    if num_valid < num_q:
        log.warning("%d of %d queries have no gallery match under the %r protocol and are skipped",
                    num_q - num_valid, num_q, protocol)
    first = stats["first"][valid]
    cmc = np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank].cumsum() / num_valid
    m_ap = float(stats["ap"][valid].mean())
    m_inp = float((stats["num_rel"][valid] / (stats["last"][valid] + 1)).mean())
    out = (cmc.astype(np.float64), m_ap, m_inp)
    out = (*out, num_valid) if return_num_valid else out
    return (*out, stats["ap"][valid]) if return_ap else out


def bootstrap_interval(values, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (per-query APs: the evaluation noise of one run's
    mAP, from the finite query set), with a fixed generator so that the interval is deterministic."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_interval: no values")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    means = v[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------------------------
# k-reciprocal re-ranking (Zhong et al. 2017), vectorised with torch


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 50, k2: int = 15, lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking of a query-gallery distance matrix (torchreid's signature), returned as numpy.

    The probe set is queries + gallery (as in the paper's reference code); see :func:`k_reciprocal_distance`.
    """
    qg, qq, gg = (torch.as_tensor(_as_numpy(x, n), dtype=torch.float32)
                  for x, n in ((q_g_dist, "q_g_dist"), (q_q_dist, "q_q_dist"), (g_g_dist, "g_g_dist")))
    nq = qg.shape[0]
    full = torch.cat([torch.cat([qq, qg], 1), torch.cat([qg.T, gg], 1)], 0)
    final = k_reciprocal_distance(full, torch.arange(nq), k1, k2, lambda_value)
    return final[:, nq:].numpy()


def _reciprocal(rank: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-(k+1) neighbour lists (self included) and the mask of those that are k-reciprocal: j is in i's list
    and i in j's (the paper's R(p, k))."""
    n = rank.shape[0]
    fwd = rank[:, : k + 1]
    recip = torch.zeros_like(fwd, dtype=torch.bool)
    for s in range(0, n, chunk):  # membership of i in its neighbours' lists, without an N x N adjacency matrix
        back = fwd[fwd[s:s + chunk]]  # [c, k+1, k+1]
        recip[s:s + chunk] = (back == torch.arange(s, min(n, s + chunk))[:, None, None]).any(-1)
    return fwd, recip


def k_reciprocal_distance(dist: torch.Tensor, rows: torch.Tensor, k1: int = 50, k2: int = 15,
                          lambda_value: float = 0.3) -> torch.Tensor:
    """Re-ranked distances d* = (1 - lambda) d_J + lambda d (paper Eq. 12) of the probes ``rows`` to every item of
    the square distance matrix ``dist`` [N, N] over the whole probe set.

    Following the paper: d is the original distance, each row divided by its maximum; R(p, k1) the k-reciprocal
    neighbours (top k+1 lists, the probe itself included); R*(p, k1) adds R(q, round(k1/2)) for each q in R(p, k1)
    with |R(p, k1) & R(q, k1/2)| >= 2/3 |R(q, k1/2)| (paper Eq. 6; the reference code uses a strict >); V_p puts
    weights exp(-d(p, g)) on R*(p, k1), normalised to sum 1 (Eq. 7); local query expansion averages V over the top-k2
    neighbours (Eq. 11); d_J(p, g) = 1 - sum min(V_p, V_g) / sum max(V_p, V_g) (Eq. 10).  Memory: a few N x N float32
    matrices.
    """
    dist = torch.as_tensor(dist, dtype=torch.float32)
    n = dist.shape[0]
    if dist.dim() != 2 or dist.shape[1] != n:
        raise ValueError(f"k_reciprocal_distance needs a square [N, N] matrix, got {tuple(dist.shape)}")
    if not 1 <= k1 < n:
        raise ValueError(f"k1 = {k1} must be in 1..N-1 = {n - 1}")
    k2 = max(1, min(k2, n))
    rows = torch.as_tensor(rows, dtype=torch.long)
    scale = dist.max(1, keepdim=True).values.clamp(min=1e-12)
    original = dist / scale
    kh = int(round(k1 / 2))
    depth = max(k1, k2 - 1) + 1
    rank = torch.topk(original, k=min(n, depth), dim=1, largest=False, sorted=True).indices
    chunk = max(1, (1 << 22) // ((k1 + 1) ** 2))
    fwd, recip = _reciprocal(rank, k1, chunk)
    fwd_h, recip_h = _reciprocal(rank, kh, chunk)

    # R(p, k1) as a dense mask, then the 2/3 expansion by each reciprocal neighbour's R(q, k1/2)
    members = torch.zeros(n, n, dtype=torch.bool)
    members[torch.arange(n)[:, None].expand_as(fwd)[recip], fwd[recip]] = True
    expanded = members.clone()
    size_h = recip_h.sum(1)  # |R(q, k1/2)|
    for s in range(0, n, chunk):
        f, r = fwd[s:s + chunk], recip[s:s + chunk]  # candidates q of each probe p
        cand_lists, cand_recip = fwd_h[f], recip_h[f]  # [c, k1+1, kh+1]
        p = torch.arange(s, min(n, s + chunk))[:, None, None]
        inside = members[p, cand_lists] & cand_recip
        accept = r & (3 * inside.sum(-1) >= 2 * size_h[f])
        add = accept[..., None] & cand_recip
        expanded[p.expand_as(cand_lists)[add], cand_lists[add]] = True

    weights = torch.where(expanded, torch.exp(-original), torch.zeros(()))
    weights /= weights.sum(1, keepdim=True)
    if k2 > 1:  # local query expansion: V_p <- mean of V over p's top-k2 neighbours
        expanded_v = torch.empty_like(weights)
        step = max(1, (1 << 24) // (k2 * n))
        for s in range(0, n, step):
            expanded_v[s:s + step] = weights[rank[s:s + step, :k2]].mean(1)
        weights = expanded_v

    # Jaccard distance of the probes to everything: sum_k min(V_p, V_g) over the support of V_p only
    out = torch.empty(rows.numel(), n)
    budget = 1 << 24
    s = 0
    while s < rows.numel():
        c = 1
        support = weights[rows[s]].nonzero().squeeze(1)
        while s + c < rows.numel():  # grow the chunk while the [c, N, |support|] block fits the budget
            nxt = torch.unique(torch.cat([support, weights[rows[s + c]].nonzero().squeeze(1)]))
            if (c + 1) * n * nxt.numel() > budget:
                break
            support, c = nxt, c + 1
        vp = weights[rows[s:s + c]][:, support]  # [c, |S|]
        vg = weights[:, support]  # [N, |S|]
        overlap = torch.minimum(vp[:, None, :], vg[None]).sum(-1)
        out[s:s + c] = 1.0 - overlap / (2.0 - overlap)  # sum max = sum V_p + sum V_g - sum min = 2 - sum min
        s += c
    return out * (1.0 - lambda_value) + original[rows] * lambda_value


# --------------------------------------------------------------------------------------------------------------
# Convenience


def evaluate_features(features, meta: dict, query_index, gallery_index, protocol: str, rerank: bool = False,
                      max_rank: int = 50, k1: int = 50, k2: int = 15, lambda_value: float = 0.3) -> dict:
    """Metrics in percent from test features [N, D] and ``meta`` ({"pids", "camids", "sceneids"} arrays in the same
    order): features are L2-normalised, distances squared-Euclidean (official sec. 5).  Returns {"mAP", "R1", "R5",
    "R10", "mINP", "num_valid_queries", "mAP_ci95_lo", "mAP_ci95_hi"} (the last two: the 95 % bootstrap interval
    of mAP over queries, :func:`bootstrap_interval`).
    ``rerank`` applies k-reciprocal re-ranking over the union of the query
    and gallery samples (each sample once)."""
    feats = torch.as_tensor(features).float()
    if feats.dim() != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(feats.shape)}")
    for key in ("pids", "camids", "sceneids"):
        if key not in meta:
            raise KeyError(f"meta is missing {key!r} (has {sorted(meta)})")
        if len(meta[key]) != feats.shape[0]:
            raise ValueError(f"meta[{key!r}] has {len(meta[key])} entries for {feats.shape[0]} features")
    feats = F.normalize(feats, dim=1)
    q_idx = np.asarray(query_index, dtype=np.int64)
    g_idx = np.asarray(gallery_index, dtype=np.int64)
    if rerank:
        union, inverse = np.unique(np.concatenate([q_idx, g_idx]), return_inverse=True)
        f = feats[torch.from_numpy(union)]
        full = compute_distance_matrix(f, f)
        if k1 >= union.size:  # a test set smaller than k1 + 1 (e.g. the tiny synthetic set): use every neighbour
            log.warning("re-ranking: k1 = %d reduced to %d for %d samples", k1, union.size - 1, union.size)
            k1 = union.size - 1
        final = k_reciprocal_distance(full, torch.from_numpy(inverse[: q_idx.size]), k1, k2, lambda_value)
        distmat = final[:, torch.from_numpy(inverse[q_idx.size:])].numpy()
    else:
        distmat = compute_distance_matrix(feats[torch.from_numpy(q_idx)], feats[torch.from_numpy(g_idx)]).numpy()
    pids, camids, sceneids = (np.asarray(meta[k]) for k in ("pids", "camids", "sceneids"))
    cmc, m_ap, m_inp, num_valid, ap = evaluate_rank(
        distmat, pids[q_idx], pids[g_idx], camids[q_idx], camids[g_idx], max_rank=max_rank,
        q_sceneids=sceneids[q_idx], g_sceneids=sceneids[g_idx], protocol=protocol, return_num_valid=True,
        return_ap=True)
    lo, hi = bootstrap_interval(ap)

    def rank(k: int) -> float:
        return 100.0 * float(cmc[min(k, cmc.size) - 1])

    return {"mAP": 100.0 * m_ap, "R1": rank(1), "R5": rank(5), "R10": rank(10), "mINP": 100.0 * m_inp,
            "num_valid_queries": num_valid, "mAP_ci95_lo": 100.0 * lo, "mAP_ci95_hi": 100.0 * hi}
