"""Training and evaluation loop as the official code (official-implementation.md secs. 4-5).

Adam with per-parameter groups (bias lr x2, backbone lr 5e-6 under full fine-tuning, L2 weight decay 1e-4), timm's
cosine schedule with linear warm-up stepped once per epoch at the epoch's start (t = 1..E), AMP on CUDA and fp32 on
the CPU, evaluation on the test set every ``eval_every`` epochs.  Both the last-epoch and the best-epoch metrics are
reported; the paper's numbers are best-epoch-on-test, and are labelled so.

A run resumes from ``last.pt`` after an interruption and continues exactly: the checkpoint carries what training
changes (trainable parameters, buffers, Adam's state, schedule, GradScaler, every random-number state, history) at
the end of the last finished epoch, and the PK sampler's order is a function of (seed, epoch).  The frozen tower is
not copied: the checkpoint names its weights file by digest and :func:`restore_model` rebuilds it from there.
Checkpoints load with ``torch.load(weights_only=True)``; a non-finite parameter is never saved.

The same entry point runs under ``torchrun``: each process takes its share of every PK batch (DDP, gloo on the CPU,
NCCL on CUDA with one GPU per process, cuda:LOCAL_RANK) and process 0 evaluates and writes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from timm.scheduler import CosineLRScheduler
from tqdm.auto import tqdm

from mambapro.config import MISSING_SETTINGS, Config, apply_overrides, resolve_config
from mambapro.results import INTERVAL_KEYS, METRIC_KEYS, file_digest, save_torch, write_text

log = logging.getLogger(__name__)



class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or (:class:`CheckpointMismatch`) not this run's."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint written by another configuration, seed or backbone weights, or not fitting the model."""


# ----------------------------------------------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int) -> None:
    """Seed every generator and make CUDA deterministic; call it before any CUDA work (cuBLAS reads
    ``CUBLAS_WORKSPACE_CONFIG`` when it starts).  Deterministic means cuDNN's benchmark is off: the official code
    sets both (``train_net.py:16-23``, official-implementation.md sec. 4), but benchmark picks algorithms by timing,
    so two runs could differ.  Deterministic algorithms stay in warn mode for kernels that have none."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
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
    """``auto``: CUDA when available, else the CPU.  A CUDA device without index is cuda:LOCAL_RANK (torchrun's
    per-process GPU, 0 without torchrun); under torchrun another index would put every process on one GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index not in (None, local) and _env_world() > 1:
        raise ValueError(f"train.device = {name!r} under torchrun puts every process on one GPU; use 'auto' or "
                         f"'cuda' (each process then takes cuda:LOCAL_RANK, here cuda:{local})")
    return torch.device("cuda", local if device.index is None else device.index)


def _to_device(batch: dict, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    images = {m: x.to(device, non_blocking=True) for m, x in batch["images"].items()}
    return images, batch["camid"].to(device), batch["pid"].to(device)


@torch.no_grad()
def extract_features(model, loader, device: torch.device, missing: str | None = None, progress: bool = False,
                     amp: bool = False):
    """Retrieval features (pre-BN f_ma, or concatenated CLS without MA) of every test sample, in loader order.
    ``missing`` zero-fills the named modalities' inputs (DeMo's protocol, ``config.MISSING_SETTINGS``); ``amp``:
    fp16 autocast on CUDA (``train.amp``)."""
    from mambapro.data.transforms import zero_missing

    was_training = model.training
    model.eval()
    feats = []
    for batch in tqdm(loader, desc="features", leave=False, disable=not progress):
        images, cams, _ = _to_device(batch, device)
        if missing:
            images = zero_missing(images, missing)
        with _autocast(device, amp):
            feats.append(model(images, cams).feature.float().cpu())
    model.train(was_training)
    return torch.cat(feats)


def evaluate(model, data, cfg: Config, device: torch.device, missing: str | None = None, rerank: bool = False,
             progress: bool = False) -> dict[str, float]:
    """mAP / CMC / mINP on the test split with the dataset's protocol (camera or scene, sec. 5)."""
    from mambapro.metrics import evaluate_features

    feats = extract_features(model, data.test_loader, device, missing=missing, progress=progress,
                             amp=cfg.train.amp)
    return evaluate_features(feats, data.test_meta, data.query_index, data.gallery_index, data.protocol,
                             rerank=rerank)


def _autocast(device: torch.device, amp: bool):
    """fp16 autocast on CUDA with ``train.amp`` (official ``processor.py:46,65-74``); fp32 otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: Path, cfg: Config | None = None, seed: int | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); refuse one written by another configuration, seed or
    backbone weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = _read_checkpoint(path)
    if cfg is not None:
        _check_weights(path, ckpt, cfg)
        ours, theirs = _flat(cfg.to_dict()), _flat(ckpt["config"])
        diff = sorted(k for k in set(ours) | set(theirs) if _norm(ours.get(k)) != _norm(theirs.get(k)))
        diff = [k for k in diff if k not in _RUNTIME_KEYS]
        if diff:
            detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r} vs run {ours.get(k)!r}" for k in diff[:8])
            raise CheckpointMismatch(f"checkpoint {path} belongs to another configuration ({detail})")
    if seed is not None and ckpt["seed"] != seed:
        raise CheckpointMismatch(f"checkpoint {path} was written with seed {ckpt['seed']}, this run uses seed {seed}")
    return ckpt


_CKPT_KEYS = ("config", "seed", "epoch", "pretrained_digest", "num_classes", "num_cameras", "model")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load`` whose every failure (empty or truncated file, junk, a pickle ``weights_only`` refuses, a file
    of another program or engine version) raises :class:`CheckpointError` naming the file, the cause and the fix."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reason to fail gets the same advice
        raise _unusable(path, _load_cause(e)) from e
    lacking = [k for k in _CKPT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(_CKPT_KEYS)
    if lacking:
        raise _unusable(path, f"no {', '.join(lacking)}: written by another program or an older version")
    return ckpt


def _unusable(path: Path, cause: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} cannot be used ({cause}); delete {path.parent} to retrain that run")


def _load_cause(e: Exception) -> str:
    """torch's reason in one line, without its advice to load with ``weights_only=False`` (which runs the file's
    code)."""
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(" Please use")[0]
    text = text.strip().splitlines()[0] if text.strip() else "the file is empty or truncated"
    return f"{type(e).__name__}: {text}"


def weights_file(cfg: Config) -> str | None:
    """The local file the backbone's pretrained weights load from: the configured path, or the cached download of
    an open_clip / timm tag (found as :mod:`mambapro.backbone` finds it); None for random weights or a tag whose
    file is not found (a checkpoint then keeps the whole tower)."""
    import open_clip
    import timm

    from mambapro import backbone

    b = cfg.backbone
    tag = b.pretrained if b.kind == "clip" else b.timm_pretrained
    if not tag or os.path.isfile(tag):
        return tag or None
    if b.kind == "clip":
        tag_cfg = open_clip.get_pretrained_cfg(b.arch, tag)
        return backbone._cached_checkpoint(tag_cfg) if tag_cfg else None
    name, default_tag = backbone.TIMM_EQUIVALENTS.get(b.arch, (b.arch, None))
    if open_clip.get_pretrained_cfg(b.arch, tag):  # a CLIP tag stands for the ImageNet weights (build_timm_tower)
        tag = default_tag
    try:
        hub = timm.models.get_pretrained_cfg(f"{name}.{tag}").hf_hub_id
    except Exception:  # noqa: BLE001 - an unknown tag: build_model has said so already
        return None
    return backbone._cached_hf_file(hub) if hub else None


def weights_digest(cfg: Config) -> str | None:
    """SHA-256 (16 hex digits) of :func:`weights_file`, None for random weights.  A checkpoint records it: a run is
    not resumed on top of weights that changed (the proxy CLIP re-trained upstream), and its frozen tower is rebuilt
    from the file.  Hashed once per process and file version (path, size, mtime)."""
    path = weights_file(cfg)
    return None if path is None else file_digest(path)[:16]


def _check_weights(path: Path, ckpt: dict, cfg: Config) -> None:
    now, then = weights_digest(cfg), ckpt["pretrained_digest"]
    if then and now != then:
        key = "backbone.pretrained" if cfg.backbone.kind == "clip" else "backbone.timm_pretrained"
        value = cfg.backbone.pretrained if cfg.backbone.kind == "clip" else cfg.backbone.timm_pretrained
        found = f"sha256 {then} vs {now}" if now else f"sha256 {then}, a file not found now"
        raise CheckpointMismatch(f"checkpoint {path} was trained from other backbone weights than {key} = "
                                 f"{value!r} holds now ({found}); delete {path.parent} to retrain")


def _restored_keys(model: torch.nn.Module) -> set[str]:
    """The frozen tower's parameters, which the backbone weights file restores (buffers are always saved)."""
    from mambapro.model import is_backbone_own

    return {n for n, p in model.named_parameters() if is_backbone_own(n) and not p.requires_grad}


def model_state(model: torch.nn.Module, digest: str | None) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of ``model``: the state dict less the frozen tower's parameters when a weights file
    (``digest``) restores them; all of it for random or unlocated weights."""
    skip = _restored_keys(model) if digest else set()
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def restore_model(path: str | Path, cfg: Config | None = None, seed: int | None = None
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model, checkpoint)``: the trained model of a checkpoint, on the CPU in eval mode.  The model is rebuilt
    from ``cfg`` (checked against the checkpoint's; default: the checkpoint's own), which loads the frozen tower
    from the weights file the checkpoint names by digest, then takes the saved tensors.  Resuming,
    :func:`evaluate_checkpoint` and the figures load through here."""
    from mambapro.model import build_model

    path = Path(path)
    ckpt = load_checkpoint(path, cfg, seed)
    if cfg is None:
        cfg = _config_of(ckpt)
        _check_weights(path, ckpt, cfg)
    model = build_model(cfg, ckpt["num_classes"], ckpt["num_cameras"])
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    missing = sorted(set(missing) - (_restored_keys(model) if ckpt["pretrained_digest"] else set()))
    if missing or unexpected:
        raise CheckpointMismatch(f"checkpoint {path} does not fit the model its configuration builds: missing "
                                 f"{missing[:5]}, unexpected {sorted(unexpected)[:5]}; delete {path.parent} to "
                                 "retrain")
    return model.eval(), ckpt


def _config_of(ckpt: dict) -> Config:
    return apply_overrides(Config(), ckpt["config"])


def _check_sizes(path: Path, ckpt: dict, data) -> None:
    sizes = (data.num_classes, data.num_cameras)
    if (ckpt["num_classes"], ckpt["num_cameras"]) != sizes:
        raise CheckpointMismatch(f"checkpoint {path} was trained on {ckpt['num_classes']} identities and "
                                 f"{ckpt['num_cameras']} cameras, the data has {sizes[0]} and {sizes[1]} now; "
                                 f"delete {path.parent} to retrain")


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


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _maybe_init_distributed(device: torch.device) -> bool:
    """Join torchrun's process group; on CUDA this process is bound to its GPU first (NCCL uses the current
    device, which is cuda:0 in every process otherwise)."""
    if _env_world() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
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
    seed_everything(seed)  # before any CUDA work
    device = resolve_device(cfg.train.device)
    _pin_cpu(device)
    started_dist = _maybe_init_distributed(device)
    rank, world = _dist_info()
    ids_per_batch = cfg.data.batch_size // cfg.data.num_instances
    if ids_per_batch < 2 * world or ids_per_batch % world:
        raise ValueError(f"data.batch_size / data.num_instances = {ids_per_batch} identities per batch cannot be "
                         f"split over {world} processes with at least 2 identities each (triplet mining needs "
                         "negatives)")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    data = build_data(cfg, seed)
    if rank == 0:  # before any GPU work: every image opens, is complete and has its reader's size (seconds)
        from mambapro.data.validate import validate_dataset

        log.info("%s", validate_dataset(data.dataset).report())
    if cfg.aggregation.kind in ("intra_ma", "inter_ma", "ma"):  # the aggregators with a selective scan
        from mambapro.scan import describe_backend

        line = describe_backend(cfg.aggregation.scan_backend, device)  # raises for 'cuda' without the kernel
        if rank == 0:
            print(line, flush=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    ckpt = None
    if resume and last_path.exists():
        model, ckpt = restore_model(last_path, cfg, seed)
        _check_sizes(last_path, ckpt, data)
    else:
        model = build_model(cfg, data.num_classes, data.num_cameras)
    model.to(device)
    digest = weights_digest(cfg)  # hashed once (the tower's file is resolved by now)
    criterion = ReIDLoss(cfg.loss)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.train.amp)

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
            with _autocast(device, cfg.train.amp):
                output = net(images, cams)
                loss, parts = criterion(output, pids)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch}, iteration {n + 1} of run {out}; "
                    f"training stopped, {_kept(state, last_path)}"
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
        _check_finite(model, f"epoch {epoch}, iteration {n} of run {out}", _kept(state, last_path))
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": losses / max(n, 1)}
        record.update({f"loss/{k}": v / max(n, 1) for k, v in parts_sum.items()})
        if rank == 0 and (epoch % cfg.train.eval_every == 0 or epoch == cfg.train.epochs):
            record.update(evaluate(model, data, cfg, device))
            if state["best"] is None or record["mAP"] > state["best"]["mAP"]:
                state["best"] = {k: record[k] for k in ("epoch", *METRIC_KEYS)}
                save_torch(_checkpoint(model, cfg, seed, epoch, state, digest, data), best_path)
        state["history"].append(record)
        state["epoch"] = epoch
        if rank == 0:
            resume_state = {"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state()}
            if epoch < cfg.train.epochs:  # a finished run steps no more: Adam's moments would be dead weight
                resume_state["optimizer"] = optimizer.state_dict()
            save_torch(_checkpoint(model, cfg, seed, epoch, state, digest, data, resume_state), last_path)
            if live is not None:
                for k, v in record.items():
                    if k != "epoch":
                        live.log_metric(k.replace("/", "_"), v)
                live.next_step()
            evaluated = next((r for r in reversed(state["history"]) if "mAP" in r), None)  # the latest evaluation
            bar.set_postfix(loss=f"{record['loss']:.3f}",
                            **({"mAP": f"{evaluated['mAP']:.1f}@e{evaluated['epoch']}"} if evaluated else {}))
        if world > 1:
            dist.barrier()

    result = None
    if rank == 0:
        last_eval = next(r for r in reversed(state["history"]) if "mAP" in r)
        result = {
            "seed": seed,
            "epochs": cfg.train.epochs,
            "last": {k: last_eval[k] for k in ("epoch", *METRIC_KEYS, *INTERVAL_KEYS) if k in last_eval},
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


def _checkpoint(model, cfg: Config, seed: int, epoch: int, state: dict, digest: str | None, data,
                resume_state: dict | None = None) -> dict[str, Any]:
    """What evaluation needs (the trained tensors of :func:`model_state`, the configuration, the sizes of the heads
    and the camera embedding, the weights digest), plus ``resume_state`` (optimiser, schedule, scaler, RNG) in
    ``last.pt``; ``best.pt`` is only evaluated."""
    return {
        "config": cfg.to_dict(),
        "seed": seed,
        "pretrained_digest": digest,
        "epoch": epoch,
        "num_classes": data.num_classes,
        "num_cameras": data.num_cameras,
        "model": model_state(model, digest),
        "history": state["history"],
        "best": state["best"],
        **(resume_state or {}),
    }


def _kept(state: dict, last_path: Path) -> str:
    """What a stopped run leaves to resume from (``last.pt`` is written after every epoch)."""
    if state["epoch"]:
        return f"the last good checkpoint {last_path} (epoch {state['epoch']}) is kept"
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
    cfg = cfg or _config_of(ckpt)
    seed_everything(ckpt["seed"])  # before any CUDA work
    device = resolve_device(cfg.train.device)
    _pin_cpu(device)
    data = build_data(cfg, ckpt["seed"])
    _check_sizes(Path(path), ckpt, data)
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


def main(argv: list[str] | None = None) -> None:
    cfg, args = parse_command_line(argv)
    result = train(cfg, args.out, args.seed, resume=not args.no_resume)
    if result is not None:
        print(json.dumps({"last": result["last"], "best": result["best"]}, indent=1))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
