"""mambapro.results: atomic writes, digests, project root, seed statistics; no machine path in committed outputs."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------------------
# Committed outputs carry no machine paths

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|tmp)/")


def test_no_committed_notebook_output_names_a_machine_path():
    """An executed notebook under results/ holds what its cells printed; a path of the machine that ran it (a
    warning's source file under /work/..., /home/..., /tmp/...) says nothing to a reader and changes per machine.
    The committed quick, figures and vehicle notebooks held tqdm's "IProgress not found" warning with its path."""
    committed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "results/**.ipynb", "results/*.ipynb"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert committed, "no committed notebooks under results/"
    found = []
    for name in committed:
        for cell in json.loads((ROOT / name).read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = json.dumps(out)
                found += [f"{name}: ...{text[max(0, m.start() - 40):m.end() + 60]}..."
                          for m in MACHINE_PATH.finditer(text)]
    # Written before the pipeline extras installed ipywidgets; they change only when their stages run again, which
    # needs the sweep's checkpoints (the next regeneration): listed so that a new path anywhere else fails, and so
    # that this list must shrink when they are rewritten.
    stale = {"results/default/figures.ipynb", "results/default/vehicle/report.ipynb"}  # the earlier sweep's stages
    holding = {f.split(":")[0] for f in found}
    assert holding == stale & set(committed), ("machine paths in committed outputs (re-run the stage that writes "
                                               "them, then update `stale`):\n" + "\n".join(found))


def test_a_notebook_kernel_imports_tqdm_auto_without_a_warning(tmp_path, monkeypatch):
    """The notebook stages (nbrun --jupyter) import mambapro.engine, which imports ``tqdm.auto``: in a Jupyter kernel
    without ipywidgets tqdm warns "IProgress not found" with its file's absolute path (the pipeline extras install
    ipywidgets)."""
    import nbclient
    import nbformat

    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import tqdm.auto")])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    printed = "".join(out.get("text", "") for out in nb.cells[0].outputs)
    assert "IProgress not found" not in printed and not MACHINE_PATH.search(printed), printed
