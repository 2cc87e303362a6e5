"""What the DVC stages and notebooks call: ``params.yaml`` in, one preset's runs and result files out.

``params.yaml`` names the active ``profile`` (``default`` = embedded CPU benchmark, or a paper-scale dataset), the
``seeds``, per-profile overrides (``profiles``) and every preset's overrides (``presets``, the same dictionaries as
:data:`mambapro.config.PRESETS`, so that a DVC stage depends on its own preset's parameters only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from mambapro.config import Config, ConfigError, apply_overrides, build_config


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file {path} does not exist")
    with path.open() as f:
        params = yaml.safe_load(f) or {}
    for key in ("profile", "seeds", "profiles", "presets"):
        if key not in params:
            raise ConfigError(f"{path}: missing key {key!r}")
    if params["profile"] not in params["profiles"]:
        raise ConfigError(f"{path}: profile {params['profile']!r} has no entry under 'profiles' "
                          f"(have: {', '.join(params['profiles'])})")
    return params


def preset_config(preset: str, params: dict[str, Any]) -> Config:
    """The configuration of ``preset`` under the active profile of ``params``."""
    if preset not in params["presets"]:
        raise ConfigError(f"params.yaml: unknown preset {preset!r}; valid presets: {', '.join(params['presets'])}")
    profile = params["profile"]
    cfg = build_config(profile, overrides=params["profiles"][profile] or {})
    return apply_overrides(cfg, params["presets"][preset] or {}, where=f"params.yaml presets.{preset}")


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def run_metrics_path(results_dir: str | Path, name: str, seed: int | str) -> Path:
    """Where one run's metrics go: ``results/runs/<name>/seed<seed>/metrics.json``."""
    return Path(results_dir) / name / f"seed{seed}" / "metrics.json"


def train_run(preset: str, seed: int, params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
              results_dir: str | Path = "results/runs", progress: bool = True, name: str | None = None,
              overrides: dict | None = None) -> dict[str, Any]:
    """Train ``preset`` with one seed (resuming an interrupted run; checkpoints in ``runs/<name>/seed<seed>``) and
    write its last- and best-epoch metrics and history to :func:`run_metrics_path`.  ``name`` (default: the preset)
    and ``overrides`` name and configure a variant, e.g. the vehicle run of ``params.yaml``'s ``vehicle``."""
    from mambapro.engine import train

    params = load_params(params_file)
    cfg = preset_config(preset, params)
    if overrides:
        cfg = apply_overrides(cfg, overrides, where=f"overrides of run {name}")
    name = name or preset
    result = train(cfg, Path(runs_dir) / name / f"seed{seed}", seed, progress=progress)
    out = {"preset": preset, "profile": params["profile"], "config": cfg.to_dict(),
           **{k: result[k] for k in ("seed", "last", "best", "history", "peak_gpu_memory_gb")},
           "note": "best = best epoch by test mAP (the paper's protocol); last = final epoch"}
    write_json(out, run_metrics_path(results_dir, name, seed))
    return out


def train_preset(preset: str, params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
                 results_dir: str | Path = "results/runs", progress: bool = True, name: str | None = None,
                 overrides: dict | None = None) -> dict[str, Any]:
    """:func:`train_run` for every seed of ``params.yaml``; returns the mean and std over seeds."""
    from mambapro.engine import summarize_seeds

    runs = [train_run(preset, seed, params_file, runs_dir, results_dir, progress, name, overrides)
            for seed in load_params(params_file)["seeds"]]
    return summarize_seeds(runs)


def train_vehicle(params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
                  results_dir: str | Path = "results/runs", progress: bool = True, seed: int | None = None):
    """The vehicle run of ``params.yaml`` (``vehicle: {name, preset, overrides}``) behind Fig. 11's Grad-CAM and
    Table 12: one seed (:func:`train_run`'s record) or, with ``seed=None``, every seed (their mean and std)."""
    v = load_params(params_file).get("vehicle")
    if not v:
        raise ConfigError(f"{params_file}: no 'vehicle' entry (name, preset, overrides)")
    if seed is None:
        return train_preset(v["preset"], params_file, runs_dir, results_dir, progress, v["name"], v["overrides"])
    return train_run(v["preset"], seed, params_file, runs_dir, results_dir, progress, v["name"], v["overrides"])


def evaluate_preset(preset: str, params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
                    results_dir: str | Path = "results/runs", missing=("r", "n", "t", "rn", "rt", "nt"),
                    rerank: bool = True) -> dict[str, Any]:
    """Evaluate each seed's best checkpoint under the six missing-modality settings and with re-ranking."""
    from mambapro.engine import evaluate_checkpoint

    params = load_params(params_file)
    cfg = preset_config(preset, params)
    per_seed = {}
    for seed in params["seeds"]:
        path = Path(runs_dir) / preset / f"seed{seed}" / "best.pt"
        per_seed[seed] = evaluate_checkpoint(path, cfg, missing=tuple(missing), rerank=rerank)
    settings = next(iter(per_seed.values())).keys()
    mean = {s: {k: sum(r[s][k] for r in per_seed.values()) / len(per_seed) for k in per_seed[params["seeds"][0]][s]}
            for s in settings}
    out = {"preset": preset, "profile": params["profile"], "per_seed": per_seed, "mean": mean}
    write_json(out, Path(results_dir) / preset / "evaluation.json")
    return mean
