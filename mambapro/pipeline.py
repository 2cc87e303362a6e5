"""What the DVC stages and notebooks call: ``params.yaml`` in, runs and result files (:mod:`mambapro.results`) out.

``params.yaml`` names the active ``profile`` (:data:`mambapro.config.PROFILES`), the ``seeds``, which presets the
sweep trains, evaluates and runs on the vehicle set, and ``profile_stages``: which profile-specific stages exist.
DVC's templating cannot look a profile up by name, so ``python -m mambapro.pipeline use <profile>`` writes
``profile`` and ``profile_stages`` together, and every stage refuses a ``params.yaml`` whose two disagree.

* ``proxy_clip``: the embedded default's synthetic benchmark and proxy CLIP pre-training;
* ``dataset``: a paper profile's real dataset and weights, validated and recorded;
* ``vehicle``: the profile of the vehicle runs behind Fig. 11 and Table 12 (empty when the profile's own runs are
  on a vehicle set, or when its vehicle dataset is absent: those outputs are then skipped with a message).

Which profiles are on persons and which on vehicles is the datasets' ``object`` fact
(:func:`mambapro.config.object_kind`); a ``profiles.yaml`` ``pipeline.vehicle`` that disagrees with it is refused
(:func:`vehicle_profile`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import yaml

from mambapro import results
from mambapro.config import PROFILES, PROFILES_FILE, TABLES, ConfigError, object_kind, profile_entry, resolve_config
from mambapro.inputs import dataset_folder, profile_stages, record_inputs

PARAMS_KEYS = ("profile", "seeds", "profile_stages", "train_presets", "evaluate_presets", "vehicle_presets")


def vehicle_profile(profile: str) -> str | None:
    """The profile of ``profile``'s vehicle runs (``profiles.yaml`` ``pipeline.vehicle``), checked against the
    datasets' object kinds (:func:`mambapro.config.object_kind`): only a person profile has one, and it trains on
    vehicles."""
    declared = profile_entry(profile)["pipeline"].get("vehicle")
    if declared is None:
        return None
    where = f"{PROFILES_FILE}: {profile}: pipeline: vehicle = {declared!r}"
    if object_kind(profile) != "person":
        dataset = resolve_config(profile).data.dataset
        raise ConfigError(f"{where}, but {profile!r} itself trains on vehicles ({dataset}); its own runs give "
                          "Table 12, so set it to null")
    if object_kind(declared) != "vehicle":
        vehicles = [p for p in PROFILES if object_kind(p) == "vehicle"]
        raise ConfigError(f"{where} trains on persons ({resolve_config(declared).data.dataset}); name a vehicle "
                          f"profile ({', '.join(vehicles)}) or null")
    return declared


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """``params.yaml``, checked: every key present, the profile known, ``profile_stages`` written for it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file {path} does not exist")
    with path.open() as f:
        params = yaml.safe_load(f) or {}
    for key in PARAMS_KEYS:
        if key not in params:
            raise ConfigError(f"{path}: missing key {key!r}")
    profile = params["profile"]
    profile_entry(profile)
    stages = params["profile_stages"] or {}
    expected = profile_stages(profile, path.parent)
    declared = vehicle_profile(profile)
    if ({k: stages.get(k) for k in ("proxy_clip", "dataset")} != {k: expected[k] for k in ("proxy_clip", "dataset")}
            or stages.get("vehicle") not in ([], [declared] if declared else [])):
        raise ConfigError(f"{path}: profile_stages = {stages} was not written for profile {profile!r} "
                          f"(expected {expected}); run `python -m mambapro.pipeline use {profile}`")
    return params


def use(profile: str, path: str | Path = "params.yaml") -> dict[str, list[str]]:
    """Switch ``params.yaml`` to ``profile``: rewrite its ``profile`` and ``profile_stages`` lines (comments kept)."""
    path = Path(path)
    declared = vehicle_profile(profile)
    stages = profile_stages(profile, path.parent)
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        key = line.split(":")[0].strip()
        if line.startswith("profile:"):
            lines[i] = f"profile: {profile}\n"
        elif line.startswith("  ") and key in stages:
            comment = line[line.index("#"):] if "#" in line else "\n"
            lines[i] = f"  {key}: [{', '.join(stages[key])}]".ljust(32) + comment
    results.write_text(path, "".join(lines))
    params = load_params(path)  # the rewritten file passes the check every stage makes
    folder = results.results_dir(profile, path.parent)  # folders downstream stages depend on, before their first
    presets = dict.fromkeys([*params["evaluate_presets"], *(p for _, p in TABLES["table3"])])  # run: DVC's dry
    for sub in ("evaluation", *(f"runs/{p}" for p in presets),                       # run hashes every dependency
                *(["vehicle/runs"] if stages["vehicle"] else [])):                   # (evaluate, quick)
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if stages["dataset"]:  # record the inputs now (the `dataset` stage re-records them), so that the training
        try:               # stages' dependency exists and `dvc repro --dry` can run
            record_inputs(profile, path.parent)
        except (FileNotFoundError, ValueError) as e:
            print(f"profile {profile}: inputs not recorded yet ({e})")
    if declared and not stages["vehicle"]:
        print(f"profile {profile}: its vehicle dataset ({dataset_folder(resolve_config(declared))}) is absent; "
              "Fig. 11 and Table 12 are skipped. Add it and run this command again to include them.")
    return stages


def results_namespace(name: str, root: str | Path = ".") -> str:
    """The namespace whose runs a user means by ``name`` (the explore notebook's ``profile``): a namespace such as
    ``default/vehicle`` as given; a profile with runs of its own, its folder (``results/<name>``); else the vehicle
    runs of a person profile that trains ``name`` as its ``pipeline.vehicle`` (``default-vehicle``:
    ``results/default/vehicle``).  An unknown profile, or one whose runs exist nowhere, is an error naming where it
    looked."""
    candidates = [name]
    if "/" not in name:
        profile_entry(name)  # an unknown name lists the valid ones
        candidates += [results.vehicle_namespace(p) for p in PROFILES if vehicle_profile(p) == name]
    for namespace in candidates:
        if results.trained_presets(results.results_dir(namespace, root)):
            return namespace
    looked = ", ".join(str(results.results_dir(ns) / "runs") for ns in candidates)
    raise results.MissingResultError(f"{name!r} has no runs: no metrics.json under {looked}; train them first "
                                     f"(`python -m mambapro.pipeline use <profile>`, then `dvc repro`)")


def table3_file(namespace: str, root: str | Path = ".") -> Path:
    """The tables stage's file of Table 3's rows for the runs of ``namespace``: ``table12.csv`` (Table 3's rows on a
    vehicle set) for vehicle runs, a person profile's (``<profile>/vehicle``) or a vehicle profile's own, else
    ``table3.csv`` (the explore notebook's last cell)."""
    profile, _, sub = namespace.partition("/")
    vehicles = sub == "vehicle" or object_kind(profile) == "vehicle"
    return results.results_dir(namespace, root) / "tables" / ("table12.csv" if vehicles else "table3.csv")


# ----------------------------------------------------------------------------------------------------------------
# Training and evaluation


def run_note(cfg) -> str:
    """What a run's ``metrics.json`` evaluated on: the test split (the paper) or a validation split."""
    if cfg.data.validation_ids:
        split = (f"validation split ({cfg.data.validation_ids} held-out training ids, seed "
                 f"{cfg.data.validation_seed}; the test split unused)")
        return f"every metric on the {split}; best = best epoch by validation mAP; last = final epoch"
    return "best = best epoch by test mAP (the paper's protocol); last = final epoch"


def train_run(profile: str, preset: str, seed: int, namespace: str | None = None, root: str | Path = ".",
              progress: bool = True) -> dict[str, Any]:
    """Train ``preset`` under ``profile`` with one seed (resuming an interrupted run) and write its last- and
    best-epoch metrics and history to :func:`mambapro.results.metrics_path` of ``namespace`` (default: the
    profile; the vehicle runs use ``<person profile>/vehicle``)."""
    from mambapro.engine import train

    namespace = namespace or profile
    cfg = resolve_config(profile, preset)
    with contextlib.chdir(root):
        result = train(cfg, results.run_dir(namespace, preset, seed), seed, progress=progress)
        out = {"preset": preset, "profile": profile, "config": cfg.to_dict(),
               **{k: result[k] for k in ("seed", "last", "best", "history", "peak_gpu_memory_gb", "run_info")},
               "note": run_note(cfg)}
        results.write_json(results.metrics_path(results.results_dir(namespace), preset, seed), out)
    return out


def evaluate_preset(profile: str, preset: str, seeds: list[int], root: str | Path = ".",
                    missing=("r", "n", "t", "rn", "rt", "nt"), rerank: bool = True) -> dict[str, Any]:
    """Evaluate each seed's best checkpoint under the six missing-modality settings and with re-ranking."""
    from mambapro.engine import evaluate_checkpoint

    cfg = resolve_config(profile, preset)
    with contextlib.chdir(root):
        per_seed = {seed: evaluate_checkpoint(results.run_dir(profile, preset, seed) / "best.pt", cfg,
                                              missing=tuple(missing), rerank=rerank) for seed in seeds}
        mean = results.mean_over_seeds(per_seed)
        results.write_json(results.evaluation_path(results.results_dir(profile), preset),
                           {"preset": preset, "profile": profile, "per_seed": per_seed, "mean": mean})
    return mean


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Pipeline helpers.")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("use", help="switch params.yaml to a profile (rewrites profile and profile_stages)")
    u.add_argument("profile")
    u.add_argument("--params", default="params.yaml")
    a = p.parse_args(argv)
    try:
        print(f"{a.params}: profile {a.profile}, profile_stages {use(a.profile, a.params)}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
