"""Chance level (mambapro.chance): random features score the closed-form expectation of a random ranking."""

import numpy as np
import pytest

from mambapro.chance import chance_level, main, split_chance_level
from mambapro.data.synthetic import generate


def _expected_ap(n: int, r: int) -> float:
    """E[AP] of a uniformly random ranking of n items, r of them relevant (Bestgen 2015):
    (1/n) * ((r - 1)/(n - 1) * (n - H_n) + H_n)."""
    h = sum(1.0 / i for i in range(1, n + 1))
    return ((r - 1) / (n - 1) * (n - h) + h) / n


def _split(ids: int, per_id: int, queries_per_id: int):
    """Query and gallery from disjoint cameras (nothing filtered): each query has ``per_id`` true matches among
    ``ids * per_id`` gallery samples."""
    pids = np.concatenate([np.repeat(np.arange(ids), queries_per_id), np.repeat(np.arange(ids), per_id)])
    camids = np.concatenate([np.zeros(ids * queries_per_id, int), np.ones(ids * per_id, int)])
    meta = {"pids": pids, "camids": camids, "sceneids": np.zeros_like(pids)}
    q = np.arange(ids * queries_per_id)
    g = np.arange(ids * queries_per_id, pids.size)
    return meta, q, g


def test_chance_matches_the_random_ranking_expectation():
    ids, per_id = 20, 4
    meta, q, g = _split(ids, per_id, queries_per_id=3)
    out = chance_level(meta, q, g, "camera", draws=60, seed=1)
    n = ids * per_id
    stderr = out["mAP"]["std"] / np.sqrt(60)
    assert out["mAP"]["mean"] == pytest.approx(100 * _expected_ap(n, per_id), abs=4 * stderr)
    assert out["R1"]["mean"] == pytest.approx(100 * per_id / n, abs=4 * out["R1"]["std"] / np.sqrt(60))
    assert out["mAP"]["n"] == 60 and out["mAP"]["std"] > 0


def test_chance_is_deterministic_and_needs_a_spread():
    meta, q, g = _split(5, 2, 1)
    assert chance_level(meta, q, g, "camera", draws=5, seed=3) == chance_level(meta, q, g, "camera", draws=5, seed=3)
    with pytest.raises(ValueError, match="draws = 1"):
        chance_level(meta, q, g, "camera", draws=1)


def test_a_profiles_split_and_the_cli(tmp_path, capsys):
    generate(tmp_path / "data", seed=0, size="tiny")
    report = split_chance_level("default", draws=3, data_root=tmp_path / "data")
    assert report["dataset"] == "RGBNT201" and report["draws"] == 3 and report["queries"] > 0
    assert 0 < report["metrics"]["mAP"]["mean"] < 100
    assert main(["default-vehicle", "--draws", "3", "--data-root", str(tmp_path / "data")]) == 0
    assert "default-vehicle (RGBNT100" in capsys.readouterr().out


def test_every_ablation_table_ends_with_the_chance_row(tmp_path):
    from test_tables import write_fake_results

    from mambapro import tables

    root = write_fake_results(tmp_path / "results")
    meta, q, g = _split(10, 2, 1)
    chance = {"profile": "default", "dataset": "RGBNT201", "draws": 4, "queries": int(q.size), "identities": 10,
              "gallery": int(g.size), "metrics": chance_level(meta, q, g, "camera", draws=4, seed=0)}
    built = {t.name: t for t in tables.build_tables(root, chance=chance)}
    for name in tables.ABLATION_TABLES:
        last = built[name].rows[-1]
        assert last["row"] == "chance" and last["seeds"] == 4
        assert last["last_mAP_mean"] == round(chance["metrics"]["mAP"]["mean"], 4)
        assert "| chance | random features | 4 |" in built[name].to_markdown()
    assert [r["metric"] for r in built["chance"].rows] == ["mAP", "R1", "R5", "R10", "mINP"]
    assert "chance" not in {t.name for t in tables.build_tables(root)}  # a build without a split says nothing
