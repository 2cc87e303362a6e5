"""Checkpoints: the reading and writing of a run's ``last.pt`` / ``best.pt`` (official-implementation.md sec. 4:
the official code saves the whole model every epoch; here a checkpoint keeps what training changes, see
:func:`model_state`).  A checkpoint names its backbone weights file by digest
(:func:`mambapro.weights.weights_digest`) so that the frozen tower is rebuilt from it instead of being copied.

Checkpoint I/O: loaded with ``torch.load(weights_only=True)`` (a file that would run code is refused, and the advice
never suggests otherwise); every checkpoint carries the SHA-256 of its content (:func:`content_digest`), checked on
loading, so that a damaged or altered file is refused rather than resumed from; saving is atomic and a full disk is
reported in one line naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from mambapro.config import Config, apply_overrides
from mambapro.results import save_torch
from mambapro.weights import weights_digest

log = logging.getLogger(__name__)

DIGEST_KEY = "content_digest"  # the checkpoint's own SHA-256 of everything else it holds


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, damaged, or (:class:`CheckpointMismatch`) not this run's."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint written by another configuration, seed or backbone weights, or not fitting the model."""


# ----------------------------------------------------------------------------------------------------------------
# Content digest


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content: every tensor (its place in the nesting, dtype, shape and bytes) and every
    plain value, in a fixed order; the entry :data:`DIGEST_KEY` itself is left out.  Equal for equal content, unlike
    the file's bytes (``torch.save`` writes a random serialization id)."""
    h = hashlib.sha256()

    def walk(x: Any, where: str) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}:{t.dtype}:{tuple(x.shape)}|".encode())
            if t.numel():
                h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"{where}:dict{len(x)}|".encode())
            for k in sorted(x, key=repr):
                if not (where == "" and k == DIGEST_KEY):
                    walk(x[k], f"{where}/{k!r}")
        elif isinstance(x, (list, tuple)):
            h.update(f"{where}:seq{len(x)}|".encode())  # a tuple may come back as a list
            for i, v in enumerate(x):
                walk(v, f"{where}/{i}")
        else:
            h.update(f"{where}:{type(x).__name__}:{x!r}|".encode())

    walk(obj, "")
    return h.hexdigest()


def seal(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` with its tensors on the CPU and its :func:`content_digest` under :data:`DIGEST_KEY`."""
    def cpu(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu()
        if isinstance(x, dict):
            return {k: cpu(v) for k, v in x.items()}
        if isinstance(x, list):
            return [cpu(v) for v in x]
        return x

    ckpt = cpu({k: v for k, v in ckpt.items() if k != DIGEST_KEY})
    ckpt[DIGEST_KEY] = content_digest(ckpt)
    return ckpt


# ----------------------------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write ``ckpt`` sealed (:func:`seal`) atomically to ``path``.  A full disk raises ``OSError(ENOSPC)`` whose
    one-line message names the file (torch itself reports it as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``); nothing is left at ``path`` but the previous checkpoint."""
    path = Path(path)
    sealed = seal(ckpt)
    try:
        return save_torch(sealed, path)
    except (OSError, RuntimeError) as e:
        if _disk_full(e, path):
            raise OSError(errno.ENOSPC, f"cannot write checkpoint {path}: No space left on device; free space on "
                                        f"the disk of {path.parent} (the checkpoint needs about "
                                        f"{_size_mb(sealed)} MB) and rerun to resume", str(path)) from None
        raise


def _disk_full(e: BaseException, path: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC anywhere in the chain, torch's "unexpected pos" (its short
    write) on a disk with little space left."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    if "unexpected pos" in str(e):
        try:
            return shutil.disk_usage(path.parent).free < 256 * 2**20
        except OSError:
            return False
    return False


def _size_mb(ckpt: dict) -> int:
    total = 0

    def walk(x):
        nonlocal total
        if isinstance(x, torch.Tensor):
            total += x.numel() * x.element_size()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(ckpt)
    return max(1, round(total / 2**20))


def make_checkpoint(model, cfg: Config, seed: int, epoch: int, state: dict, digest: str | None, data,
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


def restored_keys(model: torch.nn.Module) -> set[str]:
    """The frozen tower's parameters, which the backbone weights file restores (buffers are always saved)."""
    from mambapro.model import is_backbone_own

    return {n for n, p in model.named_parameters() if is_backbone_own(n) and not p.requires_grad}


def model_state(model: torch.nn.Module, digest: str | None) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of ``model``: the state dict less the frozen tower's parameters when a weights file
    (``digest``) restores them; all of it for random or unlocated weights."""
    skip = restored_keys(model) if digest else set()
    return {k: v for k, v in model.state_dict().items() if k not in skip}


# ----------------------------------------------------------------------------------------------------------------
# Reading


_CKPT_KEYS = ("config", "seed", "epoch", "pretrained_digest", "num_classes", "num_cameras", "model")
# Keys that may change between an interrupted run and its resumption without changing the result (the seed is
# checked on its own).
RUNTIME_KEYS = {"train.seed", "data.num_workers", "train.device", "data.test_batch_size", "data.cache_images",
                "eval.rerank", "eval.missing", "train.checkpoint_every", "train.require_gpu"}


def load_checkpoint(path: str | Path, cfg: Config | None = None, seed: int | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``, content digest checked); refuse one written by another
    configuration, seed or backbone weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = _read_checkpoint(path)
    if cfg is not None:
        check_weights(path, ckpt, cfg)
        ours, theirs = _flat(cfg.to_dict()), _flat(ckpt["config"])
        diff = sorted(k for k in set(ours) | set(theirs) if _norm(ours.get(k)) != _norm(theirs.get(k)))
        defaults = _flat(Config().to_dict())  # a key added since the checkpoint was written, at its default
        diff = [k for k in diff if k not in RUNTIME_KEYS and not (k not in theirs and ours[k] == defaults.get(k))]
        if diff:
            detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r} vs run {ours.get(k)!r}" for k in diff[:8])
            raise CheckpointMismatch(f"checkpoint {path} belongs to another configuration ({detail})")
    if seed is not None and ckpt["seed"] != seed:
        raise CheckpointMismatch(f"checkpoint {path} was written with seed {ckpt['seed']}, this run uses seed {seed}")
    return ckpt


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load`` whose every failure (empty or truncated file, junk, a pickle ``weights_only`` refuses, a file
    of another program or engine version, content that differs from its digest) raises :class:`CheckpointError`
    naming the file, the cause and the fix."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reason to fail gets the same advice
        raise _unusable(path, _load_cause(e)) from e
    lacking = [k for k in _CKPT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(_CKPT_KEYS)
    if lacking:
        raise _unusable(path, f"no {', '.join(lacking)}: written by another program or an older version")
    recorded = ckpt.pop(DIGEST_KEY, None)
    if recorded is None:  # written before checkpoints carried a digest: readable, not checked
        log.warning("checkpoint %s carries no content digest (an older version wrote it): not checked", path)
    elif content_digest(ckpt) != recorded:
        raise _unusable(path, f"its content does not match its recorded sha256 {recorded[:16]}: the file was "
                              "altered or damaged after it was written")
    return ckpt


def _unusable(path: Path, cause: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} cannot be used ({cause}); delete {path.parent} to retrain that run")


def _load_cause(e: Exception) -> str:
    """torch's reason in one line, without its advice to load with ``weights_only=False`` (which would run the
    file's code): every sentence that mentions it is dropped."""
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(" Please use")[0]
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = ". ".join(s for s in text.split(". ") if "weights_only" not in s).strip()
    return f"{type(e).__name__}: {text or 'the file is empty or truncated'}"


def check_weights(path: Path, ckpt: dict, cfg: Config) -> None:
    """Refuse a checkpoint trained from other backbone weights than ``cfg`` names now."""
    now, then = weights_digest(cfg), ckpt["pretrained_digest"]
    if then and now != then:
        key = "backbone.pretrained" if cfg.backbone.kind == "clip" else "backbone.timm_pretrained"
        value = cfg.backbone.pretrained if cfg.backbone.kind == "clip" else cfg.backbone.timm_pretrained
        found = f"sha256 {then} vs {now}" if now else f"sha256 {then}, a file not found now"
        raise CheckpointMismatch(f"checkpoint {path} was trained from other backbone weights than {key} = "
                                 f"{value!r} holds now ({found}); delete {path.parent} to retrain")


def restore_model(path: str | Path, cfg: Config | None = None, seed: int | None = None
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model, checkpoint)``: the trained model of a checkpoint, on the CPU in eval mode.  The model is rebuilt
    from ``cfg`` (checked against the checkpoint's; default: the checkpoint's own), which loads the frozen tower
    from the weights file the checkpoint names by digest, then takes the saved tensors.  Resuming,
    :func:`mambapro.engine.evaluate_checkpoint` and the figures load through here."""
    from mambapro.model import build_model

    path = Path(path)
    ckpt = load_checkpoint(path, cfg, seed)
    if cfg is None:
        cfg = config_of(ckpt)
        check_weights(path, ckpt, cfg)
    model = build_model(cfg, ckpt["num_classes"], ckpt["num_cameras"])
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    missing = sorted(set(missing) - (restored_keys(model) if ckpt["pretrained_digest"] else set()))
    if missing or unexpected:
        raise CheckpointMismatch(f"checkpoint {path} does not fit the model its configuration builds: missing "
                                 f"{missing[:5]}, unexpected {sorted(unexpected)[:5]}; delete {path.parent} to "
                                 "retrain")
    return model.eval(), ckpt


def config_of(ckpt: dict) -> Config:
    """The configuration a checkpoint was written with."""
    return apply_overrides(Config(), ckpt["config"])


def check_sizes(path: Path, ckpt: dict, data) -> None:
    """Refuse a checkpoint whose heads and camera embedding were sized for other data."""
    sizes = (data.num_classes, data.num_cameras)
    if (ckpt["num_classes"], ckpt["num_cameras"]) != sizes:
        raise CheckpointMismatch(f"checkpoint {path} was trained on {ckpt['num_classes']} identities and "
                                 f"{ckpt['num_cameras']} cameras, the data has {sizes[0]} and {sizes[1]} now; "
                                 f"delete {path.parent} to retrain")


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
