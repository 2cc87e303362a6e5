"""The registries (mambapro/registry.py): one table per kind that configuration, presets, model builders, engine and
complexity counter read.  A throw-away aggregator registered from a temporary module is accepted everywhere; every
registry agrees with the configuration, the presets, the profiles and the paper's rows; and the files a new
aggregator or dataset needs are listed (and checked against where the existing ones are mentioned)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from mambapro import complexity, config, paper_results, scan
from mambapro.aggregation import build_aggregator
from mambapro.config import PRESETS, PROFILES, TABLES, ConfigError, resolve_config
from mambapro.data.readers import is_vehicle, object_kind
from mambapro.model import build_model
from mambapro.registry import AGGREGATORS, DATASETS, REGISTRIES, Registry, RegistryError

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")  # fvcore's import

ROOT = Path(__file__).resolve().parents[1]

# The files to touch to add a Table 6 aggregator (README contributor section (a)), one line each.
NEW_AGGREGATOR_FILES = {
    "mambapro/aggregation.py": "the block and AGGREGATORS.register(kind, factory, scan=, stacked=, paper=)",
    "mambapro/presets.yaml": "its preset, e.g. agg-<kind>: {aggregation: {kind: <kind>}}",
    "mambapro/config.py": "its (row label, preset) in TABLES['table6']",
    "mambapro/paper_results.py": "its row of TABLE6 as printed (metrics, flops_G, params_M)",
}
# Not counted above: params.yaml's train_presets also names every preset (tests/test_pipeline.py checks it holds
# them all), and complexity.NOTES explains a row only where our count differs from the paper's (optional; its
# entries are skipped by the scan below).
ALSO_NAMING_PRESETS = {"params.yaml": "train_presets"}
_NOTES_ENTRY = re.compile(r'^\s*\("table\w+", .*$', re.M)  # a complexity.NOTES key line
# The files to touch to add a dataset profile (README contributor section (b)), one line each.
NEW_DATASET_FILES = {
    "mambapro/data/readers.py": "its reader and DATASETS.register(name, object=, folder=, modalities=, image_size=, "
                                "protocol=)",
    "mambapro/profiles.yaml": "its profile (and `vehicle:` in a person profile whose vehicle runs use it)",
    "mambapro/paper_results.py": "its paper rows, if the paper reports on it",
    "mambapro/data/synthetic*": "only for a synthetic stand-in in the embedded benchmark (optional)",
}

THROWAWAY = '''
"""A throw-away aggregator for tests/test_registry.py: the mean of the three modalities through one Linear."""
from torch import nn

from mambapro.registry import AGGREGATORS


class MeanFusion(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, xs):
        return [self.proj((xs[0] + xs[1] + xs[2]) / 3)] * 3


AGGREGATORS.register("throwaway_mean", lambda dim, grid, cfg: MeanFusion(dim), scan=False, stacked=True,
                     paper=(("table6", "Throwaway"),))
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """Register ``throwaway_mean`` by importing a module written to ``tmp_path``; unregister it afterwards."""
    (tmp_path / "throwaway_aggregator.py").write_text(THROWAWAY)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("throwaway_aggregator")
        yield "throwaway_mean"
    finally:
        if "throwaway_mean" in AGGREGATORS:
            AGGREGATORS.unregister("throwaway_mean")
        sys.modules.pop("throwaway_aggregator", None)


def _add_table6_row(monkeypatch, kind: str) -> None:
    """The other three places of a new Table 6 aggregator, in memory: its preset, its TABLES row, its paper row."""
    monkeypatch.setitem(PRESETS, "agg-throwaway", {"aggregation": {"kind": kind}})
    monkeypatch.setitem(TABLES, "table6", [*TABLES["table6"], ("Throwaway", "agg-throwaway")])
    table6 = paper_results.paper_table("table6")
    row = ("Throwaway", (70.0, 71.0, 80.0, 85.0, 0.03, 1.84))
    monkeypatch.setitem(paper_results.PAPER_TABLES, "table6", dataclasses.replace(table6, rows=(*table6.rows, row)))


# --------------------------------------------------------------------------------------------------------------
# The registry itself


def test_registry_register_get_and_errors():
    reg = Registry("demo.kind", "tests/test_registry.py", required=("size",))
    assert reg.register("none", None, size=0) is None

    @reg.register("big", size=3)
    def make_big():
        return "big"

    assert reg.names() == ("none", "big") and list(reg) == ["none", "big"] and "big" in reg and len(reg) == 2
    assert reg.get("big").obj is make_big and reg.fact("big", "size") == 3 and reg.where(size=0) == ("none",)
    with pytest.raises(RegistryError, match=r"demo.kind = 'small' is not one of: none, big \(registered in "
                                            r"tests/test_registry.py"):
        reg.get("small")
    with pytest.raises(RegistryError, match="'big' is registered twice"):
        reg.register("big", make_big, size=1)
    with pytest.raises(RegistryError, match="'odd' lacks the fact"):
        reg.register("odd", make_big)
    with pytest.raises(RegistryError, match="has no fact 'colour'"):
        reg.fact("big", "colour")
    assert reg.unregister("big").name == "big" and reg.names() == ("none",)


def test_registries_are_full_after_import_mambapro_and_the_registry_is_a_leaf():
    """Arrows point down: mambapro.registry imports nothing of the package; the package's __init__ imports every
    registering module once (as timm's models/__init__), so a fresh interpreter sees every kind."""
    import ast
    import subprocess
    import sys

    tree = ast.parse((ROOT / "mambapro" / "registry.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("mambapro")}
    code = ("import mambapro.config as c; from mambapro.registry import REGISTRIES as R; "
            "print(*[len(r) for r in R])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert all(int(n) >= 2 for n in out), out


# --------------------------------------------------------------------------------------------------------------
# A new aggregator through the registry alone


def test_throwaway_aggregator_is_accepted_by_config_presets_model_and_complexity(throwaway, monkeypatch):
    # configuration validation and an override
    cfg = resolve_config("bare", overrides={"aggregation": {"kind": throwaway}})
    assert cfg.aggregation.kind == throwaway
    # presets resolution
    _add_table6_row(monkeypatch, throwaway)
    assert resolve_config("default", "agg-throwaway").aggregation.kind == throwaway
    # the model builder
    model = build_model(cfg, num_classes=5, num_cameras=2)
    assert model.aggregation is not None and model.aggregation.kind == throwaway
    # the complexity counter: one block (512 x 512 + 512) plus the three reductions (1,580,544)
    agg = build_aggregator(complexity.paper_config("agg-throwaway", aggregation={"num_blocks": 1}).aggregation,
                           512, (16, 8))
    assert complexity.aggregation_block_params(agg) == 512 * 512 + 512 + 1_580_544
    tokens = [torch.zeros(1, 129, 512) for _ in range(3)]
    plain = build_aggregator(config.AggregationConfig(kind="sum"), 512, (16, 8))
    assert complexity.count_flops(agg, (tokens,)) - complexity.count_flops(plain, (tokens,)) == 128 * 512 * 512
    # and the complexity table's code, with its paper row
    monkeypatch.setitem(TABLES, "table6", [("Throwaway", "agg-throwaway")])
    rows = {r["quantity"]: r for r in complexity.aggregation_rows("table6")}
    assert rows["params"]["ours"] == 1.84 and rows["params"]["paper"] == 1.84 and rows["flops"]["paper"] == 0.03
    assert rows["params"]["row"] == "Throwaway" and rows["params"]["preset"] == "agg-throwaway"


def test_unregistered_kind_is_rejected_everywhere(throwaway):
    AGGREGATORS.unregister(throwaway)
    with pytest.raises(ConfigError, match=r"aggregation.kind = 'throwaway_mean' is not one of: none, sum"):
        resolve_config("bare", overrides={"aggregation": {"kind": throwaway}})
    with pytest.raises(ValueError, match="aggregation.kind = 'throwaway_mean'"):
        build_aggregator(config.AggregationConfig(kind=throwaway), 32, (2, 2))


# --------------------------------------------------------------------------------------------------------------
# Every registry agrees


def disagreements() -> list[str]:
    """Every way the registries, the configuration, the presets, the profiles and the paper's rows disagree."""
    problems = []
    read = {id(c): key for key, c in config._CHOICES.items() if isinstance(c, Registry)}
    for reg in REGISTRIES:
        if id(reg) not in read:
            problems.append(f"config._CHOICES does not read the registry of {reg.key}")
    for (section, name), choices in config._CHOICES.items():
        if isinstance(choices, Registry) and f"{section}.{name}" not in choices.key.split(" / "):
            problems.append(f"config._CHOICES[{section}.{name}] reads the registry of {choices.key}")
    for entry in AGGREGATORS.entries():  # each aggregator's paper rows exist, with a preset of that kind
        for table, label in entry.facts["paper"]:
            if label not in paper_results.paper_table(table).labels:
                problems.append(f"aggregator {entry.name}: no row {label!r} in paper_results {table}")
            presets = [p for row, p in TABLES.get(table, []) if row == label]
            if not presets:
                problems.append(f"aggregator {entry.name}: no row {label!r} in config.TABLES[{table!r}]")
            elif resolve_config("bare", presets[0]).aggregation.kind != entry.name:
                problems.append(f"aggregator {entry.name}: preset {presets[0]} of {table} {label!r} is another kind")
    for table in ("table6", "table11"):  # and each row of the aggregation tables names its aggregator's paper row
        for label, preset in TABLES[table]:
            kind = resolve_config("bare", preset).aggregation.kind
            if (table, label) not in AGGREGATORS.fact(kind, "paper"):
                problems.append(f"{table} row {label!r} (preset {preset}, kind {kind}) is not in its paper fact")
    for preset in PRESETS:  # every preset's and profile's kinds are registered
        try:
            resolve_config("bare", preset)
        except ConfigError as e:
            problems.append(f"preset {preset}: {e}")
    for profile, entry in PROFILES.items():
        cfg = resolve_config(profile)
        h, w = cfg.data.image_size
        if (h < w) != is_vehicle(cfg.data.dataset):
            problems.append(f"profile {profile}: image_size {h}x{w} is not {object_kind(cfg.data.dataset)}-shaped")
        if cfg.backbone.arch == "ViT-B-16-quickgelu" and (h, w) != DATASETS.fact(cfg.data.dataset, "image_size"):
            problems.append(f"paper profile {profile}: image_size {h}x{w} is not the paper's for {cfg.data.dataset}")
        vehicle = entry["pipeline"].get("vehicle")
        if vehicle and (is_vehicle(cfg.data.dataset) or not is_vehicle(resolve_config(vehicle).data.dataset)):
            problems.append(f"profile {profile}: its vehicle runs ({vehicle}) are not persons -> vehicles")
    for table in complexity.TABLES_WITH_COMPLEXITY:  # complexity's paper values all come from paper_results
        for label, _ in TABLES[table]:
            for quantity in ("params",) if table == "table3" else ("params", "flops"):
                if not isinstance(complexity.paper_value(table, label, quantity), float):
                    problems.append(f"paper_results {table} {label!r} has no {quantity}")
    for entry in scan.SCAN_BACKENDS.entries():
        traced = entry.facts["traced"]
        if traced is not None and not issubclass(getattr(scan, traced, object), torch.autograd.Function):
            problems.append(f"scan backend {entry.name}: traced {traced!r} is no autograd Function of scan.py")
    return problems


def test_every_registry_agrees():
    assert disagreements() == []
    assert AGGREGATORS.where(paper=()) == ("none",)  # the one aggregator stated to have no paper row


def test_the_agreement_check_catches_a_missing_paper_row(throwaway, monkeypatch):
    """Registration alone is not a Table 6 row: the preset, the TABLES row and the paper row are missing."""
    found = disagreements()
    assert any("no row 'Throwaway' in paper_results table6" in p for p in found)
    assert any("no row 'Throwaway' in config.TABLES['table6']" in p for p in found)
    _add_table6_row(monkeypatch, throwaway)
    assert disagreements() == []


def test_datasets_registry_derives_person_or_vehicle():
    assert DATASETS.names() == ("RGBNT201", "RGBNT100", "MSVR310")
    assert [object_kind(d) for d in DATASETS] == ["person", "vehicle", "vehicle"]
    assert DATASETS.where(object="vehicle") == ("RGBNT100", "MSVR310") and not is_vehicle("RGBNT201")
    with pytest.raises(RegistryError, match="data.dataset = 'Market1501' is not one of: RGBNT201"):
        is_vehicle("Market1501")


# --------------------------------------------------------------------------------------------------------------
# The files a new kind needs


def _mentions(pattern: str) -> set[str]:
    files = [p for d in ("mambapro", "nbrun", "notebooks") for p in (ROOT / d).rglob("*")
             if p.is_file() and p.suffix in (".py", ".yaml", ".ipynb")]
    files += [ROOT / "params.yaml", ROOT / "dvc.yaml"]
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    texts["mambapro/complexity.py"] = _NOTES_ENTRY.sub("", texts["mambapro/complexity.py"])
    return {name for name, text in texts.items() if re.search(pattern, text, re.M)}


def test_files_a_new_aggregator_needs():
    """Every Table 6 / 11 aggregator (not rows of Table 3) is named only in the files listed for a new one."""
    assert len(NEW_AGGREGATOR_FILES) <= 4
    table3 = {preset for _, preset in TABLES["table3"]}
    checked = 0
    for entry in AGGREGATORS.entries():
        for table, label in entry.facts["paper"]:
            preset = next(p for row, p in TABLES[table] if row == label)
            if preset in table3:
                continue  # MA is the paper's model F, named throughout
            checked += 1
            for pattern in (rf"[\"']{entry.name}[\"']|kind: {entry.name}\b", rf"[\"']{re.escape(label)}[\"']",
                            rf"[\"']{preset}[\"']|^{preset}:|[\[ ,]{preset}[,\]]"):
                extra = _mentions(pattern) - set(NEW_AGGREGATOR_FILES) - set(ALSO_NAMING_PRESETS)
                assert not extra, f"{entry.name} ({pattern}) is also named in {sorted(extra)}"
    assert checked == 6


def test_files_a_new_dataset_needs():
    """A dataset's name is a choice only through its registration (no literal tuple of dataset names)."""
    assert len(NEW_DATASET_FILES) <= 6
    for name in DATASETS:
        choices = {f for f in _mentions(rf"\(\s*[\"']{name}[\"'],\s*[\"']")  # a literal tuple of dataset names
                   if not f.startswith("mambapro/data/synthetic")}  # what the generator writes (optional, above)
        assert not choices, f"{name} is listed in a tuple in {sorted(choices)}"
