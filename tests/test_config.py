"""Typed configuration, presets and profiles (official-implementation.md secs. 1-4 defaults)."""

import pytest

from mambapro.config import PRESETS, PROFILES, TABLES, Config, ConfigError, apply_overrides, resolve_config


def test_defaults_follow_official_code():
    cfg = resolve_config("rgbnt201", "F")
    assert cfg.adapter.kind == "pfa" and cfg.adapter.activation == "quickgelu"  # sec. 1.3
    assert cfg.prompt.kind == "srp_fusion" and cfg.prompt.length == 4 and cfg.prompt.init == "zeros"  # sec. 1.4
    assert cfg.aggregation.kind == "ma" and cfg.aggregation.num_blocks == 2 and cfg.aggregation.d_state == 16
    assert (cfg.loss.id_weight, cfg.loss.triplet_weight, cfg.loss.label_smoothing) == (0.25, 1.0, 0.1)  # sec. 2
    assert cfg.loss.triplet_margin is None  # soft margin
    assert (cfg.train.base_lr, cfg.train.backbone_lr, cfg.train.bias_lr_factor) == (3.5e-4, 5e-6, 2.0)  # sec. 4
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.data.batch_size, cfg.data.num_instances) == (60, 10, 64, 4)
    assert cfg.data.image_size == (256, 128)
    vehicles = resolve_config("rgbnt100")
    assert (vehicles.train.epochs, vehicles.data.batch_size, vehicles.data.num_instances) == (30, 128, 16)
    assert vehicles.data.image_size == (128, 256) and vehicles.loss.direct is False  # DIRECT=0, sec. 1.6


def test_every_table_row_names_a_preset_and_every_preset_builds():
    for table, rows in TABLES.items():
        for label, preset in rows:
            assert preset in PRESETS, (table, label, preset)
    for name in PRESETS:
        for profile in PROFILES:
            resolve_config(profile, name)


def test_rows_A_to_G_switch_the_paper_components():
    flags = {}
    for row in "ABCDEFG":
        c = resolve_config(preset=row)
        on = [k != "none" for k in (c.adapter.kind, c.prompt.kind, c.aggregation.kind)]
        flags[row] = (c.backbone.frozen, *on)
    # Table 3: (CLIP(L), PFA, SRP, MA)
    assert flags == {
        "A": (True, False, False, False), "B": (False, False, False, False), "C": (True, True, False, False),
        "D": (True, False, True, False), "E": (True, True, True, False), "F": (True, True, True, True),
        "G": (False, True, True, True),
    }


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: A, B"):
        resolve_config(preset="H")
    with pytest.raises(ConfigError, match="valid profiles: default"):
        resolve_config("imagenet")
    with pytest.raises(ConfigError, match=r"unknown key adapter\.rnak; valid keys: kind"):
        apply_overrides(Config(), {"adapter": {"rnak": 4}})
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        apply_overrides(Config(), {"optim.lr": 1.0})
    with pytest.raises(ConfigError, match=r"aggregation\.kind = 'mamba' is not one of"):
        apply_overrides(Config(), {"aggregation.kind": "mamba"})
    with pytest.raises(ConfigError, match=r"data\.batch_size: expected int"):
        apply_overrides(Config(), {"data": {"batch_size": "64"}})


def test_yaml_values_are_coerced_to_the_typed_fields():
    cfg = apply_overrides(Config(), {"data": {"image_size": [256, 128]}, "train.base_lr": 1, "eval.missing": ["r"]})
    assert cfg.data.image_size == (256, 128) and isinstance(cfg.train.base_lr, float) and cfg.eval.missing == ("r",)
    with pytest.raises(ConfigError, match="batch_size = 30 is not a multiple"):
        apply_overrides(Config(), {"data": {"batch_size": 30, "num_instances": 4}})


# ----------------------------------------------------------------------------------------------------------------
# Bad input (issue 19 item 7): nonsensical numbers and duplicate YAML keys are errors naming the key


@pytest.mark.parametrize("key, value, message", [
    ("train.base_lr", "Infinity", r"train\.base_lr = inf must be a finite number"),  # the engine CLI's --set JSON
    ("train.base_lr", "NaN", r"train\.base_lr = nan must be a finite number"),
    ("train.weight_decay", "-1", r"train\.weight_decay = -1\.0 must be >= 0"),
    ("train.weight_decay_bias", "-1e-4", r"train\.weight_decay_bias = -0\.0001 must be >= 0"),
    ("train.bias_lr_factor", "-5", r"train\.bias_lr_factor = -5\.0 must be > 0"),
    ("data.num_workers", "-3", r"data\.num_workers = -3 must be >= 0"),
    ("data.pad", "-1", r"data\.pad = -1 must be >= 0"),
    ("data.image_size", "[256, 0]", r"data\.image_size = \(256, 0\) must be positive"),
    ("loss.label_smoothing", "1.0", r"loss\.label_smoothing = 1\.0 must be in \[0, 1\)"),
    ("loss.triplet_margin", "-0.3", r"loss\.triplet_margin = -0\.3 must be >= 0, or null"),
    ("loss.triplet_margin", "Infinity", r"loss\.triplet_margin = inf must be a finite number"),
    ("loss.id_weight", "-0.25", r"loss\.id_weight = -0\.25 must be >= 0"),
    ("adapter.start_layer", "12", r"adapter\.start_layer = 12 must be in \[0, 11\]"),
    ("prompt.length", "0", r"prompt\.length = 0 must be >= 1"),
    ("aggregation.d_state", "0", r"aggregation\.d_state = 0 must be >= 1"),
    ("aggregation.dt_rank", "-4", r"aggregation\.dt_rank = -4 must be >= 1 or null"),
    ("backbone.sie_coe", "-1", r"backbone\.sie_coe = -1\.0 must be >= 0"),
    ("train.seed", "-1", r"train\.seed = -1 must be in \[0, 2\*\*63\)"),
])
def test_nonsensical_numbers_are_refused_naming_the_key(key, value, message):
    import json

    with pytest.raises(ConfigError, match=message):
        resolve_config("default", "F", {key: json.loads(value)})


def test_every_float_field_must_be_finite():
    """Whatever float field the dataclasses hold (fields added later included), inf and nan are refused."""
    import dataclasses
    import math

    cfg, checked = Config(), 0
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            if isinstance(getattr(getattr(cfg, section.name), f.name), float):
                for bad in (math.inf, -math.inf, math.nan):
                    with pytest.raises(ConfigError, match=rf"{section.name}\.{f.name} = .* must be a finite"):
                        apply_overrides(cfg, {f"{section.name}.{f.name}": bad})
                checked += 1
    assert checked >= 11


def test_duplicate_yaml_keys_name_the_key_and_both_lines(tmp_path, monkeypatch):
    from mambapro import config

    text = "A:\n  backbone: {frozen: true}\nB:\n  backbone: {frozen: false}\nA:\n  adapter: {kind: pfa}\n"
    with pytest.raises(ConfigError, match=r"presets\.yaml:5: duplicate key 'A' \(first at line 1\)"):
        config.load_yaml_text(text, "presets.yaml")
    nested = tmp_path / "profiles.yaml"
    nested.write_text("p:\n  config:\n    data: {batch_size: 8}\n    data: {batch_size: 16}\n  pipeline: {}\n")
    with pytest.raises(ConfigError, match=rf"{nested}:4: duplicate key 'data' \(first at line 3\)"):
        config._load_yaml(nested)
    flow = "seeds: [0, 1]\nx: {a: 1, a: 2}\n"
    with pytest.raises(ConfigError, match=r"params\.yaml:2: duplicate key 'a'"):
        config.load_yaml_text(flow, "params.yaml")
    merged = "base: &b {lr: 1}\nrun:\n  <<: *b\n  epochs: 2\n"  # merge keys are not duplicates
    assert config.load_yaml_text(merged, "m.yaml")["run"] == {"lr": 1, "epochs": 2}
    assert config._load_yaml(config.PRESETS_FILE) == config.PRESETS  # the shipped files have none
