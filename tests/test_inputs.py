"""A paper profile's missing inputs (mambapro/inputs.py): one line each, naming the path and the fix, before DVC's
bare `[Errno 2] No such file or directory: .../data` (issue 19 item 9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mambapro.config import resolve_config
from mambapro.inputs import InputsMissing, check_inputs, dataset_folder, main, record_inputs

ROOT = Path(__file__).resolve().parents[1]


def test_dataset_folders_come_from_the_registry():
    assert dataset_folder(resolve_config("rgbnt201")) == Path("data/RGBNT201")
    assert dataset_folder(resolve_config("msvr310")) == Path("data/msvr310")
    assert dataset_folder(resolve_config("default-vehicle")) == Path("data/synthetic/RGBNT100")


def test_missing_data_root_is_one_line_with_the_fix(tmp_path):
    lines = check_inputs("rgbnt201", tmp_path)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("data/ does not exist: profile rgbnt201 reads RGBNT201 from data/RGBNT201; put the "
                               "dataset there in its published layout (README, 'Paper scale', step 2), then run "
                               "`python -m mambapro.pipeline use rgbnt201` again")
    assert "backbone.pretrained = weights/ViT-B-16.pt does not exist; fetch OpenAI's ViT-B-16.pt" in lines[1]
    with pytest.raises(InputsMissing) as err:
        record_inputs("rgbnt201", tmp_path)
    assert str(err.value).startswith("data/ does not exist") and "\n" not in str(err.value)
    assert "(and 1 more: python -m mambapro.inputs --check rgbnt201)" in str(err.value)
    assert not (tmp_path / "results").exists()  # nothing recorded


def test_missing_dataset_folder_and_weights_separately(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in")
    assert check_inputs("msvr310", tmp_path) == [
        f"profile msvr310: dataset folder {tmp_path / 'data' / 'msvr310'} does not exist; put MSVR310 there "
        "(README, 'Paper scale', step 2), then run `python -m mambapro.pipeline use msvr310` again"]
    assert check_inputs("default", tmp_path) == []  # the embedded default makes its own inputs


def test_check_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--check", "rgbnt100"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: data/ does not exist: profile rgbnt100 reads RGBNT100")
    (tmp_path / "data" / "RGBNT100").mkdir(parents=True)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in")
    assert main(["--check", "rgbnt100"]) == 0 and "inputs present" in capsys.readouterr().out
    assert main(["--check", "nope"]) == 1 and "unknown profile 'nope'" in capsys.readouterr().err


def test_switching_profile_without_data_says_what_to_do(tmp_path, capsys):
    """`python -m mambapro.pipeline use rgbnt201` in a clone without data/ prints the one-line reason and fix."""
    from mambapro.pipeline import use

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    use("rgbnt201", tmp_path / "params.yaml")
    out = capsys.readouterr().out
    assert "data/ does not exist: profile rgbnt201 reads RGBNT201 from data/RGBNT201" in out
    assert "[Errno 2]" in out  # what DVC would say instead, named so that the user recognises it


def test_the_record_follows_every_byte_of_a_real_dataset(tmp_path):
    """The `dataset` stage does not depend on data/ (data.dvc's output) and runs at every repro, so its record is
    what re-runs training when the data change: an image rewritten at the same size changes the digest."""
    from mambapro.data.synthetic import generate

    generate(tmp_path / "data", seed=0, size="tiny")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "ViT-B-16.pt").write_bytes(b"stand-in")
    before = record_inputs("msvr310", tmp_path)["datasets"]["MSVR310"]
    image = sorted((tmp_path / "data" / "msvr310").rglob("*.jpg"))[0]
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, same header and end marker
    image.write_bytes(bytes(data))
    after = record_inputs("msvr310", tmp_path)["datasets"]["MSVR310"]
    assert after["files"] == before["files"] and after["sha256"] != before["sha256"]
