"""Training stages for .ci/repro's workers: `python .ci/stages.py pending [STAGE...]` prints, for every training
stage (train@..., train_vehicle@...) that DVC would run, one line "<name>\t<command>": all of them in dvc.yaml's
order, or those among STAGE and upstream of STAGE (e.g. `quick`: Table 3's runs), in the order given.  One DVC call
for the whole list, so the workers run the commands without taking DVC's lock; .ci/repro records the results
afterwards in one `dvc commit`."""

from __future__ import annotations

import sys

from dvc.repo import Repo

TRAINING = ("train@", "train_vehicle@")


def training_stages(repo: Repo, wanted: list[str]) -> dict[str, str]:
    """{name: command} of the training stages among and upstream of ``wanted`` (all when empty)."""
    stages = {s.addressing: s.cmd for s in repo.index.stages if s.addressing.startswith(TRAINING)}
    if not wanted:
        return stages
    names = []
    for target in wanted:
        upstream = {s.addressing for s in repo.stage.collect(target, with_deps=True)}
        names += [target] if target in stages else [n for n in stages if n in upstream]
    return {n: stages[n] for n in dict.fromkeys(names)}


def pending(wanted: list[str]) -> list[tuple[str, str]]:
    repo = Repo()
    stages = training_stages(repo, wanted)
    changed = repo.status(targets=list(stages)) if stages else {}
    return [(n, cmd) for n, cmd in stages.items() if n in changed]


if __name__ == "__main__":
    if sys.argv[1:2] != ["pending"]:
        sys.exit("usage: python .ci/stages.py pending [STAGE...]")
    for name, cmd in pending(sys.argv[2:]):
        print(f"{name}\t{cmd}")
