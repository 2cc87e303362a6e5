"""Training stages for .ci/repro's workers: `python .ci/stages.py pending [STAGE...]` prints, for every training
stage (train@..., train_vehicle@...; all in dvc.yaml's order, or those among STAGE in the order given) that DVC
would run, one line "<name>\t<command>".
One DVC call for the whole list, so the workers run the commands without taking DVC's lock; .ci/repro records the
results afterwards in one `dvc commit`."""

from __future__ import annotations

import sys

from dvc.repo import Repo


def pending(wanted: list[str]) -> list[tuple[str, str]]:
    repo = Repo()
    stages = {s.addressing: s for s in repo.index.stages if s.addressing.startswith(("train@", "train_vehicle@"))}
    names = [n for n in wanted if n in stages] if wanted else list(stages)
    changed = repo.status(targets=names) if names else {}
    return [(n, stages[n].cmd) for n in names if n in changed]


if __name__ == "__main__":
    if sys.argv[1:2] != ["pending"]:
        sys.exit("usage: python .ci/stages.py pending [STAGE...]")
    for name, cmd in pending(sys.argv[2:]):
        print(f"{name}\t{cmd}")
