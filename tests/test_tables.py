"""Tables: paper numbers transcribed faithfully (checked against paper.md), tables rebuilt from fake runs."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
from pathlib import Path

import pytest

from mambapro import paper_results, table_inputs, tables
from mambapro.config import TABLES
from mambapro.paper_results import PAPER_TABLES

# --------------------------------------------------------------------------------------------------------------
# paper_results against the text of paper.md


def _paper_md() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("MAMBAPRO_PAPER_MD", ""), root / "shared/reference/paper.md",
                  root.parent / "shared/reference/paper.md", "/work/shared/reference/paper.md"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def _parse_table(text: str, number: int) -> dict[str, list]:
    """Rows of paper.md's Table ``number``: the tab-separated lines between its "Methods" header and its caption;
    label = first cell (group names and check marks dropped), values = numbers, "-" -> None, other words kept."""
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    start = max(i for i in range(end) if "Methods" in lines[i].split("\t"))
    rows = {}
    for line in lines[start + 1:end]:
        cells = [re.sub(r"</?u>", "", c).strip() for c in line.split("\t")]
        cells = [c.replace("\\ddagger", "‡") for c in cells if c and c not in ("Single", "single", "Multi", "✓", "×")]
        if not cells or not any(re.fullmatch(r"-?\d+(\.\d+)?", c) for c in cells):
            continue
        values = [None if c == "-" else float(c) if re.fullmatch(r"-?\d+(\.\d+)?", c) else c for c in cells[1:]]
        rows[re.sub(r"\s+", " ", cells[0])] = values
    return rows


@pytest.mark.parametrize("name", list(PAPER_TABLES))
def test_paper_results_match_paper_md(name):
    path = _paper_md()
    if path is None:
        pytest.skip("paper.md not found (set MAMBAPRO_PAPER_MD)")
    table = PAPER_TABLES[name]
    parsed = _parse_table(path.read_text(), int(name.removeprefix("table")))
    assert table.source == f"paper.md Table {name.removeprefix('table')}"
    assert list(parsed) == table.labels
    for label, values in table.rows:
        assert parsed[label] == list(values), (name, label)


def test_paper_results_spot_checks():
    # values quoted in paper.md's prose
    assert paper_results.TABLE1.value("MambaPro ‡", "mAP") == 78.9  # "achieves a 78.9% mAP and 83.4% Rank-1"
    assert paper_results.TABLE1.value("TOP-ReID* (Wang et al. 2023)", "mAP") == 72.3
    assert paper_results.TABLE2.value("MambaPro ‡", "MSVR310/mAP") == 47.0
    assert paper_results.TABLE3.value("C", "params_M") / paper_results.TABLE3.value("B", "params_M") == \
        pytest.approx(0.329, abs=5e-4)  # "With 32.9% of the trainable parameters"
    assert paper_results.TABLE10.value("MambaPro", "mAP") - paper_results.TABLE10.value("TOP-ReID", "mAP") == \
        pytest.approx(5.4)
    assert paper_results.TABLE12.value("F", "mem_GB") == 38.01
    with pytest.raises(KeyError, match="rows: A, B"):
        paper_results.TABLE3.row("Z")


def test_ablation_row_labels_match_config_tables():
    for name in ("table3", "table4", "table5", "table6", "table8", "table9", "table11"):
        assert [label for label, _ in TABLES[name]] == PAPER_TABLES[name].labels
    assert PAPER_TABLES["table12"].labels == PAPER_TABLES["table3"].labels


# --------------------------------------------------------------------------------------------------------------
# Fake results


def _seed_metrics(index: int, seed: int) -> dict:
    base = 10.0 + index
    last = {"epoch": 4, "mAP": base + seed, "R1": base + 2 * seed + 1, "R5": base + 20, "R10": base + 30,
            "mINP": base - 5}
    best = {k: (v + 1.5 if k != "epoch" else 3) for k, v in last.items()}
    history = [{"epoch": e, "lr": 1e-3, "loss": 5.0 - e, "loss/ori": 2.0} for e in range(1, 5)]
    for h in history[1::2]:
        h.update({k: last[k] - (4 - h["epoch"]) for k in ("mAP", "R1", "R5", "R10", "mINP")})
    return {"seed": seed, "last": last, "best": best, "history": history}


def _summary(runs):
    out = {}
    for which in ("last", "best"):
        for k in ("mAP", "R1", "R5", "R10", "mINP"):
            vals = [r[which][k] for r in runs]
            out[f"{which}/{k}/mean"] = statistics.fmean(vals)
            out[f"{which}/{k}/std"] = statistics.stdev(vals)
    out["seeds"] = [r["seed"] for r in runs]
    return out


def write_fake_results(root: Path, profile: str = "default", dataset: str = "RGBNT201", memory: bool = False,
                       skip: tuple[str, ...] = ()) -> Path:
    presets = tables.needed_presets()
    for i, preset in enumerate(presets):
        if preset in skip:
            continue
        runs = [_seed_metrics(i, s) for s in (0, 1, 2)]
        if memory:
            for r, gb in zip(runs, (10.0, 12.5, 11.0)):
                r["peak_gpu_memory_gb"] = gb
        for run in runs:  # one file per seed, as the train@<preset>-<seed> stages write them
            data = {"preset": preset, "profile": profile, "config": {"data": {"dataset": dataset}}, **run}
            path = root / "runs" / preset / f"seed{run['seed']}" / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
    settings = ["full", *[f"missing_{k}" for k in ("r", "n", "t", "rn", "rt", "nt")], "rerank"]
    per_seed = {str(s): {st: {k: 50.0 + j + s for k in ("mAP", "R1", "R5", "R10", "mINP")}
                         for j, st in enumerate(settings)} for s in (0, 1)}
    (root / "evaluation").mkdir(parents=True, exist_ok=True)
    (root / "evaluation" / "F.json").write_text(json.dumps({"preset": "F", "per_seed": per_seed}))
    rows = [("table3", "F", "F", "params", 74.174976, 74.20), ("table3", "B", "B", "params", 86.14, 86.14),
            ("table4", "CLIP(L) + IP", "prompt-ip", "flops", 0.09, 0.09),
            ("table4", "CLIP(L) + IP", "prompt-ip", "params", 0.01, 0.01),
            ("table6", "MA", "F", "flops", 1.41, 1.42), ("table6", "MA", "F", "params", 9.47, 9.47)]
    with (root / "complexity.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "row", "preset", "quantity", "unit", "paper", "ours", "ours_exact", "difference",
                    "note"])
        for t, r, p, q, ours, paper in rows:
            w.writerow([t, r, p, q, "M" if q == "params" else "G", paper, round(ours, 2), ours,
                        round(ours - paper, 2), ""])
    return root


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_fake_results(tmp_path_factory.mktemp("results"))
    out = root / "tables"
    written = tables.build_all_tables(root, out)
    return root, out, written


def test_build_all_tables_writes_every_table(built):
    root, out, written = built
    names = {p.name for p in written}
    for name in ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8", "table9",
                 "table11", "missing_modality", "rerank", "complexity", *tables.CURVE_KEYS):
        assert f"{name}.csv" in names and f"{name}.md" in names
    assert "table12.csv" not in names  # person / default profile
    assert all(p.stat().st_size > 0 for p in written)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_ablation_values_are_mean_and_std_over_seeds(built):
    root, out, _ = built
    i = tables.needed_presets().index("F")
    runs = [_seed_metrics(i, s) for s in (0, 1, 2)]
    row = next(r for r in _read_csv(out / "table3.csv") if r["row"] == "F")
    assert float(row["last_mAP_mean"]) == pytest.approx(statistics.fmean(r["last"]["mAP"] for r in runs))
    assert float(row["last_mAP_std"]) == pytest.approx(statistics.stdev(r["last"]["mAP"] for r in runs), abs=1e-4)
    assert float(row["best_R1_mean"]) == pytest.approx(statistics.fmean(r["best"]["R1"] for r in runs))
    assert row["seeds"] == "3"
    # paper values beside ours, complexity from complexity.csv, memory not measured on the CPU
    assert float(row["paper_mAP"]) == 78.9 and float(row["paper_mem_GB"]) == 20.89
    assert float(row["ours_params_M"]) == 74.17
    assert row["ours_mem_GB"] == tables.NOT_MEASURED
    md = (out / "table3.md").read_text()
    assert "best epoch on test (paper protocol)" in md
    assert f"{statistics.fmean(r['last']['mAP'] for r in runs):.1f} ± " in md
    assert tables.NOT_COMPUTED in md  # rows A, C, D, E, G have no entry in the fake complexity.csv
    t4 = next(r for r in _read_csv(out / "table4.csv") if r["row"] == "CLIP(L) + IP")
    assert float(t4["ours_flops_G"]) == 0.09 and float(t4["paper_flops_G"]) == 0.09
    t5 = next(r for r in _read_csv(out / "table5.csv") if r["row"] == "CLIP(L) + PFA")  # not in complexity.csv
    assert t5["ours_params_M"] == "" and float(t5["paper_params_M"]) == 2.36
    assert "| CLIP(L) + PFA | C | not in complexity.csv | 2.36 | not in complexity.csv | 0.30 | not measured |" in \
        (out / "table5.md").read_text()


def test_comparison_tables_place_our_row(built):
    root, out, _ = built
    rows = _read_csv(out / "table1.csv")
    assert [r["method"] for r in rows[:len(PAPER_TABLES["table1"].rows)]] == PAPER_TABLES["table1"].labels
    assert all(r["source"] == "paper.md Table 1" for r in rows[:-2])
    ours = rows[-1]
    assert "best epoch on test (paper protocol)" in ours["method"] and "metrics.json" in ours["source"]
    assert float(ours["mAP"]) == pytest.approx(
        statistics.fmean(_seed_metrics(tables.needed_presets().index("F"), s)["best"]["mAP"] for s in (0, 1, 2)))
    t2 = _read_csv(out / "table2.csv")[-1]  # our run is on RGBNT201: no Table 2 column applies
    assert t2["RGBNT100/mAP"] == "" and t2["MSVR310/mAP"] == ""
    t7 = _read_csv(out / "table7.csv")[-1]
    assert float(t7["params_M"]) == 74.17 and t7["RGBNT201/mAP"] != "" and t7["RGBNT100/mAP"] == ""


def test_missing_modality_and_rerank(built):
    _, out, _ = built
    rows = _read_csv(out / "missing_modality.csv")
    assert [r["setting"] for r in rows] == ["full", "missing_r", "missing_n", "missing_t", "missing_rn",
                                            "missing_rt", "missing_nt"]
    assert rows[4]["missing"] == "RGB + NIR" and rows[4]["available"] == "TIR"
    assert float(rows[1]["mAP_mean"]) == pytest.approx(51.5)  # seeds 0, 1: 51, 52
    assert float(rows[1]["mAP_std"]) == pytest.approx(statistics.stdev([51, 52]), abs=1e-4)
    rr = _read_csv(out / "rerank.csv")
    assert [r["setting"] for r in rr] == ["full", "rerank"] and float(rr[1]["mAP_mean"]) == pytest.approx(57.5)


def test_complexity_comparison_has_difference(built):
    _, out, _ = built
    rows = _read_csv(out / "complexity.csv")
    f = next(r for r in rows if r["table"] == "table3" and r["row"] == "F")
    assert float(f["difference"]) == pytest.approx(-0.025) and f["quantity"] == "params_M"  # from ours_exact
    assert len(rows) == 6


def test_curve_data_follows_config_tables(built):
    root, out, _ = built
    points = tables.curve_data("fig9d_ma_blocks", root)
    assert [p["label"] for p in points] == ["1", "2", "3", "4"]
    assert [p["preset"] for p in points] == ["mablocks-1", "F", "mablocks-3", "mablocks-4"]
    assert points[1]["seeds"] == 3 and points[1]["best_mAP_std"] > 0
    assert [r["label"] for r in _read_csv(out / "fig8_dtrank.csv")] == ["4", "default", "16", "64"]


def test_normal_init_prompt_length_curve(built):
    """Fig. 9a under the paper's random prompt initialisation: its own points, compared with plen-4-normal (same
    initialisation, F's length); the official zero-init curve stays compared with F."""
    root, out, _ = built
    presets = tables.needed_presets()
    points = tables.curve_data("fig9a_prompt_length_normal", root)
    assert [(p["label"], p["preset"]) for p in points] == [("2", "plen-2-normal"), ("4", "plen-4-normal"),
                                                          ("8", "plen-8-normal"), ("16", "plen-16-normal")]
    assert all(p["reference"] == "plen-4-normal" and p["seeds"] == 3 for p in points)
    assert points[1]["last_mAP_vs_reference"] is None and points[1]["best_mAP_vs_reference"] is None
    gap = presets.index("plen-16-normal") - presets.index("plen-4-normal")  # fake mAP = 10 + index + seed
    assert points[3]["last_mAP_vs_reference"] == pytest.approx(gap)
    assert points[3]["last_mAP_beyond_noise"] == (abs(gap) >= 3)
    assert [p["reference"] for p in tables.curve_data("fig9a_prompt_length", root)] == ["F"] * 4
    md = (out / "fig9a_prompt_length_normal.md").read_text()
    assert "mAP (last) − plen-4-normal" in md and "mAP − plen-4-normal: difference of the seed means" in md
    assert "randomly initialised (prompt.init normal)" in md
    assert "| 4 | plen-4-normal | 3 |" in md and f"| {gap:+.1f}" in md
    zero = (out / "fig9a_prompt_length.md").read_text()
    assert "mAP (last) − F" in zero and "one token repeated N_pr times" in zero
    assert [r["preset"] for r in _read_csv(out / "fig9a_prompt_length_normal.csv")] == [p["preset"] for p in points]


def test_normal_init_curve_with_missing_runs(built):
    root, _, _ = built
    metrics = {"plen-8-normal": None}
    points = {p["preset"]: p for p in tables.curve_data("fig9a_prompt_length_normal", root, metrics)}
    assert points["plen-8-normal"]["seeds"] == 0 and points["plen-8-normal"]["last_mAP_mean"] is None
    assert points["plen-8-normal"]["last_mAP_vs_reference"] is None
    md = tables.curve_table("fig9a_prompt_length_normal", list(points.values())).sections[0][2]
    assert md[2][:5] == ["8", "plen-8-normal", "0", tables.NOT_RUN, tables.NOT_RUN]
    no_reference = tables.curve_data("fig9a_prompt_length_normal", root, {"plen-4-normal": None})
    assert [p["last_mAP_vs_reference"] for p in no_reference] == [None] * 4  # nothing to compare with
    assert no_reference[0]["last_mAP_mean"] is not None


def test_missing_run_fails_naming_preset_and_path(tmp_path):
    root = write_fake_results(tmp_path, skip=("agg-concat", "plen-8"))
    out = tmp_path / "tables"
    with pytest.raises(tables.MissingResultError) as err:
        tables.build_all_tables(root, out)
    msg = str(err.value)
    assert "'agg-concat'" in msg and "'plen-8'" in msg
    assert str(root / "runs" / "agg-concat" / "seed*" / "metrics.json") in msg
    assert not out.exists()  # nothing partial
    (root / "evaluation" / "F.json").unlink()
    with pytest.raises(tables.MissingResultError, match="evaluation of preset 'F'"):
        tables.build_all_tables(root, out)


def test_profile_clash_and_vehicle_table12(tmp_path):
    root = write_fake_results(tmp_path / "a", profile="rgbnt100", dataset="RGBNT100", memory=True)
    with pytest.raises(tables.ResultFormatError, match="profile 'rgbnt201'"):
        tables.build_tables(root, profile="rgbnt201")
    written = tables.build_all_tables(root, root / "tables")
    assert "table12.csv" in {p.name for p in written}
    f = next(r for r in _read_csv(root / "tables" / "table12.csv") if r["row"] == "F")
    assert float(f["paper_mAP"]) == 83.9 and float(f["paper_mem_GB"]) == 38.01
    assert float(f["ours_mem_GB"]) == 12.5  # max over seeds
    assert float(f["ours_params_M"]) == 74.17  # Table 12 repeats Table 3's counts
    t2 = _read_csv(root / "tables" / "table2.csv")[-1]
    assert t2["RGBNT100/mAP"] != "" and t2["MSVR310/mAP"] == ""


@pytest.mark.parametrize(("profile", "dataset", "table12"), [
    ("default-vehicle", "RGBNT100", True), ("msvr310", "MSVR310", True), ("default", "RGBNT201", False),
    ("bare", "RGBNT201", False)])
def test_table12_follows_the_profiles_dataset(tmp_path, profile, dataset, table12):
    """Vehicle or person comes from the profile's dataset (config.object_kind), not from a list of profile names
    (the old list had rgbnt100 and msvr310 only: default-vehicle's own runs got no Table 12)."""
    root = write_fake_results(tmp_path, profile=profile, dataset=dataset)
    assert ("table12" in {t.name for t in tables.build_tables(root, profile=profile)}) is table12


def test_complexity_csv_read_defensively(tmp_path):
    path = tmp_path / "complexity.csv"
    path.write_text("table,row,quantity,paper\ntable3,F,params,74.2\n")
    with pytest.raises(tables.ResultFormatError, match=r"complexity.csv: missing column\(s\) ours"):
        table_inputs.load_complexity(path)
    path.write_text("table,row,quantity,ours,paper\ntable3,F,volume,1,2\n")
    with pytest.raises(tables.ResultFormatError, match="line 2: quantity 'volume'"):
        table_inputs.load_complexity(path)
    path.write_text("table,row,quantity,ours,paper\ntable3,F,params,n/a,2\n")
    with pytest.raises(tables.ResultFormatError, match="line 2: column 'ours' = 'n/a'"):
        table_inputs.load_complexity(path)
    path.write_text("table,row,quantity,ours,paper\ntable3,F,params_M,74.17,74.2\ntable6,MA,flops_G,1.41,1.42\n")
    assert table_inputs.load_complexity(path)[("table6", "MA", "flops_G")]["ours"] == 1.41
    with pytest.raises(tables.MissingResultError, match="mambapro.complexity"):
        table_inputs.load_complexity(tmp_path / "nope.csv")


def _split(root: Path, folder: str) -> None:
    """A tiny synthetic test split where the profile's data.root points (the tables measure its chance level)."""
    from mambapro.data.synthetic import generate

    generate(root / folder, seed=0, size="tiny")


def test_cli(tmp_path, capsys, monkeypatch):
    root = write_fake_results(tmp_path / "results" / "default")
    _split(tmp_path, "data/synthetic")
    (root / "complexity.csv").rename(tmp_path / "results" / "complexity.csv")  # profile-independent
    monkeypatch.chdir(tmp_path)
    tables.main(["default"])
    assert "wrote" in capsys.readouterr().out
    assert (root / "tables" / "table9.md").read_text().startswith("# Table 9:")
    assert "| chance | random features | 50 |" in (root / "tables" / "table9.md").read_text()
    assert (root / "tables" / "chance.md").is_file()


# --------------------------------------------------------------------------------------------------------------
# Partial builds (smoke tests that train a few presets only, e.g. .ci/paper_smoke)


def test_partial_build_writes_not_run_rows_and_the_run_list(tmp_path):
    only = ("F", "mablocks-3")
    root = write_fake_results(tmp_path, profile="rgbnt100", dataset="RGBNT100",
                              skip=tuple(p for p in tables.needed_presets() if p not in only))
    with pytest.raises(tables.MissingResultError, match="'A'"):  # the default stays strict
        tables.build_all_tables(root, root / "tables")
    names = {p.name for p in tables.build_all_tables(root, root / "tables", partial=True)}
    assert {"table3.md", "table12.csv", "table1.md", "missing_modality.csv", "runs.md", "fig9d_ma_blocks.md"} <= names
    t3 = {r["row"]: r for r in _read_csv(root / "tables" / "table3.csv")}
    assert t3["A"]["seeds"] == "0" and t3["A"]["last_mAP_mean"] == "" and t3["A"]["ours_mem_GB"] == tables.NOT_RUN
    assert t3["F"]["seeds"] == "3" and float(t3["F"]["last_mAP_mean"]) > 0
    md = (root / "tables" / "table3.md").read_text()
    assert "| A | A | 0 | not run | not run |" in md and "Partial build: no runs of preset(s) A, B, C, D, E, G" in md
    assert "not run" not in next(line for line in md.splitlines() if line.startswith("| F | F | 3 |"))
    t12 = {r["row"]: r for r in _read_csv(root / "tables" / "table12.csv")}
    assert t12["F"]["last_mAP_mean"] != "" and t12["B"]["seeds"] == "0"
    t2 = _read_csv(root / "tables" / "table2.csv")[-1]  # our row, in the RGBNT100 columns
    assert t2["RGBNT100/mAP"] != "" and t2["MSVR310/mAP"] == ""
    curve = {r["label"]: r for r in _read_csv(root / "tables" / "fig9d_ma_blocks.csv")}
    assert curve["1"]["seeds"] == "0" and curve["3"]["seeds"] == "3" and curve["1"]["last_mAP_mean"] == ""
    runs = {r["run"]: r for r in _read_csv(root / "tables" / "runs.csv")}
    assert runs["train A"]["seeds"] == tables.NOT_RUN and runs["train F"]["seeds"] == "0 1 2"
    assert runs["evaluate F"]["seeds"] == "all"
    assert len(runs) == len(tables.needed_presets()) + 1
    assert f"3 of {len(runs)} runs present" in (root / "tables" / "runs.md").read_text()  # F, mablocks-3, eval


def test_partial_build_without_evaluation_or_f(tmp_path):
    root = write_fake_results(tmp_path, skip=tuple(p for p in tables.needed_presets() if p != "agg-sum"))
    (root / "evaluation" / "F.json").unlink()
    names = {p.name for p in tables.build_all_tables(root, root / "tables", partial=True)}
    assert "missing_modality.md" not in names and "rerank.md" not in names and "table6.md" in names
    runs = {r["run"]: r["seeds"] for r in _read_csv(root / "tables" / "runs.csv")}
    assert runs["evaluate F"] == tables.NOT_RUN and runs["train agg-sum"] == "0 1 2"
    t1 = (root / "tables" / "table1.md").read_text()
    ours = [line for line in t1.splitlines() if line.startswith("| Ours")]
    assert len(ours) == 2 and all("| not run |" in line for line in ours)
    assert "Partial build: no runs of preset(s) F" in t1
    for path in (root / "runs").glob("agg-sum/seed*/metrics.json"):
        path.unlink()
    with pytest.raises(tables.MissingResultError, match="cannot build the tables"):  # no run at all
        tables.build_all_tables(root, root / "tables2", partial=True)


def test_partial_vehicle_table12_and_cli(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "results" / "rgbnt201" / "vehicle"
    write_fake_results(folder, profile="rgbnt100", dataset="RGBNT100",
                       skip=tuple(p for p in tables.needed_presets() if p != "F"))
    (folder / "complexity.csv").rename(tmp_path / "results" / "complexity.csv")
    _split(tmp_path, "data")
    with pytest.raises(tables.MissingResultError, match="vehicle runs missing"):
        tables.build_vehicle_tables("rgbnt201", "rgbnt100", tmp_path)
    written = tables.build_vehicle_tables("rgbnt201", "rgbnt100", tmp_path, partial=True)
    assert sorted(p.name for p in written) == ["chance.csv", "chance.md", "noise.csv", "noise.md", "runs.csv",
                                              "runs.md", "table12.csv", "table12.md"]
    t12 = {r["row"]: r for r in _read_csv(folder / "tables" / "table12.csv")}
    assert t12["F"]["seeds"] == "3" and t12["A"]["seeds"] == "0" and float(t12["F"]["paper_mAP"]) == 83.9
    assert "evaluate F" not in (folder / "tables" / "runs.md").read_text()
    # the command line: --partial
    person = write_fake_results(tmp_path / "results" / "rgbnt201", profile="rgbnt201",
                                skip=tuple(p for p in tables.needed_presets() if p != "F"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tables.MissingResultError):
        tables.main(["rgbnt201"])
    tables.main(["rgbnt201", "--partial"])
    assert "wrote" in capsys.readouterr().out and (person / "tables" / "runs.md").is_file()


# --------------------------------------------------------------------------------------------------------------
# Differences from F against the noise (issue 13)


def _runs(values, with_interval: bool = False):
    runs = []
    for seed, v in enumerate(values):
        last = {"epoch": 25, "mAP": v, "R1": v, "R5": v, "R10": v, "mINP": v}
        if with_interval:
            last.update(mAP_ci95_lo=v - 1.5, mAP_ci95_hi=v + 2.5)
        runs.append({"seed": seed, "last": last, "best": dict(last)})
    return {"runs": runs, "summary": _summary(runs) if len(runs) > 1 else {}}


def test_versus_reference_is_welchs_t_test():
    from scipy.stats import t as student_t

    a, b = [50.0, 51.0, 52.5], [45.0, 46.5, 47.0]
    vs = table_inputs.versus_reference(_runs(a), _runs(b))
    va, vb = statistics.variance(a), statistics.variance(b)  # Welch: unequal variances, Satterthwaite's df
    se2 = va / 3 + vb / 3
    t = (statistics.fmean(a) - statistics.fmean(b)) / se2 ** 0.5
    df = se2 ** 2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2)
    assert vs["delta"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert vs["p"] == pytest.approx(2 * student_t.sf(abs(t), df)) and vs["p"] < 0.05 and vs["beyond_noise"]
    close = table_inputs.versus_reference(_runs([50.0, 51.0, 52.0]), _runs([49.5, 50.5, 51.5]))
    assert close["p"] > 0.5 and not close["beyond_noise"]
    one_seed = table_inputs.versus_reference(_runs([60.0]), _runs(b))
    assert one_seed["p"] is None and not one_seed["beyond_noise"]  # no seed spread to compare with


def test_evaluation_noise_is_the_mean_bootstrap_half_width():
    assert table_inputs.evaluation_noise(_runs([50.0, 52.0], with_interval=True)) == pytest.approx(2.0)
    assert table_inputs.evaluation_noise(_runs([50.0, 52.0])) is None  # runs written before the interval was recorded


def test_noise_table_and_curves_compare_with_f(built):
    root, out, _ = built
    rows = {r["preset"]: r for r in _read_csv(out / "noise.csv")}
    presets = tables.needed_presets()
    i_f = presets.index("F")
    assert set(rows) == set(presets) and rows["F"]["delta_vs_F"] == ""
    for preset in ("A", "G", "dstate-4"):  # fake mAP = 10 + index + seed: F's spread, shifted by the index gap
        assert float(rows[preset]["delta_vs_F"]) == pytest.approx(presets.index(preset) - i_f)
        assert rows[preset]["beyond_noise"] == str(abs(presets.index(preset) - i_f) >= 3)
    assert "**" in (out / "noise.md").read_text()  # the differences beyond the noise are bold
    points = {p["preset"]: p for p in tables.curve_data("fig8_dstate", root)}
    assert points["F"]["last_mAP_vs_reference"] is None and points["dstate-4"]["reference"] == "F"
    assert points["dstate-4"]["last_mAP_vs_reference"] == pytest.approx(presets.index("dstate-4") - i_f)
    assert points["dstate-4"]["last_mAP_beyond_noise"] == (abs(presets.index("dstate-4") - i_f) >= 3)


def test_quick_tables_need_table3_runs_only(tmp_path):
    folder = tmp_path / "results" / "default"
    keep = {p for _, p in TABLES["table3"]}
    write_fake_results(folder, skip=tuple(p for p in tables.needed_presets() if p not in keep))
    (folder / "complexity.csv").rename(tmp_path / "results" / "complexity.csv")
    _split(tmp_path, "data/synthetic")
    written = tables.build_quick_tables("default", tmp_path)
    assert sorted(p.name for p in written) == ["chance.csv", "chance.md", "complexity.csv", "complexity.md",
                                              "noise.csv", "noise.md", "table3.csv", "table3.md"]
    assert all(p.parent == folder / "quick" for p in written)
    assert [r["preset"] for r in _read_csv(folder / "quick" / "noise.csv")] == list("ABCDEFG")
