"""Several processes train the model one process trains (issue 20, item 6).

Under ``torchrun`` each process decodes only its contiguous slice of every PK batch (the sampler draws the global
batch in every process and keeps the slice: :func:`shard_bounds`, :class:`~mambapro.data.sampler.PKBatchSampler`).
What makes the N-process run the 1-process run of the same global batch:

- **Global loss.** :func:`global_batch` gathers every (logits, feature) loss pair and the labels of all processes,
  so the label-smoothing cross-entropy and the batch-hard triplet's mining (paper Eqs. 20-21, official
  ``triplet_loss.py``) see the whole P x K batch, in the 1-process order.  Every process computes the same loss
  value; the gather's backward hands each process the gradient of its own rows times N, which DDP's averaging
  (sum / N) turns back into the 1-process gradient.  No gradient is communicated by the gather itself.
- **Global batch statistics.** Every BatchNorm of the model (the BN-necks of official ``make_model.py`` and the MA
  blocks' BatchNorm2d) becomes a :class:`SyncedBatchNorm`: mean and variance over the global batch, with their
  gradients summed over processes.  ``torch.nn.SyncBatchNorm`` would do this on CUDA only; this one runs on any
  device and backend (gloo on the CPU, where the equality test runs, NCCL on GPUs).
- **No per-step graph traversal.** DDP's ``find_unused_parameters`` stays off: a probe forward (once, before
  training, random states and buffers restored) finds the trainable parameters outside the loss's graph, and DDP
  leaves those out of its synchronisation (:func:`distribute`).

One process (``world == 1``) runs none of this: same operators in the same order as without this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["SyncedBatchNorm", "all_reduce_with_grad", "check_shardable", "distribute", "env_world", "gather_labels",
           "gather_with_grad", "global_batch", "rank_world", "shard_bounds", "sync_batchnorm", "unused_parameters"]


# ----------------------------------------------------------------------------------------------------------------
# Ranks and shards


def env_world() -> int:
    """``WORLD_SIZE`` set by ``torchrun`` (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)`` of process ``rank``'s contiguous slice of ``n`` items; the slices in rank order tile 0..n-1."""
    return rank * n // world, (rank + 1) * n // world


def check_shardable(batch_size: int, world: int) -> None:
    """Every process must hold the same number of samples (the gathers concatenate equal slices)."""
    if batch_size % world:
        raise ValueError(f"data.batch_size = {batch_size} cannot be split equally over {world} processes: set "
                         f"data.batch_size to a multiple of {world} (or run on a number of GPUs that divides it)")


# ----------------------------------------------------------------------------------------------------------------
# Collectives with gradients


class _GatherRows(torch.autograd.Function):
    """All processes' ``x`` ([b, ...], equal b) concatenated along dim 0 in rank order.  Backward: this process's
    rows of the incoming gradient times the world size (every process computes the same loss on the gathered
    tensor, and DDP divides the summed gradients by the world size)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = rank_world()
        ctx.rows, ctx.rank, ctx.world = x.shape[0], rank, world
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        lo = ctx.rank * ctx.rows
        return grad[lo:lo + ctx.rows] * ctx.world


def gather_with_grad(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The global-batch version of each [b, d_i] tensor, gathered in one collective (packed along dim 1 in their
    common dtype, each piece cast back to its own dtype: exact for fp16 / bf16 / fp32).  Identity for one process."""
    _, world = rank_world()
    if world == 1 or not tensors:
        return list(tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    packed = _GatherRows.apply(torch.cat([t.reshape(t.shape[0], -1).to(dtype) for t in tensors], dim=1))
    widths = [t[0].numel() for t in tensors]
    return [p.reshape(-1, *t.shape[1:]).to(t.dtype) for p, t in zip(packed.split(widths, dim=1), tensors)]


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    """All processes' labels [b] concatenated in rank order (no gradient); identity for one process."""
    _, world = rank_world()
    if world == 1:
        return labels
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def global_batch(output, pids: torch.Tensor):
    """``(output, pids)`` of the global batch for :class:`mambapro.losses.ReIDLoss`: the loss pairs and labels of
    all processes, in the 1-process order; ``output.feature`` and ``tokens`` stay local.  Identity for one process."""
    _, world = rank_world()
    if world == 1:
        return output, pids
    flat = gather_with_grad([t for pair in output.pairs for t in pair])
    return dataclasses.replace(output, pairs=list(zip(flat[0::2], flat[1::2]))), gather_labels(pids)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum of every process's output gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over processes; identity for one process."""
    return _AllReduceSum.apply(x) if rank_world()[1] > 1 else x


# ----------------------------------------------------------------------------------------------------------------
# Batch statistics over the global batch


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all processes, for inputs [B, C, *] of any rank (BatchNorm1d / 2d).

    In training with several processes: mean, then the biased variance of the centred input, each a differentiable
    sum over processes (two passes: no cancellation), statistics in fp32; running statistics updated as
    ``nn.BatchNorm`` does (momentum, unbiased variance), identical in every process.  Otherwise (evaluation, one
    process) it is ``nn.BatchNorm``'s forward.  Same parameter and buffer names: checkpoints are unchanged."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncedBatchNorm expects [B, C, *] input, got shape {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and rank_world()[1] > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local_n = xf.new_full((1,), xf.numel() // xf.shape[1])  # a fill kernel, no host-to-device copy
        sums = all_reduce_with_grad(torch.cat([xf.sum(dims), local_n]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = xf - mean.view(shape)
        var = all_reduce_with_grad(centred.square().sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp(min=1), alpha=m)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` of ``model`` (in place) by a :class:`SyncedBatchNorm` holding the same
    parameter and buffer tensors (a frozen bias stays frozen); returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncedBatchNorm):
            synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            for key, value in [*child._parameters.items(), *child._buffers.items()]:
                setattr(synced, key, value)
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            sync_batchnorm(child)
    return model


# ----------------------------------------------------------------------------------------------------------------
# DDP


def unused_parameters(model: nn.Module, roots: Iterable[torch.Tensor]) -> list[str]:
    """Names of ``model``'s trainable parameters that the autograd graph of ``roots`` does not reach."""
    reached, seen = set(), set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            reached.add(id(variable))
        stack.extend(n for n, _ in node.next_functions)
    return [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in reached]


def _probe_roots(model: nn.Module, cfg, device: torch.device) -> list[torch.Tensor]:
    """The loss pairs of a training-mode forward of two blank samples, with the random states and the buffers
    (BatchNorm's running statistics) restored afterwards: the run continues as if it had not happened."""
    from mambapro.config import MODALITIES

    h, w = cfg.data.image_size
    images = {m: torch.zeros(2, 3, h, w, device=device) for m in MODALITIES}
    cams = torch.zeros(2, dtype=torch.long, device=device)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            output = model(images, cams)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    return [t for pair in output.pairs for t in pair]


def _refuse_gradient(name: str):
    def hook(grad):
        raise RuntimeError(f"parameter {name} received a gradient, but the probe forward of "
                           "mambapro.distributed.distribute found it outside the loss graph, so DDP does not "
                           "synchronise it: the model's graph depends on the data; make the forward's structure "
                           "independent of the batch")
    return hook


def distribute(model: nn.Module, cfg, device: torch.device) -> nn.Module:
    """The module to train: ``model`` itself for one process; otherwise ``model`` with synchronised BatchNorm
    (:func:`sync_batchnorm`, in place) wrapped in DDP.  Train with ``criterion(*global_batch(net(...), pids))``.

    Unused parameters are found once, by a probe forward (:func:`unused_parameters`), instead of DDP's per-step
    graph traversal (``find_unused_parameters=True``): the ones outside the loss graph (the first prompted layer's
    RP blocks under SRP, which have no previous prompts to read, as in the official code) are left out of the
    gradient synchronisation (they never have a gradient; Adam skips them, as with one process), and a hook stops
    training with an error should one ever get a gradient.  Buffers are not broadcast: every process updates them
    with the same global statistics."""
    _, world = rank_world()
    if world == 1:
        return model
    check_shardable(cfg.data.batch_size, world)
    unused = unused_parameters(model, _probe_roots(model, cfg, device))
    if unused:
        log.info("%d trainable parameters outside the loss graph, not synchronised: %s", len(unused),
                 ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else ""))
        # a documented workaround of torch's (DistributedDataParallel's docstring; pytorch issue 43690)
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, unused)
        params = dict(model.named_parameters())
        for name in unused:
            params[name].register_hook(_refuse_gradient(name))
    sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False,
        forward_sync_buffers=False)
