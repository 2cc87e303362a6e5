"""Readers (official sec. 3.1): round trip on generated data, name parsing, and an error naming the culprit for
every kind of bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambapro.data.readers import (
    DATASETS,
    DataError,
    _msvr310_name,
    _rgbnt100_name,
    _rgbnt201_name,
    is_vehicle,
    load_images,
    object_kind,
    read_dataset,
    read_msvr310,
    read_rgbnt100,
    read_rgbnt201,
)
from mambapro.data.synthetic import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers") / "synthetic"
    return root, generate(root, seed=0, size="tiny")


@pytest.fixture
def data(tiny, tmp_path) -> Path:
    """A private copy of the tiny benchmark, free to damage."""
    root = tmp_path / "data"
    shutil.copytree(tiny[0], root)
    return root


# ----------------------------------------------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("name", ["RGBNT201", "RGBNT100", "MSVR310"])
def test_round_trip_of_generated_data(tiny, name, caplog):
    root, summary = tiny
    with caplog.at_level(logging.INFO, logger="mambapro.data.readers"):
        data = read_dataset(name, root)
    info = summary["datasets"][name]
    for split, samples in (("train", data.train), ("query", data.query), ("gallery", data.gallery)):
        expected = info["splits"][split]
        assert len(samples) == expected["images"]
        assert len({s.pid for s in samples}) == expected["ids"]
        assert len({s.camid for s in samples}) == expected["cameras"]
        assert len({s.sceneid for s in samples if s.sceneid >= 0}) == expected["scenes"]
    raw_train = sorted(i["pid"] for i in info["identities"]["train"])
    assert data.pid_labels == {pid: label for label, pid in enumerate(raw_train)}  # sorted raw ids -> 0..C-1
    assert sorted({s.pid for s in data.train}) == list(range(len(raw_train)))
    assert {s.pid for s in data.gallery} == {i["pid"] for i in info["identities"]["test"]}  # test ids stay raw
    assert data.num_classes == len(raw_train)
    assert data.num_train_cameras == data.num_cameras == info["splits"]["train"]["cameras"]
    assert data.protocol == ("scene" if name == "MSVR310" else "camera")
    assert f"{name} statistics" in caplog.text and "gallery |" in caplog.text
    images = load_images(data.query[0])
    assert set(images) == {"RGB", "NI", "TI"}
    assert {im.size for im in images.values()} == {tuple(info["image_size_hw"][::-1])}


def test_rgbnt201_query_is_the_test_set(tiny):
    data = read_rgbnt201(tiny[0])
    assert data.query is data.gallery
    assert all(Path(p).name == Path(s.paths[0]).name for s in data.train for p in s.paths)
    assert all(s.sceneid == -1 for s in data.train)


def test_rgbnt100_crops_one_file_into_three(tiny):
    data = read_rgbnt100(tiny[0])
    s = data.train[0]
    assert len(set(s.paths)) == 1 and s.boxes == ((0, 0, 256, 128), (256, 0, 512, 128), (512, 0, 768, 128))
    whole = np.asarray(Image.open(s.paths[0]).convert("RGB"))
    crops = load_images(s)
    for k, m in enumerate(("RGB", "NI", "TI")):
        np.testing.assert_array_equal(np.asarray(crops[m]), whole[:, 256 * k:256 * (k + 1)])


def test_msvr310_scenes_keep_every_query_valid(tiny):
    data = read_msvr310(tiny[0])
    for q in data.query:
        assert any(g.pid == q.pid and g.sceneid != q.sceneid for g in data.gallery)


def test_name_parsing():
    assert _rgbnt201_name("000123_cam4_0001.jpg") == (123, 3)
    assert _rgbnt100_name("0012_c3_00005.jpg") == (12, 2)
    assert _rgbnt100_name("0600_c008_1.jpg") == (600, 7)
    assert _msvr310_name("0001_s012_v7_000.jpg") == (1, 12, 7)
    assert _msvr310_name("0420_s003_v0_x.jpg") == (420, 3, 0)


# ----------------------------------------------------------------------------------------------------------------
# Bad input


def test_missing_root_and_split(data, tmp_path):
    with pytest.raises(DataError, match="RGBNT201 dataset folder not found: .*nowhere/RGBNT201"):
        read_rgbnt201(tmp_path / "nowhere")
    shutil.rmtree(data / "RGBNT201" / "test")
    with pytest.raises(DataError, match=f"RGBNT201 test split not found: {data / 'RGBNT201' / 'test'}"):
        read_rgbnt201(data)
    shutil.rmtree(data / "RGBNT100" / "rgbir" / "query")
    with pytest.raises(DataError, match="RGBNT100 query split not found: .*rgbir/query"):
        read_rgbnt100(data)
    shutil.rmtree(data / "msvr310" / "bounding_box_test")
    with pytest.raises(DataError, match="MSVR310 gallery split not found: .*msvr310/bounding_box_test"):
        read_msvr310(data)
    with pytest.raises(DataError, match="unknown dataset 'Market1501'"):
        read_dataset("Market1501", data)


def test_dataset_registry_facts_and_a_registered_reader(data):
    """Person or vehicle is the dataset's registered ``object`` fact; read_dataset calls whatever is registered."""
    assert [object_kind(d) for d in ("RGBNT201", "RGBNT100", "MSVR310")] == ["person", "vehicle", "vehicle"]
    assert is_vehicle("MSVR310") and not is_vehicle("RGBNT201")
    assert {d: DATASETS.fact(d, "folder") for d in DATASETS} == {"RGBNT201": "RGBNT201", "RGBNT100": "RGBNT100",
                                                                 "MSVR310": "msvr310"}
    assert [DATASETS.fact(d, "protocol") for d in DATASETS] == ["camera", "camera", "scene"]
    DATASETS.register("RGBNT201-copy", lambda root, verify=False: read_rgbnt201(root, verify), object="person",
                      folder="RGBNT201", modalities=("RGB", "NI", "TI"), image_size=(256, 128), protocol="camera")
    try:
        assert read_dataset("RGBNT201-copy", data).num_classes == read_rgbnt201(data).num_classes
        assert not is_vehicle("RGBNT201-copy")
    finally:
        DATASETS.unregister("RGBNT201-copy")


def test_missing_modality_files_are_listed(data):
    d = data / "RGBNT201" / "train_171"
    rgb = sorted((d / "RGB").iterdir())
    gone = [d / "NI" / rgb[0].name, d / "TI" / rgb[1].name]
    for p in gone:
        p.unlink()
    with pytest.raises(DataError, match="2 modality file") as e:
        read_rgbnt201(data)
    assert all(str(p) in str(e.value) for p in gone)
    vid = sorted((data / "msvr310" / "query3").iterdir())[0]
    th = sorted((vid / "th").iterdir())[0]
    th.unlink()
    with pytest.raises(DataError, match=str(th)):
        read_msvr310(data)


def test_unreadable_and_truncated_images(data):
    rgb = sorted((data / "RGBNT201" / "test" / "RGB").iterdir())
    rgb[0].write_bytes(b"this is not a jpeg")
    data_set = read_rgbnt201(data)  # listing does not decode
    bad = next(s for s in data_set.query if s.paths[0] == str(rgb[0]))
    with pytest.raises(DataError, match=f"cannot read image {rgb[0]}"):
        load_images(bad)
    with pytest.raises(DataError, match=f"cannot read image {rgb[0]}"):
        read_rgbnt201(data, verify=True)  # the eager check
    files = sorted((data / "RGBNT100" / "rgbir" / "bounding_box_train").iterdir())
    files[0].write_bytes(files[0].read_bytes()[:2000])  # truncated
    with pytest.raises(DataError, match=f"cannot read image {files[0]}"):
        read_rgbnt100(data, verify=True)


def test_rgbnt100_image_too_small_for_the_crop_boxes(data):
    f = sorted((data / "RGBNT100" / "rgbir" / "query").iterdir())[0]
    Image.new("RGB", (256, 128)).save(f)
    s = next(s for s in read_rgbnt100(data).query if s.paths[0] == str(f))
    with pytest.raises(DataError, match=f"{f} is 256x128 .* need at least 768x128"):
        load_images(s)


def test_names_that_do_not_parse(data):
    d = data / "RGBNT201" / "train_171"
    old = sorted((d / "RGB").iterdir())[0].name
    for m in ("RGB", "NI", "TI"):
        (d / m / old).rename(d / m / "12ab56_cam1_0000.jpg")
    with pytest.raises(DataError, match="cannot parse the file name .*12ab56_cam1_0000.jpg"):
        read_rgbnt201(data)


@pytest.mark.parametrize("new_name, message", [("0601_c1_99999.jpg", "pid 601 outside 1..600"),
                                               ("0003_c9_99999.jpg", "camid 9 outside 1..8"),
                                               ("0003-cam1.jpg", "no '<pid>_c<camid>'")])
def test_rgbnt100_names_out_of_range(data, new_name, message):
    d = data / "RGBNT100" / "rgbir" / "bounding_box_train"
    sorted(d.iterdir())[0].rename(d / new_name)
    with pytest.raises(DataError, match=f"{new_name} .*{message}"):
        read_rgbnt100(data)


def test_msvr310_camera_out_of_range(data):
    vdir = sorted((data / "msvr310" / "bounding_box_train").iterdir())[0]
    old = sorted((vdir / "vis").iterdir())[0].name
    new = old[:11] + "8" + old[12:]
    for m in ("vis", "ni", "th"):
        (vdir / m / old).rename(vdir / m / new)
    with pytest.raises(DataError, match=f"{new} .*camid 8 outside 0..7"):
        read_msvr310(data)


def test_empty_split_and_orphan_queries(data):
    q = data / "RGBNT100" / "rgbir" / "query"
    first = sorted(q.iterdir())[0]
    pid = int(first.name[:4])
    gallery = data / "RGBNT100" / "rgbir" / "bounding_box_test"
    for f in gallery.glob(f"{pid:04d}_c*"):
        f.unlink()
    with pytest.raises(DataError, match=rf"query id\(s\) have no image in the gallery .*\[{pid}\]"):
        read_rgbnt100(data)
    for f in q.iterdir():
        f.unlink()
    with pytest.raises(DataError, match=f"the query split is empty: {q}"):
        read_rgbnt100(data)


def test_unexpected_files_are_not_ignored(data):
    stray = data / "RGBNT201" / "test" / "NI" / "notes.txt"
    stray.write_text("x")
    with pytest.raises(DataError, match="unexpected entries .*notes.txt"):
        read_rgbnt201(data)
