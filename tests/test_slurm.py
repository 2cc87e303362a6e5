"""tools/slurm: one array task per training stage, then one final `dvc repro` (stand-in sbatch and dvc)."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_SBATCH = r"""#!/usr/bin/env bash
# stand-in sbatch: runs array tasks one after another (SLURM_ARRAY_TASK_ID set) or a --wrap command, at once
array="" wrap="" script=""
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array=${1#--array=} ;;
    --wrap) wrap=$2; shift ;;
    --partition|--time) shift ;;
    --parsable|--dependency=*) ;;
    *) script=$1 ;;
  esac
  shift
done
echo "sbatch array=$array wrap=$wrap script=$script" >> "$LOG"
if [ -n "$wrap" ]; then bash -c "$wrap"; echo 2; exit 0; fi
for i in $(seq "${array%-*}" "${array#*-}"); do
  SLURM_ARRAY_TASK_ID=$i SLURM_SUBMIT_DIR=$PWD bash "$script" >/dev/null
done
echo 1
"""

FAKE_DVC = r"""#!/usr/bin/env bash
if [ "$1 $2" = "stage list" ]; then printf '%s\n' complexity proxy_clip@default train@A-0 train@F-0 \
  train_vehicle@default-vehicle-F-0 evaluate@F tables; exit 0; fi
echo "dvc $*" >> "$LOG"
"""


def test_submit_runs_each_training_stage_in_its_own_task_then_the_rest(tmp_path, stand_in_commands):
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "tools", work / "tools")
    env = stand_in_commands(sbatch=FAKE_SBATCH, dvc=FAKE_DVC)
    log = tmp_path / "log"
    out = subprocess.run(["tools/slurm/submit.sh", "--partition", "gpu"], cwd=work, env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "submitted 3 training tasks" in out
    calls = log.read_text().splitlines()
    repros = [c for c in calls if c.startswith("dvc repro")]
    assert repros == ["dvc repro --single-item train@A-0", "dvc repro --single-item train@F-0",
                      "dvc repro --single-item train_vehicle@default-vehicle-F-0", "dvc repro"]
    assert any("array=0-2" in c for c in calls)
