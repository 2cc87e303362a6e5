"""Issue 19, item 3: temporaries never reach DVC's view.  A run killed with SIGKILL leaves its temporary beside the
output (`.train.ipynb.<pid>.tmp.ipynb`, `.metrics.json.<pid>.XXXXXXXX.tmp`); `.dvcignore` hides it from DVC, so
`dvc status` stays clean, and the next start of a notebook stage there removes it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mambapro.results import atomic_path
from nbrun import engine

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _temporary_names(folder: Path, pid: int) -> list[str]:
    """The names the two writers give their temporaries, as a process ``pid`` would (taken from the code)."""
    notebook = Path(engine._temporary_path(str(folder / "train.ipynb"))).name.replace(f".{_own_pid()}.", f".{pid}.")
    with pytest.raises(InterruptedError), atomic_path(folder / "metrics.json") as tmp:  # (interrupted: no rename)
        result = tmp.name.replace(f".{_own_pid()}.", f".{pid}.")
        raise InterruptedError
    return [notebook, result]


def _own_pid() -> int:
    import os

    return os.getpid()


def test_dvcignore_hides_every_temporary():
    from dvc.repo import Repo

    folder = ROOT / "results" / "default" / "runs" / "A" / "seed0"
    ignore = Repo(str(ROOT)).dvcignore
    for name in _temporary_names(folder, 12345):
        assert ignore.is_ignored_file(str(folder / name)), name
    assert ignore.is_ignored_file(str(ROOT / "results" / ".fig1b_aggregation_cost.tmp4242.png"))  # (benchmarks/)
    assert not ignore.is_ignored_file(str(folder / "train.ipynb"))
    assert not ignore.is_ignored_file(str(folder / "metrics.json"))
    for name in (".synthetic.tmp-k2j4", ".synthetic.old-4242"):  # mambapro.data.synthetic's folders
        assert ignore.is_ignored_dir(str(ROOT / "data" / name)), name
    assert not ignore.is_ignored_dir(str(ROOT / "data" / "synthetic"))


@pytest.mark.slow
def test_dvc_status_does_not_see_a_stray_temporary(tmp_path):
    """A one-stage DVC project with this repository's .dvcignore: a stray temporary in the stage's result folder
    does not make `dvc status` report the stage changed."""
    work = tmp_path / "project"
    (work / "results").mkdir(parents=True)
    (work / "results" / "metrics.json").write_text("{}")
    (work / "dvc.yaml").write_text("stages:\n  downstream:\n    cmd: cp results/metrics.json summary.json\n"
                                   "    deps: [results]\n    outs: [{summary.json: {cache: false}}]\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=work, check=True, capture_output=True)
    shutil.copy(ROOT / ".dvcignore", work / ".dvcignore")  # (after `dvc init`, which writes an empty one)
    subprocess.run([*dvc, "repro", "-q"], cwd=work, check=True, capture_output=True)
    for name in _temporary_names(work / "results", _dead_pid()):
        (work / "results" / name).write_text("partial")
    status = subprocess.run([*dvc, "status"], cwd=work, capture_output=True, text=True, check=True).stdout
    assert "up to date" in status and "changed" not in status, status


def test_a_stage_start_removes_stale_temporaries_only(tmp_path):
    pytest.importorskip("papermill")
    import nbformat

    source = tmp_path / "in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), source)
    out = tmp_path / "runs" / "train.ipynb"
    out.parent.mkdir()
    stale = _temporary_names(out.parent, _dead_pid())
    writer = subprocess.Popen(["sleep", "60"])  # a writer still running
    live = _temporary_names(out.parent, writer.pid)
    for name in stale + live:
        (out.parent / name).write_text("partial")
    other = out.parent / ".notes.tmp"  # no pid in the name: not ours to judge
    other.write_text("kept")
    try:
        engine.execute(source, out, log_output=False)
    finally:
        writer.kill()
        writer.wait()

    assert sorted(p.name for p in out.parent.iterdir()) == sorted([*live, other.name, "train.ipynb"])
