"""Where the pipeline's results live, how they are written (atomically) and read back, and their seed statistics.

Layout, relative to the project root (the folder holding ``dvc.yaml``), for a *namespace* that is a profile name
(``default``, ``rgbnt201``, ...) or a profile's vehicle runs (``<profile>/vehicle``):

* ``runs/<namespace>/<preset>/seed<k>/``: checkpoints (``last.pt``, ``best.pt``) and dvclive logs;
* ``results/<namespace>/runs/<preset>/seed<k>/metrics.json`` and ``train.ipynb``: one training run;
* ``results/<namespace>/evaluation/<preset>.json``: missing modalities and re-ranking of a trained preset;
* ``results/<profile>/inputs.json``: the record of the profile's dataset and backbone weights;
* ``results/<namespace>/tables/``, ``results/<namespace>/figures/``: what the tables and figures stages write;
* ``results/complexity.csv``: parameter and FLOP counts at paper scale (profile-independent).

Two profiles' runs therefore coexist in one workspace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METRIC_KEYS = ("mAP", "R1", "R5", "R10", "mINP")
INTERVAL_KEYS = ("mAP_ci95_lo", "mAP_ci95_hi")  # one run's 95 % bootstrap interval of mAP over queries
ROOT_ENV = "MAMBAPRO_ROOT"
_UMASK = os.umask(0)
os.umask(_UMASK)


class MissingResultError(FileNotFoundError):
    """A result file that a table or figure needs does not exist."""


class ResultFormatError(ValueError):
    """A result file without a key or column that a table needs."""


# ----------------------------------------------------------------------------------------------------------------
# Paths


def project_root(start: str | Path | None = None) -> Path:
    """The project root: ``$MAMBAPRO_ROOT``, else the nearest folder at or above ``start`` (default: the working
    directory) holding ``dvc.yaml``, else the folder above this package's (a source checkout).  Notebooks resolve
    their paths from here, so they work from wherever Jupyter starts them."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    source = Path(__file__).resolve().parents[1]
    if (source / "dvc.yaml").is_file():
        return source
    raise MissingResultError(f"no dvc.yaml at or above {here}; set {ROOT_ENV} to the project folder")


def results_dir(namespace: str, root: str | Path = ".") -> Path:
    return Path(root) / "results" / namespace


def run_dir(namespace: str, preset: str, seed: int | str, root: str | Path = ".") -> Path:
    """Checkpoints of one run: ``runs/<namespace>/<preset>/seed<seed>``."""
    return Path(root) / "runs" / namespace / preset / f"seed{seed}"


def metrics_path(folder: str | Path, preset: str, seed: int | str = "*") -> Path:
    """One run's metrics in a namespace's results ``folder`` (``seed="*"``: the glob over seeds)."""
    return Path(folder) / "runs" / preset / f"seed{seed}" / "metrics.json"


def evaluation_path(folder: str | Path, preset: str) -> Path:
    return Path(folder) / "evaluation" / f"{preset}.json"


def inputs_path(profile: str, root: str | Path = ".") -> Path:
    return results_dir(profile, root) / "inputs.json"


def vehicle_namespace(profile: str) -> str:
    return f"{profile}/vehicle"


# ----------------------------------------------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on any error (or interrupt)
    it is removed, so ``path`` holds the previous complete file or the new complete one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # `.NAME.PID.XXXXXXXX.tmp`: .dvcignore hides it from DVC, and a stage start (nbrun) removes it once PID is gone
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # as a plain open() would create it (mkstemp makes it private)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=1))


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically, through a file object: the archive's inner folder is then always ``archive``
    (from a path torch names it after the file, here a random temporary name, and the bytes would differ)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def tensors_digest(path: str | Path) -> str:
    """SHA-256 of a saved state dict's content (names, dtypes, shapes, values): equal for equal weights, unlike
    the file's bytes, which hold a random serialization id on every ``torch.save``."""
    import torch

    digest = hashlib.sha256()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name in sorted(state):
        t = state[name].contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, computed once per process for a given path, size, mtime and algorithm."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, algorithm)
    if key not in _DIGESTS:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON result; a missing or malformed file names ``what`` needed it and the path."""
    path = Path(path)
    if not path.is_file():
        raise MissingResultError(f"{what}: expected {path}, which does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultFormatError(f"{path} is not valid JSON ({e})") from e


def seed_metrics_files(folder: str | Path, preset: str) -> list[Path]:
    """The existing ``metrics.json`` files of ``preset``'s runs in results ``folder``, in seed order."""
    found = ((int(m[1]), p) for p in (Path(folder) / "runs" / preset).glob("seed*/metrics.json")
             if (m := re.fullmatch(r"seed(\d+)", p.parent.name)))
    return [p for _, p in sorted(found)]


def trained_presets(folder: str | Path) -> list[str]:
    """The presets with at least one run's ``metrics.json`` in results ``folder``, sorted."""
    return sorted({p.parts[-3] for p in Path(folder).glob("runs/*/seed*/metrics.json")})


def load_metrics(folder: str | Path, preset: str) -> dict[str, Any]:
    """Every seed's metrics of ``preset`` as one record: ``runs`` (per seed, in seed order) and their ``summary``
    (:func:`summarize_seeds`).  No run at all names the preset, the stage to run and the path expected."""
    paths = seed_metrics_files(folder, preset)
    if not paths:
        raise MissingResultError(
            f"preset {preset!r} has no training results in {folder} (`dvc repro train@{preset}-<seed>` under its "
            f"profile): expected {metrics_path(folder, preset)}, which matches no file")
    runs = []
    for path in paths:
        run = read_json(path, f"preset {preset!r}")
        for key in ("seed", "last", "best", "history"):
            if key not in run:
                raise ResultFormatError(f"{path}: missing key {key!r}")
        runs.append(run)
    first = runs[0]
    return {"preset": preset, "profile": first.get("profile"), "config": first.get("config", {}),
            "summary": summarize_seeds(runs), "runs": runs,
            "_path": str(metrics_path(folder, preset))}


def summarize_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (sample) standard deviation over seeds of the last- and best-epoch metrics."""
    if not results:
        raise ValueError("no runs to summarise")
    summary: dict[str, Any] = {}
    for which in ("last", "best"):
        for k in METRIC_KEYS:
            vals = [r[which][k] for r in results]
            summary[f"{which}/{k}/mean"] = statistics.fmean(vals)
            summary[f"{which}/{k}/std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    summary["seeds"] = [r["seed"] for r in results]
    return summary


def mean_over_seeds(per_seed: dict[Any, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """``{setting: {metric: mean}}`` over the seeds of ``{seed: {setting: {metric: value}}}``."""
    first = next(iter(per_seed.values()))
    return {s: {k: statistics.fmean(r[s][k] for r in per_seed.values()) for k in first[s]} for s in first}
