"""Vehicle or person: one answer, the dataset registry's ``object`` fact read through ``config.object_kind``, which
tables, figures, verify and the pipeline all use (issue 18: it was decided four ways)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from mambapro import config, pipeline
from mambapro.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]


def test_object_kind_is_the_datasets_fact(monkeypatch):
    kinds = {p: config.object_kind(p) for p in config.PROFILES}
    assert kinds["default"] == kinds["rgbnt201"] == "person"
    assert kinds["default-vehicle"] == kinds["rgbnt100"] == kinds["msvr310"] == "vehicle"
    monkeypatch.setitem(DATASETS.get("MSVR310").facts, "object", "person")  # the registry decides, not a name list
    assert config.object_kind("msvr310") == "person"
    with pytest.raises(config.ConfigError, match="unknown profile 'nope'"):
        config.object_kind("nope")


def _with_vehicle(monkeypatch, profile: str, vehicle: str | None) -> None:
    entry = copy.deepcopy(config.PROFILES[profile])
    entry["pipeline"]["vehicle"] = vehicle
    monkeypatch.setitem(config.PROFILES, profile, entry)


def test_the_declared_vehicle_profile_is_checked(monkeypatch):
    assert pipeline.vehicle_profile("default") == "default-vehicle"
    assert pipeline.vehicle_profile("rgbnt100") is None
    _with_vehicle(monkeypatch, "default", "rgbnt201")
    with pytest.raises(config.ConfigError, match=r"profiles.yaml: default: pipeline: vehicle = 'rgbnt201' trains "
                                                 r"on persons \(RGBNT201\); name a vehicle profile"):
        pipeline.vehicle_profile("default")
    _with_vehicle(monkeypatch, "rgbnt100", "msvr310")
    with pytest.raises(config.ConfigError, match=r"'rgbnt100' itself trains on vehicles \(RGBNT100\).*null"):
        pipeline.vehicle_profile("rgbnt100")


def test_use_refuses_a_person_profile_as_the_vehicle_runs(monkeypatch, tmp_path):
    """The old code wrote ``profile_stages: vehicle: [rgbnt201]`` (person runs behind Table 12 and Fig. 11)."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert pipeline.use("default", params)["vehicle"] == ["default-vehicle"]
    _with_vehicle(monkeypatch, "default", "rgbnt201")
    with pytest.raises(config.ConfigError, match="pipeline: vehicle = 'rgbnt201' trains on persons"):
        pipeline.use("default", params)
    with pytest.raises(config.ConfigError, match="pipeline: vehicle = 'rgbnt201' trains on persons"):
        pipeline.load_params(params)
