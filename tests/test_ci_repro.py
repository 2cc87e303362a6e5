""".ci/repro: one training worker per GPU on a CUDA machine (each pinned to its device), one per core otherwise
(stand-in python and dvc record what the workers run)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r"""#!/usr/bin/env bash
case "$*" in
  *device_count*) echo "$GPUS" ;;
  *"nbrun serve"*) exec sleep 30 ;;
esac
"""

FAKE_DVC = r"""#!/usr/bin/env bash
if [ "$1 $2" = "stage list" ]; then printf '%s\n' proxy_clip@default train@A-0 train@A-1 train@F-0 train@F-1 \
  evaluate@F; exit 0; fi
echo "dvc $* gpu=${CUDA_VISIBLE_DEVICES:-none}" >> "$LOG"
echo "Running stage '${!#}':"
"""


@pytest.mark.parametrize("gpus", [0, 2])
def test_training_workers_follow_the_gpus(tmp_path, gpus, stand_in_commands):
    work = tmp_path / "repo"
    (work / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "repro", work / ".ci" / "repro")
    env = {**stand_in_commands(python=FAKE_PYTHON, dvc=FAKE_DVC), "GPUS": str(gpus)}
    log = tmp_path / "log"
    env.pop("JOBS", None)
    out = subprocess.run([".ci/repro"], cwd=work, env=env, check=True, capture_output=True, text=True,
                         timeout=60).stdout.splitlines()
    calls = log.read_text().splitlines()
    trains = sorted(c for c in calls if "--single-item" in c)
    workers = {line.split("]")[0] for line in out if line.startswith("[worker ")}
    if gpus:  # two workers, stages split round-robin, one `dvc repro` per stage, each worker on its own device
        assert trains == ["dvc repro --single-item train@A-0 gpu=0", "dvc repro --single-item train@A-1 gpu=1",
                          "dvc repro --single-item train@F-0 gpu=0", "dvc repro --single-item train@F-1 gpu=1"]
        assert workers == {"[worker 0", "[worker 1"}
    else:
        plain = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
        cores = int(subprocess.run(["nproc"], capture_output=True, text=True, env=plain).stdout)
        assert len(trains) == 4 and all(c.endswith("gpu=none") for c in trains)
        assert len(workers) == min(cores, 4)
    # one overall progress line per finished training stage
    progress = [line for line in out if line.startswith("stage ")]
    assert [line.split(",")[0] for line in progress] == [f"stage {k} / 4" for k in range(1, 5)]
    assert all(re.search(r", elapsed \d+:\d\d, ETA \d+:\d\d \(train@[AF]-[01] ran\)$", line) for line in progress)
    assert calls[0].startswith("dvc repro proxy_clip@default") and calls[-1].startswith("dvc repro gpu=")
