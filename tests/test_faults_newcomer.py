"""Issue 19, item 11 (part): the pre-commit hook works outside the venv (it failed with ``Executable `ruff` not
found`` when .venv/bin was not on PATH).  (.ci/repro's own venv lookup: tests/test_ci_repro.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"


def test_every_hook_runs_a_program_of_the_venv():
    import shlex

    import yaml

    hooks = [h for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
             for h in repo["hooks"]]
    assert {h["id"] for h in hooks} == {"nbstripout", "ruff"}
    for hook in hooks:
        program = shlex.split(hook["entry"])[0]
        assert program.startswith(".venv/bin/"), hook  # not whatever PATH finds
        assert Path(program).name in ("nbstripout", "ruff")


@pytest.mark.skipif(not (VENV / "pre-commit").exists(), reason="needs the project's venv (.ci/install)")
def test_the_ruff_hook_runs_without_the_venv_on_path(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copy(ROOT / ".pre-commit-config.yaml", work)
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "good.py").write_text("print('ok')\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run([*git, "add", "good.py", ".pre-commit-config.yaml"], cwd=work, check=True, env=env)
    done = subprocess.run([str(VENV / "pre-commit"), "run", "ruff", "--files", "good.py"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed" in done.stdout
    (work / "bad.py").write_text("import os\n")  # F401: the hook really runs ruff
    subprocess.run([*git, "add", "bad.py"], cwd=work, check=True, env=env)
    done = subprocess.run([str(VENV / "pre-commit"), "run", "ruff", "--files", "bad.py"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "F401" in done.stdout, done.stdout + done.stderr
