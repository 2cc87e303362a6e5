"""Checkpoints that stay truthful when things go wrong (issue 19 items 8, 9): a content digest checked on loading, a
refusal of code-executing pickles that never advises ``weights_only=False``, a full disk reported in one line, and
the engine command line's one-line errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mambapro import checkpoints
from mambapro.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mambapro.config import resolve_config
from mambapro.engine import train


def tiny_cfg(root, epochs=2, **train):
    return resolve_config("bare", "C", {
        "data": {"root": str(root), "image_size": [32, 16], "batch_size": 8, "num_instances": 4,
                 "test_batch_size": 16},
        "train": {"epochs": epochs, "warmup_epochs": 1, "eval_every": 1, **train}})


def _ckpt(**extra):
    return {"config": {}, "seed": 0, "epoch": 1, "pretrained_digest": None, "num_classes": 2, "num_cameras": 1,
            "model": {"w": torch.arange(64, dtype=torch.float32), "b": torch.ones(3)}, "history": [{"loss": 1.5}],
            "best": None, "rng": {"python": (3, tuple(range(5)), None)}, **extra}


def _flip_tensor_bytes(path: Path, count: int = 16) -> None:
    """Flip ``count`` bytes in the middle of the largest tensor's data inside a ``torch.save`` zip archive."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - count // 2
    assert info.file_size >= count
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_digest_covers_every_tensor_and_value_and_survives_a_round_trip(tmp_path):
    path = save_checkpoint(_ckpt(), tmp_path / "c.pt")
    loaded = load_checkpoint(path)  # the digest is checked on the way in and removed
    assert checkpoints.DIGEST_KEY not in loaded and torch.equal(loaded["model"]["w"], torch.arange(64.0))
    base = checkpoints.content_digest(_ckpt())
    assert checkpoints.content_digest(loaded) == base
    changed = _ckpt()
    changed["model"]["w"][7] += 1e-6
    assert checkpoints.content_digest(changed) != base
    assert checkpoints.content_digest(_ckpt(epoch=2)) != base
    assert checkpoints.content_digest(_ckpt(history=[{"loss": 1.25}])) != base


def test_flipped_bytes_in_a_checkpoint_are_refused_naming_the_file(tmp_path):
    path = save_checkpoint(_ckpt(), tmp_path / "run" / "last.pt")
    _flip_tensor_bytes(path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} .*altered or damaged.*delete {path.parent}"):
        load_checkpoint(path)


def test_a_resume_never_trains_on_altered_weights(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root, epochs=2)
    with pytest.raises(KeyboardInterrupt):  # epoch 1 saved, killed inside epoch 2 (3 iterations per epoch)
        train(cfg, tmp_path / "run", seed=0, progress=False, stop_after_iters=4)
    last = tmp_path / "run" / "last.pt"
    before = last.read_bytes()
    _flip_tensor_bytes(last)
    assert last.read_bytes() != before
    with pytest.raises(CheckpointError, match=rf"{last} .*altered or damaged"):
        train(cfg, tmp_path / "run", seed=0, progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_older_checkpoint_without_a_digest_still_loads(tmp_path):
    torch.save(_ckpt(), tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["epoch"] == 1


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran > ran.txt",))


def test_a_code_executing_pickle_is_refused_without_advising_weights_only_false(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    torch.save({**_ckpt(), "model": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be used .*delete {path.parent}") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "ran.txt").exists()


def test_torch_advice_to_load_unsafely_is_dropped_from_the_cause():
    e = RuntimeError("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will "
                     "likely succeed, but it can result in arbitrary code execution. Do it only if you got the file "
                     "from a trusted source.")
    cause = checkpoints._load_cause(e)
    assert "weights_only" not in cause and cause.startswith("RuntimeError: Weights only load failed")


def _full_disk(obj, f):
    """torch.save on a full disk: a partial write, ENOSPC, reported by torch as 'unexpected pos'."""
    f.write(b"PK\x03\x04partial")
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from e


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(_ckpt(), tmp_path / "last.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk)
    with pytest.raises(OSError) as err:
        save_checkpoint(_ckpt(epoch=2), path)
    assert err.value.errno == errno.ENOSPC
    assert f"cannot write checkpoint {path}: No space left on device" in str(err.value)
    assert "\n" not in str(err.value) and "inline_container" not in str(err.value)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left


def test_a_plain_oserror_stand_in_for_enospc_is_reported_the_same(tmp_path, monkeypatch):
    def raise_enospc(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", raise_enospc)
    with pytest.raises(OSError, match=rf"cannot write checkpoint {tmp_path / 'best.pt'}: No space left on device"):
        save_checkpoint(_ckpt(), tmp_path / "best.pt")


def _engine(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mambapro.engine", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_engine_command_line_reports_configuration_and_data_errors_in_one_line(tmp_path):
    bad_key = _engine("--profile", "bare", "--out", str(tmp_path / "a"), "--set", "train.nonexistent=1")
    bad_data = _engine("--profile", "bare", "--out", str(tmp_path / "b"), "--set",
                       f"data.root={json.dumps(str(tmp_path / 'no-data'))}")
    for proc, what in ((bad_key, "train.nonexistent"), (bad_data, "no-data")):
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and what in lines[0], proc.stderr[-2000:]


def test_engine_command_line_reports_a_full_disk_in_one_line(tiny_root, tmp_path, monkeypatch, capsys):
    from mambapro import engine

    monkeypatch.setattr(torch, "save", _full_disk)
    over = ["data.root=" + json.dumps(str(tiny_root)), "data.image_size=[32,16]", "data.batch_size=8",
            "data.test_batch_size=16", "train.epochs=2", "train.warmup_epochs=1"]
    code = engine.main(["--profile", "bare", "--preset", "C", "--out", str(tmp_path / "run"), "--set", *over])
    err = capsys.readouterr().err
    assert code == 1
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "No space left on device" in line and str(tmp_path / "run" / "best.pt") in line


def test_a_checkpoint_from_before_a_new_key_resumes_when_the_key_keeps_its_default(tmp_path):
    cfg = resolve_config("bare", "C")
    old = cfg.to_dict()
    for key in ("compile", "amp_dtype", "checkpoint_every"):  # keys added after the checkpoint was written
        del old["train"][key]
    save_checkpoint(_ckpt(config=old), tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "last.pt", cfg)["epoch"] == 1
    compiled = resolve_config("bare", "C", {"train.compile": True})  # not the default: another configuration
    with pytest.raises(checkpoints.CheckpointMismatch, match="train.compile: checkpoint None vs run True"):
        load_checkpoint(tmp_path / "last.pt", compiled)
