"""The record of a profile's datasets and backbone weights (``results/<profile>/inputs.json``), which every training
stage of the profile depends on: the embedded default's synthetic benchmark and proxy CLIP, or a paper profile's
real dataset (every image header checked first) and OpenAI's weights file.

``python -m mambapro.inputs <profile>`` writes it (the DVC stages ``proxy_clip`` and ``dataset``);
``python -m mambapro.inputs --check <profile>`` only says, in one line each, what a paper profile still lacks (a
missing ``data/`` or ``weights/`` otherwise surfaces as DVC's bare ``[Errno 2] No such file or directory``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from mambapro import results
from mambapro.config import Config, ConfigError, profile_entry, resolve_config
from mambapro.registry import DATASETS


class InputsMissing(FileNotFoundError):
    """A paper profile's dataset folder or weights file is absent (a one-line message with the fix)."""


def dataset_folder(cfg: Config) -> Path:
    """The folder a dataset's reader opens (:func:`mambapro.data.readers.read_dataset`): ``data.root`` / the
    dataset's ``folder`` in :data:`mambapro.registry.DATASETS`."""
    return Path(cfg.data.root) / DATASETS.fact(cfg.data.dataset, "folder")


def check_inputs(profile: str, root: str | Path = ".") -> list[str]:
    """What a paper profile still lacks under ``root``, one line each with the fix (nothing is read but the
    folder listing): its data root (``data/``), its dataset folder, its weights file.  Empty when all are there, and
    for the embedded default (whose ``proxy_clip`` stage makes its own inputs)."""
    root = Path(root)
    if profile_entry(profile)["pipeline"]["proxy_clip"]:
        return []
    cfg, lines = resolve_config(profile), []
    again = f"then run `python -m mambapro.pipeline use {profile}` again"
    data_root, folder = root / cfg.data.root, root / dataset_folder(cfg)
    if not data_root.is_dir():
        lines.append(f"{cfg.data.root}/ does not exist: profile {profile} reads {cfg.data.dataset} from "
                     f"{dataset_folder(cfg)}; put the dataset there in its published layout (README, 'Paper scale', "
                     f"step 2), {again} (until then DVC stops with `[Errno 2] No such file or directory: "
                     f"...{cfg.data.root}`)")
    elif not folder.is_dir():
        lines.append(f"profile {profile}: dataset folder {folder} does not exist; put {cfg.data.dataset} there "
                     f"(README, 'Paper scale', step 2), {again}")
    weights = cfg.backbone.pretrained
    if weights and not (root / weights).is_file():
        lines.append(f"profile {profile}: backbone.pretrained = {weights} does not exist; fetch OpenAI's "
                     f"ViT-B-16.pt (README, 'Paper scale', step 2) and put it there, {again}")
    return lines


def profile_stages(profile: str, root: str | Path = ".") -> dict[str, list[str]]:
    """The profile-specific stages of ``profile`` (:mod:`mambapro.pipeline`); a paper profile's vehicle runs need
    their dataset present under ``root``."""
    pipe = profile_entry(profile)["pipeline"]
    vehicle = pipe.get("vehicle")
    if vehicle and not pipe["proxy_clip"]:
        vehicle = vehicle if (Path(root) / dataset_folder(resolve_config(vehicle))).is_dir() else None
    return {"proxy_clip": [profile] if pipe["proxy_clip"] else [],
            "dataset": [] if pipe["proxy_clip"] else [profile],
            "vehicle": [vehicle] if vehicle else []}


def _digest_files(folder: Path) -> dict[str, Any]:
    """SHA-256 over the sorted relative paths and the bytes of every file in ``folder``."""
    digest, count = hashlib.sha256(), 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
        count += 1
    return {"folder": str(folder), "files": count, "sha256": digest.hexdigest()}


def _weights_record(path: Path) -> dict[str, str]:
    """A state dict's content digest (stable when the proxy CLIP is re-trained to the same weights), else the file's
    md5 (OpenAI's TorchScript archive, which does not change)."""
    try:
        return {"tensors_sha256": results.tensors_digest(path)}
    except Exception:  # not a plain state dict
        return {"md5": results.file_digest(path, "md5")}


def record_inputs(profile: str, root: str | Path = ".") -> dict[str, Any]:
    """Check and record the datasets and backbone weights of ``profile`` (and of its vehicle runs) in
    ``results/<profile>/inputs.json``, every dataset hashed by content (a real one after
    :func:`mambapro.data.validate.validate_dataset` checked every image header): the ``dataset`` stage runs at every
    repro and does not depend on ``data/`` itself, so this digest is what re-runs the training stages when an image
    changes.  A missing dataset or weights file names the path and what to put there."""
    root = Path(root)
    pipe = profile_entry(profile)["pipeline"]
    missing = check_inputs(profile, root)
    if missing:
        raise InputsMissing(missing[0] + (f" (and {len(missing) - 1} more: python -m mambapro.inputs --check "
                                          f"{profile})" if len(missing) > 1 else ""))
    record: dict[str, Any] = {"profile": profile, "datasets": {}, "weights": {}}
    for name in [profile, *profile_stages(profile, root)["vehicle"]]:
        cfg = resolve_config(name)
        folder = root / dataset_folder(cfg)
        if not folder.is_dir():
            raise FileNotFoundError(f"profile {name}: dataset folder {folder} does not exist; put "
                                    f"{cfg.data.dataset} there (README, 'Paper scale')")
        if not pipe["proxy_clip"]:
            from mambapro.data.validate import validate_dataset

            validate_dataset(cfg.data.dataset, root / cfg.data.root)
        record["datasets"][cfg.data.dataset] = _digest_files(folder)
        weights = cfg.backbone.pretrained
        if weights and not os.path.isfile(root / weights) and not pipe["proxy_clip"]:
            raise FileNotFoundError(f"profile {name}: backbone.pretrained = {weights} does not exist; fetch OpenAI's "
                                    "ViT-B-16.pt (README, 'Paper scale') and put it there")
        if weights:
            record["weights"][weights] = _weights_record(root / weights)
    results.write_json(results.inputs_path(profile, root), record)
    return record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--check":
        try:
            missing = check_inputs(args[1])
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for line in missing:
            print(f"error: {line}", file=sys.stderr)
        if not missing:
            print(f"profile {args[1]}: inputs present")
        return 1 if missing else 0
    if len(args) != 1:
        print("usage: python -m mambapro.inputs [--check] <profile>", file=sys.stderr)
        return 2
    try:
        record = record_inputs(args[0])
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"recorded {results.inputs_path(args[0])}: {', '.join(record['datasets'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
