"""DVC queries and records for .ci/repro, each one DVC process:

* ``python .ci/stages.py pending [STAGE...]`` prints, for every training stage (train@..., train_vehicle@...) that
  DVC would run, one line "<name>\\t<command>": all of them in dvc.yaml's order, or those among STAGE and upstream
  of STAGE (e.g. `quick`: Table 3's runs), in the order given.  .ci/repro's workers then run the commands without
  taking DVC's lock.
* ``python .ci/stages.py commit STAGE...`` records stages whose command has just run, as ``dvc commit --force
  STAGE...`` does, but writes dvc.lock once instead of once per stage (the CLI re-reads and rewrites the whole lock
  file for each target: ~8.6 s a stage with the sweep's 705 KB lock).  The resulting dvc.lock is byte-identical.
* ``python .ci/stages.py sources [STAGE...]`` fails, saying why and what to do, when a data source upstream of the
  stages (``data.dvc``) differs from what it records: ``dvc repro`` would re-record it as it is (e.g. an empty
  ``data/`` under a paper profile became a 0-file ``data.dvc`` before the failing dataset check ran).
"""

from __future__ import annotations

import os
import sys

from dvc.exceptions import DvcException
from dvc.repo import Repo, locked
from dvc.repo.scm_context import scm_context

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


@locked
@scm_context
def _commit(repo: Repo, names: list[str]) -> list[str]:
    """``dvc commit --force`` of ``names`` (save each stage's dependencies and outputs, put cached outputs into the
    cache, write the lock entries), dumping each DVC file once with all its stages -- the entries, their order and
    the formatting are those of the per-stage dumps (dvc.dvcfile.Lockfile.dump_stages)."""
    files: dict[str, tuple] = {}  # path -> (the DVC file, its stages in the order given)
    for name in names:
        for info in repo.stage.collect_granular(name):
            stage = info.stage
            stage.save()
            stage.commit(filter_info=info.filter_info, relink=True)
            files.setdefault(stage.dvcfile.path, (stage.dvcfile, []))[1].append(stage)
    for dvcfile, stages in files.values():
        dvcfile.dump_stages(stages, update_pipeline=False)
    return [s.addressing for _, stages in files.values() for s in stages]


def commit(names: list[str]) -> list[str]:
    return _commit(Repo(), names)


def changed_sources(repo: Repo, wanted: list[str]) -> list[str]:
    """One message per data source (a ``.dvc`` file) upstream of ``wanted`` (of every pipeline stage when empty)
    whose data differs from its record."""
    import networkx as nx
    from dvc.stage import PipelineStage

    graph = repo.index.graph
    if wanted:
        stages = [s for target in wanted for s in repo.stage.collect(target)]
    else:
        stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
    upstream = {u for s in stages for u in nx.descendants(graph, s)}
    messages = []
    for source in sorted((s for s in upstream if s.is_data_source and not s.frozen), key=lambda s: s.relpath):
        for out in source.outs:
            if not out.status():
                continue
            recorded = out.meta.nfiles if out.meta and out.meta.nfiles is not None else "?"
            present = sum(len(files) for _, _, files in os.walk(out.fs_path)) if out.exists else None
            now = "is missing" if present is None else f"holds {present} files"
            messages.append(
                f"{source.relpath}: {out} {now}, but {source.relpath} records {recorded} files; `dvc repro` would "
                f"record it as it is now.  If {out} holds the data you mean to use, record it first (`dvc add {out}`)"
                f"; else put the recorded data back (`dvc checkout {source.relpath}`, or the dataset: README, "
                "Datasets)."
            )
    return messages


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "pending":
            for name, cmd in pending(args):
                print(f"{name}\t{cmd}")
        elif command == "commit" and args:
            print(f"recorded {len(commit(args))} stage(s) in dvc.lock")
        elif command == "sources":
            messages = changed_sources(Repo(), args)
            for message in messages:
                print(message, file=sys.stderr)
            return 1 if messages else 0
        else:
            print("usage: python .ci/stages.py {pending [STAGE...] | commit STAGE... | sources [STAGE...]}",
                  file=sys.stderr)
            return 2
    except DvcException as exc:
        print(f"ERROR: python .ci/stages.py {' '.join(argv)}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
