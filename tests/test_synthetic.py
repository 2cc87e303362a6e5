"""The synthetic benchmark: determinism, complementarity of the modalities, what each modality shows, atomic and
guarded writing, the caption set."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mambapro.data.readers import DataError
from mambapro.data.synthetic import (
    PERSON_CAMERAS,
    PERSON_VISIBLE,
    VEHICLE_CAMERAS,
    VEHICLE_VISIBLE,
    attribute_oracle,
    generate,
    main,
    read_caption_set,
    render_person,
    render_vehicle,
    unique_fractions,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "a"
    return root, generate(root, seed=0, size="tiny")


TINY_SEED0_SHA256 = "cf2a81afd7b7c6f86db538de51a76b3d5a2d614b04be5e6d034ae8ce7a6457c7"


def test_the_tiny_benchmark_keeps_its_bytes(tiny):
    """The content digest of ``--size tiny --seed 0`` as generated before the generator was split by object kind
    (synthetic_person.py, synthetic_vehicle.py, synthetic_scene.py): a refactoring must not change one byte (the
    default size's tree is recorded in data.dvc)."""
    assert tiny[1]["content_sha256"] == TINY_SEED0_SHA256


def test_same_seed_gives_identical_bytes(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "b"
    generate(again, seed=0, size="tiny")
    a, b = _files(root), _files(again)
    assert list(a) == list(b) and len(a) > 100
    assert all(a[k] == b[k] for k in a)
    other = tmp_path / "c"
    generate(other, seed=1, size="tiny")
    assert _files(other)["summary.json"] != a["summary.json"]


def _check_complementarity(summary):
    for name, info in summary["datasets"].items():
        visible = PERSON_VISIBLE if name == "RGBNT201" else VEHICLE_VISIBLE
        ids = info["identities"]
        for split, members in (("train", ids["train"]), ("test", ids["test"]), ("all", ids["train"] + ids["test"])):
            fr = unique_fractions(members, visible)
            assert fr == info["unique_fraction"][split]  # the reported numbers are those of the identities
            for m in ("RGB", "NI", "TI"):
                assert fr[m] < 1.0, (name, split, m)  # no single modality tells every identity apart
            assert fr["RGB+NI+TI"] == 1.0  # the three together do
        joint = [tuple(sorted((k, v) for k, v in i.items() if k != "pid")) for i in ids["train"] + ids["test"]]
        assert len(set(joint)) == len(joint)


def test_complementarity_fractions_hold(tiny):
    _check_complementarity(tiny[1])


@pytest.mark.slow
def test_default_size_benchmark(tmp_path):
    summary = generate(tmp_path / "default", seed=0)
    _check_complementarity(summary)
    assert summary["datasets"]["RGBNT201"]["splits"]["train"] == {"ids": 40, "images": 320, "cameras": 4,
                                                                  "scenes": 0}
    assert 300 <= summary["pretrain"]["train"]["images"] + summary["pretrain"]["val"]["images"] <= 1500


@pytest.mark.parametrize("dataset", ["RGBNT201", "RGBNT100", "MSVR310"])
def test_attribute_oracle_needs_all_modalities(tiny, dataset):
    root, _ = tiny
    assert attribute_oracle(root, dataset)["mAP"] == pytest.approx(100.0)
    for m in ("RGB", "NI", "TI"):  # each modality's attributes are shared by two test identities at least
        assert attribute_oracle(root, dataset, (m,))["mAP"] < 100.0
        assert attribute_oracle(root, dataset, (m,), ties="random", draws=3)["mAP"] < 100.0


def test_unique_fractions_by_hand():
    ids = [{"top_colour": "red", "bottom_colour": "grey", "bag": "no", "top_pattern": "plain",
            "bottom_material": "cotton", "heat_layout": "coat"},
           {"top_colour": "red", "bottom_colour": "grey", "bag": "no", "top_pattern": "checks",
            "bottom_material": "cotton", "heat_layout": "coat"},
           {"top_colour": "blue", "bottom_colour": "grey", "bag": "no", "top_pattern": "checks",
            "bottom_material": "cotton", "heat_layout": "hood"}]
    fr = unique_fractions(ids, PERSON_VISIBLE)
    assert fr["RGB"] == pytest.approx(1 / 3)  # red/grey/no twice, blue once
    assert fr["NI"] == pytest.approx(1 / 3)  # plain once, checks twice
    assert fr["TI"] == pytest.approx(1 / 3)  # coat twice, hood once
    assert fr["RGB+NI"] == 1.0 and fr["RGB+NI+TI"] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# What each modality shows


PERSON = {"top_colour": "red", "bottom_colour": "grey", "bag": "yes", "top_pattern": "checks",
          "bottom_material": "synthetic", "heat_layout": "coat"}
VEHICLE = {"colour": "blue", "type": "sedan", "decal": "stripe", "windows": "tinted", "heat_layout": "engine front"}


def _changed(render, base, change, cam, **kw):
    a = render(base, cam, np.random.default_rng(5), **kw)
    b = render(dict(base, **change), cam, np.random.default_rng(5), **kw)
    return {m for m in ("RGB", "NI", "TI") if not np.array_equal(a[m], b[m])}


@pytest.mark.parametrize("change, modalities", [
    ({"top_colour": "green"}, {"RGB"}),
    ({"bottom_colour": "brown"}, {"RGB"}),
    ({"top_pattern": "plain"}, {"NI"}),
    ({"bottom_material": "cotton"}, {"NI"}),
    ({"heat_layout": "t-shirt"}, {"TI"}),
    ({"bag": "no"}, {"RGB", "NI", "TI"}),
])
def test_person_attributes_show_in_their_modalities_only(change, modalities):
    cam = replace(PERSON_CAMERAS[0], occlusion=0.0, glare=0.0)
    assert _changed(render_person, PERSON, change, cam) == modalities


@pytest.mark.parametrize("change, modalities", [
    ({"colour": "white"}, {"RGB"}),
    ({"decal": "checks"}, {"NI"}),
    ({"windows": "clear"}, {"NI"}),
    ({"heat_layout": "hot tyres"}, {"TI"}),
    ({"type": "van"}, {"RGB", "NI", "TI"}),
])
def test_vehicle_attributes_show_in_their_modalities_only(change, modalities):
    cam = replace(VEHICLE_CAMERAS[0], occlusion=0.0, glare=0.0)
    assert _changed(render_vehicle, VEHICLE, change, cam) == modalities


def test_low_light_degrades_rgb_only():
    day = replace(PERSON_CAMERAS[0], light=1.0, glare=0.0, occlusion=0.0)
    night = replace(day, light=0.2)
    a = render_person(PERSON, day, np.random.default_rng(2))
    b = render_person(PERSON, night, np.random.default_rng(2))
    assert b["RGB"].mean() < 0.4 * a["RGB"].mean()
    for m in ("NI", "TI"):  # NIR (active illumination) and TIR (heat) do not depend on the light
        assert abs(float(a[m].mean()) - float(b[m].mean())) < 3.0


# ----------------------------------------------------------------------------------------------------------------
# Writing


def test_refuses_a_different_output_unless_forced(tiny, tmp_path):
    out = tmp_path / "out"
    generate(out, seed=0, size="tiny")
    before = _files(out)
    generate(out, seed=0, size="tiny")  # identical: left as it is
    assert _files(out) == before
    with pytest.raises(FileExistsError, match="differs from the benchmark of seed 1"):
        generate(out, seed=1, size="tiny")
    assert _files(out) == before
    generate(out, seed=1, size="tiny", force=True)
    assert json.loads((out / "summary.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left behind
    (tmp_path / "empty").mkdir()
    generate(tmp_path / "empty", seed=0, size="tiny")  # an empty folder is not "different output"
    assert _files(tmp_path / "empty") == _files(tiny[0])


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--seed", "0", "--size", "tiny"]) == 0
    assert "RGBNT201: train 6 ids" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "x"), "--seed", "3", "--size", "tiny"]) == 1
    assert "--force" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Caption set


def test_caption_set(tiny):
    root, summary = tiny
    train = read_caption_set(root, "train")
    val = read_caption_set(root, "val")
    assert len(train) == summary["pretrain"]["train"]["images"] and len(val) == summary["pretrain"]["val"]["images"]
    for r in train + val:
        assert Path(r["path"]).is_file()
        a = r["attributes"]
        if r["domain"] == "person":  # coarse RGB attributes only: colours and the bag, never NIR / TIR ones
            bag = " carrying a bag" if a["bag"] == "yes" else ""
            assert r["caption"] == f"a person in a {a['colour']} top and {a['lower_colour']} trousers{bag}"
        else:
            kind = "SUV" if a["shape"] == "suv" else a["shape"]
            assert r["caption"] == f"a {a['colour']} {kind} seen from the {a['view']}"
    assert {r["domain"] for r in read_caption_set(root, "train", domain="vehicle")} == {"vehicle"}
    # identities disjoint from the ReID sets (joint attribute tuples), train and val disjoint too
    reid = {tuple(sorted((k, v) for k, v in i.items() if k != "pid"))
            for d in summary["datasets"].values() for s in ("train", "test") for i in d["identities"][s]}
    pre = summary["pretrain"]["identities"]
    for domain in ("person", "vehicle"):
        tr = {tuple(sorted(i.items())) for i in pre[domain]["train"]}
        va = {tuple(sorted(i.items())) for i in pre[domain]["val"]}
        assert not (tr | va) & reid and not tr & va


def test_caption_set_errors(tiny, tmp_path):
    with pytest.raises(DataError, match="caption table not found: .*pretrain/test/captions.csv"):
        read_caption_set(tiny[0], "test")
    folder = tmp_path / "pretrain" / "train"
    folder.mkdir(parents=True)
    (folder / "captions.csv").write_text("file,caption,domain,colour,lower_colour,shape,bag,view\n"
                                         "gone.jpg,a red sedan,vehicle,red,n/a,sedan,n/a,side\n")
    with pytest.raises(DataError, match="1 listed image.* missing: .*gone.jpg"):
        read_caption_set(tmp_path, "train")
