"""mambapro.results: atomic writes, digests, project root, seed statistics."""

import os
import zipfile

import pytest
import torch

from mambapro import results


def test_atomic_path_keeps_the_old_file_on_error_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    results.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), results.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == '{\n "a": 1\n}' and os.listdir(tmp_path) == ["out.json"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~results._UMASK  # not mkstemp's private 0600


def test_saved_weights_have_a_stable_content_digest(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "s": torch.tensor(2.5)}
    a, b = results.save_torch(state, tmp_path / "a.pt"), results.save_torch(state, tmp_path / "b.pt")
    assert {n.split("/")[0] for n in zipfile.ZipFile(a).namelist()} == {"archive"}  # not the temporary's name
    assert results.tensors_digest(a) == results.tensors_digest(b)  # the bytes hold a random serialization id
    state["w"][0, 0] = 1.0
    assert results.tensors_digest(results.save_torch(state, tmp_path / "c.pt")) != results.tensors_digest(a)


def test_project_root_is_found_from_a_subfolder(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv(results.ROOT_ENV, raising=False)
    assert results.project_root(tmp_path / "notebooks") == tmp_path
    monkeypatch.setenv(results.ROOT_ENV, str(tmp_path / "notebooks"))
    assert results.project_root() == tmp_path / "notebooks"


def test_seed_statistics_and_a_missing_preset_is_named(tmp_path):
    for seed, m in ((0, 40.0), (1, 44.0)):
        run = {"seed": seed, "history": [], **{w: {k: m for k in results.METRIC_KEYS} for w in ("last", "best")}}
        results.write_json(results.metrics_path(tmp_path, "F", seed), run)
    assert results.trained_presets(tmp_path) == ["F"]
    summary = results.load_metrics(tmp_path, "F")["summary"]
    assert summary["last/mAP/mean"] == 42.0 and summary["last/mAP/std"] == pytest.approx(2 ** 1.5)
    with pytest.raises(results.MissingResultError, match="preset 'G' has no training results"):
        results.load_metrics(tmp_path, "G")
