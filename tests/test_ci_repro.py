""".ci/repro: the training stages DVC would run are listed once and run by workers outside DVC's lock, one per
GPU on a CUDA machine (each pinned to its device), one per core otherwise; one `dvc commit` records them (stand-in
python and dvc record what happens)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `.ci/stages.py pending` lists four training stages; each stage's command takes 0.3 s and records its device;
# train@F-1 fails when FAIL is set.
FAKE_PYTHON = r"""#!/usr/bin/env bash
case "$*" in
  *device_count*) echo "$GPUS" ;;
  *"nbrun serve"*) exec sleep 30 ;;
  *"stages.py pending"*)
    for s in train@A-0 train@A-1 train@F-0 train@F-1; do
      [ $# -le 2 ] || [[ " $* " == *" $s "* ]] || continue
      cmd="sleep 0.3; echo run $s gpu=\${CUDA_VISIBLE_DEVICES:-none} threads=\$OMP_NUM_THREADS >> \$LOG"
      printf '%s\t%s\n' "$s" "$cmd; [ -z \"\$FAIL\" ] || [ $s != train@F-1 ]"
    done ;;
esac
"""

FAKE_DVC = r"""#!/usr/bin/env bash
if [ "$1 $2" = "stage list" ]; then printf '%s\n' proxy_clip@default train@A-0 train@A-1 train@F-0 train@F-1 \
  evaluate@F; exit 0; fi
echo "dvc $*" >> "$LOG"
"""


def _repro(tmp_path, stand_in_commands, gpus: int, *args: str, fail: bool = False):
    work = tmp_path / "repo"
    (work / ".ci").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".ci" / "repro", work / ".ci" / "repro")
    env = {**stand_in_commands(python=FAKE_PYTHON, dvc=FAKE_DVC), "GPUS": str(gpus), "FAIL": "1" if fail else ""}
    env.pop("JOBS", None)
    done = subprocess.run([".ci/repro", *args], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    return done, (tmp_path / "log").read_text().splitlines(), work


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
    # no worker calls DVC: the inputs stage first, one commit of the four runs, then the rest
    dvc = [c for c in calls if c.startswith("dvc ")]
    assert dvc[0] == "dvc repro proxy_clip@default" and dvc[-1] == "dvc repro"
    assert len(dvc) == 3 and dvc[1].startswith("dvc commit --force --quiet ")
    assert sorted(dvc[1].split()[4:]) == ["train@A-0", "train@A-1", "train@F-0", "train@F-1"]
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
    assert sorted(c.rsplit(" ", 2)[0] for c in calls if c.startswith("run ")) == ["run train@A-1",
                                                                                 "run train@F-1"]
    assert [c for c in calls if c.startswith("dvc ")] == ["dvc repro proxy_clip@default",
                                                         "dvc commit --force --quiet train@A-1"]


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
