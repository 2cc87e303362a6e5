"""Every DVC stage depends on exactly the code its command can import, derived from the imports themselves.

The closure is static (every ``import`` statement of a module, at top level or inside a function, followed through
the package), so a lazily imported module counts; the data files a module reads count with it (the preset and
profile files are DVC parameters of the stages instead, so that a stage depends on its own entries only).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mambapro", "nbrun")
DATA_FILES = {"mambapro/backbone.py": ["mambapro/model_configs"], "mambapro/native_scan.py": ["mambapro/csrc"]}
PARAM_FILES = {"mambapro/presets.yaml", "mambapro/profiles.yaml"}


def _module_file(name: str) -> str | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return str(candidate.relative_to(ROOT))
    return None


def _imports(source: str, package: str) -> set[str]:
    """Module names imported by ``source`` (a module of ``package``), absolute and relative."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] in PACKAGES}


def closure(entries: list[str], through_init: bool = True) -> set[str]:
    """Files (modules, notebooks, scripts) reachable from ``entries`` (module names or file paths), plus the data
    files those modules read.  ``through_init=False``: a package's ``__init__`` is reached but not followed (the
    module-to-module arrows only; ``mambapro/__init__.py`` imports every module that registers a kind)."""
    todo, seen = list(entries), set()
    while todo:
        entry = todo.pop()
        path = entry if "/" in entry else _module_file(entry)
        if path is None or path in seen:
            continue
        seen.add(path)
        if not through_init and path.endswith("__init__.py") and path not in entries:
            continue
        text = (ROOT / path).read_text()
        if path.endswith(".ipynb"):
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        package = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__") if path.endswith(".py") else ""
        for name in _imports(text, package):
            parts = name.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]  # a package's __init__ runs first
    return seen | {d for f in seen for d in DATA_FILES.get(f, [])}


def _stage_entries(cmd: str) -> list[str]:
    """The entry points a stage command runs: ``python -m X``, ``python X.py`` and the notebooks it executes.  The
    notebook executor (``nbrun``) is infrastructure, not a dependency: the same notebook gives the same results
    through it or through papermill (tests/test_runner.py), and editing it must not invalidate hours of training."""
    entries = re.findall(r"python -m ([\w.]+)", cmd) + re.findall(r"python (\S+\.py)", cmd)
    entries += re.findall(r"(notebooks/\S+\.ipynb)", cmd)
    return [e for e in entries if e.split(".")[0] == "mambapro" or "/" in e]


def _code(deps: list[str]) -> set[str]:
    return {d for d in deps if d.startswith(("mambapro", "notebooks/", "benchmarks/"))}


def stages() -> dict[str, dict]:
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


@pytest.mark.parametrize("name", list(stages()))
def test_stage_depends_on_exactly_the_code_its_command_imports(name):
    stage = stages()[name]
    expected = closure(_stage_entries(stage["cmd"])) - {"mambapro/presets.yaml", "mambapro/profiles.yaml"}
    declared = _code(stage["deps"])
    assert declared == expected, f"{name}: missing {sorted(expected - declared)}, extra {sorted(declared - expected)}"
    assert not PARAM_FILES & set(stage["deps"]), f"{name}: preset/profile files are parameters, not file deps"


def test_closure_follows_lazy_imports_and_data_files():
    files = closure(["mambapro.pipeline"])
    assert "mambapro/engine.py" in files  # imported inside train_run
    assert {"mambapro/native_scan.py", "mambapro/csrc", "mambapro/model_configs"} <= files
    assert "mambapro/figures.py" not in files and "nbrun/__init__.py" not in files


def test_training_stages_depend_on_their_own_preset_and_profile_only():
    for name in ("train", "train_vehicle"):
        params = stages()[name]["params"]
        files = {k: v for p in params if isinstance(p, dict) for k, v in p.items()}
        assert files["mambapro/presets.yaml"] == ["${item.preset}"]
        assert len(files["mambapro/profiles.yaml"]) == 1
        assert "seeds" not in params  # adding a seed re-runs no old stage


def test_the_package_has_no_import_cycle():
    """Arrows point down: no module of mambapro imports (at any depth, lazily or not) one that imports it back."""
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "mambapro").rglob("*.py")}
    reach = {m: closure([m], through_init=False) - {m, "mambapro/__init__.py", "mambapro/data/__init__.py"}
             for m in modules}
    cycles = sorted((a, b) for a in modules for b in reach[a] if b in modules and a in reach[b] and a < b)
    assert not cycles, cycles
