#!/usr/bin/env bash
# Run the training stages of the active profile as one SLURM array job (one stage per task, one GPU each), then the
# rest of the pipeline once they are all done:
#   tools/slurm/submit.sh [sbatch options...]      e.g. tools/slurm/submit.sh --partition gpu --time 12:00:00
# Every task runs `dvc repro --single-item <its stage>` in this workspace (a shared filesystem): the results land in
# their profile's folders as with .ci/repro, and DVC's lock is retried when another task holds it.  A final
# dependent job runs `dvc repro` (evaluation, tables, figures).  Re-submitting skips finished stages.
set -euo pipefail
cd "$(dirname "$0")/../.."
mapfile -t stages < <(dvc stage list --name-only | grep -E '^(train@|train_vehicle@)')
[ ${#stages[@]} -gt 0 ] || { echo "no training stages in dvc.yaml" >&2; exit 1; }
mkdir -p build/slurm
printf '%s\n' "${stages[@]}" > build/slurm/stages.txt
array=$(sbatch --parsable --array=0-$((${#stages[@]} - 1)) "$@" tools/slurm/task.sbatch)
final=$(sbatch --parsable --dependency=afterok:"${array%%;*}" "$@" --wrap "dvc repro")
echo "submitted ${#stages[@]} training tasks (job ${array%%;*}) and the final dvc repro (job ${final%%;*})"
