"""One-core training-step time of the pipeline's exact configurations, this checkout against an earlier revision,
interleaved in one run; and the overhead of the last sweep over the sum of its runs.

A step is what the engine does per PK batch: forward of the three modalities, the ReID loss, ``zero_grad``,
backward and the optimiser step (``mambapro.engine.make_optimizer``), on a batch of the default profile's shape
(32 samples, 64 x 32 images, 40 identities) with random images: the cost does not depend on the pixel values or
the tower's weights.  Each (revision, preset) is timed in its own child process with one thread and the
environment that revision's stages get (``mambapro.environment`` where it exists), alternating revisions round by
round so that both see the same machine load; the figure is the median step over the rounds.

Goals (issue 13): F <= 150 ms, A <= 40 ms on one core; the sweep's overhead <= 15 %.

The sweep overhead is read from ``build/repro_times.tsv`` (written by ``.ci/repro``: one line per training stage
it ran, with the stage's start and end): overhead = wall time of the training phase x workers / sum of the stage
times - 1, i.e. the share of the workers' time that went to anything but running a stage's command.

Usage: python benchmarks/train_step.py [--presets A C E F G] [--against REV] [--rounds 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS_MS = {"F": 150.0, "A": 40.0}


def child(preset: str, steps: int, warmup: int) -> None:
    """Time ``steps`` training steps of ``preset`` (after ``warmup``) in this process; print one JSON line."""
    import torch

    import mambapro  # noqa: F401 - first: a revision that pins the environment does it on import

    torch.set_num_threads(1)
    from mambapro.config import resolve_config
    from mambapro.engine import make_optimizer, seed_everything
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    cfg = resolve_config("default", preset, {"backbone": {"pretrained": None}})
    seed_everything(0)
    n_ids, k = cfg.data.batch_size // cfg.data.num_instances, cfg.data.num_instances
    h, w = cfg.data.image_size
    model = build_model(cfg, num_classes=40, num_cameras=4).train()
    criterion, optimizer = ReIDLoss(cfg.loss), make_optimizer(model, cfg)
    images = {m: torch.randn(n_ids * k, 3, h, w) for m in ("RGB", "NI", "TI")}
    cams = torch.randint(0, 4, (n_ids * k,))
    pids = torch.arange(n_ids).repeat_interleave(k)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss, _ = criterion(model(images, cams), pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"preset": preset, "ms": [t * 1e3 for t in times],
                      "capability": torch.backends.cpu.get_cpu_capability()}))


def _run_child(src: Path, preset: str, steps: int, warmup: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    env.pop("ATEN_CPU_CAPABILITY", None)  # each revision sets (or not) its own
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", preset, "--steps", str(steps),
           "--warmup", str(warmup)]
    out = subprocess.run(cmd, env=env, cwd=src, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"timing {preset} at {src} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep_overhead(path: Path) -> str:
    """The training phase's overhead from ``.ci/repro``'s timing file, or why it cannot be computed."""
    if not path.is_file():
        return f"sweep overhead: no {path.relative_to(ROOT)} (written by .ci/repro's training phase)"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    header = [line for line in path.read_text().splitlines() if line.startswith("# workers")]
    workers = int(header[0].split()[-1]) if header else 1
    if not rows:
        return "sweep overhead: the last sweep ran no training stage"
    starts, ends = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
    busy = sum(e - s for s, e in zip(starts, ends))
    wall = max(ends) - min(starts)
    over = wall * workers / busy - 1
    return (f"sweep overhead ({len(rows)} stages, {workers} workers): wall {wall / 60:.1f} min, sum of stage "
            f"times {busy / 60:.1f} min -> overhead {100 * over:.1f} % (goal <= 15 %)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["A", "C", "E", "F", "G"])
    p.add_argument("--against", default=None, help="git revision to compare with (e.g. the commit before the "
                                                   "speed-ups); omitted: this checkout only")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.steps, args.warmup)

    sources = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            old = Path(tmp) / "old"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                           check=True, capture_output=True)
            sources = {args.against: old, **sources}
        try:
            times = {(name, pr): [] for name in sources for pr in args.presets}
            caps = {}
            total = args.rounds * len(sources) * len(args.presets)
            done, t0 = 0, time.time()
            for r in range(args.rounds):
                for pr in args.presets:
                    for name, src in sources.items():
                        res = _run_child(src, pr, args.steps, args.warmup)
                        times[name, pr] += res["ms"]
                        caps[name] = res["capability"]
                        done += 1
                        eta = (time.time() - t0) / done * (total - done)
                        print(f"[{done}/{total}] round {r + 1} {pr:>2} {name}: median "
                              f"{statistics.median(res['ms']):.1f} ms (ETA {eta:.0f} s)", file=sys.stderr)
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                               check=False, capture_output=True)

    names = list(sources)
    print(f"one-core training step of {args.rounds} x {args.steps} steps (ms, median / min); ATen CPU capability: "
          + ", ".join(f"{n} {caps[n]}" for n in names))
    print("| preset | " + " | ".join(names) + (" | ratio of medians |" if len(names) == 2 else " |") + " goal |")
    print("|" + "---|" * (len(names) + (3 if len(names) == 2 else 2)))
    for pr in args.presets:
        med = [statistics.median(times[n, pr]) for n in names]
        ratio = f" | {med[1] / med[0]:.2f}" if len(names) == 2 else ""
        goal = f"<= {GOALS_MS[pr]:.0f}" if pr in GOALS_MS else ""
        cells = [f"{m:.1f} / {min(times[n, pr]):.1f}" for n, m in zip(names, med)]
        print(f"| {pr} | " + " | ".join(cells) + f"{ratio} | {goal} |")
    print(sweep_overhead(ROOT / "build" / "repro_times.tsv"))


if __name__ == "__main__":
    main()
