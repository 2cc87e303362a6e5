"""Metrics and protocols (official sec. 5): hand-worked cases, a per-query reference on random data, re-ranking."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import mambapro.metrics as metrics
from mambapro.metrics import compute_distance_matrix, evaluate_features, evaluate_rank, re_ranking


def reference_eval(distmat, q_pids, g_pids, q_grp, g_grp, max_rank=50):
    """Straightforward per-query loop: remove same pid & same group, rank (ties: non-matches first), official AP."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        match = g_pids == q_pids[i]
        keep = ~(match & (g_grp == q_grp[i]))
        d, m = distmat[i][keep], match[keep]
        order = np.lexsort((m, d))  # by distance, then non-match before match
        m = m[order]
        if not m.any():
            continue
        hits = np.cumsum(m)
        cmc = np.ones(max_rank)
        first = int(np.argmax(m))
        cmc[:first] = 0
        cmcs.append(cmc)
        pos = np.nonzero(m)[0]
        aps.append(np.sum(hits[pos] / (pos + 1)) / m.sum())
        inps.append(m.sum() / (pos[-1] + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


# ----------------------------------------------------------------------------------------------------------------
# Hand-worked cases


def test_camera_protocol_hand_worked():
    # gallery by distance: [pid1 cam0 (removed: same pid and camera), pid2, pid1 cam1 (hit), pid3, pid1 cam2 (hit)]
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)
    g_pids, g_cams = np.array([1, 2, 1, 3, 1]), np.array([0, 1, 1, 2, 2])
    cmc, m_ap, m_inp = evaluate_rank(d, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=5)
    # kept ranking: pid2, HIT, pid3, HIT -> AP = (1/2 + 2/4) / 2 = 0.5; first hit at rank 2; INP = 2 / 4
    assert m_ap == pytest.approx(0.5)
    assert cmc.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert m_inp == pytest.approx(0.5)


def test_scene_protocol_hand_worked():
    # MSVR310: same pid and SAME SCENE is removed whatever the camera; same camera in another scene is kept
    d = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    g_pids = np.array([7, 7, 5, 7])
    g_cams = np.array([3, 0, 1, 3])  # item 0: other camera, same scene (removed); item 3: same camera, other scene
    g_scenes = np.array([11, 11, 12, 13])
    kw = {"q_sceneids": np.array([11]), "g_sceneids": g_scenes, "protocol": "scene", "max_rank": 3}
    cmc, m_ap, m_inp = evaluate_rank(d, np.array([7]), g_pids, np.array([0]), g_cams, **kw)
    # kept ranking: pid5, pid7 (scene 13) -> one hit at rank 2
    assert m_ap == pytest.approx(0.5) and m_inp == pytest.approx(0.5)
    assert cmc.tolist() == [0.0, 1.0, 1.0]
    # the camera protocol, query camera 3: items 0 and 3 (pid 7, camera 3) go; kept: item 1 (hit, rank 1), item 2
    cmc_c, ap_c, _ = evaluate_rank(d, np.array([7]), g_pids, np.array([3]), g_cams, max_rank=3)
    assert ap_c == pytest.approx(1.0) and cmc_c.tolist() == [1.0, 1.0, 1.0]


def test_ties_rank_non_matches_first():
    d = np.array([[0.5, 0.5, 0.5, 0.9]], np.float32)  # a three-way tie holding one match
    g_pids, g_cams = np.array([4, 9, 8, 4]), np.array([1, 1, 1, 1])
    cmc, m_ap, m_inp = evaluate_rank(d, np.array([4]), g_pids, np.array([0]), g_cams, max_rank=4)
    # pessimistic: 9, 8, then the tied match at rank 3, the other match at rank 4 -> AP = (1/3 + 2/4) / 2
    assert m_ap == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert cmc.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert m_inp == pytest.approx(2 / 4)
    # identical features for everyone (a collapsed model) cannot score well
    flat = np.zeros((1, 4), np.float32)
    _, ap_flat, _ = evaluate_rank(flat, np.array([4]), g_pids, np.array([0]), g_cams)
    assert ap_flat == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_query_without_valid_match_is_skipped_and_counted(caplog):
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], np.float32)
    g_pids, g_cams = np.array([1, 2, 2]), np.array([0, 0, 1])
    q_pids, q_cams = np.array([2, 1]), np.array([0, 0])  # query 2 (pid 1, cam 0): its only match shares cam 0
    with caplog.at_level(logging.WARNING, logger="mambapro.metrics"):
        cmc, m_ap, m_inp, n_valid = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=3,
                                                  return_num_valid=True)
    assert n_valid == 1
    assert "1 of 2 queries" in caplog.text
    # the valid query: kept [pid1, pid2 cam1 (hit)] -> AP 1/2
    assert m_ap == pytest.approx(0.5) and cmc.tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="none of the 1 queries"):
        evaluate_rank(d[1:], q_pids[1:], g_pids, q_cams[1:], g_cams)


def test_rgbnt201_query_equals_gallery_removes_the_query_itself():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    meta = {"pids": np.array([1, 1, 2, 2]), "camids": np.array([0, 1, 0, 1]), "sceneids": np.full(4, -1)}
    idx = np.arange(4)
    out = evaluate_features(feats, meta, idx, idx, "camera")
    assert out["mAP"] == pytest.approx(100.0) and out["R1"] == pytest.approx(100.0)
    assert out["num_valid_queries"] == 4
    assert set(out) == {"mAP", "R1", "R5", "R10", "mINP", "num_valid_queries", "mAP_ci95_lo", "mAP_ci95_hi"}
    assert out["mAP_ci95_lo"] == out["mAP_ci95_hi"] == pytest.approx(100.0)  # every query AP is 1


def test_bad_arguments_are_named():
    d = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="g_pids has 2 entries"):
        evaluate_rank(d, [1, 2], [1, 2], [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_rank(d, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0], protocol="view")
    with pytest.raises(ValueError, match="needs q_sceneids"):
        evaluate_rank(d, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0], protocol="scene")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.full((2, 3), np.nan), [1, 2], [1, 2, 3], [0, 0], [1, 1, 1])


# ----------------------------------------------------------------------------------------------------------------
# Against the per-query reference on random data


@pytest.mark.parametrize("protocol", ["camera", "scene"])
@pytest.mark.parametrize("kind", ["float32", "float64", "rounded", "negative"])
def test_matches_per_query_reference(protocol, kind, monkeypatch):
    rng = np.random.default_rng(hash((protocol, kind)) % 2**32)
    nq, ng = 37, 211
    d = rng.random((nq, ng))
    if kind == "rounded":  # many exact ties
        d = np.round(d * 6) / 6
    if kind == "negative":
        d = d - 0.5
    d = d.astype(np.float64 if kind == "float64" else np.float32)
    q_pids, g_pids = rng.integers(0, 12, nq), rng.integers(0, 12, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    q_sc, g_sc = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    grp = (q_cams, g_cams) if protocol == "camera" else (q_sc, g_sc)
    ref_cmc, ref_ap, ref_inp, ref_n = reference_eval(d, q_pids, g_pids, *grp, max_rank=20)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 5 * ng)  # several query chunks
    cmc, m_ap, m_inp, n = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=20, q_sceneids=q_sc,
                                        g_sceneids=g_sc, protocol=protocol, return_num_valid=True)
    assert n == ref_n
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-12)
    assert m_ap == pytest.approx(ref_ap, abs=1e-12)
    assert m_inp == pytest.approx(ref_inp, abs=1e-12)


def test_distance_matrix_is_two_minus_two_cos_on_unit_features():
    rng = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(5, 16, generator=rng), dim=1)
    g = torch.nn.functional.normalize(torch.randn(7, 16, generator=rng), dim=1)
    d = compute_distance_matrix(q, g)
    torch.testing.assert_close(d, 2 - 2 * q @ g.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(compute_distance_matrix(q, g, "cosine"), 1 - q @ g.T, atol=1e-5, rtol=0)
    raw_q, raw_g = 3 * q, 2 * g
    torch.testing.assert_close(compute_distance_matrix(raw_q, raw_g), torch.cdist(raw_q, raw_g) ** 2, atol=1e-4,
                               rtol=1e-4)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_distance_matrix(q, g, "manhattan")


def test_evaluate_features_normalises_and_indexes():
    rng = np.random.default_rng(3)
    n = 60
    pids, cams = rng.integers(0, 6, n), rng.integers(0, 3, n)
    feats = torch.from_numpy(rng.normal(size=(n, 8))).float() * torch.from_numpy(rng.uniform(0.1, 9, (n, 1))).float()
    q, g = np.arange(0, 20), np.arange(15, n)  # overlapping index arrays
    meta = {"pids": pids, "camids": cams, "sceneids": np.zeros(n, int)}
    out = evaluate_features(feats, meta, q, g, "camera")
    unit = torch.nn.functional.normalize(feats, dim=1).numpy()
    d = ((unit[q, None, :] - unit[None, g, :]) ** 2).sum(-1)
    cmc, m_ap, m_inp, nv = reference_eval(d, pids[q], pids[g], cams[q], cams[g])
    assert out["mAP"] == pytest.approx(100 * m_ap, abs=1e-4)
    assert out["R1"] == pytest.approx(100 * cmc[0]) and out["R10"] == pytest.approx(100 * cmc[9])
    assert out["mINP"] == pytest.approx(100 * m_inp, abs=1e-4) and out["num_valid_queries"] == nv


# ----------------------------------------------------------------------------------------------------------------
# Re-ranking


def reference_rerank(dist, nq, k1, k2, lam):
    """Per-probe k-reciprocal re-ranking written from the paper (Zhong et al. 2017) with Python sets."""
    n = dist.shape[0]
    orig = dist / dist.max(1, keepdims=True)
    rank = np.argsort(orig, axis=1, kind="stable")

    def recip(i, k):
        return [j for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expanded = set(r)
        for c in r:
            rc = recip(c, int(round(k1 / 2)))
            if len(set(rc) & set(r)) >= 2 / 3 * len(rc):
                expanded |= set(rc)
        idx = sorted(expanded)
        w = np.exp(-orig[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.array([[1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum() for j in range(n)]
                    for i in range(nq)])
    return jac * (1 - lam) + orig[:nq] * lam


def test_re_ranking_matches_the_set_based_reference():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(5, 6))
    x = centres[rng.integers(0, 5, 40)] + 0.5 * rng.normal(size=(40, 6))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    nq = 12
    expected = reference_rerank(dist, nq, k1=6, k2=3, lam=0.3)[:, nq:]
    got = re_ranking(dist[:nq, nq:], dist[:nq, :nq], dist[nq:, nq:], k1=6, k2=3, lambda_value=0.3)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_re_ranking_with_lambda_one_keeps_the_original_order():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 4))
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    got = re_ranking(dist[:10, 10:], dist[:10, :10], dist[10:, 10:], k1=5, k2=3, lambda_value=1.0)
    np.testing.assert_array_equal(np.argsort(got, axis=1), np.argsort(dist[:10, 10:], axis=1))


def test_evaluate_features_with_rerank_runs_on_the_unique_union():
    rng = np.random.default_rng(7)
    pids = np.repeat(np.arange(8), 6)
    cams = np.tile(np.arange(3), 16)
    feats = torch.from_numpy(rng.normal(size=(8, 16))[pids] + 0.8 * rng.normal(size=(48, 16))).float()
    meta = {"pids": pids, "camids": cams, "sceneids": np.full(48, -1)}
    idx = np.arange(48)
    plain = evaluate_features(feats, meta, idx, idx, "camera")
    rr = evaluate_features(feats, meta, idx, idx, "camera", rerank=True, k1=6, k2=3)
    assert rr["num_valid_queries"] == plain["num_valid_queries"] == 48
    assert 0 < rr["mAP"] <= 100 and rr["mAP"] >= plain["mAP"] - 5  # clustered data: re-ranking does not hurt much


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_queries():
    from mambapro.metrics import bootstrap_interval

    rng = np.random.default_rng(1)
    small, large = rng.uniform(size=80), rng.uniform(size=2000)
    lo_s, hi_s = bootstrap_interval(small)
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # a 95 % interval of a mean is about 2 x 1.96 standard errors wide: sd / sqrt(n) with sd = 1 / sqrt(12)
    assert hi_s - lo_s == pytest.approx(2 * 1.96 * small.std() / np.sqrt(80), rel=0.15)
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4
    assert bootstrap_interval(small) == (lo_s, hi_s)  # deterministic
