"""Every table of the paper, rebuilt from the pipeline's results (CSV + Markdown per table, written atomically).

Inputs (a profile's results folder, :mod:`mambapro.results`; read and summarised over seeds by
:mod:`mambapro.table_inputs`):

* ``runs/<preset>/seed<k>/metrics.json`` (:func:`mambapro.pipeline.train_run`, one file per seed): last- and
  best-epoch metrics;
* ``evaluation/F.json`` (:func:`mambapro.pipeline.evaluate_preset`): missing modalities and re-ranking;
* ``results/complexity.csv`` (``python -m mambapro.complexity``): parameters and FLOPs at paper scale, counted on
  the CPU;
* the test split itself (``data.root`` of the profile; :func:`mambapro.chance.split_chance_level`): its chance
  level, random features' scores, measured when the tables are built: the last row of every ablation table and
  ``chance.{csv,md}``.

Ablation tables (3, 4, 5, 6, 8, 9, 11; 12 from a vehicle profile's own runs, or from a person profile's vehicle
runs; vehicle or person: :func:`mambapro.config.object_kind`): mAP and Rank-1/5/10 as mean ± standard deviation
over seeds, both at the last epoch and at the best epoch on the test set (the paper's protocol,
official-implementation.md sec. 10 item 12), beside our complexity numbers and the paper's reported values
(:mod:`mambapro.paper_results`).  GPU memory is shown where a GPU measured it: the optional ``peak_gpu_memory_gb``
of each run in ``metrics.json`` (maximum over seeds), otherwise "not measured".  Tables 1, 2 and 7 put our full model
(preset F) beside the paper's rows, each row marked with its source.  Also: a missing-modality table (six settings +
full), a re-ranking table, a paper-vs-ours table of every complexity number, and the data of the Fig. 8 / Fig. 9
curves, and ``noise``: every preset's difference from F beside its seed noise and its evaluation noise
(:func:`mambapro.table_inputs.versus_reference`; the Fig. 8 / 9 curve data carry the same test, against F or, for
Fig. 9a under the paper's random prompt initialisation, against its N_pr = 4 point: :data:`CURVE_REFERENCES`).  A run
that a table needs and that is missing stops everything before any file is written (the error names the preset and the
path expected), unless the build is *partial* (``partial=True``, ``--partial``: smoke tests that train a few presets
only): rows without runs then say "not run", the missing-modality and re-ranking tables are left out when
``evaluation/F.json`` is missing, and ``runs.{csv,md}`` lists every run the tables need with its seeds or "not run".

``python -m mambapro.tables <profile>`` builds all of them into ``results/<profile>/tables``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mambapro.chance import split_chance_level
from mambapro.config import MISSING_SETTINGS, TABLES, object_kind
from mambapro.paper_results import PaperTable, paper_table
from mambapro.results import (
    MissingResultError,
    ResultFormatError,
    evaluation_path,
    load_metrics,
    metrics_path,
    results_dir,
    seed_metrics_files,
    vehicle_namespace,
)
from mambapro.table_format import Table, fmt, fmt_stat, write_tables
from mambapro.table_inputs import (
    MEMORY_KEY,
    NOISE_ALPHA,
    OURS_PRESET,
    evaluation_noise,
    evaluation_stat,
    gpu_memory,
    load_complexity,
    load_evaluation,
    num_seeds,
    stat,
    versus_f,
    versus_reference,
)

METRICS = ("mAP", "R1", "R5", "R10")
METRIC_NAMES = {"mAP": "mAP", "R1": "R-1", "R5": "R-5", "R10": "R-10", "mINP": "mINP"}
WHICH = {"last": "last epoch", "best": "best epoch on test (paper protocol)"}
ABLATION_TABLES = ("table3", "table4", "table5", "table6", "table8", "table9", "table11")
CURVE_KEYS = tuple(k for k in TABLES if k.startswith(("fig8_", "fig9")))
# Each curve's point of comparison ("mAP − reference"): preset F, except the normal-init prompt-length curve, whose
# points are compared with its own N_pr = 4 (F's length, same initialisation) so that only the length differs.
CURVE_REFERENCES = {"fig9a_prompt_length_normal": "plen-4-normal"}
CURVE_NOTES = {
    "fig9a_prompt_length": (
        "Prompts zero-initialised, as in the official code and F: a slot's N_pr prompts get identical gradients and "
        "stay one token repeated N_pr times, so N_pr only scales that token's attention weight "
        "(fig9a_prompt_length_normal: the paper's random initialisation)."),
    "fig9a_prompt_length_normal": (
        "Prompts randomly initialised (prompt.init normal), as the paper says: N_pr distinct tokens "
        "(fig9a_prompt_length: the official zero initialisation, F's)."),
}
NOT_MEASURED = "not measured"
NOT_COMPUTED = "not in complexity.csv"
NOT_RUN = "not run"  # a partial build's rows without runs
MODALITY_NAMES = {"RGB": "RGB", "NI": "NIR", "TI": "TIR"}
QUICK_PRESETS = [p for _, p in TABLES["table3"]]  # the quick tier: Table 3's rows A-G


def _run(metrics: dict[str, dict | None] | None, results: str | Path, preset: str) -> dict | None:
    """``preset``'s runs: ``metrics[preset]`` when given (None: not run, in a partial build), else loaded."""
    if metrics is not None and preset in metrics:
        return metrics[preset]
    return load_metrics(results, preset)


def _partial_note(presets: Iterable[str]) -> list[str]:
    missing = list(dict.fromkeys(presets))
    if not missing:
        return []
    return [f"Partial build: no runs of preset(s) {', '.join(missing)}; their rows say '{NOT_RUN}' (runs.md lists "
            "every run these tables need)."]


# --------------------------------------------------------------------------------------------------------------
# Tables


def _complexity_table(name: str) -> str:
    """complexity.csv's table key for table ``name`` (Table 12 repeats Table 3's counts, paper Table 12)."""
    return "table3" if name == "table12" else name


def ablation_table(name: str, results: str | Path, complexity: dict, profile: str,
                   metrics: dict[str, dict] | None = None, chance: dict | None = None) -> Table:
    """Table ``name`` (a key of :data:`mambapro.config.TABLES`, or "table12" = Table 3's rows on a vehicle dataset)
    from the runs, beside our complexity numbers and the paper's reported values."""
    rows_spec = TABLES["table3" if name == "table12" else name]
    paper = paper_table(name)
    ctable = _complexity_table(name)
    metrics = metrics if metrics is not None else {}
    paper_cols = [c for c in paper.columns if c in (*METRICS, "mem_GB", "params_M", "flops_G")]
    quantities = [q for q in ("params_M", "flops_G")
                  if q in paper_cols or any(k[0] == ctable and k[2] == q for k in complexity)]

    columns = ["row", "preset", "seeds"]
    for which in WHICH:
        columns += [f"{which}_{m}_{s}" for m in METRICS for s in ("mean", "std")]
    columns += [f"ours_{q}" for q in quantities] + ["ours_mem_GB"] + [f"paper_{c}" for c in paper_cols]

    rows, perf_md, cost_md, not_run = [], [], [], []
    for label, preset in rows_spec:
        run = _run(metrics, results, preset)
        paper_row = paper.row(label) if label in paper.labels else {}
        row: dict[str, Any] = {"row": label, "preset": preset, "seeds": 0 if run is None else num_seeds(run)}
        perf = [label, preset, str(row["seeds"])]
        if run is None:
            not_run.append(preset)
        for which in WHICH:
            for m in METRICS:
                if run is None:
                    row[f"{which}_{m}_mean"] = row[f"{which}_{m}_std"] = None
                    perf.append(NOT_RUN)
                    continue
                mean, std = stat(run, which, m)
                row[f"{which}_{m}_mean"], row[f"{which}_{m}_std"] = round(mean, 4), round(std, 4)
                perf.append(fmt_stat(mean, std))
        perf += [fmt(paper_row.get(m)) for m in METRICS]
        cost = [label, preset]
        for q in quantities:
            entry = complexity.get((ctable, label, q))
            row[f"ours_{q}"] = None if entry is None else entry["ours"]
            cost += [NOT_COMPUTED if entry is None else fmt(entry["ours"], 2)]
            if q in paper_cols:
                cost.append(fmt(paper_row.get(q), 2))
        mem = None if run is None else gpu_memory(run)
        row["ours_mem_GB"] = mem if mem is not None else NOT_RUN if run is None else NOT_MEASURED
        cost.append(fmt(mem, 2) if mem is not None else row["ours_mem_GB"])
        if "mem_GB" in paper_cols:
            cost.append(fmt(paper_row.get("mem_GB"), 2))
        for c in paper_cols:
            row[f"paper_{c}"] = paper_row.get(c)
        rows.append(row)
        perf_md.append(perf)
        cost_md.append(cost)
    if chance is not None:
        row, perf = _chance_row(chance, columns)
        rows.append(row)
        perf_md.append(perf)

    perf_header = ["Row", "Preset", "Seeds"]
    perf_header += [f"{METRIC_NAMES[m]} (last)" for m in METRICS] + [f"{METRIC_NAMES[m]} (best)" for m in METRICS]
    perf_header += [f"{METRIC_NAMES[m]} (paper)" for m in METRICS]
    unit = {"params_M": "Params (M)", "flops_G": "FLOPs (G)"}
    cost_header = ["Row", "Preset"]
    for q in quantities:
        cost_header.append(f"{unit[q]} ours")
        if q in paper_cols:
            cost_header.append(f"{unit[q]} paper")
    cost_header.append("Mem (GB) ours")
    if "mem_GB" in paper_cols:
        cost_header.append("Mem (GB) paper")
    number = name.replace("table", "Table ")
    table = Table(name, f"{number}: {paper.caption}", columns, rows)
    table.sections.append((f"Retrieval (%): ours, mean ± std over seeds (last = last epoch; best = {WHICH['best']}); "
                           f"paper ({paper.dataset}, {paper.source})", perf_header, perf_md))
    table.sections.append(("Complexity: ours (Params / FLOPs at paper scale, counted on the CPU; Mem where a GPU "
                           "measured it) vs paper", cost_header, cost_md))
    table.notes += _protocol_notes(profile, paper)
    if chance is not None:
        table.notes.append(f"Chance: {CHANCE_LABEL}, mean ± std over {chance['draws']} draws of i.i.d. Gaussian "
                           f"features on the same test split ({chance['queries']} queries, {chance['identities']} "
                           f"identities; `chance.md`, mambapro.chance).")
    if quantities:
        table.notes.append(f"Params / FLOPs: `complexity.csv` ({_complexity_convention(ctable)}).")
    table.notes.append(f"Mem: peak GPU memory of training where a GPU measured it ('{MEMORY_KEY}' in metrics.json); "
                       f"'{NOT_MEASURED}' otherwise.")
    table.notes += _partial_note(not_run)
    return table


CHANCE_LABEL = "random features"


def _chance_row(chance: dict[str, Any], columns: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The chance row of an ablation table: the same value under last and best (no training, no selection)."""
    row: dict[str, Any] = dict.fromkeys(columns)
    row.update(row="chance", preset=CHANCE_LABEL, seeds=chance["draws"])
    perf = ["chance", CHANCE_LABEL, str(chance["draws"])]
    for which in WHICH:
        for m in METRICS:
            s = chance["metrics"][m]
            row[f"{which}_{m}_mean"], row[f"{which}_{m}_std"] = round(s["mean"], 4), round(s["std"], 4)
            perf.append(fmt_stat(s["mean"], s["std"]))
    return row, perf + [fmt(None)] * len(METRICS)


def chance_table(chance: dict[str, Any]) -> Table:
    """The test split's chance level on its own: every metric's mean ± std over the random draws."""
    keys = list(chance["metrics"])
    rows = [{"metric": k, "mean": round(v["mean"], 4), "std": round(v["std"], 4), "draws": v["n"]}
            for k, v in chance["metrics"].items()]
    md = [[METRIC_NAMES[k], fmt_stat(chance["metrics"][k]["mean"], chance["metrics"][k]["std"], 2)] for k in keys]
    return Table("chance", f"Chance level of the test split ({chance['dataset']}, profile {chance['profile']})",
                 ["metric", "mean", "std", "draws"], rows, [("", ["Metric (%)", "Random features"], md)],
                 [f"{chance['draws']} draws of i.i.d. Gaussian features scored like a model's (same queries, gallery "
                  f"and camera / scene filtering: {chance['queries']} queries of {chance['identities']} identities, "
                  f"{chance['gallery']} gallery samples); mambapro.chance."])


def _complexity_convention(ctable: str) -> str:
    return {"table3": "whole model, added modules only", "table4": "one layer, three modalities",
            "table5": "one layer, one modality", "table6": "one aggregation block + reductions",
            "table11": "one aggregation block + reductions"}.get(ctable, "paper convention")


def _protocol_notes(profile: str, paper: PaperTable) -> list[str]:
    notes = ["last = final epoch; best = best epoch on test (paper protocol: the model is selected on the test set, "
             "official-implementation.md sec. 10 item 12), so 'best' is optimistic.",
             f"Ours: profile '{profile}'. Paper: {paper.source}, dataset {paper.dataset}."]
    if profile == "default":
        notes.append("The default profile trains a tiny model on the synthetic benchmark: compare trends between "
                     "rows with the paper, not absolute values.")
    return notes


def _our_dataset(run: dict[str, Any]) -> str:
    return run.get("config", {}).get("data", {}).get("dataset", "?")


def comparison_table(name: str, results: str | Path, complexity: dict, profile: str,
                     metrics: dict[str, dict] | None = None) -> Table:
    """Table 1, 2 or 7: the paper's rows (source: paper.md) and our full model (preset F, last and best epoch)
    placed in the columns of the dataset it was trained on."""
    paper = paper_table(name)
    run = _run(metrics, results, OURS_PRESET)
    dataset = None if run is None else _our_dataset(run)
    params = complexity.get(("table3", OURS_PRESET, "params_M"))
    rows = [{"method": label, "source": paper.source, **dict(zip(paper.columns, values))}
            for label, values in paper.rows]
    src = f"{metrics_path(results, OURS_PRESET)} (profile {profile}, {dataset or NOT_RUN})"
    for which in WHICH:
        row = {"method": f"Ours: MambaPro, {WHICH[which]}", "source": src}
        for col in paper.columns:
            ds, _, metric = col.rpartition("/")
            if col == "params_M":
                row[col] = None if params is None else params["ours"]
            elif run is None and metric in METRICS:
                row[col] = NOT_RUN
            elif metric in METRICS and (not ds and paper.dataset == dataset or ds == dataset):
                row[col] = stat(run, which, metric)
            else:
                row[col] = None
        rows.append(row)

    header = ["Method", "Source", *[_col_name(c) for c in paper.columns]]
    md = []
    for row in rows:
        cells = [row["method"], row["source"]]
        for c in paper.columns:
            v = row[c]
            digits = 2 if c == "params_M" else 1
            cells.append(fmt_stat(*v) if isinstance(v, tuple) else fmt(v, digits))
        md.append(cells)
    csv_rows = []
    for row in rows:
        flat = {"method": row["method"], "source": row["source"]}
        for c in paper.columns:
            v = row[c]
            flat[c] = round(v[0], 4) if isinstance(v, tuple) else None if v == NOT_RUN else v
            flat[f"{c} std"] = round(v[1], 4) if isinstance(v, tuple) else None
        csv_rows.append(flat)
    csv_cols = ["method", "source"] + [x for c in paper.columns for x in (c, f"{c} std")]
    ours = NOT_RUN if run is None else f"mean ± std over {num_seeds(run)} seeds"
    table = Table(name, f"{name.replace('table', 'Table ')}: {paper.caption}", csv_cols, csv_rows,
                  [(f"Paper rows ({paper.source}) and ours ({ours})", header, md)])
    table.notes += _protocol_notes(profile, paper)
    if run is None:
        table.notes += _partial_note([OURS_PRESET])
    elif paper.dataset != dataset and dataset not in paper.dataset:
        table.notes.append(f"Our run is on {dataset}, which this table does not report: our metric cells are empty.")
    if "params_M" in paper.columns:
        table.notes.append("Our Params: trainable parameters of the added modules at paper scale (complexity.csv, "
                           "Table 3 row F convention).")
    return table


def _col_name(col: str) -> str:
    ds, _, metric = col.rpartition("/")
    base = {"params_M": "Params (M)", "flops_G": "FLOPs (G)", "mem_GB": "Mem (GB)"}.get(metric, METRIC_NAMES.get(
        metric, metric))
    return f"{ds} {base}" if ds else base


def missing_modality_table(evaluation: dict[str, Any], preset: str = OURS_PRESET) -> Table:
    """All modalities and the six missing-modality settings (zero-filled inputs, DeMo's protocol)."""
    settings = [("full", "none", "RGB + NIR + TIR")]
    for key, gone in MISSING_SETTINGS.items():
        left = [MODALITY_NAMES[m] for m in MODALITY_NAMES if m not in gone]
        settings.append((f"missing_{key}", " + ".join(MODALITY_NAMES[m] for m in gone), " + ".join(left)))
    return _evaluation_table("missing_modality", f"Missing modalities (preset {preset})", evaluation, settings,
                             ["Missing", "Available"],
                             ["Missing inputs are zero-filled at test time (DeMo's TEST.MISS); the model is "
                              "trained with all three modalities. The paper reports no such table."])


def rerank_table(evaluation: dict[str, Any], preset: str = OURS_PRESET) -> Table:
    settings = [("full", "no", "RGB + NIR + TIR"), ("rerank", "k-reciprocal", "RGB + NIR + TIR")]
    return _evaluation_table("rerank", f"Re-ranking (preset {preset})", evaluation, settings,
                             ["Re-ranking", "Modalities"],
                             ["The official code builds its evaluator with re-ranking off "
                              "(official-implementation.md sec. 5); the paper's numbers are without it."])


def _evaluation_table(name, title, evaluation, settings, labels, notes) -> Table:
    metrics = (*METRICS, "mINP")
    columns = ["setting", labels[0].lower(), labels[1].lower()]
    columns += [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    rows, md = [], []
    for key, a, b in settings:
        row = {"setting": key, labels[0].lower(): a, labels[1].lower(): b}
        cells = [a, b]
        for m in metrics:
            mean, std = evaluation_stat(evaluation, key, m)
            row[f"{m}_mean"], row[f"{m}_std"] = round(mean, 4), (None if math.isnan(std) else round(std, 4))
            cells.append(fmt_stat(mean, std))
        rows.append(row)
        md.append(cells)
    n = len(evaluation.get("per_seed", {})) or "?"
    header = [*labels, *[METRIC_NAMES[m] for m in metrics]]
    src = evaluation.get("_path", "evaluation.json")
    return Table(name, title, columns, rows, [(f"Each seed's best checkpoint, mean ± std over {n} seeds ({src})",
                                               header, md)], list(notes))


def complexity_comparison_table(complexity: dict) -> Table:
    """Every complexity number of complexity.csv: paper, ours and the difference (ours − paper, from the unrounded
    ``ours_exact`` where the file has it)."""
    columns = ["table", "row", "quantity", "unit", "paper", "ours", "ours_exact", "difference", "note"]
    rows, md = [], []
    for (table, row, quantity), e in complexity.items():
        exact = e.get("ours_exact", e["ours"])
        diff = None if exact is None or e["paper"] is None else round(exact - e["paper"], 3)
        rows.append({"table": table, "row": row, "quantity": quantity, "unit": e["unit"], "paper": e["paper"],
                     "ours": e["ours"], "ours_exact": exact, "difference": diff, "note": e["note"]})
        md.append([table.replace("table", "Table "), row, quantity, fmt(e["paper"], 2), fmt(exact, 3),
                   "—" if diff is None else f"{diff:+.3f}", e["note"]])
    return Table("complexity", "Complexity: paper vs ours (paper scale, CPU count)", columns, rows,
                 [("", ["Table", "Row", "Quantity", "Paper", "Ours", "Ours − paper", "Note"], md)],
                 ["Params in M (trainable, added modules only), FLOPs in G (fvcore, one multiply-add = one FLOP); "
                  "conventions in mambapro/complexity.py and official-implementation.md secs. 6-7."])


def curve_data(key: str, results: str | Path, metrics: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """One Fig. 8 / Fig. 9 curve (a ``fig8_*`` / ``fig9*`` key of TABLES): per point its label, preset, number of
    seeds and ``<which>_<metric>_mean`` / ``_std`` for which in last, best and metric in mAP, R-1/5/10 (None, with
    0 seeds, for a point that ``metrics`` marks as not run), and its mAP against the curve's ``reference`` preset
    (:func:`curve_reference`): ``<which>_mAP_vs_reference``, its Welch ``_p`` and ``<which>_mAP_beyond_noise``."""
    if key not in CURVE_KEYS:
        raise KeyError(f"no curve {key!r}; curves: {', '.join(CURVE_KEYS)}")
    out = []
    ref_preset = curve_reference(key)
    reference = _run(metrics, results, ref_preset)
    for label, preset in TABLES[key]:
        run = _run(metrics, results, preset)
        point = {"label": label, "preset": preset, "seeds": 0 if run is None else num_seeds(run),
                 "reference": ref_preset}
        for which in WHICH:
            for m in METRICS:
                point[f"{which}_{m}_mean"], point[f"{which}_{m}_std"] = \
                    (None, None) if run is None else stat(run, which, m)
        for which in WHICH:  # the mAP difference from the reference and whether it exceeds the seed noise
            if run is None or reference is None or preset == ref_preset:
                vs = {"delta": None, "p": None, "beyond_noise": False}
            else:
                vs = versus_reference(run, reference, which)
            point.update({f"{which}_mAP_vs_reference": vs["delta"], f"{which}_mAP_vs_reference_p": vs["p"],
                          f"{which}_mAP_beyond_noise": vs["beyond_noise"]})
        out.append(point)
    return out


def curve_reference(key: str) -> str:
    """The preset a curve's points are compared with (:data:`CURVE_REFERENCES`; F unless listed there)."""
    return CURVE_REFERENCES.get(key, OURS_PRESET)


def curve_table(key: str, points: list[dict[str, Any]]) -> Table:
    """A curve's points (:func:`curve_data`) as a table; the last column compares each with the curve's reference."""
    columns = list(points[0])
    reference = curve_reference(key)
    md = [[p["label"], p["preset"], str(p["seeds"])]
          + [NOT_RUN if p[f"{w}_{m}_mean"] is None else fmt_stat(p[f"{w}_{m}_mean"], p[f"{w}_{m}_std"])
             for w in WHICH for m in ("mAP", "R1")]
          + [_versus_cell(p["last_mAP_vs_reference"], p["last_mAP_vs_reference_p"], p["last_mAP_beyond_noise"])]
          for p in points]
    header = ["Value", "Preset", "Seeds", "mAP (last)", "R-1 (last)", "mAP (best)", "R-1 (best)",
              f"mAP (last) − {reference}"]
    return Table(key, f"{key}: data of the paper's {'Fig. 8' if key.startswith('fig8') else 'Fig. 9'} curve",
                 columns, points, [("", header, md)],
                 ["best = best epoch on test (paper protocol); the paper prints only the figure.",
                  *([CURVE_NOTES[key]] if key in CURVE_NOTES else []),
                  noise_note(reference),
                  *_partial_note(p["preset"] for p in points if p["seeds"] == 0)])


def noise_note(reference: str = OURS_PRESET) -> str:
    """The note under a "mAP − ``reference``" column."""
    return (f"mAP − {reference}: difference of the seed means from preset {reference} (p: Welch's two-sided t-test "
            f"over seeds); **bold** where p < {NOISE_ALPHA} (the difference exceeds the seed noise).")


NOISE_NOTE = noise_note()


def _versus_cell(delta: float | None, p: float | None, beyond: bool) -> str:
    if delta is None:
        return "—"
    text = f"{delta:+.1f}" + ("" if p is None else " (p < 0.01)" if p < 0.01 else f" (p {p:.2f})")
    return f"**{text}**" if beyond else text


def noise_table(metrics: dict[str, dict | None]) -> Table:
    """Every preset against F at the last epoch: seeds, mAP mean ± std over seeds (seed noise), the mean half-width
    of the runs' 95 % bootstrap intervals over queries (evaluation noise), the difference from F and its test."""
    reference = metrics[OURS_PRESET]
    rows, md = [], []
    for preset, run in metrics.items():
        if run is None:
            continue
        mean, std = stat(run, "last", "mAP")
        vs = versus_f(preset, run, reference)
        evaluation = evaluation_noise(run)
        rows.append({"preset": preset, "seeds": num_seeds(run), "mAP_mean": mean, "mAP_std": std,
                     "evaluation_ci95_halfwidth": evaluation, "delta_vs_F": vs["delta"], "p": vs["p"],
                     "beyond_noise": vs["beyond_noise"]})
        md.append([preset, str(num_seeds(run)), fmt_stat(mean, std),
                   "—" if evaluation is None else f"± {evaluation:.1f}",
                   _versus_cell(vs["delta"], vs["p"], vs["beyond_noise"])])
    beyond = [r["preset"] for r in rows if r["beyond_noise"]]
    return Table("noise", "Differences from preset F against the noise (last epoch, mAP %)", list(rows[0]), rows,
                 [("", ["Preset", "Seeds", "mAP, mean ± std over seeds", "Evaluation noise (95 % CI half-width)",
                        "mAP − F"], md)],
                 [NOISE_NOTE, "Evaluation noise: the half-width of each run's 95 % bootstrap interval of mAP over "
                  "the test queries, averaged over seeds; it is the part of a run's spread that the finite test "
                  "split causes.",
                  f"Beyond the noise ({len(beyond)} of {len(rows) - 1}): {', '.join(beyond) or 'none'}."])


# --------------------------------------------------------------------------------------------------------------
# Everything


def needed_presets() -> list[str]:
    """Every preset whose metrics.json the tables need, in TABLES order."""
    keys = (*ABLATION_TABLES, *CURVE_KEYS)
    presets = [p for k in keys for _, p in TABLES[k]] + [OURS_PRESET]
    return list(dict.fromkeys(presets))


def check_results(results: str | Path, profile: str | None, partial: bool = False
                  ) -> tuple[str, dict[str, dict | None]]:
    """Load every needed run; raise one error listing all missing files (preset and path) or profile clashes.
    Returns the profile and {preset: metrics}.  ``partial``: missing runs and evaluation are no error (a missing
    run's preset maps to None), as long as one run exists."""
    results = Path(results)
    presets = needed_presets()
    missing = [p for p in presets if not seed_metrics_files(results, p)]
    if not evaluation_path(results, OURS_PRESET).is_file():
        missing_eval = [f"evaluation of preset {OURS_PRESET!r}: expected {evaluation_path(results, OURS_PRESET)}"]
    else:
        missing_eval = []
    if (missing or missing_eval) and (not partial or len(missing) == len(presets)):
        lines = [f"preset {p!r}: expected {metrics_path(results, p)}" for p in missing] + missing_eval
        raise MissingResultError("cannot build the tables, results missing:\n  " + "\n  ".join(lines))
    metrics = {p: None if p in missing else load_metrics(results, p) for p in presets}
    profiles = {p: m.get("profile") for p, m in metrics.items() if m is not None}
    wanted = profile or profiles.get(OURS_PRESET) or next(iter(profiles.values()))
    clash = {p: v for p, v in profiles.items() if v != wanted}
    if clash:
        detail = ", ".join(f"{p} ({metrics_path(results, p)}): {v!r}" for p, v in clash.items())
        raise ResultFormatError(f"tables for profile {wanted!r}, but these runs were trained under another profile: "
                                f"{detail}")
    return wanted, metrics


def build_tables(results: str | Path, profile: str | None = None, complexity_file: str | Path | None = None,
                 partial: bool = False, chance: dict | None = None) -> list[Table]:
    """Every table (checks every input first).  ``partial``: see the module docstring (adds the ``runs`` table);
    ``chance``: the test split's chance level (:func:`mambapro.chance.split_chance_level`), a row of every ablation
    table and the ``chance`` table."""
    results = Path(results)
    profile, metrics = check_results(results, profile, partial)
    complexity = load_complexity(complexity_file or results / "complexity.csv")
    evaluated = evaluation_path(results, OURS_PRESET).is_file()
    names = list(ABLATION_TABLES) + (["table12"] if object_kind(profile) == "vehicle" else [])
    tables = [ablation_table(n, results, complexity, profile, metrics, chance) for n in names]
    tables += [chance_table(chance)] if chance is not None else []
    tables += [comparison_table(n, results, complexity, profile, metrics) for n in ("table1", "table2", "table7")]
    if evaluated or not partial:
        evaluation = load_evaluation(results)
        tables += [missing_modality_table(evaluation), rerank_table(evaluation)]
    tables += [complexity_comparison_table(complexity)]
    tables += [curve_table(k, curve_data(k, results, metrics)) for k in CURVE_KEYS]
    if metrics.get(OURS_PRESET) is not None:
        tables.append(noise_table(metrics))
    if partial:
        tables.append(runs_table(results, metrics, evaluated))
    return tables


def runs_table(results: str | Path, metrics: dict[str, dict | None], evaluated: bool | None = None) -> Table:
    """A partial build's run list: every run the tables need with its seeds or "not run", and (unless
    ``evaluated`` is None) whether preset F's missing-modality / re-ranking evaluation exists."""
    rows = [{"run": f"train {p}", "seeds": NOT_RUN if m is None else " ".join(map(str, m["summary"]["seeds"])),
             "path": str(metrics_path(results, p))} for p, m in metrics.items()]
    if evaluated is not None:
        rows.append({"run": f"evaluate {OURS_PRESET}", "seeds": "all" if evaluated else NOT_RUN,
                     "path": str(evaluation_path(results, OURS_PRESET))})
    absent = sum(r["seeds"] == NOT_RUN for r in rows)
    return Table("runs", "Runs behind these tables (partial build)", ["run", "seeds", "path"], rows,
                 [("", ["Run", "Seeds", "Expected at"], [[r["run"], r["seeds"], r["path"]] for r in rows])],
                 [f"Partial build: {len(rows) - absent} of {len(rows)} runs present; the table rows of the others "
                  f"say '{NOT_RUN}', and the missing-modality and re-ranking tables need the evaluation."])


def build_all_tables(results: str | Path, out: str | Path, profile: str | None = None,
                     complexity_file: str | Path | None = None, partial: bool = False,
                     chance: dict | None = None) -> list[Path]:
    """Build every table from a results folder and write ``<name>.csv`` and ``<name>.md`` under ``out``; returns
    the paths.  Nothing is written if any input is missing (unless ``partial``)."""
    return write_tables(build_tables(results, profile, complexity_file, partial, chance), out)


def build_profile_tables(profile: str, root: str | Path = ".", partial: bool = False) -> list[Path]:
    """The tables of ``profile``'s runs, ``results/<profile>/tables/`` (complexity: ``results/complexity.csv``),
    with the chance level of the profile's test split."""
    folder = results_dir(profile, root)
    return build_all_tables(folder, folder / "tables", profile, Path(root) / "results" / "complexity.csv", partial,
                            split_chance_level(profile, root=root))


def build_quick_tables(profile: str, root: str | Path = ".") -> list[Path]:
    """The quick tier's tables (``results/<profile>/quick``): Table 3 (every seed of A-G), its rows against F and
    the noise, and the complexity comparison."""
    folder = results_dir(profile, root)
    metrics = {p: load_metrics(folder, p) for p in QUICK_PRESETS}
    complexity = load_complexity(Path(root) / "results" / "complexity.csv")
    chance = split_chance_level(profile, root=root)
    tables = [ablation_table("table3", folder, complexity, profile, metrics, chance), noise_table(metrics),
              complexity_comparison_table(complexity), chance_table(chance)]
    return write_tables(tables, folder / "quick")


def build_vehicle_tables(profile: str, vehicle_profile: str, root: str | Path = ".", partial: bool = False
                         ) -> list[Path]:
    """Table 12 from the vehicle runs of person profile ``profile`` (trained under ``vehicle_profile``) and its
    rows against F and the noise, into ``results/<profile>/vehicle/tables/``; ``partial``: rows without runs say
    "not run", plus ``runs``."""
    folder = results_dir(vehicle_namespace(profile), root)
    complexity = load_complexity(Path(root) / "results" / "complexity.csv")
    presets = list(dict.fromkeys(p for _, p in TABLES["table12"]))
    absent = [p for p in presets if not seed_metrics_files(folder, p)]
    if absent and (not partial or len(absent) == len(presets)):
        missing = [f"preset {p!r}: expected {metrics_path(folder, p)}" for p in absent]
        raise MissingResultError("cannot build Table 12, vehicle runs missing:\n  " + "\n  ".join(missing))
    metrics = {p: None if p in absent else load_metrics(folder, p) for p in presets}
    chance = split_chance_level(vehicle_profile, root=root)
    tables = [ablation_table("table12", folder, complexity, vehicle_profile, metrics, chance), chance_table(chance)]
    if metrics.get(OURS_PRESET) is not None:
        tables.append(noise_table(metrics))
    return write_tables(tables + ([runs_table(folder, metrics)] if partial else []), folder / "tables")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="the profile whose runs (results/<profile>/runs) the tables summarise")
    parser.add_argument("--partial", action="store_true",
                        help='write the rows of runs that do not exist as "not run" instead of stopping')
    args = parser.parse_args(argv)
    written = build_profile_tables(args.profile, partial=args.partial)
    print(f"wrote {len(written)} files to {results_dir(args.profile) / 'tables'}")


if __name__ == "__main__":
    main()
