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
