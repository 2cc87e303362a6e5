"""Never a silent CPU run at paper scale (issue 20): ``train.device: auto`` under a paper profile without a usable
GPU stops before any data is read, saying why; ``cpu`` asked for explicitly still trains; every run prints and
records what ran it.  torch.cuda is replaced by stand-ins (no GPU here)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mambapro import device as device_module
from mambapro import engine
from mambapro.config import resolve_config
from mambapro.device import DeviceError, resolve_device

PAPER = ("rgbnt201", "rgbnt100", "msvr310")


@pytest.fixture()
def no_gpu(monkeypatch):
    """torch sees no GPU; returns a setter for the build's CUDA version and the driver found."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def set_machine(cuda: str | None, driver: str | None, warning: str | None = None):
        monkeypatch.setattr(torch.version, "cuda", cuda)
        monkeypatch.setattr(device_module, "nvidia_driver", lambda: driver)
        if warning:
            def is_available():
                warnings.warn(warning, UserWarning, stacklevel=1)
                return False

            monkeypatch.setattr(torch.cuda, "is_available", is_available)

    return set_machine


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_require_a_gpu_and_the_embedded_ones_do_not(profile):
    assert resolve_config(profile, "F").train.require_gpu
    assert not resolve_config("default", "F").train.require_gpu
    assert not resolve_config("default-vehicle", "F").train.require_gpu


@pytest.mark.parametrize(("cuda", "driver", "warning", "said"), [
    (None, None, None,
     r"CPU-only build \(torch.version.cuda is None\).*environment-cuda12.yml.*pip install torch==.*cu128"),
    ("13.0", "535.104.05", "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020).",
     r"driver 535.104.05 is too old for this torch's CUDA 13.0 \(torch: CUDA initialization: The NVIDIA driver on "
     r"your system is too old.*update the driver, or install torch's CUDA 12 build"),
    ("13.0", None, None, r"no NVIDIA GPU or driver was found .*device_count\(\) = 0"),
])
def test_auto_without_a_gpu_under_a_paper_profile_says_why_and_the_fix(no_gpu, cuda, driver, warning, said):
    no_gpu(cuda, driver, warning)
    with pytest.raises(DeviceError, match=said) as err:
        resolve_device("auto", require_gpu=True)
    assert "train.require_gpu" in str(err.value) and "set train.device: cpu" in str(err.value)
    assert resolve_device("auto") == torch.device("cpu")  # the embedded profiles may still fall back
    assert resolve_device("cpu", require_gpu=True) == torch.device("cpu")  # explicit CPU stays possible
    with pytest.raises(DeviceError, match="train.device = 'cuda' needs a GPU"):
        resolve_device("cuda")


def test_the_error_comes_before_any_data_is_read(no_gpu, tmp_path, monkeypatch):
    from mambapro.data import loaders

    no_gpu(None, None)
    read = []
    monkeypatch.setattr(loaders, "build_data", lambda *a, **kw: read.append(a) or pytest.fail("data was read"))
    cfg = resolve_config("rgbnt201", "F", {"data.root": str(tmp_path / "absent")})
    with pytest.raises(DeviceError, match="CPU-only build"):
        engine.train(cfg, tmp_path / "run", seed=0, progress=False)
    assert not read and not (tmp_path / "run").exists()


def test_the_command_line_prints_the_device_error_in_one_line(no_gpu, tmp_path, capsys):
    no_gpu("13.0", None)
    assert engine.main(["--profile", "rgbnt201", "--preset", "F", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train.device = 'auto' under a paper profile")


def test_every_run_prints_and_records_what_ran_it(tmp_path, capsys):
    from mambapro.data.synthetic import generate

    root = tmp_path / "data"
    generate(root, seed=0, size="tiny")
    cfg = resolve_config("bare", "F", {
        "data": {"root": str(root), "image_size": [32, 16], "batch_size": 8, "num_instances": 4,
                 "test_batch_size": 16}, "train": {"epochs": 1, "warmup_epochs": 0, "device": "cpu"}})
    result = engine.train(cfg, tmp_path / "run", seed=0, progress=False)
    first = capsys.readouterr().out.splitlines()[0]
    info = json.loads((tmp_path / "run" / "metrics.json").read_text())["run_info"]
    assert info == result["run_info"]
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and info["cuda"] == torch.version.cuda
    assert info["scan"] == "native" and info["amp"] == "off (fp32)" and "driver" in info
    assert first.startswith("run: device cpu") and "scan native" in first and "amp off (fp32)" in first
