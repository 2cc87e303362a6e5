"""Training and evaluation loop as the official code (official-implementation.md secs. 4-5).

Adam with per-parameter groups (bias lr x2, backbone lr 5e-6 under full fine-tuning, L2 weight decay 1e-4), timm's
cosine schedule with linear warm-up stepped once per epoch at the epoch's start (t = 1..E), AMP on CUDA and fp32 on
the CPU, evaluation on the test set every ``eval_every`` epochs.  Both the last-epoch and the best-epoch metrics are
reported; the paper's numbers are best-epoch-on-test, and are labelled so.

A run resumes from ``last.pt`` after an interruption and continues exactly: the checkpoint carries what training
changes (trainable parameters, buffers, Adam's state, schedule, GradScaler, every random-number state, history) at
the end of an epoch (every ``train.checkpoint_every``), and the PK sampler's order is a function of (seed, epoch).
Reading and writing checkpoints, and the backbone weights file they name: :mod:`mambapro.checkpoints`; a non-finite
parameter is never saved.  ``train`` = :func:`setup_run`, then per epoch :func:`train_epoch` (one
:func:`train_step` per batch, at most one host synchronisation each) and :func:`end_epoch`, then
:func:`finish_run`.  Speed options for a GPU (``train.amp_dtype``, ``tf32``, ``compile``): :mod:`mambapro.config`.

The same entry point runs under ``torchrun`` (DDP, gloo on the CPU, NCCL on CUDA with one GPU per process,
cuda:LOCAL_RANK) and trains the model one process trains (:mod:`mambapro.distributed`): each process decodes its
slice of every PK batch, the loss sees the global batch, BatchNorm the global statistics; process 0 evaluates and
writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from timm.scheduler import CosineLRScheduler
from tqdm.auto import tqdm

from mambapro.checkpoints import (
    CheckpointError,
    check_sizes,
    config_of,
    make_checkpoint,
    restore_model,
    save_checkpoint,
)
from mambapro.config import MISSING_SETTINGS, Config, apply_overrides, resolve_config
from mambapro.device import DeviceError, resolve_device, run_info
from mambapro.distributed import check_shardable, distribute, global_batch
from mambapro.distributed import env_world as _env_world
from mambapro.distributed import rank_world as _dist_info
from mambapro.registry import AGGREGATORS
from mambapro.results import INTERVAL_KEYS, METRIC_KEYS, write_text
from mambapro.weights import weights_digest

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int, deterministic: bool = True, tf32: bool = False) -> None:
    """Seed every generator and make CUDA deterministic; call it before any CUDA work (cuBLAS reads
    ``CUBLAS_WORKSPACE_CONFIG`` when it starts).  Deterministic means cuDNN's benchmark is off: the official code
    sets both (``train_net.py:16-23``, official-implementation.md sec. 4), but benchmark picks algorithms by timing,
    so two runs could differ.  Deterministic algorithms stay in warn mode for kernels that have none.
    ``deterministic=False`` (``train.deterministic``) turns benchmark on and the checks off; ``tf32``
    (``train.tf32``, only then) lets CUDA matmuls and convolutions round their inputs to TF32."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if tf32:
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on CUDA
        torch.backends.cudnn.allow_tf32 = True


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------------------------------------------
# Optimiser and schedule


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Adam:
    """Adam, L2 weight decay added to the gradient (not AdamW), with the official per-tensor settings (sec. 4,
    :func:`mambapro.model.param_groups`).  Tensors with equal settings share one group (the official code makes one
    group per tensor): the updates are the same, since Adam is element-wise and the schedule scales every group by
    the same factor, but the optimiser step then handles a few groups instead of hundreds (in a profiled CPU step
    of a width-64 tower with PFA, SRP and MA, the optimiser took 69 ms of 515 before, 19 after).  The fused
    implementation (one kernel per group, CPU and CUDA) instead of ``foreach``: preset F's one-core step -2 %."""
    from mambapro.model import param_groups

    merged: dict[tuple, dict] = {}
    for g in param_groups(model, cfg.train):
        key = (g["lr"], g["weight_decay"], g["kind"])
        group = merged.setdefault(key, {"params": [], "lr": g["lr"], "weight_decay": g["weight_decay"],
                                        "kind": g["kind"]})
        group["params"] += g["params"]
    return torch.optim.Adam(list(merged.values()), fused=True)


def make_scaler(cfg: Config, device: torch.device) -> torch.amp.GradScaler:
    """The official fp16 AMP's loss scaler (``processor.py``), on CUDA with ``train.amp``; disabled for bf16
    (``train.amp_dtype``), whose exponent range is fp32's, and on the CPU."""
    t = cfg.train
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and t.amp and t.amp_dtype == "float16")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Config) -> CosineLRScheduler:
    """timm's cosine schedule: warm-up from 1e-2 x base_lr, floor 1e-3 x base_lr, warm-up not prefixed (sec. 4)."""
    t = cfg.train
    return CosineLRScheduler(
        optimizer,
        t_initial=t.epochs,
        lr_min=1e-3 * t.base_lr,
        warmup_lr_init=1e-2 * t.base_lr,
        warmup_t=t.warmup_epochs,
        cycle_limit=1,
        t_in_epochs=True,
        warmup_prefix=False,
    )


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def _to_device(batch: dict, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    images = {m: x.to(device, non_blocking=True) for m, x in batch["images"].items()}
    return images, batch["camid"].to(device), batch["pid"].to(device)


@torch.no_grad()
def extract_features(model, loader, device: torch.device, missing: str | None = None, progress: bool = False,
                     amp: bool = False, amp_dtype: str = "float16"):
    """Retrieval features (pre-BN f_ma, or concatenated CLS without MA) of every test sample, in loader order.
    ``missing`` zero-fills the named modalities' inputs (DeMo's protocol, ``config.MISSING_SETTINGS``); ``amp``:
    autocast on CUDA (``train.amp``, ``train.amp_dtype``)."""
    from mambapro.data.transforms import zero_missing

    was_training = model.training
    model.eval()
    feats = []
    for batch in tqdm(loader, desc="features", leave=False, disable=not progress):
        images, cams, _ = _to_device(batch, device)
        if missing:
            images = zero_missing(images, missing)
        with _autocast(device, amp, amp_dtype):
            feats.append(model(images, cams).feature.float().cpu())
    model.train(was_training)
    return torch.cat(feats)


def evaluate(model, data, cfg: Config, device: torch.device, missing: str | None = None, rerank: bool = False,
             progress: bool = False) -> dict[str, float]:
    """mAP / CMC / mINP on the test split with the dataset's protocol (camera or scene, sec. 5)."""
    from mambapro.metrics import evaluate_features

    feats = extract_features(model, data.test_loader, device, missing=missing, progress=progress,
                             amp=cfg.train.amp, amp_dtype=cfg.train.amp_dtype)
    return evaluate_features(feats, data.test_meta, data.query_index, data.gallery_index, data.protocol,
                             rerank=rerank)


def _autocast(device: torch.device, amp: bool, dtype: str = "float16"):
    """fp16 autocast on CUDA with ``train.amp`` (official ``processor.py:46,65-74``), bf16 with
    ``train.amp_dtype: bfloat16``; fp32 otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------------------
# Distributed helpers


def _maybe_init_distributed(device: torch.device) -> bool:
    """Join torchrun's process group; on CUDA this process is bound to its GPU first (NCCL uses the current
    device, which is cuda:0 in every process otherwise)."""
    if _env_world() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class Run:
    """What :func:`setup_run` builds for one training run and the epochs then use."""

    cfg: Config
    seed: int
    out: Path
    device: torch.device
    rank: int
    world: int
    started_dist: bool
    data: Any
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DDP wrapper under torchrun
    criterion: Any
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    scaler: torch.amp.GradScaler
    digest: str | None
    state: dict[str, Any]  # epoch, history, best
    live: Any = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # run_info: what ran it
    iters: int = 0  # iterations run by this process (``stop_after_iters``)
    saved_epoch: int = 0  # the epoch of the latest last.pt

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


def train(cfg: Config, out_dir: str | Path, seed: int | None = None, *, resume: bool = True, progress: bool = True,
          stop_after_iters: int | None = None) -> dict[str, Any]:
    """Train one configuration with one seed; write ``last.pt``, ``best.pt`` and ``metrics.json`` to ``out_dir``.

    Returns the metrics dictionary: ``last`` (final epoch), ``best`` (best epoch by test mAP, the paper's protocol)
    and the per-epoch ``history``.  ``stop_after_iters`` simulates an interruption (tests).
    """
    run = setup_run(cfg, out_dir, seed, resume=resume)
    epochs = range(run.state["epoch"] + 1, run.cfg.train.epochs + 1)
    bar = tqdm(epochs, desc=f"train seed {run.seed}", disable=not progress or run.rank != 0,
               initial=run.state["epoch"], total=run.cfg.train.epochs)
    for epoch in bar:
        record = train_epoch(run, epoch, stop_after_iters)
        end_epoch(run, epoch, record, bar)
    return finish_run(run)


def setup_run(cfg: Config, out_dir: str | Path, seed: int | None = None, *, resume: bool = True) -> Run:
    """Seed, device, process group, data, model (resumed from ``last.pt`` when there is one), loss, optimiser,
    schedule and scaler of a run."""
    from mambapro.data.loaders import build_data
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    seed = cfg.train.seed if seed is None else seed
    cfg = apply_overrides(cfg, {"train": {"seed": seed}})
    out = Path(out_dir)
    seed_everything(seed, cfg.train.deterministic, cfg.train.tf32)  # before any CUDA work
    device = resolve_device(cfg.train.device, cfg.train.require_gpu)  # no GPU at paper scale: stops here
    info = run_info(cfg, device)
    if int(os.environ.get("RANK", "0")) == 0:
        print("run: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    _pin_cpu(device)
    started_dist = _maybe_init_distributed(device)
    rank, world = _dist_info()
    check_shardable(cfg.data.batch_size, world)  # equal slices; P >= 2 identities: the PK sampler checks it
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    data = build_data(cfg, seed, rank, world)  # this process's slice of every PK batch
    if rank == 0:  # before any GPU work: every image opens, is complete and has its reader's size (seconds)
        from mambapro.data.validate import validate_dataset

        log.info("%s", validate_dataset(data.dataset).report())
    if AGGREGATORS.fact(cfg.aggregation.kind, "scan"):  # the aggregators with a selective scan (registry fact)
        from mambapro.scan import describe_backend

        line = describe_backend(cfg.aggregation.scan_backend, device)  # raises for 'cuda' without the kernel
        if rank == 0:
            print(line, flush=True)
    last_path = out / "last.pt"
    ckpt = None
    if resume and last_path.exists():
        model, ckpt = restore_model(last_path, cfg, seed)
        check_sizes(last_path, ckpt, data)
    else:
        model = build_model(cfg, data.num_classes, data.num_cameras)
    model.to(device)
    digest = weights_digest(cfg)  # hashed once (the tower's file is resolved by now)
    criterion = ReIDLoss(cfg.loss)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = make_scaler(cfg, device)

    state = {"epoch": 0, "history": [], "best": None}
    if ckpt is not None:
        if "optimizer" in ckpt:  # absent once a run has finished (nothing left to step)
            optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:  # empty when written without AMP
            scaler.load_state_dict(ckpt["scaler"])
        state = {"epoch": ckpt["epoch"], "history": ckpt["history"], "best": ckpt["best"]}
        _set_rng_state(ckpt["rng"])
        log.info("resuming %s from epoch %d", out, state["epoch"])

    net = distribute(model, cfg, device)  # the model itself for one process
    if cfg.train.compile:  # forward and backward (AOTAutograd); the eager model is evaluated and saved
        net = torch.compile(net)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    live = _live(out, resume=state["epoch"] > 0) if rank == 0 else None
    return Run(cfg, seed, out, device, rank, world, started_dist, data, model, net, criterion, optimizer, scheduler,
               scaler, digest, state, live, info, saved_epoch=state["epoch"])


def train_epoch(run: Run, epoch: int, stop_after_iters: int | None = None) -> dict[str, Any]:
    """One epoch of updates; returns its record (epoch, lr, mean loss and loss parts).  The losses are summed on
    the device in float64 (the same sums as Python floats of the float32 values) and read once, at the epoch's end,
    where a non-finite sum stops the run: a step waits for the device only where its loss needs it."""
    device, optimizer = run.device, run.optimizer
    run.scheduler.step(epoch)  # official: stepped at the start of the epoch, t = epoch
    run.data.set_epoch(epoch)
    run.net.train()
    total, parts_total, names, n = torch.zeros((), dtype=torch.float64, device=device), None, [], 0
    for batch in run.data.train_loader:
        loss, parts = train_step(run, *_to_device(batch, device))
        total += loss.detach().double()
        if parts:
            names = list(parts)
            step_parts = torch.stack([parts[k].detach().double() for k in names])
            parts_total = step_parts if parts_total is None else parts_total + step_parts
        n += 1
        run.iters += 1
        if stop_after_iters is not None and run.iters >= stop_after_iters:
            raise KeyboardInterrupt(f"stopped after {run.iters} iterations (simulated interruption)")
    sums = (torch.cat([total.view(1), parts_total]) if parts_total is not None else total.view(1)).tolist()
    kept = _kept(run.saved_epoch, run.last_path)
    if not all(map(math.isfinite, sums)):
        raise FloatingPointError(f"non-finite loss (sum {sums[0]}) in iterations 1-{n} of epoch {epoch} of run "
                                 f"{run.out}; training stopped, {kept}")
    _check_finite(run.model, f"epoch {epoch}, iteration {n} of run {run.out}", kept)
    record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": sums[0] / max(n, 1)}
    record.update({f"loss/{k}": v / max(n, 1) for k, v in zip(names, sums[1:])})
    return record


def train_step(run: Run, images: dict[str, torch.Tensor], cams: torch.Tensor, pids: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update (official ``processor.py``): forward and loss under autocast, backward, optimiser step.  Returns
    the loss and its parts as device tensors; the step itself reads nothing back to the host (the fused Adam takes
    the GradScaler's inf check on the device)."""
    with _autocast(run.device, run.cfg.train.amp, run.cfg.train.amp_dtype):
        output = run.net(images, cams)
        loss, parts = run.criterion(*global_batch(output, pids))  # all processes' pairs and labels
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss, parts


def end_epoch(run: Run, epoch: int, record: dict[str, Any], bar=None) -> None:
    """Evaluation every ``train.eval_every`` epochs and at the last (``best.pt`` on a new best mAP), then
    ``last.pt`` with everything resuming needs, the dvclive step and the progress bar."""
    cfg, state = run.cfg, run.state
    if run.rank == 0 and (epoch % cfg.train.eval_every == 0 or epoch == cfg.train.epochs):
        record.update(evaluate(run.model, run.data, cfg, run.device))
        if state["best"] is None or record["mAP"] > state["best"]["mAP"]:
            state["best"] = {k: record[k] for k in ("epoch", *METRIC_KEYS)}
            save_checkpoint(make_checkpoint(run.model, cfg, run.seed, epoch, state, run.digest, run.data),
                            run.best_path)
    state["history"].append(record)
    state["epoch"] = epoch
    # last.pt every train.checkpoint_every epochs and after the last: a resume retrains the epochs since, exactly
    checkpoint_due = epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs
    if run.rank == 0 and checkpoint_due:
        resume_state = {"scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
                        "rng": _rng_state()}
        if epoch < cfg.train.epochs:  # a finished run steps no more: Adam's moments would be dead weight
            resume_state["optimizer"] = run.optimizer.state_dict()
        save_checkpoint(make_checkpoint(run.model, cfg, run.seed, epoch, state, run.digest, run.data,
                                        resume_state), run.last_path)
    if checkpoint_due:
        run.saved_epoch = epoch
    if run.rank == 0:
        if run.live is not None:
            for k, v in record.items():
                if k != "epoch":
                    run.live.log_metric(k.replace("/", "_"), v)
            run.live.next_step()
        if bar is not None:
            evaluated = next((r for r in reversed(state["history"]) if "mAP" in r), None)  # the latest evaluation
            bar.set_postfix(loss=f"{record['loss']:.3f}",
                            **({"mAP": f"{evaluated['mAP']:.1f}@e{evaluated['epoch']}"} if evaluated else {}))
    if run.world > 1:
        dist.barrier()


def finish_run(run: Run) -> dict[str, Any] | None:
    """Process 0 writes and returns ``metrics.json``'s content (None in the other processes); the process group
    this run started is closed."""
    result = None
    device = run.device
    if run.rank == 0:
        last_eval = next(r for r in reversed(run.state["history"]) if "mAP" in r)
        result = {
            "seed": run.seed,
            "epochs": run.cfg.train.epochs,
            "last": {k: last_eval[k] for k in ("epoch", *METRIC_KEYS, *INTERVAL_KEYS) if k in last_eval},
            "best": run.state["best"],
            "history": run.state["history"],
            "config": run.cfg.to_dict(),
            # Table 3's Mem(GB): peak GPU memory of this process (None on the CPU: not measured)
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "run_info": run.info,
        }
        write_text(run.out / "metrics.json", json.dumps(result, indent=1))
        if run.live is not None:
            run.live.end()
    if run.started_dist:
        dist.destroy_process_group()
    return result


def _pin_cpu(device: torch.device) -> None:
    """On the CPU: one intra-op thread (reductions in one order whatever the core count, so that a plain `dvc
    repro`, .ci/repro's workers and another machine compute the same numbers), and print the CPU math libraries'
    code path (:mod:`mambapro.environment`), warning when a pin is not in effect."""
    if device.type != "cpu":
        return
    from mambapro.environment import cpu_math_report

    torch.set_num_threads(1)
    line, ok = cpu_math_report()
    print(line, flush=True)
    if not ok:
        log.warning("the CPU math pins of mambapro.environment are not in effect (a tensor operation ran before "
                    "`import mambapro`, the environment lost them, or the CPU lacks AVX2): this run's numbers may "
                    "differ from another machine's")


def _kept(saved_epoch: int, last_path: Path) -> str:
    """What a stopped run leaves to resume from (``last.pt`` of epoch ``saved_epoch``, 0: none yet)."""
    if saved_epoch:
        return f"the last good checkpoint {last_path} (epoch {saved_epoch}) is kept"
    return "no checkpoint of this run has been written yet"


def _check_finite(model: torch.nn.Module, where: str, kept: str) -> None:
    """Stop before saving a non-finite trainable parameter (every resume would then fail the same way); the loss is
    checked before each update, this catches the epoch's last one."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    finite = torch.stack([torch.isfinite(p).all() for _, p in params]).tolist()
    bad = [n for (n, _), ok in zip(params, finite) if not ok]
    if bad:
        raise FloatingPointError(f"non-finite trainable parameters ({', '.join(bad[:3])}{', ...' * (len(bad) > 3)}) "
                                 f"after {where}; training stopped without saving them, {kept}")


def _live(out: Path, resume: bool):
    try:
        from dvclive import Live
    except ImportError:  # dvclive is in the pipeline extra; the engine runs without it
        return None
    return Live(dir=str(out / "dvclive"), resume=resume, save_dvc_exp=False, dvcyaml=None)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation of a trained run, seeds summary


def evaluate_checkpoint(path: str | Path, cfg: Config | None = None, missing: tuple[str, ...] = (),
                        rerank: bool = False) -> dict[str, dict[str, float]]:
    """Metrics of a saved checkpoint: full input, each missing-modality setting and, optionally, re-ranking."""
    from mambapro.data.loaders import build_data

    model, ckpt = restore_model(path, cfg)
    cfg = cfg or config_of(ckpt)
    seed_everything(ckpt["seed"], cfg.train.deterministic, cfg.train.tf32)  # before any CUDA work
    device = resolve_device(cfg.train.device, cfg.train.require_gpu)
    _pin_cpu(device)
    data = build_data(cfg, ckpt["seed"])
    check_sizes(Path(path), ckpt, data)
    model.to(device)
    out = {"full": evaluate(model, data, cfg, device)}
    for m in missing:
        if m not in MISSING_SETTINGS:
            raise ValueError(f"missing-modality setting {m!r} is not one of {', '.join(MISSING_SETTINGS)}")
        out[f"missing_{m}"] = evaluate(model, data, cfg, device, missing=m)
    if rerank:
        out["rerank"] = evaluate(model, data, cfg, device, rerank=True)
    return out


def parse_command_line(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    """``--profile P --preset X --seed K --out DIR [--set section.key=JSON ...]``: the configuration
    (:func:`mambapro.config.resolve_config`, the same as the DVC stage ``train@X-K`` of profile P) and the
    arguments (``seed``, ``out``, ``no_resume``)."""
    p = argparse.ArgumentParser(description="Train one MambaPro configuration (runs under torchrun too).")
    p.add_argument("--profile", default="default")
    p.add_argument("--preset", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=JSON", help="extra overrides")
    p.add_argument("--no-resume", action="store_true")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return resolve_config(args.profile, args.preset, overrides), args


# What the command line reports in one line, without a traceback: configuration, data, weights, checkpoint, device
# and disk errors (each message names the key, file or value at fault and the fix).
_USER_ERRORS = (ValueError, FileNotFoundError, CheckpointError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    """``python -m mambapro.engine``: train, print the last and best metrics; 0 on success, 2 for an error of the
    configuration, data, weights, checkpoint or device (one line on stderr), 1 for a full disk."""
    from mambapro.backbone import WeightsUnavailable

    try:
        cfg, args = parse_command_line(argv)
        result = train(cfg, args.out, args.seed, resume=not args.no_resume)
    except (*_USER_ERRORS, WeightsUnavailable, DeviceError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr, flush=True)
        return 1
    if result is not None:
        print(json.dumps({"last": result["last"], "best": result["best"]}, indent=1))
    return 0


def _one_line(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, OSError) and e.strerror:  # without "[Errno 28]", with the file it could not write
        text = e.strerror + (f": {e.filename}" if e.filename and str(e.filename) not in e.strerror else "")
    return " ".join(text.split())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
