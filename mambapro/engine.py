"""Training and evaluation loop as the official code (official-implementation.md secs. 4-5).

Adam with per-parameter groups (bias lr x2, backbone lr 5e-6 under full fine-tuning, L2 weight decay 1e-4), timm's
cosine schedule with linear warm-up stepped once per epoch at the epoch's start (t = 1..E), AMP on CUDA and fp32 on
the CPU, evaluation on the test set every ``eval_every`` epochs.  Both the last-epoch and the best-epoch metrics are
reported; the paper's numbers are best-epoch-on-test, and are labelled so.

A run resumes from ``last.pt`` after an interruption and continues exactly: the checkpoint carries the model,
optimiser, scheduler and every random-number state at the end of the last finished epoch, and the PK sampler's order
is a function of (seed, epoch).  Checkpoints load with ``torch.load(weights_only=True)``.

The same entry point runs under ``torchrun``: each process takes its share of every PK batch (DDP, gloo on the CPU,
NCCL on CUDA) and process 0 evaluates and writes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from timm.scheduler import CosineLRScheduler
from tqdm.auto import tqdm

from mambapro.results import METRIC_KEYS, atomic_path, write_text
from mambapro.config import MISSING_SETTINGS, Config, apply_overrides, resolve_config

log = logging.getLogger(__name__)



class CheckpointMismatch(RuntimeError):
    """A checkpoint written by another configuration or seed."""


# ----------------------------------------------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


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
    the same factor, but the multi-tensor (``foreach``) step then handles a few groups instead of hundreds (in a
    profiled CPU step of a width-64 tower with PFA, SRP and MA, the optimiser took 69 ms of 515 before, 19 after)."""
    from mambapro.model import param_groups

    merged: dict[tuple, dict] = {}
    for g in param_groups(model, cfg.train):
        key = (g["lr"], g["weight_decay"], g["kind"])
        group = merged.setdefault(key, {"params": [], "lr": g["lr"], "weight_decay": g["weight_decay"],
                                        "kind": g["kind"]})
        group["params"] += g["params"]
    return torch.optim.Adam(list(merged.values()), foreach=True)


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to_device(batch: dict, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    images = {m: x.to(device, non_blocking=True) for m, x in batch["images"].items()}
    return images, batch["camid"].to(device), batch["pid"].to(device)


@torch.no_grad()
def extract_features(model, loader, device: torch.device, missing: str | None = None, progress: bool = False):
    """Retrieval features (pre-BN f_ma, or concatenated CLS without MA) of every test sample, in loader order.
    ``missing`` zero-fills the named modalities' inputs (DeMo's protocol, ``config.MISSING_SETTINGS``)."""
    from mambapro.data.transforms import zero_missing

    was_training = model.training
    model.eval()
    feats = []
    for batch in tqdm(loader, desc="features", leave=False, disable=not progress):
        images, cams, _ = _to_device(batch, device)
        if missing:
            images = zero_missing(images, missing)
        with _autocast(device):
            feats.append(model(images, cams).feature.float().cpu())
    model.train(was_training)
    return torch.cat(feats)


def evaluate(model, data, cfg: Config, device: torch.device, missing: str | None = None, rerank: bool = False,
             progress: bool = False) -> dict[str, float]:
    """mAP / CMC / mINP on the test split with the dataset's protocol (camera or scene, sec. 5)."""
    from mambapro.metrics import evaluate_features

    feats = extract_features(model, data.test_loader, device, missing=missing, progress=progress)
    return evaluate_features(feats, data.test_meta, data.query_index, data.gallery_index, data.protocol,
                             rerank=rerank)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, cfg: Config | None = None, seed: int | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); refuse one written by another configuration or seed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if cfg is not None:
        now, then = weights_digest(cfg), ckpt.get("pretrained_digest")
        if now and then and now != then:
            raise CheckpointMismatch(
                f"checkpoint {path} was trained from other backbone weights than backbone.pretrained = "
                f"{cfg.backbone.pretrained!r} holds now (sha256 {then} vs {now}); delete {path.parent} to retrain")
        ours, theirs = _flat(cfg.to_dict()), _flat(ckpt["config"])
        diff = sorted(k for k in set(ours) | set(theirs) if _norm(ours.get(k)) != _norm(theirs.get(k)))
        diff = [k for k in diff if k not in _RUNTIME_KEYS]
        if diff:
            detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r} vs run {ours.get(k)!r}" for k in diff[:8])
            raise CheckpointMismatch(f"checkpoint {path} belongs to another configuration ({detail})")
    if seed is not None and ckpt["seed"] != seed:
        raise CheckpointMismatch(f"checkpoint {path} was written with seed {ckpt['seed']}, this run uses seed {seed}")
    return ckpt


def weights_digest(cfg: Config) -> str | None:
    """SHA-256 (16 hex digits) of the local backbone weights file, None for a tag or no weights: a checkpoint
    records it, so a run is not resumed on top of weights that changed (the proxy CLIP re-trained upstream)."""
    path = cfg.backbone.pretrained if cfg.backbone.kind == "clip" else cfg.backbone.timm_pretrained
    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# Keys that may change between an interrupted run and its resumption without changing the result (the seed is
# checked on its own).
_RUNTIME_KEYS = {"train.seed", "data.num_workers", "train.device", "data.test_batch_size", "data.cache_images",
                 "eval.rerank", "eval.missing"}


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# ----------------------------------------------------------------------------------------------------------------
# Distributed helpers


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return True
    return False


def _shard(batch: dict, rank: int, world: int) -> dict:
    """Process ``rank``'s contiguous share of a PK batch (whole identities stay together)."""
    if world == 1:
        return batch
    n = batch["pid"].shape[0]
    lo, hi = rank * n // world, (rank + 1) * n // world

    def cut(x):
        return {k: cut(v) for k, v in x.items()} if isinstance(x, dict) else x[lo:hi]

    return cut(batch)


# ----------------------------------------------------------------------------------------------------------------
# Training


def train(cfg: Config, out_dir: str | Path, seed: int | None = None, *, resume: bool = True, progress: bool = True,
          stop_after_iters: int | None = None) -> dict[str, Any]:
    """Train one configuration with one seed; write ``last.pt``, ``best.pt`` and ``metrics.json`` to ``out_dir``.

    Returns the metrics dictionary: ``last`` (final epoch), ``best`` (best epoch by test mAP, the paper's protocol)
    and the per-epoch ``history``.  ``stop_after_iters`` simulates an interruption (tests).
    """
    from mambapro.data.loaders import build_data
    from mambapro.losses import ReIDLoss
    from mambapro.model import build_model

    seed = cfg.train.seed if seed is None else seed
    cfg = apply_overrides(cfg, {"train": {"seed": seed}})
    out = Path(out_dir)
    device = resolve_device(cfg.train.device)
    started_dist = _maybe_init_distributed(device)
    rank, world = _dist_info()
    ids_per_batch = cfg.data.batch_size // cfg.data.num_instances
    if ids_per_batch < 2 * world or ids_per_batch % world:
        raise ValueError(f"data.batch_size / data.num_instances = {ids_per_batch} identities per batch cannot be "
                         f"split over {world} processes with at least 2 identities each (triplet mining needs "
                         "negatives)")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)

    data = build_data(cfg, seed)
    model = build_model(cfg, data.num_classes, data.num_cameras).to(device)
    criterion = ReIDLoss(cfg.loss)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.train.amp)

    state = {"epoch": 0, "history": [], "best": None}
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path, cfg, seed)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = {"epoch": ckpt["epoch"], "history": ckpt["history"], "best": ckpt["best"]}
        _set_rng_state(ckpt["rng"])
        log.info("resuming %s from epoch %d", out, state["epoch"])

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    live = _live(out, resume=state["epoch"] > 0) if rank == 0 else None
    epochs = range(state["epoch"] + 1, cfg.train.epochs + 1)
    bar = tqdm(epochs, desc=f"train seed {seed}", disable=not progress or rank != 0, initial=state["epoch"],
               total=cfg.train.epochs)
    iters = 0
    for epoch in bar:
        scheduler.step(epoch)  # official: stepped at the start of the epoch, t = epoch
        data.set_epoch(epoch)
        net.train()
        losses, parts_sum, n = 0.0, {}, 0
        for batch in data.train_loader:
            images, cams, pids = _to_device(_shard(batch, rank, world), device)
            with _autocast(device):
                output = net(images, cams)
                loss, parts = criterion(output, pids)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch}, iteration {n + 1} of run {out}; "
                    f"training stopped, the last good checkpoint {last_path} is kept"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses += loss.item()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
            n += 1
            iters += 1
            if stop_after_iters is not None and iters >= stop_after_iters:
                raise KeyboardInterrupt(f"stopped after {iters} iterations (simulated interruption)")
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": losses / max(n, 1)}
        record.update({f"loss/{k}": v / max(n, 1) for k, v in parts_sum.items()})
        if rank == 0 and (epoch % cfg.train.eval_every == 0 or epoch == cfg.train.epochs):
            record.update(evaluate(model, data, cfg, device))
            if state["best"] is None or record["mAP"] > state["best"]["mAP"]:
                state["best"] = {k: record[k] for k in ("epoch", *METRIC_KEYS)}
                _save(_checkpoint(model, optimizer, scheduler, cfg, seed, epoch, state), best_path)
        state["history"].append(record)
        state["epoch"] = epoch
        if rank == 0:
            _save(_checkpoint(model, optimizer, scheduler, cfg, seed, epoch, state), last_path)
            if live is not None:
                for k, v in record.items():
                    if k != "epoch":
                        live.log_metric(k.replace("/", "_"), v)
                live.next_step()
            bar.set_postfix(loss=f"{record['loss']:.3f}", mAP=f"{record.get('mAP', float('nan')):.1f}")
        if world > 1:
            dist.barrier()

    result = None
    if rank == 0:
        last_eval = next(r for r in reversed(state["history"]) if "mAP" in r)
        result = {
            "seed": seed,
            "epochs": cfg.train.epochs,
            "last": {k: last_eval[k] for k in ("epoch", *METRIC_KEYS)},
            "best": state["best"],
            "history": state["history"],
            "config": cfg.to_dict(),
            # Table 3's Mem(GB): peak GPU memory of this process (None on the CPU: not measured)
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        }
        write_text(out / "metrics.json", json.dumps(result, indent=1))
        if live is not None:
            live.end()
    if started_dist:
        dist.destroy_process_group()
    return result


def _checkpoint(model, optimizer, scheduler, cfg: Config, seed: int, epoch: int, state: dict) -> dict[str, Any]:
    return {
        "config": cfg.to_dict(),
        "seed": seed,
        "pretrained_digest": weights_digest(cfg),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "history": state["history"],
        "best": state["best"],
    }


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
    from mambapro.model import build_model

    ckpt = load_checkpoint(path, cfg)
    cfg = cfg or apply_overrides(Config(), ckpt["config"])
    device = resolve_device(cfg.train.device)
    data = build_data(cfg, ckpt["seed"])
    model = build_model(cfg, data.num_classes, data.num_cameras).to(device)
    model.load_state_dict(ckpt["model"])
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


def main(argv: list[str] | None = None) -> None:
    cfg, args = parse_command_line(argv)
    result = train(cfg, args.out, args.seed, resume=not args.no_resume)
    if result is not None:
        print(json.dumps({"last": result["last"], "best": result["best"]}, indent=1))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
