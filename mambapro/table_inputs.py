"""What the tables read from the results, and the statistics over seeds they print beside each number.

* mean ± sample standard deviation over seeds of a metric at the last or best epoch (:func:`stat`), from the
  ``summary`` of :func:`mambapro.results.load_metrics`, and of an evaluation setting (:func:`evaluation_stat`, from
  ``evaluation/<preset>.json``, :func:`load_evaluation`);
* a preset against the full model F (:func:`versus_reference`): the difference of the seed means and Welch's
  two-sided t-test over seeds; the difference "exceeds the noise" when p < :data:`NOISE_ALPHA`;
* the evaluation noise (:func:`evaluation_noise`): the mean half-width of the runs' 95 % bootstrap intervals of mAP
  over the test queries (:func:`mambapro.metrics.bootstrap_interval`), the part of the spread the finite test split
  causes;
* the complexity numbers of ``results/complexity.csv`` (:func:`load_complexity`).

The paper reports single runs without a spread; the spreads are ours.  :mod:`mambapro.tables` lays them out.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mambapro.results import MissingResultError, ResultFormatError, evaluation_path, read_json

OURS_PRESET = "F"  # the full model: the reference of every comparison
MEMORY_KEY = "peak_gpu_memory_gb"  # optional, per run in metrics.json, written where a GPU measured it
NOISE_ALPHA = 0.05  # a difference from F "exceeds the noise" when Welch's two-sided t-test over seeds gives p < this
QUANTITIES = {"params": "params_M", "params_M": "params_M", "flops": "flops_G", "flops_G": "flops_G"}
COMPLEXITY_COLUMNS = ("table", "row", "quantity", "ours", "paper")


def stat(metrics: dict[str, Any], which: str, metric: str) -> tuple[float, float]:
    """(mean, sample std) over seeds of ``metric`` at the ``which`` ("last" / "best") epoch."""
    out = []
    for part in ("mean", "std"):
        key = f"{which}/{metric}/{part}"
        if key not in metrics["summary"]:
            raise ResultFormatError(f"{metrics.get('_path', 'metrics.json')}: summary has no key {key!r}")
        out.append(float(metrics["summary"][key]))
    return out[0], out[1]


def num_seeds(metrics: dict[str, Any]) -> int:
    return len(metrics["summary"].get("seeds", metrics["runs"]))


def gpu_memory(metrics: dict[str, Any]) -> float | None:
    """Peak GPU memory (GB), the maximum over seeds of the runs' optional ``peak_gpu_memory_gb``; None if no run
    measured it (CPU runs)."""
    values = [r[MEMORY_KEY] for r in metrics["runs"] if r.get(MEMORY_KEY) is not None]
    return max(values) if values else None


def seed_values(metrics: dict[str, Any], which: str, metric: str) -> list[float]:
    """Each seed's ``metric`` at the ``which`` epoch, in seed order."""
    return [float(r[which][metric]) for r in metrics["runs"]]


def versus_reference(run: dict[str, Any], reference: dict[str, Any], which: str = "last", metric: str = "mAP"
                     ) -> dict[str, Any]:
    """``run`` against ``reference`` (preset F) over seeds: ``delta`` (difference of the means), ``p`` (Welch's
    two-sided t-test, unequal variances; None with fewer than 2 seeds on a side or no spread at all) and
    ``beyond_noise`` (p < :data:`NOISE_ALPHA`)."""
    from scipy.stats import ttest_ind

    a, b = seed_values(run, which, metric), seed_values(reference, which, metric)
    delta = sum(a) / len(a) - sum(b) / len(b)
    p = None
    if len(a) >= 2 and len(b) >= 2 and (max(a) > min(a) or max(b) > min(b)):
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return {"delta": delta, "p": p, "beyond_noise": p is not None and p < NOISE_ALPHA}


def versus_f(preset: str, run: dict | None, reference: dict | None, which: str = "last") -> dict[str, Any]:
    """:func:`versus_reference` of ``preset`` against F; no comparison for F itself or a run that is absent."""
    if run is None or reference is None or preset == OURS_PRESET:
        return {"delta": None, "p": None, "beyond_noise": False}
    return versus_reference(run, reference, which)


def evaluation_noise(run: dict[str, Any]) -> float | None:
    """Mean over seeds of the half-width of the last evaluation's 95 % bootstrap interval of mAP (over queries,
    :func:`mambapro.metrics.bootstrap_interval`); None for runs written before the interval was recorded."""
    widths = [(r["last"]["mAP_ci95_hi"] - r["last"]["mAP_ci95_lo"]) / 2 for r in run["runs"]
              if "mAP_ci95_hi" in r["last"]]
    return sum(widths) / len(widths) if widths else None


def load_evaluation(results: str | Path, preset: str = OURS_PRESET) -> dict[str, Any]:
    path = evaluation_path(results, preset)
    data = read_json(path, f"preset {preset!r} has no missing-modality / re-ranking evaluation "
                            f"(run `dvc repro evaluate@{preset}`)")
    if "per_seed" not in data and "mean" not in data:
        raise ResultFormatError(f"{path}: needs key 'per_seed' or 'mean'")
    data.setdefault("_path", str(path))
    return data


def evaluation_stat(evaluation: dict[str, Any], setting: str, metric: str) -> tuple[float, float]:
    """(mean, sample std) over seeds of ``metric`` under ``setting`` ("full", "missing_r", ..., "rerank")."""
    path = evaluation.get("_path", "evaluation.json")
    if "per_seed" in evaluation:
        values = []
        for seed, res in evaluation["per_seed"].items():
            if setting not in res or metric not in res[setting]:
                raise ResultFormatError(f"{path}: seed {seed} has no {setting}/{metric}")
            values.append(float(res[setting][metric]))
        return mean_std(values)
    if setting not in evaluation["mean"] or metric not in evaluation["mean"][setting]:
        raise ResultFormatError(f"{path}: mean has no {setting}/{metric}")
    return float(evaluation["mean"][setting][metric]), math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def load_complexity(path: str | Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``complexity.csv`` as {(table, row, quantity): {"ours", "paper", "unit", "note", "preset"}}, quantity one of
    ``params_M`` / ``flops_G``.  Needs the columns table, row, quantity, ours, paper; a missing column, an unknown
    quantity or a non-numeric value raises naming the file, line and value."""
    path = Path(path)
    if not path.is_file():
        raise MissingResultError(f"complexity numbers: expected {path}, which does not exist "
                                 f"(run `python -m mambapro.complexity --out {path.parent}`)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COMPLEXITY_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ResultFormatError(f"{path}: missing column(s) {', '.join(missing)} (has: "
                                    f"{', '.join(reader.fieldnames or ())})")
        out = {}
        for line, row in enumerate(reader, start=2):
            quantity = QUANTITIES.get(row["quantity"])
            if quantity is None:
                raise ResultFormatError(f"{path}, line {line}: quantity {row['quantity']!r} is not one of "
                                        f"{', '.join(QUANTITIES)}")
            entry = {"unit": row.get("unit") or quantity[-1], "note": row.get("note") or "",
                     "preset": row.get("preset") or ""}
            for col in ("ours", "paper", "ours_exact"):  # ours_exact (unrounded) is optional
                try:
                    entry[col] = float(row[col]) if row.get(col) not in ("", None) else None
                except ValueError as e:
                    raise ResultFormatError(f"{path}, line {line}: column {col!r} = {row[col]!r} is not a "
                                            f"number") from e
            if entry["ours_exact"] is None:
                entry["ours_exact"] = entry["ours"]
            out[(row["table"], row["row"], quantity)] = entry
    return out
