"""Measurements behind two findings of the CPU miniature (issue 21) on a trained run of the pipeline.

1. Position bias of Figs. 10 / 11: the centred Grad-CAM maps of every sample light the same edge (persons: RGB the
   bottom strip; vehicles: RGB and TIR the right edge).  Printed per modality, as each map's mass on each edge
   relative to a uniform map (:func:`mambapro.figures.edge_mass`, 1 = no bias), for the mean over ``--samples``
   test samples of: the post-MA map of Figs. 10 / 11; the same with MA's selective scans run on the reversed token
   order at inference; the map of MA's input tokens; the map of the last backbone block's input tokens, for F and
   for the model without MA (``--compare``, default E); and for the images alone: the pixel-gradient energy per
   patch, and the share of each patch's colour variance explained by the identity / by the camera (the whole test
   set).  Then the retrieval mAP with one edge strip of every modality's input replaced by the test set's mean
   image there.
2. Fig. 6: MA lowers the cross-modal cosine similarity of the same sample's tokens.  Printed per stage (every
   backbone block's patch tokens, MA's input, after each MA stage, the reductions' LayerNorm output and
   f_final^M), raw and centred as :mod:`mambapro.probe` defines them, with the size of each MA stage's residual
   update and how alike the three modalities' updates are; then what the training loss does to the similarity:
   the directional derivative of the mean post-MA cross-modal cosine along the loss's descent direction on the
   post-MA tokens of training batches (ID + triplet of the ``fuse`` pair, the only pair that sees them).

Usage (from the project root, or ``--root`` a folder with ``runs/``, ``data/`` and ``build/``)::

    python benchmarks/explain_miniature.py --profile default --root /tmp/explain_root
    python benchmarks/explain_miniature.py --profile default-vehicle --namespace default/vehicle \\
        --root /tmp/explain_root --compare none
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mambapro import figures, probe, results
from mambapro.config import MODALITIES, resolve_config

EDGES = figures.EDGES


# --------------------------------------------------------------------------------------------------------------
# Grad-CAM at any tap (the centred map of mambapro.probe.gradcam_maps, by hand)


def centred_gradcam(activations: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int],
                    sample_part: bool = False) -> np.ndarray:
    """Centred Grad-CAM (:func:`mambapro.probe.gradcam_maps`) from patch tokens [B, N, C] and the target's gradient
    [B, N, C]: w_c = mean over positions of the gradient, cam(x) = ReLU(Σ_c w_c (A_c(x) − Ā_c)), scaled to [0, 1]
    per sample as pytorch-grad-cam scales it; [B, h, w].  ``sample_part``: A minus its mean over the batch at each
    position first (what no sample shares; :func:`position_share`)."""
    a = activations.detach().float()
    g = gradients.detach().float()
    if sample_part:
        a = a - a.mean(dim=0, keepdim=True)
    weights = g.mean(dim=1, keepdim=True)
    cam = torch.relu(((a - a.mean(dim=1, keepdim=True)) * weights).sum(-1))
    cam = cam - cam.min(dim=1, keepdim=True).values
    cam = cam / (cam.max(dim=1, keepdim=True).values + 1e-7)
    return cam.reshape(cam.shape[0], *grid).cpu().numpy()


def position_share(activations: torch.Tensor, gradients: torch.Tensor) -> float:
    """How much of the centred Grad-CAM maps (before the ReLU) every sample shares: A = P + R with P(x) the batch's
    mean token at position x; returns Σ (w·(P(x) − P̄))² / Σ (w·(A(x) − Ā))² over samples and positions."""
    a = activations.detach().double()
    w = gradients.detach().double().mean(dim=1, keepdim=True)
    full = ((a - a.mean(1, keepdim=True)) * w).sum(-1)
    p = a.mean(0, keepdim=True).expand_as(a)
    shared = ((p - p.mean(1, keepdim=True)) * w).sum(-1)
    return float((shared ** 2).sum() / (full ** 2).sum().clamp_min(1e-300))


@contextlib.contextmanager
def reversed_scans(model):
    """Every selective scan of the model's aggregator runs on the reversed token sequence (output flipped back):
    an intra scan reads its modality from the last patch (bottom-right) to the first, the inter scan reads TIR,
    NIR, RGB, each reversed.  A position bias made by the scan order moves with it."""
    from mambapro.aggregation import SSM

    ssms = [m for m in model.modules() if isinstance(m, SSM)]
    for ssm in ssms:
        ssm.forward = (lambda forward: lambda x: forward(x.flip(1)).flip(1))(ssm.forward)
    try:
        yield len(ssms)
    finally:
        for ssm in ssms:
            del ssm.forward


def tapped_forward(model, images: Mapping[str, torch.Tensor], cams: torch.Tensor, where: str | int
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(retrieval feature [B, F], {modality: patch tokens [B, N, C], leaves with grad}) with the tap ``where``:
    ``"post_ma"`` (f_ir^M, Figs. 10 / 11), ``"pre_ma"`` (MA's input) or an int, the output of that backbone block
    (before the final norm and projection).  The model must be in eval mode."""
    taps: dict[str, torch.Tensor] = {}

    def tap(modality: str, patches: torch.Tensor) -> torch.Tensor:
        taps[modality] = patches.detach().requires_grad_(True)
        return taps[modality]

    if isinstance(where, int):
        backbone = model.backbone
        if not 0 <= where < backbone.num_layers:
            raise ValueError(f"tapped_forward: block {where} not in 0..{backbone.num_layers - 1}")
        original = backbone.forward_layer

        def forward_layer(x, layer, modality, carried=None):
            x, carried = original(x, layer, modality, carried)
            if layer == where:
                x = torch.cat([x[:, :1], tap(MODALITIES[modality], x[:, 1:])], dim=1)
            return x, carried

        backbone.forward_layer = forward_layer
        try:
            return model(dict(images), cams).feature, taps
        finally:
            del backbone.forward_layer
    agg = probe._aggregator(model)
    seq = [model(dict(images), cams).tokens[m] for m in MODALITIES]
    cls = [t[:, 0] for t in seq]
    if where == "pre_ma":
        return agg.reduction(cls, agg._blocks([tap(m, t[:, 1:]) for m, t in zip(MODALITIES, seq)])), taps
    if where == "post_ma":
        return agg.reduction(cls, [tap(m, p) for m, p in zip(MODALITIES, agg.forward_tokens(seq))]), taps
    raise ValueError(f"tapped_forward: where = {where!r} is not 'post_ma', 'pre_ma' or a block index")


def gradcam_at(model, images: Mapping[str, torch.Tensor], cams: torch.Tensor, where: str | int,
               part: str = "all") -> dict[str, np.ndarray]:
    """{modality: centred Grad-CAM maps [B, h, w]} at the tap ``where`` (:func:`tapped_forward`), target the
    projection on the sample's own retrieval feature (as :func:`mambapro.probe.gradcam_maps`); ``part="sample"``:
    of the part no sample shares (:func:`centred_gradcam`), ``"share"``: {modality: :func:`position_share`}."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            feature, taps = tapped_forward(model, images, cams, where)
            reference = feature.detach()
            target = (feature * reference / reference.norm(dim=-1, keepdim=True).clamp_min(1e-12)).sum()
            grads = torch.autograd.grad(target, [taps[m] for m in MODALITIES])
    finally:
        model.train(was_training)
    if part == "share":
        return {m: position_share(taps[m], g) for m, g in zip(MODALITIES, grads)}
    return {m: centred_gradcam(taps[m], g, model.grid, part == "sample") for m, g in zip(MODALITIES, grads)}


# --------------------------------------------------------------------------------------------------------------
# The images alone


def patch_pool(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] → [B, C, h, w]: the mean over each patch of the ``grid``."""
    return F.adaptive_avg_pool2d(x, grid)


def gradient_energy(images: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Mean squared finite-difference gradient of the pixels (channels averaged; right / lower neighbour, 0 at the
    last column / row), per patch, averaged over the batch [B, 3, H, W] → [h, w]: where the images have edges."""
    x = images.detach().float()
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return patch_pool((dx ** 2 + dy ** 2).mean(1, keepdim=True), grid).mean(0)[0].numpy()


def explained_share(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Share of the variance of ``values`` [S, ..., C] (over the samples, summed over the last axis) explained by
    the group means: Σ_g n_g |μ_g − μ|² / Σ_s |x_s − μ|², per remaining position [...]."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    mu = values.mean(0)
    total = ((values - mu) ** 2).sum(-1).sum(0)
    between = np.zeros_like(total)
    for g in np.unique(groups):
        sel = groups == g
        between += sel.sum() * ((values[sel].mean(0) - mu) ** 2).sum(-1)
    return between / np.maximum(total, 1e-300)


def strip_mask(shape: tuple[int, int], grid: tuple[int, int], edge: str) -> torch.Tensor:
    """A bool [H, W] mask of the outermost patch row / column of ``grid`` on ``edge``."""
    h, w = shape
    rows, cols = h // grid[0], w // grid[1]
    mask = torch.zeros(h, w, dtype=torch.bool)
    if edge == "top":
        mask[:rows] = True
    elif edge == "bottom":
        mask[h - rows:] = True
    elif edge == "left":
        mask[:, :cols] = True
    elif edge == "right":
        mask[:, w - cols:] = True
    else:
        raise ValueError(f"strip_mask: edge {edge!r} is not one of {', '.join(EDGES)}")
    return mask


class StripMasked(torch.nn.Module):
    """The model with one edge strip of every modality's input replaced by the given mean images [3, H, W]."""

    def __init__(self, model, mean: Mapping[str, torch.Tensor], mask: torch.Tensor):
        super().__init__()
        self.model, self.mean, self.mask = model, dict(mean), mask

    def forward(self, images, cams=None):
        return self.model({m: torch.where(self.mask, self.mean[m], x) for m, x in images.items()}, cams)


# --------------------------------------------------------------------------------------------------------------
# Fig. 6 by stage


def stage_tokens(model, images: Mapping[str, torch.Tensor], cams: torch.Tensor) -> list[tuple[str, dict]]:
    """[(stage, {modality: [B, N or 1, D]})] in order: each backbone block's patch tokens, MA's input (the
    projected backbone output), after every MA stage, the reductions' LayerNorm output and f_final^M (one
    token per sample: [B, 1, ·])."""
    from mambapro.aggregation import MABlock

    model.eval()
    stages: list[tuple[str, dict]] = []
    backbone = model.backbone
    original = backbone.forward_layer

    def forward_layer(x, layer, modality, carried=None):
        x, carried = original(x, layer, modality, carried)
        stages.append((f"backbone block {layer}", {MODALITIES[modality]: x[:, 1:]}))
        return x, carried

    backbone.forward_layer = forward_layer
    try:
        with torch.no_grad():
            tokens = model(dict(images), cams).tokens
    finally:
        del backbone.forward_layer
    merged: dict[str, dict] = {}
    for name, toks in stages:
        merged.setdefault(name, {}).update(toks)
    out = list(merged.items())
    seq = [tokens[m] for m in MODALITIES]
    out.append(("MA input (Fig. 6 before)", {m: t[:, 1:] for m, t in zip(MODALITIES, seq)}))
    agg = getattr(model, "aggregation", None)
    if agg is None:
        return out
    xs = [t[:, 1:] for t in seq]
    with torch.no_grad():
        for b, block in enumerate(agg.blocks):
            parts = [("intra", block.intra), ("inter", block.inter)] if isinstance(block, MABlock) else [("", block)]
            for label, module in parts:
                xs = module(xs)
                out.append((f"MA block {b} {label}".rstrip(), dict(zip(MODALITIES, xs))))
        normed = {m: head[0](torch.cat([t[:, 0], x.mean(1)], -1))[:, None]
                  for m, head, t, x in zip(MODALITIES, agg.reduction.heads, seq, xs)}
        final = {m: head(torch.cat([t[:, 0], x.mean(1)], -1))[:, None]
                 for m, head, t, x in zip(MODALITIES, agg.reduction.heads, seq, xs)}
    out[-1] = (out[-1][0] + " (Fig. 6 after)", out[-1][1])
    out.append(("reduction LayerNorm [cls, mean]", normed))
    out.append(("f_final^M (Eq. 18)", final))
    return out


def mean_similarities(tokens: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean over positions, samples and the three pairs of the raw and the centred cross-modal cosine."""
    raw = probe.cross_modal_similarity(tokens)
    centred = probe.centred_cross_modal_similarity(tokens)
    return {"raw": float(np.mean([raw[p].mean() for p in raw])),
            "centred": float(np.mean([centred[p].mean() for p in centred])),
            **{f"centred {p}": float(centred[p].mean()) for p in centred}}


def update_stats(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """A residual stage's update Δ = after − before: RMS |Δ| / RMS |before − μ| (μ the batch mean token: how large
    the update is against the tokens' own variation) and the mean cross-modal cosine of the updates."""
    delta = {m: after[m] - before[m] for m in MODALITIES}
    x = torch.stack([before[m] for m in MODALITIES]).float()
    d = torch.stack([delta[m] for m in MODALITIES]).float()
    spread = (x - x.mean((0, 1, 2))).pow(2).sum(-1).mean().sqrt()
    sims = probe.cross_modal_similarity(delta)
    return {"update/spread": float(d.pow(2).sum(-1).mean().sqrt() / spread),
            "update cos": float(np.mean([s.mean() for s in sims.values()]))}


def uncorrelated_update_cosine(cosine: float, ratio: float) -> float:
    """The cross-modal cosine after adding to tokens of cosine ``cosine`` an update of relative size ``ratio``
    (RMS |update| / RMS spread) that is uncorrelated with the tokens and across the modalities: the cross terms
    stay, every squared norm grows by 1 + ratio², so cosine / (1 + ratio²)."""
    return cosine / (1.0 + ratio ** 2)


def loss_direction(model, batch, criterion) -> dict[str, float]:
    """On one training batch: g = −∂loss/∂T of the fuse pair's loss w.r.t. the post-MA tokens T (eval mode: the
    BN-neck uses its running statistics), and s(T) the mean raw and centred cross-modal cosine of T; returns
    cos(∇s, g) (how much of the descent direction raises the similarity) for both measures."""
    from mambapro.model import ModelOutput

    model.eval()
    agg = probe._aggregator(model)
    images, cams, pids = batch["images"], batch["camid"], batch["pid"]
    with torch.no_grad():
        seq = [model(dict(images), cams).tokens[m] for m in MODALITIES]
        after = agg.forward_tokens(seq)
    tokens = [t.detach().requires_grad_(True) for t in after]
    with torch.enable_grad():
        fuse = agg.reduction([t[:, 0] for t in seq], tokens)
        loss, _ = criterion(ModelOutput(fuse, [(model.fuse_head(fuse), fuse)], pair_names=["fuse"]), pids)
        descent = [-g for g in torch.autograd.grad(loss, tokens)]
        out = {}
        for name in ("raw", "centred"):
            s = differentiable_mean_cos(dict(zip(MODALITIES, tokens)), centred=name == "centred")
            grad_s = torch.autograd.grad(s, tokens)
            dot = sum((a * b).sum() for a, b in zip(grad_s, descent))
            norm = torch.sqrt(sum((a ** 2).sum() for a in grad_s) * sum((b ** 2).sum() for b in descent))
            out[f"cos(grad sim, -grad loss) {name}"] = float(dot / norm.clamp_min(1e-30))
    return out


def differentiable_mean_cos(tokens: Mapping[str, torch.Tensor], centred: bool) -> torch.Tensor:
    """The mean over the three pairs of :func:`mambapro.probe.cross_modal_similarity` (or of the centred one), with
    gradient."""
    x = {m: t.float() for m, t in tokens.items()}
    if centred:
        mu = torch.stack(list(x.values())).mean((0, 1, 2))
        x = {m: t - mu for m, t in x.items()}
    return torch.stack([F.cosine_similarity(x[a], x[b], dim=-1).mean() for a, b in probe.PAIRS]).mean()


# --------------------------------------------------------------------------------------------------------------
# Report


def _edge_row(label: str, maps: Mapping[str, np.ndarray]) -> list[str]:
    rows = []
    for m in MODALITIES:
        cam = np.asarray(maps[m])
        cam = cam.mean(0) if cam.ndim == 3 else cam
        values = "  ".join(f"{figures.edge_mass(cam, e):6.2f}" for e in EDGES)
        rows.append(f"  {label:<44} {probe.DISPLAY[m]:<4} {values}")
    return rows


def position_report(profile: str, namespace: str, compare: str | None, seed: int, samples: int) -> list[str]:
    from mambapro.engine import extract_features
    from mambapro.metrics import evaluate_features

    cfg = resolve_config(profile, "F")
    model, data = figures.load_run(cfg, results.run_dir(namespace, "F", seed), seed)
    batch = figures._test_batch(data, samples, seed, distinct=False)
    images, cams = batch["images"], batch["camid"]
    last = model.backbone.num_layers - 2
    lines = [f"Position bias, mean over {len(batch['pid'])} test samples: each map's mass on an edge / a uniform "
             f"map's (1 = none)", f"  {'map':<44} {'mod':<4} " + "  ".join(f"{e:>6}" for e in EDGES)]
    lines += _edge_row("F post-MA Grad-CAM (Figs. 10 / 11)", figures.mean_gradcam(model, images, cams))
    with reversed_scans(model):
        lines += _edge_row("F post-MA, MA scans reversed", gradcam_at(model, images, cams, "post_ma"))
    lines += _edge_row("F post-MA, the part no sample shares", gradcam_at(model, images, cams, "post_ma", "sample"))
    shares = gradcam_at(model, images, cams, "post_ma", "share")
    lines.append(f"  {'':<44} share of the post-MA maps (before ReLU) common to all samples: "
                 + ", ".join(f"{probe.DISPLAY[m]} {shares[m]:.2f}" for m in MODALITIES))
    lines += _edge_row("F pre-MA (MA's input tokens)", gradcam_at(model, images, cams, "pre_ma"))
    lines += _edge_row(f"F backbone block {last} output", gradcam_at(model, images, cams, last))
    other = None
    if compare:
        other, _ = figures.load_run(resolve_config(profile, compare), results.run_dir(namespace, compare, seed), seed)
        lines += _edge_row(f"{compare} backbone block {last} output (no MA)", gradcam_at(other, images, cams, last))
    grid = tuple(model.grid)
    lines += _edge_row("images: pixel-gradient energy per patch",
                       {m: gradient_energy(images[m], grid) for m in MODALITIES})
    everything = figures._test_batch(data, len(data.test_meta["pids"]), seed, distinct=False)
    pooled = {m: patch_pool(everything["images"][m], grid).permute(0, 2, 3, 1).numpy() for m in MODALITIES}
    for key, label in (("pid", "identity"), ("camid", "camera")):
        lines += _edge_row(f"images: colour variance explained by {label}",
                           {m: explained_share(pooled[m], everything[key].numpy()) for m in MODALITIES})
        share = {m: explained_share(pooled[m], everything[key].numpy()) for m in MODALITIES}
        lines.append(f"  {'':<44} mean share by {label}: " +
                     ", ".join(f"{probe.DISPLAY[m]} {share[m].mean():.3f}" for m in MODALITIES))
    mean = figures.mean_images(everything["images"])
    shape = tuple(images["RGB"].shape[-2:])
    lines.append(f"Retrieval mAP with one edge strip (one patch row / column) of every modality replaced by the test "
                 f"mean image there ({len(data.query_index)} queries)")
    for name, net in (("F", model), (compare, other)):
        if net is None:
            continue
        scores = []
        for edge in (None, *EDGES):
            run = net if edge is None else StripMasked(net, mean, strip_mask(shape, grid, edge))
            feats = extract_features(run, data.test_loader, torch.device("cpu"))
            ev = evaluate_features(feats, data.test_meta, data.query_index, data.gallery_index, data.protocol)
            scores.append(f"{edge or 'none'} {ev['mAP']:.1f}")
        lines.append(f"  {name}: " + ", ".join(scores))
    return lines


def alignment_report(profile: str, namespace: str, compare: str | None, seed: int, samples: int,
                     loss_batches: int) -> list[str]:
    from mambapro.losses import ReIDLoss

    cfg = resolve_config(profile, "F")
    model, data = figures.load_run(cfg, results.run_dir(namespace, "F", seed), seed)
    batch = figures._test_batch(data, samples, seed)
    lines = [f"Cross-modal cosine by stage, {len(batch['pid'])} test identities (raw; centred: the batch mean token "
             f"removed, as Fig. 6's lower row)",
             f"  {'stage':<38} {'raw':>6} {'centred':>8}  {'RGB-NIR':>8} {'RGB-TIR':>8} {'NIR-TIR':>8}"
             f"  {'|update|/spread':>15} {'update cos':>10} {'predicted':>9}",
             "  (predicted: the previous stage's centred cosine / (1 + (|update|/spread)²), what an update "
             "uncorrelated with the tokens and across the modalities leaves)"]
    compared = []
    if compare:
        other, _ = figures.load_run(resolve_config(profile, compare), results.run_dir(namespace, compare, seed), seed)
        compared = [(f"{compare}: {name}", toks) for name, toks in stage_tokens(other, batch["images"],
                                                                                batch["camid"])]
    previous, previous_centred = None, None
    for name, toks in stage_tokens(model, batch["images"], batch["camid"]) + compared:
        s = mean_similarities(toks)
        pairs = [v for k, v in s.items() if k.startswith("centred ")]
        upd = ""
        if name.startswith("MA block") and previous is not None:
            u = update_stats(previous, toks)
            upd = (f"  {u['update/spread']:15.2f} {u['update cos']:10.2f} "
                   f"{uncorrelated_update_cosine(previous_centred, u['update/spread']):9.3f}")
        previous_centred = s["centred"]
        lines.append(f"  {('F: ' if not name.startswith(f'{compare}:') else '') + name:<38} {s['raw']:6.3f} "
                     f"{s['centred']:8.3f}  " + " ".join(f"{v:8.3f}" for v in pairs) + upd)
        previous = toks if name.startswith(("MA input", "MA block")) else None
    criterion = ReIDLoss(cfg.loss)
    data.set_epoch(0)
    found = []
    for i, b in enumerate(data.train_loader):
        if i >= loss_batches:
            break
        found.append(loss_direction(model, {"images": b["images"], "camid": b["camid"], "pid": b["pid"]},
                                    criterion))
    if found:
        lines.append(f"The training loss (fuse pair: ID + triplet on f_ma) vs the post-MA similarity, {len(found)} "
                     f"training batches: cos(∇ similarity, −∇ loss) w.r.t. the post-MA tokens (> 0: a loss step "
                     f"raises the similarity)")
        for key in found[0]:
            vals = [f[key] for f in found]
            lines.append(f"  {key}: mean {np.mean(vals):+.3f} (min {np.min(vals):+.3f}, max {np.max(vals):+.3f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="default", help="the runs' profile (default-vehicle for Fig. 11's runs)")
    p.add_argument("--namespace", default=None, help="the runs' folder under runs/ (default: the profile; the "
                   "default profile's vehicle runs: default/vehicle)")
    p.add_argument("--root", default=".", help="folder holding runs/, data/ and build/ (default: here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", default="E", help="the preset without MA to compare with ('none': skip)")
    p.add_argument("--samples", type=int, default=64, help="test samples of the mean Grad-CAM maps")
    p.add_argument("--loss-batches", type=int, default=4, help="training batches for the loss direction")
    p.add_argument("--only", choices=("position", "alignment"), default=None)
    a = p.parse_args(argv)
    compare = None if a.compare.lower() == "none" else a.compare
    namespace = a.namespace or a.profile
    torch.manual_seed(a.seed)
    with contextlib.chdir(Path(a.root)):
        if a.only in (None, "position"):
            print("\n".join(position_report(a.profile, namespace, compare, a.seed, a.samples)), flush=True)
        if a.only in (None, "alignment"):
            print("\n".join(alignment_report(a.profile, namespace, compare, a.seed, 16, a.loss_batches)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
