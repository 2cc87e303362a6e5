"""Hyper-parameters of the miniature, chosen on a validation split, never on the test split (issue 21).

The paper trains full fine-tuning (Table 3's B and G, "CLIP(F)") with the official backbone learning rate 5e-6; the
default profile raises ``base_lr`` 3.5e-4 -> 3e-3 for its few hundred steps, which leaves the backbone 600x below
the added modules.  The study trains B and G at four backbone rates (``TABLES["backbone_lr_B"]`` and
``["backbone_lr_G"]``: presets ``val-<B|G>-lr<rate>``), each on a validation split of 10 held-out training identities
(``data.validation_ids``, :func:`mambapro.data.readers.hold_out_identities`), 3 seeds.

The rule, fixed before any run of the study: **the rate with the highest mean of B's and G's last-epoch validation
mAP (each the mean over seeds); a tie (equal to 0.1 mAP) goes to the smaller rate**, the one nearer the official
value.  Last epoch, not best: the best epoch is itself chosen on the split it is reported on.  The default profile's
``train.backbone_lr`` is the rule's choice (tests/test_selection.py checks it against the committed study).

``python -m mambapro.selection <profile>`` (the ``study`` stage of dvc.yaml) writes the study's table and figure to
``results/<profile>/study/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mambapro import viz
from mambapro.chance import split_chance_level
from mambapro.config import TABLES, resolve_config
from mambapro.results import MissingResultError, load_metrics, results_dir
from mambapro.table_format import Table, fmt, fmt_stat, write_tables
from mambapro.table_inputs import num_seeds, stat

STUDY_KEYS = {"B": "backbone_lr_B", "G": "backbone_lr_G"}  # TABLES keys: one (rate label, preset) list per model
TIE_MAP = 0.1  # mAP points: closer than this counts as a tie


def study_presets() -> list[str]:
    """Every preset of the study, in TABLES order."""
    return [preset for key in STUDY_KEYS.values() for _, preset in TABLES[key]]


def study_points(results: str | Path) -> list[dict[str, Any]]:
    """One point per backbone rate: the rate (from the runs' own config), and per model its validation mAP / R-1
    (last epoch, mean and std over seeds) and seeds; None for a model whose runs are missing."""
    labels = [label for label, _ in TABLES[STUDY_KEYS["B"]]]
    points = []
    for i, label in enumerate(labels):
        point: dict[str, Any] = {"label": label, "backbone_lr": None}
        for model, key in STUDY_KEYS.items():
            preset = TABLES[key][i][1]
            try:
                run = load_metrics(results, preset)
            except MissingResultError:
                run = None
            point[f"{model}_preset"] = preset
            point[f"{model}_seeds"] = 0 if run is None else num_seeds(run)
            for metric in ("mAP", "R1"):
                point[f"{model}_{metric}_mean"], point[f"{model}_{metric}_std"] = \
                    (None, None) if run is None else stat(run, "last", metric)
            if run is not None:
                _check_validation(run, preset)
                point["backbone_lr"] = float(run["config"]["train"]["backbone_lr"])
        points.append(point)
    return points


def _check_validation(run: dict[str, Any], preset: str) -> None:
    if not run["config"].get("data", {}).get("validation_ids"):
        raise ValueError(f"{run['_path']}: preset {preset!r} of the backbone-rate study was not evaluated on a "
                         "validation split (data.validation_ids = 0): a choice on it would be made on the test split")


def study_chance(profile: str, root: str | Path = ".") -> dict[str, Any]:
    """The chance level of the study's validation split (:func:`mambapro.chance.split_chance_level`)."""
    return split_chance_level(profile, root=root, preset=study_presets()[0])


def _score(point: dict[str, Any]) -> float | None:
    """The rule's score of one rate: the mean of B's and G's validation mAP; None while a model has no runs."""
    if point["B_mAP_mean"] is None or point["G_mAP_mean"] is None:
        return None
    return (point["B_mAP_mean"] + point["G_mAP_mean"]) / 2


def choose_backbone_lr(points: list[dict[str, Any]]) -> float | None:
    """The rule of the module docstring; None unless every point has both models' runs."""
    if any(_score(p) is None for p in points):
        return None
    scored = sorted((_score(p), p["backbone_lr"]) for p in points)
    best = scored[-1][0]
    return min(rate for score, rate in scored if score >= best - TIE_MAP)


def study_table(points: list[dict[str, Any]], profile_rate: float, chance: dict[str, Any] | None = None) -> Table:
    """The study as a table (CSV / Markdown), with the rule's choice, the profile's rate and the validation split's
    chance level (:func:`mambapro.chance.split_chance_level` of a study preset)."""
    chosen = choose_backbone_lr(points)
    md = []
    for p in points:
        cells = [p["label"]]
        for model in STUDY_KEYS:
            mean, std = p[f"{model}_mAP_mean"], p[f"{model}_mAP_std"]
            cells.append("not run" if mean is None else f"{fmt_stat(mean, std)} ({p[f'{model}_seeds']})")
        cells += [fmt(_score(p)), "chosen" if chosen is not None and p["backbone_lr"] == chosen else ""]
        md.append(cells)
    if chance is not None:
        m = chance["metrics"]["mAP"]
        md.append(["chance (random features)", *[fmt_stat(m["mean"], m["std"])] * 2, "", ""])
    notes = [
        "Validation mAP (%) at the last epoch, mean ± std over seeds (number of seeds), on 10 held-out training "
        "identities (data.validation_ids; the test split is never read). Rule (mambapro.selection): highest mean of "
        f"B and G; ties within {TIE_MAP} mAP to the smaller rate.",
        f"Rule's choice: {chosen if chosen is not None else 'none (runs missing)'}; the profile's "
        f"train.backbone_lr: {profile_rate}",
    ]
    header = ["backbone lr", "B: CLIP(F)", "G: CLIP(F) + PFA + SRP + MA", "mean of B and G", "rule"]
    return Table("backbone_lr", "Backbone learning rate of full fine-tuning, chosen on the validation split",
                 list(points[0]), points, [("", header, md)], notes)


def write_study(profile: str, root: str | Path = ".") -> list[Path]:
    """The study's table (``backbone_lr.{csv,md}``) and figure (``backbone_lr.{png,pdf}``) from ``profile``'s runs
    into ``results/<profile>/study/``."""
    folder = results_dir(profile, root)
    points = study_points(folder)
    if not any(p["B_seeds"] or p["G_seeds"] for p in points):
        raise MissingResultError(f"no run of the backbone-rate study in {folder / 'runs'} (presets "
                                 f"{', '.join(study_presets())}: `dvc repro train@<preset>-<seed>`)")
    chance = study_chance(profile, root)
    out = folder / "study"
    written = write_tables([study_table(points, resolve_config(profile).train.backbone_lr, chance)], out)
    return written + viz.backbone_lr_figure(points, out / "backbone_lr", choose_backbone_lr(points),
                                            chance["metrics"]["mAP"]["mean"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The backbone-rate study on the validation split (issue 21).")
    parser.add_argument("profile", help="the profile whose runs (results/<profile>/runs) hold the study")
    args = parser.parse_args(argv)
    for path in write_study(args.profile):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
