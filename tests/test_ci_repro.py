""".ci/repro: the training stages DVC would run are listed once and run outside DVC's lock, one per GPU on a CUDA
machine (each pinned to its device), one per core otherwise; one write of dvc.lock records them (stand-in python and
dvc record what happens).  Faults (issue 19): a second .ci/repro, a failing step, a killed .ci/repro, no venv on
PATH; the recording is byte-identical to `dvc commit`; a changed data source stops it before DVC re-records it."""

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import gone as _gone
from processes import wait_for as _wait

ROOT = Path(__file__).resolve().parents[1]

# `.ci/stages.py pending` lists four training stages; each stage's command takes 0.3 s (or waits for $RELEASE when
# set) and records its device; train@F-1 fails when FAIL is set; the step named by BREAK fails with a message.
# `python -m nbrun ...` runs the real nbrun (WAIT_NB: the stages run that notebook).
FAKE_PYTHON = r"""#!/usr/bin/env bash
broken() { [ "$BREAK" = "$1" ] && { echo "stand-in error: $1 broke" >&2; exit 1; }; true; }
case "$*" in
  *device_count*) echo "$GPUS" ;;
  *"nbrun serve"*) if [ -n "$WAIT_NB" ]; then exec "$REAL_PYTHON" "$@" --preload json; else exec sleep 30; fi ;;
  *"-m nbrun"*) exec "$REAL_PYTHON" "$@" ;;
  *"stages.py sources"*) broken sources ;;
  *"stages.py commit"*) broken commit; echo "commit ${*:3}" >> "$LOG" ;;
  *"stages.py pending"*)
    broken pending
    for s in train@A-0 train@A-1 train@F-0 train@F-1; do
      [ $# -le 2 ] || [[ " $* " == *" $s "* ]] || continue
      if [ -n "$WAIT_NB" ]; then
        printf '%s\t%s\n' "$s" "python -m nbrun $WAIT_NB out.ipynb -p flag $PWD/flag.$s"; continue
      fi
      cmd="if [ -n \"\$RELEASE\" ]; then while [ ! -e \"\$RELEASE\" ]; do sleep 0.05; done; else sleep 0.3; fi"
      cmd="$cmd; echo run $s gpu=\${CUDA_VISIBLE_DEVICES:-none} threads=\$OMP_NUM_THREADS >> \$LOG"
      printf '%s\t%s\n' "$s" "$cmd; [ -z \"\$FAIL\" ] || [ $s != train@F-1 ]"
    done ;;
  *) echo "unexpected python $*" >&2; exit 3 ;;
esac
"""

FAKE_DVC = r"""#!/usr/bin/env bash
if [ "$1 $2" = "stage list" ]; then printf '%s\n' proxy_clip@default train@A-0 train@A-1 train@F-0 train@F-1 \
  evaluate@F; exit 0; fi
echo "dvc $*" >> "$LOG"
if [ "$1" = repro ] && [ "$BREAK" = "repro $2" ]; then echo "ERROR: stand-in: $2 broke" >&2; exit 1; fi
"""


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    (work / ".ci").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".ci" / "repro", work / ".ci" / "repro")
    return work


def _env(stand_in_commands, gpus: int = 2, **extra: str) -> dict[str, str]:
    env = {**stand_in_commands(python=FAKE_PYTHON, dvc=FAKE_DVC), "GPUS": str(gpus), "REAL_PYTHON": sys.executable}
    env.pop("JOBS", None)
    env.pop("NBRUN_SOCKET", None)
    return {**env, "FAIL": "", "BREAK": "", "RELEASE": "", "WAIT_NB": "", **extra}


def _repro(tmp_path, stand_in_commands, gpus: int, *args: str, fail: bool = False, **extra: str):
    work = _workdir(tmp_path)
    env = _env(stand_in_commands, gpus, FAIL="1" if fail else "", **extra)
    done = subprocess.run([".ci/repro", *args], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / "log"
    return done, log.read_text().splitlines() if log.exists() else [], work


@pytest.mark.parametrize("gpus", [0, 2])
def test_training_workers_follow_the_gpus(tmp_path, gpus, stand_in_commands):
    done, calls, work = _repro(tmp_path, stand_in_commands, gpus)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    runs = sorted(c for c in calls if c.startswith("run "))
    workers = {line.split("]")[0] for line in out if line.startswith("[worker ")}
    if gpus:  # two workers taking stages from one queue, each worker on its own device
        assert [r.rsplit(" ", 2)[0] for r in runs] == ["run train@A-0", "run train@A-1", "run train@F-0",
                                                       "run train@F-1"]
        assert all(r.endswith((" gpu=0 threads=1", " gpu=1 threads=1")) for r in runs)
        assert workers == {"[worker 0", "[worker 1"}  # (each stage takes 0.3 s: both workers get some)
    else:
        plain = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
        cores = int(subprocess.run(["nproc"], capture_output=True, text=True, env=plain).stdout)
        assert len(runs) == 4 and all(c.endswith("gpu=none threads=1") for c in runs)
        assert len(workers) == min(cores, 4)
    # no stage calls DVC: the inputs stage first, one recording of the four runs, then the rest
    assert [c for c in calls if c.startswith("dvc ")] == ["dvc repro proxy_clip@default", "dvc repro"]
    (commit,) = [c for c in calls if c.startswith("commit ")]
    assert sorted(commit.split()[1:]) == ["train@A-0", "train@A-1", "train@F-0", "train@F-1"]
    # one overall progress line per finished training stage, and its start / end for the overhead figure
    progress = [line for line in out if line.startswith("stage ")]
    assert [line.split(",")[0] for line in progress] == [f"stage {k} / 4" for k in range(1, 5)]
    assert all(re.search(r", elapsed \d+:\d\d, ETA \d+:\d\d \(train@[AF]-[01]\)$", line) for line in progress)
    times = (work / "build" / "repro_times.tsv").read_text().splitlines()
    assert times[0].startswith("# workers ") and len(times) == 5
    assert all(float(t.split("\t")[2]) >= float(t.split("\t")[1]) for t in times[1:])


def test_a_failed_run_stops_the_repro_but_the_finished_runs_are_recorded(tmp_path, stand_in_commands):
    done, calls, _ = _repro(tmp_path, stand_in_commands, 2, "train@A-1", "train@F-1", fail=True)
    assert done.returncode == 1 and "train@F-1 failed" in done.stderr
    assert "run: .ci/repro train@A-1 train@F-1" in done.stderr  # the command to continue
    assert sorted(c.rsplit(" ", 2)[0] for c in calls if c.startswith("run ")) == ["run train@A-1",
                                                                                 "run train@F-1"]
    assert [c for c in calls if not c.startswith("run ")] == ["dvc repro proxy_clip@default", "commit train@A-1"]


@pytest.mark.parametrize("step", ["sources", "repro proxy_clip@default", "pending", "commit"])
def test_a_failing_step_stops_with_its_message_and_the_command_to_continue(tmp_path, stand_in_commands, step):
    """No step's failure is swallowed (`.ci/stages.py` without DVC, `dvc commit` while DVC's lock is held): the
    step's message, what failed, the command to continue; nothing runs after it (no final `dvc repro`)."""
    done, calls, _ = _repro(tmp_path, stand_in_commands, 2, "train@F-0", BREAK=step)
    assert done.returncode == 1, done.stdout
    assert ("ERROR: stand-in: proxy_clip@default broke" if step.startswith("repro") else f"{step} broke") \
        in done.stderr
    assert "run: .ci/repro train@F-0" in done.stderr or "Record them with: python .ci/stages.py commit train@F-0" \
        in done.stderr, done.stderr
    assert "dvc repro train@F-0" not in calls
    ran = [c for c in calls if c.startswith("run ")]
    assert bool(ran) == (step == "commit")  # the stages ran only when listing them worked


def test_a_second_repro_in_the_same_checkout_is_refused(tmp_path, stand_in_commands):
    """Two .ci/repro at once used to train the same run folders and print `stage 2 / 1 ... ETA 0:-25`."""
    work = _workdir(tmp_path)
    release = tmp_path / "release"
    env = _env(stand_in_commands, 2, RELEASE=str(release))
    first = subprocess.Popen([".ci/repro"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 30
        while "dvc repro proxy_clip@default" not in _log(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run([".ci/repro"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"another .ci/repro (pid {first.pid}) is running in this checkout" in second.stderr
        assert "then run: .ci/repro" in second.stderr
    finally:
        release.touch()
        stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    runs = [c for c in _log(tmp_path).splitlines() if c.startswith("run ")]
    assert len(runs) == 4  # each stage once
    progress = [line.split(",")[0] for line in stdout.splitlines() if line.startswith("stage ")]
    assert progress == [f"stage {k} / 4" for k in range(1, 5)]


def _log(tmp_path: Path) -> str:
    log = tmp_path / "log"
    return log.read_text() if log.exists() else ""


def test_the_venv_is_found_without_path(tmp_path, stand_in_commands):
    """The README's `.ci/repro train@F-0` from a shell whose PATH lacks .venv/bin: the venv's python and dvc."""
    work = _workdir(tmp_path)
    env = _env(stand_in_commands, 0)
    venv = work / ".venv" / "bin"
    venv.mkdir(parents=True)
    for name in ("python", "dvc"):
        shutil.move(tmp_path / "bin" / name, venv / name)
    env["PATH"] = "/usr/bin:/bin"
    done = subprocess.run([".ci/repro", "train@F-0"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [c for c in _log(tmp_path).splitlines() if not c.startswith("run ")] == [
        "dvc repro proxy_clip@default", "commit train@F-0", "dvc repro train@F-0"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_killing_repro_stops_its_stages_and_server(tmp_path, stand_in_commands):
    """SIGKILL to .ci/repro while its stages (real nbrun runs of a waiting notebook) and preload server run: all of
    them end, no output is written, and the lock is free again."""
    pytest.importorskip("papermill")
    import nbformat

    work = _workdir(tmp_path)
    wait = "import os, time\nopen(flag, 'w').write(str(os.getpid()))\nwhile True:\n    time.sleep(0.05)"
    cells = [nbformat.v4.new_code_cell("flag = ''", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(wait)]
    kernel = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), work / "wait.ipynb")
    (work / "out.ipynb").write_text("committed")
    env = _env(stand_in_commands, 2, WAIT_NB="wait.ipynb")
    repro = subprocess.Popen([".ci/repro", "train@A-0", "train@A-1"], cwd=work, env=env,
                             stdout=open(tmp_path / "repro.out", "w"), stderr=subprocess.STDOUT)
    flags = [work / "flag.train@A-0", work / "flag.train@A-1"]
    pids = [int(_wait(lambda f=f: f.exists() and f.read_text(), "a stage to start")) for f in flags]
    server = _wait(lambda: _server_pid(repro.pid), "the server")
    repro.send_signal(signal.SIGKILL)
    repro.wait(timeout=30)
    for pid in [*pids, server]:
        _wait(lambda pid=pid: _gone(pid), f"process {pid} to end")
    assert (work / "out.ipynb").read_text() == "committed" and not list(work.glob(".*.tmp*"))
    with open(work / "build" / "repro.lock") as lock:  # every process holding it has ended
        _wait(lambda: _try_lock(lock), "the lock to be released")


def _server_pid(parent: int) -> int | None:
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"serve" in f.read():
                return int(child)
    return None


def _try_lock(file) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(file, fcntl.LOCK_UN)
    return True


def test_the_quick_tier_trains_table_3_only():
    """`.ci/main quick`: the workers get the training stages upstream of the `quick` stage, Table 3's A-G with
    every seed (read from this repository's dvc.yaml and params.yaml)."""
    import yaml
    from conftest import load_script
    from dvc.repo import Repo

    stages = load_script(ROOT / ".ci" / "stages.py")
    seeds = yaml.safe_load((ROOT / "params.yaml").read_text())["seeds"]
    repo = Repo(str(ROOT))
    assert sorted(stages.training_stages(repo, ["quick"])) == sorted(f"train@{p}-{s}" for p in "ABCDEFG"
                                                                    for s in seeds)
    assert list(stages.training_stages(repo, ["train@F-0", "quick"]))[0] == "train@F-0"  # the order given


# ----------------------------------------------------------------------------------------------------------------
# .ci/stages.py on a small DVC project

PIPELINE = """\
stages:
  make:
    matrix:
      n: [1, 2, 3, 4]
    cmd: mkdir -p runs/${item.n} res && echo run ${item.n} > runs/${item.n}/w && echo ${item.n} > res/${item.n}.json
    deps: [code.txt]
    outs:
      - runs/${item.n}:
          persist: true
    metrics:
      - res/${item.n}.json:
          cache: false
  check:
    cmd: ls data > listing.txt
    deps: [data]
    outs: [listing.txt]
"""


def _dvc(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, capture_output=True, text=True,
                          check=True)


def _stages_py(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "stages.py"), *args], cwd=work, capture_output=True,
                          text=True)


@pytest.fixture()
def project(tmp_path) -> Path:
    work = tmp_path / "a"
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    _dvc(work, "init", "-q")
    (work / "code.txt").write_text("v1")
    (work / "dvc.yaml").write_text(PIPELINE)
    (work / "data").mkdir()
    (work / "data" / "one.txt").write_text("1")
    (work / "data" / "two.txt").write_text("2")
    _dvc(work, "add", "-q", "data")
    _dvc(work, "repro", "-q", "make@1", "make@3")
    return work


@pytest.mark.slow
def test_recording_in_one_write_is_byte_identical_to_dvc_commit(project, tmp_path):
    """Stages re-run (new outputs) or never recorded: `.ci/stages.py commit` gives the dvc.lock and cache of
    `dvc commit --force`, in the order given (new entries appended)."""
    for n in (1, 2, 3, 4):
        (project / "runs" / str(n)).mkdir(parents=True, exist_ok=True)
        (project / "runs" / str(n) / "w").write_text(f"new {n}")
        (project / "res" / f"{n}.json").write_text(str(10 * n))
    other = tmp_path / "b"
    shutil.copytree(project, other, symlinks=True)
    _dvc(project, "commit", "--force", "-q", "make@4", "make@1", "make@2")
    done = _stages_py(other, "commit", "make@4", "make@1", "make@2")
    assert done.returncode == 0, done.stderr
    assert "recorded 3 stage(s)" in done.stdout
    assert (other / "dvc.lock").read_bytes() == (project / "dvc.lock").read_bytes()
    cache = sorted(p.relative_to(project / ".dvc" / "cache") for p in (project / ".dvc" / "cache").rglob("*"))
    assert cache == sorted(p.relative_to(other / ".dvc" / "cache") for p in (other / ".dvc" / "cache").rglob("*"))
    assert "up to date" in _dvc(other, "status", "make@1", "make@2", "make@4").stdout


@pytest.mark.slow
def test_recording_says_when_dvc_is_busy(project):
    """DVC's own lock held (another DVC process): the failure says so; .ci/repro prints it with the command."""
    import dvc.lock

    with open(project / ".dvc" / "tmp" / "lock", "a") as held:
        lock = getattr(dvc.lock, "fcntl", fcntl)
        lock.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = _stages_py(project, "commit", "make@1")
    assert done.returncode == 1
    assert "ERROR: python .ci/stages.py commit make@1:" in done.stderr and "lock" in done.stderr


@pytest.mark.slow
def test_a_changed_data_source_stops_before_dvc_records_it(project):
    """`dvc repro` of a stage downstream of data.dvc with data/ emptied would rewrite data.dvc to 0 files (DVC
    re-records a changed data source before running anything); `.ci/stages.py sources` refuses instead."""
    recorded = (project / "data.dvc").read_bytes()
    assert _stages_py(project, "sources", "check").returncode == 0
    for f in (project / "data").iterdir():
        f.unlink()
    done = _stages_py(project, "sources", "check")
    assert done.returncode == 1
    assert "data.dvc: data holds 0 files, but data.dvc records 2 files" in done.stderr
    assert "dvc add data" in done.stderr
    assert _stages_py(project, "sources", "make@1").returncode == 0  # not upstream of make@1
    assert (project / "data.dvc").read_bytes() == recorded
