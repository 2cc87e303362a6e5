"""Is the training step host-bound?  For preset F, the number of aten operators one training step dispatches and the
host synchronisations it makes, eager and under ``torch.compile`` (``train.compile``), printed side by side.

A step is :func:`mambapro.engine.train_step` (forward of the three modalities, the ReID loss, ``zero_grad``,
backward, the fused Adam step) plus the engine's on-device loss bookkeeping, on random inputs at the paper's shapes
(profile rgbnt201: ViT-B/16 at 256 x 128, random tower weights) on the CPU; ``--tiny`` uses the tiny tower at 32 x 16
(CI).  Operators are counted with the profiler after warm-up (compilation) steps: ``top-level`` are the aten calls
not made by another aten call (what Python dispatches, each a few microseconds of host time on a GPU); ``all``
includes the nested ones.  Host synchronisations are the calls that read a tensor's value back to Python
(``item``, ``tolist``, ``bool``, ``float``, ``int``, ``index``, ``numpy``, ``cpu`` of a device tensor), counted by
:class:`SyncCounter` during the step; on a GPU each one waits for the device.

Goals (issue 20): compiled <= 3,000 top-level operators per step (eager about 13k at paper shapes), <= 1 host
synchronisation per step.

Usage: python benchmarks/dispatch_count.py [--tiny] [--batch 2] [--preset F] [--no-compile] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from types import SimpleNamespace

import torch

import mambapro  # noqa: F401 - pins the CPU math environment first

SYNC_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu")


class SyncCounter(contextlib.AbstractContextManager):
    """Counts reads of tensor values into Python while active (``n``; ``calls``: the method names), by wrapping
    the :data:`SYNC_METHODS` of ``torch.Tensor``.  ``cpu`` counts only for a tensor not already on the CPU."""

    def __init__(self):
        self.n, self.calls, self._saved, self._inside = 0, [], {}, False

    def __enter__(self):
        for name in SYNC_METHODS:
            real = self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name, real))
        return self

    def __exit__(self, *exc):
        for name, real in self._saved.items():
            setattr(torch.Tensor, name, real)
        return False

    def _wrap(self, name, real):
        counter = self

        def counted(tensor, *args, **kwargs):
            if not counter._inside and (name != "cpu" or tensor.device.type != "cpu"):
                counter.n += 1
                counter.calls.append(name)
            counter._inside, was = True, counter._inside
            try:
                return real(tensor, *args, **kwargs)
            finally:
                counter._inside = was

        return counted


def build(preset: str, tiny: bool, batch: int, compile_: bool):
    """A run-like namespace for :func:`mambapro.engine.train_step` and one random batch."""
    from mambapro.config import resolve_config
    from mambapro.engine import make_optimizer, seed_everything
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    over = {"backbone.pretrained": None, "train.device": "cpu", "train.compile": compile_}
    if tiny:
        over.update({"data.image_size": [32, 16]})
    cfg = resolve_config("bare" if tiny else "rgbnt201", preset, over)
    seed_everything(0)
    model = build_model(cfg, num_classes=171, num_cameras=4).train()
    h, w = cfg.data.image_size
    images = {m: torch.randn(batch, 3, h, w) for m in ("RGB", "NI", "TI")}
    cams = torch.arange(batch) % 4
    pids = torch.arange(batch) % max(2, batch // 2)
    optimizer = make_optimizer(model, cfg)
    run = SimpleNamespace(cfg=cfg, device=torch.device("cpu"), model=model,
                          net=torch.compile(model) if compile_ else model, criterion=ReIDLoss(cfg.loss),
                          optimizer=optimizer, scaler=torch.amp.GradScaler("cuda", enabled=False))
    return run, (images, cams, pids)


def step(run, batch, total: torch.Tensor) -> None:
    """One engine step and its on-device bookkeeping (as :func:`mambapro.engine.train_epoch`)."""
    from mambapro.engine import train_step

    loss, parts = train_step(run, *batch)
    total += loss.detach().double()
    torch.stack([v.detach().double() for v in parts.values()])


def measure(preset: str = "F", tiny: bool = False, batch: int = 2, compile_: bool = False, warmup: int = 2) -> dict:
    """Operators and host synchronisations of one training step after ``warmup`` steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    run, batch_ = build(preset, tiny, batch, compile_)
    total = torch.zeros((), dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(run, batch_, total)
    warm_s = time.perf_counter() - t0
    with SyncCounter() as syncs:
        step(run, batch_, total)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(run, batch_, total)
    events = [e for e in prof.events() if e.name.startswith("aten::")]

    def top(e):
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::"):
                return False
            p = p.cpu_parent
        return True

    return {"preset": preset, "mode": "compiled" if compile_ else "eager", "batch": batch,
            "shape": list(run.cfg.data.image_size), "tower": run.cfg.backbone.arch,
            "top_level_ops": sum(map(top, events)), "all_aten_ops": len(events), "host_syncs": syncs.n,
            "sync_calls": syncs.calls, "warmup_s": round(warm_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="the tiny tower at 32 x 16 (CI)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--preset", default="F")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    rows = [measure(args.preset, args.tiny, args.batch, False)]
    if not args.no_compile:
        rows.append(measure(args.preset, args.tiny, args.batch, True))
    print(f"preset {args.preset}, batch {args.batch}, {rows[0]['tower']} at {rows[0]['shape']}, CPU, one step:")
    print(f"{'':24}" + "".join(f"{r['mode']:>12}" for r in rows) + "      goal")
    for key, label, goal in (("top_level_ops", "aten ops (top-level)", "<= 3000 compiled"),
                             ("all_aten_ops", "aten ops (all)", ""), ("host_syncs", "host syncs", "<= 1")):
        print(f"{label:24}" + "".join(f"{r[key]:>12}" for r in rows) + f"      {goal}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
