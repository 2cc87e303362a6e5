"""Compare a rerun's metrics with the committed ones: do the numbers reproduce?

``python -m mambapro.verify [--profile P] [--against REV] [--tolerance T] [--exact] [STAGE_OR_PRESET ...]`` reads
each run's ``metrics.json`` from the working tree (``results/<profile>/runs/<preset>/seed<k>/``, and the vehicle
runs under ``results/<profile>/vehicle/runs/``) and from git (``git show REV:<path>``, REV default ``HEAD``), and
prints per table row (:data:`mambapro.config.TABLES`; presets in no table come last) the difference rerun −
committed of the last-epoch mAP and R1, per seed and its mean over the compared seeds, also in units of the stated
uncertainty: SE = the committed standard deviation over seeds / sqrt(number of committed seeds).  With one committed
seed (or a standard deviation of 0) there is no such unit: a run is "bit-identical" or "n/a" (flagged ``!``).

Arguments select runs: a stage (``train@F-0``, ``train_vehicle@default-vehicle-F-0``) or a preset (every seed of it,
person and vehicle runs); default: every committed run (its working-tree ``metrics.json`` must exist).  ``--exact``
expects every compared run to be bit-identical (``last``, ``best`` and the per-epoch ``history``).

A run whose working-tree ``metrics.json`` is the committed file byte for byte is only a rerun if the rerun left a
trace: a ``train.ipynb`` beside it that differs from the committed one (papermill stamps each execution), or a
checkpoint folder (``runs/<namespace>/<preset>/seed<k>/``) holding a file newer than the commit.  Otherwise it is
reported "not rerun" (comparing the committed file with itself proves nothing).

Exit status 1 when a run differs by more than ``--tolerance`` SE (default 2) in mAP or R1, when an ``--exact`` run is
not bit-identical, or when a selected run was not rerun; 2 on a missing or invalid file (the error names it); 0
otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambapro.config import PRESETS, PROFILES, TABLES, ConfigError, object_kind
from mambapro.results import (
    METRIC_KEYS,
    MissingResultError,
    ResultFormatError,
    metrics_path,
    project_root,
    read_json,
    results_dir,
    run_dir,
    summarize_seeds,
    vehicle_namespace,
)

COMPARED = ("mAP", "R1")
EXACT_KEYS = ("last", "best", "history")
NOT_IN_A_TABLE = "not in any table"


class VerifyError(ValueError):
    """An argument that names no run, or a revision or file that cannot be read."""


@dataclass(frozen=True, order=True)
class Run:
    namespace: str
    preset: str
    seed: int

    def path(self) -> Path:
        """``results/<namespace>/runs/<preset>/seed<k>/metrics.json``, relative to the project root."""
        return metrics_path(results_dir(self.namespace), self.preset, self.seed)


@dataclass
class Comparison:
    """One run: rerun − committed per metric, the preset's SE per metric, and what differs under ``--exact``."""

    run: Run
    diff: dict[str, float]
    se: dict[str, float]
    n: int
    mismatched: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# Which runs


def parse_target(arg: str, profile: str) -> tuple[str | None, str, int | None]:
    """(namespace or None for both, preset, seed or None for every seed) of a stage or preset name."""
    if m := re.fullmatch(r"train@(.+)-(\d+)", arg):
        return profile, m[1], int(m[2])
    if m := re.fullmatch(r"train_vehicle@(.+)-(\d+)", arg):
        return vehicle_namespace(profile), _vehicle_preset(m[1], arg), int(m[2])
    if "@" in arg:
        raise VerifyError(f"{arg!r} is not a training stage (train@<preset>-<seed> or "
                          "train_vehicle@<vehicle profile>-<preset>-<seed>)")
    return None, arg, None


def _vehicle_preset(body: str, arg: str) -> str:
    """The preset of ``<vehicle profile>-<preset>`` (both names may hold dashes: the longest known profile wins)."""
    for name in sorted(PROFILES, key=len, reverse=True):
        if body.startswith(f"{name}-") and body[len(name) + 1:] in PRESETS:
            return body[len(name) + 1:]
    raise VerifyError(f"{arg!r}: no known profile and preset in {body!r} (profiles: {', '.join(PROFILES)})")


def working_runs(root: Path, namespaces: list[str]) -> set[Run]:
    """The runs with a ``metrics.json`` in the working tree."""
    found = set()
    for ns in namespaces:
        for path in (results_dir(ns, root) / "runs").glob("*/seed*/metrics.json"):
            if m := re.fullmatch(r"seed(\d+)", path.parent.name):
                found.add(Run(ns, path.parent.parent.name, int(m[1])))
    return found


def committed_runs(root: Path, rev: str, namespaces: list[str]) -> set[Run]:
    """The runs with a ``metrics.json`` committed at ``rev``."""
    found = set()
    for ns in namespaces:
        listing = _git(root, "ls-tree", "-r", "--name-only", rev, "--", str(results_dir(ns) / "runs"))
        for line in listing.splitlines():
            parts = Path(line).relative_to(results_dir(ns) / "runs").parts
            if len(parts) == 3 and parts[2] == "metrics.json" and (m := re.fullmatch(r"seed(\d+)", parts[1])):
                found.add(Run(ns, parts[0], int(m[1])))
    return found


def select_runs(targets: list[str], profile: str, rev: str, working: set[Run], committed: set[Run]) -> list[Run]:
    """The runs to compare: every committed run, or those the targets name; each must exist in both (a committed
    run whose working-tree ``metrics.json`` is gone is an error naming it, not a skip)."""
    if not targets:
        if not committed:
            raise VerifyError(f"no run has a metrics.json committed at {rev} (under "
                              f"{results_dir(profile)}/runs and {results_dir(vehicle_namespace(profile))}/runs)")
        if gone := sorted(committed - working):
            raise MissingResultError(f"{len(gone)} committed run(s) have no metrics.json in the working tree: "
                                     + ", ".join(str(r.path()) for r in gone)
                                     + f" (restore with `git checkout {rev} -- <path>`, or rerun the stage)")
        return sorted(committed)
    selected: dict[Run, None] = {}
    for arg in targets:
        selected.update(dict.fromkeys(_target_runs(arg, profile, rev, working, committed)))
    return list(selected)


def _target_runs(arg: str, profile: str, rev: str, working: set[Run], committed: set[Run]) -> list[Run]:
    namespace, preset, seed = parse_target(arg, profile)
    if seed is not None:
        run = Run(namespace, preset, seed)
        if run not in committed:
            raise MissingResultError(f"{arg}: {rev}:{run.path()} is not committed")
        if run not in working:
            raise MissingResultError(f"{arg}: expected {run.path()} in the working tree, which does not exist")
        return [run]
    runs = sorted(r for r in working & committed if r.preset == preset)
    if not runs:
        where = " or ".join(str(metrics_path(results_dir(ns), preset))
                            for ns in (profile, vehicle_namespace(profile)))
        raise MissingResultError(f"preset {preset!r}: no run has {where} both in the working tree and at {rev}"
                                 + ("" if preset in PRESETS else f" (and {preset!r} is no preset)"))
    return runs


# ----------------------------------------------------------------------------------------------------------------
# Reading


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if done.returncode:
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        raise VerifyError(f"git {' '.join(args)} in {root}: {detail}")
    return done.stdout


def resolve_rev(root: Path, rev: str) -> str:
    """The commit ``rev`` names (an unknown revision is an error naming it)."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except VerifyError as e:
        raise VerifyError(f"--against {rev!r} is not a commit of a git repository at {root} ({e})") from e


def committed_text(root: Path, rev: str, path: Path) -> str:
    """``git show REV:path``; a file git does not have at ``rev`` names ``REV:path``."""
    done = subprocess.run(["git", "-C", str(root), "show", f"{rev}:./{path.as_posix()}"], capture_output=True,
                          text=True)
    if done.returncode:
        raise MissingResultError(f"{rev}:{path} cannot be read from git ({done.stderr.strip()})")
    return done.stdout


def committed_json(root: Path, rev: str, path: Path) -> dict[str, Any]:
    """``git show REV:path`` as JSON; a missing or malformed file names ``REV:path``."""
    text = committed_text(root, rev, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultFormatError(f"{rev}:{path} is not valid JSON ({e})") from e


def checked(run: Any, where: str, exact: bool) -> dict[str, Any]:
    """``run`` if it has what the comparison reads (seed, last and best metrics; history under ``--exact``)."""
    if not isinstance(run, dict):
        raise ResultFormatError(f"{where}: expected a JSON object, got {type(run).__name__}")
    for key in ("seed", "last", "best", *(("history",) if exact else ())):
        if key not in run:
            raise ResultFormatError(f"{where}: missing key {key!r}")
    for which in ("last", "best"):
        if missing := [k for k in METRIC_KEYS if not isinstance(run[which], dict) or k not in run[which]]:
            raise ResultFormatError(f"{where}: {which!r} lacks {', '.join(missing)}")
    return run


def commit_time(root: Path, commit: str) -> int:
    """The committer date of ``commit`` (seconds since the epoch)."""
    return int(_git(root, "log", "-1", "--format=%ct", commit).strip())


def was_rerun(root: Path, rev: str, since: float, run: Run) -> bool:
    """Whether ``run`` was trained again after ``rev`` was committed (at ``since``): its working-tree
    ``metrics.json`` differs from the committed one, its ``train.ipynb`` differs from the committed one (each
    execution stamps its start and end times), or its checkpoint folder holds a file newer than the commit."""
    path = root / run.path()
    if path.read_text() != committed_text(root, rev, run.path()):
        return True
    notebook = run.path().with_name("train.ipynb")
    if (root / notebook).is_file():
        try:
            if (root / notebook).read_text() != committed_text(root, rev, notebook):
                return True
        except MissingResultError:  # a notebook git does not have: written since
            return True
    folder = run_dir(run.namespace, run.preset, run.seed, root)
    return folder.is_dir() and any(p.stat().st_mtime > since for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------------------------
# Comparing


def standard_errors(committed: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
    """Per compared metric, the committed std over seeds / sqrt(n seeds) (0 with one seed), and n."""
    summary, n = summarize_seeds(committed), len(committed)
    return {k: summary[f"last/{k}/std"] / math.sqrt(n) for k in COMPARED}, n


def canonical(value: Any) -> str:
    """A JSON text equal for equal values (NaN included)."""
    return json.dumps(value, sort_keys=True)


def compare(run: Run, rerun: dict, committed: dict, se: dict[str, float], n: int, exact: bool) -> Comparison:
    diff = {k: float(rerun["last"][k]) - float(committed["last"][k]) for k in COMPARED}
    mismatched = [k for k in EXACT_KEYS if exact and canonical(rerun[k]) != canonical(committed[k])]
    return Comparison(run, diff, se, n, mismatched)


def verdict(diff: float, se: float, n: int, tolerance: float) -> tuple[str, str]:
    """(text, status) of one difference; status: identical, within, beyond or n/a."""
    if diff == 0:
        return "bit-identical", "identical"
    if se > 0:
        units = diff / se
        status = "beyond" if abs(units) > tolerance else "within"
        return f"{diff:+.2f} ({units:+.2f} SE){' !' if status == 'beyond' else ''}", status
    return f"{diff:+.2f} n/a ({'one seed' if n == 1 else 'std 0'}) !", "n/a"


def failed(comp: Comparison, tolerance: float) -> bool:
    """A run differs by more than the tolerance, or is not bit-identical under ``--exact``."""
    return bool(comp.mismatched) or any(
        verdict(comp.diff[k], comp.se[k], comp.n, tolerance)[1] == "beyond" for k in COMPARED)


def compare_all(root: Path, rev: str, runs: list[Run], committed: set[Run], exact: bool) -> list[Comparison]:
    """Each run compared, with its preset's SE from every committed seed of the preset in its namespace."""
    out = []
    for key in dict.fromkeys((r.namespace, r.preset) for r in runs):
        seeds = sorted(r for r in committed if (r.namespace, r.preset) == key)
        old = {r: checked(committed_json(root, rev, r.path()), f"{rev}:{r.path()}", exact) for r in seeds}
        se, n = standard_errors(list(old.values()))
        for run in (r for r in runs if (r.namespace, r.preset) == key):
            path = root / run.path()
            new = checked(read_json(path, f"the rerun of {run.preset} seed {run.seed}"), str(path), exact)
            out.append(compare(run, new, old[run], se, n, exact))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Printing


def table_rows(namespace: str, profile: str, presets: set[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(table, [(row, preset)]) of a namespace's runs (Table 12: the vehicle runs, or a vehicle profile's own),
    then the presets in none of them."""
    if namespace == vehicle_namespace(profile):
        names = ["table12"]
    else:
        names = [t for t in TABLES if t != "table12" or object_kind(profile) == "vehicle"]
    tables = [(t, [(row, p) for row, p in TABLES[t] if p in presets]) for t in names]
    listed = {p for t in names for _, p in TABLES[t]}
    rest = [(p, p) for p in sorted(presets - listed)]
    return [(t, rows) for t, rows in (*tables, (NOT_IN_A_TABLE, rest)) if rows]


def stage_name(run: Run, profile: str) -> str:
    """The DVC stage that trains ``run``: ``train@<preset>-<seed>`` or ``train_vehicle@<vehicle>-<preset>-<seed>``."""
    if run.namespace == vehicle_namespace(profile):
        vehicle = PROFILES.get(profile, {}).get("pipeline", {}).get("vehicle") or "<vehicle profile>"
        return f"train_vehicle@{vehicle}-{run.preset}-{run.seed}"
    return f"train@{run.preset}-{run.seed}"


def cells(diff: dict[str, float], comp: Comparison, tolerance: float) -> str:
    return "  ".join(f"{k} {verdict(diff[k], comp.se[k], comp.n, tolerance)[0]}" for k in COMPARED)


def row_lines(row: str, comps: list[Comparison], tolerance: float) -> list[tuple[str, str]]:
    """(label, cells): one per compared seed and, over several, one for the mean of their differences."""
    name = row if row == comps[0].run.preset else f"{row} [{comps[0].run.preset}]"
    lines = []
    for c in comps:
        extra = f"  {', '.join(c.mismatched)} differ{'s' if len(c.mismatched) == 1 else ''} !" if c.mismatched else ""
        lines.append((f"{name} seed{c.run.seed}", cells(c.diff, c, tolerance) + extra))
    if len(comps) > 1:
        mean = {k: sum(c.diff[k] for c in comps) / len(comps) for k in COMPARED}
        lines.append((f"{name} mean", cells(mean, comps[0], tolerance)))
    return lines


def report(comps: list[Comparison], profile: str, tolerance: float) -> list[str]:
    """The comparison, table by table and namespace by namespace (labels aligned within a table)."""
    lines = []
    for ns in dict.fromkeys(c.run.namespace for c in comps):
        mine = [c for c in comps if c.run.namespace == ns]
        for table, rows in table_rows(ns, profile, {c.run.preset for c in mine}):
            pairs = [p for row, preset in rows for p in row_lines(row, [c for c in mine if c.run.preset == preset],
                                                                  tolerance)]
            width = max(len(label) for label, _ in pairs)
            lines += [f"{table} ({ns})", *(f"  {label:<{width}}  {text}" for label, text in pairs)]
    return lines


def summary(comps: list[Comparison], tolerance: float, exact: bool, not_rerun: int = 0) -> str:
    """How many runs came back bit-identical, within the tolerance, beyond it, or without a unit, and how many
    selected runs were not rerun."""
    counts: dict[str, int] = {}
    for c in comps:
        statuses = {verdict(c.diff[k], c.se[k], c.n, tolerance)[1] for k in COMPARED}
        worst = next(s for s in ("beyond", "n/a", "within", "identical") if s in statuses)
        worst = "not bit-identical" if c.mismatched else worst
        counts[worst] = counts.get(worst, 0) + 1
    names = {"identical": "bit-identical", "within": f"within {tolerance:g} SE", "beyond": f"beyond {tolerance:g} SE",
             "n/a": "n/a (no SE; flagged !)", "not bit-identical": "not bit-identical (--exact)"}
    parts = [f"{counts[s]} {names[s]}" for s in names if s in counts] or ["none"]
    rest = f"; {not_rerun} not rerun (nothing to compare)" if not_rerun else ""
    return f"{len(comps)} run(s) compared{' (--exact)' if exact else ''}: {', '.join(parts)}{rest}"


# ----------------------------------------------------------------------------------------------------------------
# Command line


def active_profile(root: Path) -> str:
    """``params.yaml``'s profile (the one ``dvc repro`` runs), else ``default``."""
    params = root / "params.yaml"
    return (yaml.safe_load(params.read_text()) or {}).get("profile", "default") if params.is_file() else "default"


def verify(root: Path, profile: str, rev: str, targets: list[str], tolerance: float, exact: bool) -> int:
    commit = resolve_rev(root, rev)
    namespaces = [profile, vehicle_namespace(profile)]
    committed = committed_runs(root, rev, namespaces)
    selected = select_runs(targets, profile, rev, working_runs(root, namespaces), committed)
    since = commit_time(root, commit)
    stale = [r for r in selected if not was_rerun(root, rev, since, r)]
    comps = compare_all(root, rev, [r for r in selected if r not in stale], committed, exact)
    print(f"{profile}: the working tree's runs against {rev} ({commit[:10]}); last-epoch metrics, rerun - "
          f"committed; SE = committed std over seeds / sqrt(n seeds)")
    if comps:
        print("\n".join(report(comps, profile, tolerance)))
    if stale:
        print(f"not rerun ({len(stale)}): the working tree's metrics.json is {rev}'s, and no train.ipynb or "
              f"checkpoint newer than the commit exists:")
        print("\n".join(f"  {r.path()}  ({stage_name(r, profile)})" for r in stale))
    bad = [c for c in comps if failed(c, tolerance)]
    print(summary(comps, tolerance, exact, len(stale)))
    if bad:
        print("FAILED: " + ", ".join(f"{c.run.path()}" for c in bad))
    if stale:
        print(f"NOT RERUN: {len(stale)} run(s); rerun their stages first (e.g. `dvc repro -f --single-item "
              f"{stage_name(stale[0], profile)}`), or select only the runs you reran")
    return 1 if bad or stale else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mambapro.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", metavar="STAGE_OR_PRESET",
                   help="train@<preset>-<seed>, train_vehicle@<vehicle profile>-<preset>-<seed> or a preset name")
    p.add_argument("--profile", help="default: params.yaml's profile")
    p.add_argument("--against", default="HEAD", metavar="REV", help="the commit holding the numbers (HEAD)")
    p.add_argument("--tolerance", type=float, default=2.0, help="largest |difference| in SE units (2)")
    p.add_argument("--exact", action="store_true", help="expect bit-identical last, best and history")
    p.add_argument("--root", type=Path, help="project root (default: the folder holding dvc.yaml)")
    a = p.parse_args(argv)
    try:
        root = (a.root or project_root()).resolve()
        return verify(root, a.profile or active_profile(root), a.against, a.targets, a.tolerance, a.exact)
    except (ConfigError, MissingResultError, ResultFormatError, VerifyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
