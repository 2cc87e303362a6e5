"""Probing a trained model for the paper's figures: the cross-modal alignment of its tokens before / after MA
(Fig. 6) and Grad-CAM of the post-MA tokens (Figs. 10, 11).  Tensors and numbers in, arrays out; the drawing is
:mod:`mambapro.viz`, the glue that loads the runs :mod:`mambapro.figures`.  What the authors' visualisation code
does, and its bugs, is in official-implementation.md sec. 8; where we differ it is said in the function's docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mambapro.config import MODALITIES

DISPLAY = {"RGB": "RGB", "NI": "NIR", "TI": "TIR"}
PAIRS = (("RGB", "NI"), ("RGB", "TI"), ("NI", "TI"))


# --------------------------------------------------------------------------------------------------------------
# Fig. 6: cross-modal alignment before / after MA


def _aggregator(model: nn.Module) -> nn.Module:
    agg = getattr(model, "aggregator", None)
    if agg is None:
        agg = getattr(model, "aggregation", None)
    if agg is None:
        raise ValueError(f"{type(model).__name__} has no aggregator (aggregation kind 'none'): Fig. 6 and the "
                         f"post-MA Grad-CAM need a model with Mamba Aggregation")
    for method in ("forward_tokens",):
        if not hasattr(agg, method):
            raise TypeError(f"aggregator {type(agg).__name__} has no {method}() (needed for the post-MA tokens)")
    return agg


def _reduce(agg: nn.Module, cls: list[torch.Tensor], patches: list[torch.Tensor]) -> torch.Tensor:
    """f_ma from per-modality CLS [B, D] and post-MA patch tokens [B, N, D] (Eq. 18-19)."""
    if hasattr(agg, "reduce"):
        return agg.reduce(cls, patches)
    if hasattr(agg, "reduction"):
        return agg.reduction(cls, patches)
    raise TypeError(f"aggregator {type(agg).__name__} has neither reduce() nor a reduction module")


def pair_name(a: str, b: str) -> str:
    return f"{DISPLAY[a]}–{DISPLAY[b]}"


def _modality_tokens(tokens: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], who: str
                     ) -> dict[str, torch.Tensor]:
    """{modality: [B, N, D] float} from a mapping or a sequence in the order RGB, NI, TI; all the same shape."""
    if not isinstance(tokens, Mapping):
        tokens = dict(zip(MODALITIES, tokens))
    for m in MODALITIES:
        if m not in tokens:
            raise ValueError(f"{who}: no tokens for modality {m}")
    shape = tuple(tokens["RGB"].shape)
    for m in MODALITIES:
        if tuple(tokens[m].shape) != shape or len(shape) != 3:
            raise ValueError(f"{who}: tokens must all be [B, N, D]; {m} is {tuple(tokens[m].shape)}, RGB is {shape}")
    return {m: tokens[m].detach().float() for m in MODALITIES}


def cross_modal_similarity(tokens: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Cosine similarity of the SAME sample's tokens in two modalities, position by position
    (``F.cosine_similarity(src, tgt, dim=-1)``, as the official ``visualize_similarity``), for each pair
    RGB–NIR, RGB–TIR, NIR–TIR; tokens [B, N, D] per modality (order RGB, NI, TI); returns [B·N] per pair."""
    tokens = _modality_tokens(tokens, "cross_modal_similarity")
    return {pair_name(a, b): F.cosine_similarity(tokens[a], tokens[b], dim=-1).flatten().cpu().numpy()
            for a, b in PAIRS}


def _mean_token(x: torch.Tensor, by_position: bool) -> torch.Tensor:
    return x.mean((0, 1)) if by_position else x.mean((0, 1, 2))


def shared_token(tokens: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], by_position: bool = False
                 ) -> torch.Tensor:
    """The component every token shares (Fig. 6): the mean token over samples, positions and modalities [D], or,
    with ``by_position``, one mean per position over samples and modalities [N, D]."""
    return _mean_token(torch.stack(list(_modality_tokens(tokens, "shared_token").values())), by_position)


def shared_share(tokens: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], by_position: bool = False) -> float:
    """Share of the tokens' total squared norm explained by :func:`shared_token` μ: Σ|μ|² / Σ|x|² over all tokens
    (= 1 − Σ|x − μ|² / Σ|x|², as μ is their mean)."""
    x = torch.stack(list(_modality_tokens(tokens, "shared_share").values())).double()  # [M, B, N, D]
    mu = _mean_token(x, by_position)
    return float((torch.broadcast_to(mu, x.shape) ** 2).sum() / (x ** 2).sum().clamp_min(1e-300))


def centred_cross_modal_similarity(tokens: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
                                   by_position: bool = False) -> dict[str, np.ndarray]:
    """Fig. 6, centred (ours, not the paper's): :func:`cross_modal_similarity` of x − μ, μ = :func:`shared_token`
    of the tokens passed (the test batch).  The paper's cosine is dominated by μ (share ≈ 1 on model F, see
    :func:`alignment_shared_component`): two tokens that only share μ score ≈ 1.  Removing the GLOBAL mean takes out
    only what every sample, position and modality has in common; a modality's own offset (a modality gap) is kept,
    so misalignment between modalities still counts.  ``by_position`` also removes the mean of each position."""
    tokens = _modality_tokens(tokens, "centred_cross_modal_similarity")
    mu = shared_token(tokens, by_position)
    return cross_modal_similarity({m: t - mu for m, t in tokens.items()})


def _alignment_tokens(model: nn.Module, images: Mapping[str, torch.Tensor], cams: torch.Tensor
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone CLS [B, D], patch tokens before MA [B, N, D], f_ir^M after MA [B, N, D]) per modality, eval mode."""
    agg = _aggregator(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            tokens = model(dict(images), cams).tokens
            seq = [tokens[m] for m in MODALITIES]
            after = dict(zip(MODALITIES, agg.forward_tokens(seq)))
    finally:
        model.train(was_training)
    return {m: t[:, 0] for m, t in zip(MODALITIES, seq)}, {m: t[:, 1:] for m, t in zip(MODALITIES, seq)}, after


@torch.no_grad()
def alignment_similarities(model: nn.Module, images: Mapping[str, torch.Tensor], cams: torch.Tensor
                           ) -> dict[str, dict[str, np.ndarray]]:
    """Fig. 6 data: for each modality pair, {"before": similarities of the backbone patch tokens (pre-MA),
    "after": similarities of the aggregator's ``forward_tokens`` output f_ir^M (post-MA)} (the paper's measure), and
    "before_centred" / "after_centred" (:func:`centred_cross_modal_similarity`, each stage's own batch mean)."""
    _, before, after = _alignment_tokens(model, images, cams)
    raw = {"before": cross_modal_similarity(before), "after": cross_modal_similarity(after),
           "before_centred": centred_cross_modal_similarity(before),
           "after_centred": centred_cross_modal_similarity(after)}
    return {pair: {key: sims[pair] for key, sims in raw.items()} for pair in raw["before"]}


@torch.no_grad()
def offset_candidates(model: nn.Module) -> dict[str, torch.Tensor]:
    """Token-space vectors that could be the shared component of Fig. 6 (backbone.py's ``head``): the final norm's
    bias as it reaches every token (CLIP ``ln_post.bias @ proj``; timm ``norm.bias``) and the patches' mean
    positional embedding through the head (``head(mean_n pos_n)``, a token carrying only that mean; a heuristic, the
    blocks are skipped).  Empty for a model without the project's backbone."""
    backbone = getattr(model, "backbone", None)
    tower = getattr(backbone, "tower", None)
    if tower is None or not hasattr(backbone, "head"):
        return {}
    if backbone.kind == "clip":
        out = {"ln_post_bias_proj": tower.ln_post.bias @ tower.proj}
        pos = tower.positional_embedding
    else:
        out = {"norm_bias": tower.norm.bias} if getattr(tower.norm, "bias", None) is not None else {}
        pos = tower.pos_embed[0]
    out["pos_mean_head"] = backbone.head(pos[1:].mean(0, keepdim=True))[0]
    return {k: v.detach().float().cpu() for k, v in out.items()}


def alignment_shared_component(model: nn.Module, images: Mapping[str, torch.Tensor], cams: torch.Tensor
                               ) -> dict[str, float]:
    """What dominates Fig. 6's cosines, for the tokens before and after MA (prefix ``before_`` / ``after_``):
    ``share_mean_token`` (:func:`shared_share`), ``share_position_means`` (with one mean per position),
    ``mean_token_norm`` |μ|, ``token_rms`` √mean|x|², and for each candidate source c (:func:`offset_candidates`,
    ``cls_mean`` the mean backbone CLS, and for ``after_`` also ``before_mean_token``) ``cos_<c>`` = cos(μ, c) and
    ``norm_ratio_<c>`` = |c| / |μ|."""
    cls, before, after = _alignment_tokens(model, images, cams)
    candidates = {**offset_candidates(model), "cls_mean": torch.stack(list(cls.values())).float().mean((0, 1))}
    out: dict[str, float] = {}
    for stage, toks in (("before", before), ("after", after)):
        mu = shared_token(toks).cpu()
        x = torch.stack(list(toks.values())).float()
        out[f"{stage}_share_mean_token"] = shared_share(toks)
        out[f"{stage}_share_position_means"] = shared_share(toks, by_position=True)
        out[f"{stage}_mean_token_norm"] = float(mu.norm())
        out[f"{stage}_token_rms"] = float((x ** 2).sum(-1).mean().sqrt())
        for name, c in candidates.items():
            c = c.to(mu)
            out[f"{stage}_cos_{name}"] = float(F.cosine_similarity(mu, c, dim=0))
            out[f"{stage}_norm_ratio_{name}"] = float(c.norm() / mu.norm().clamp_min(1e-12))
        candidates = {**candidates, "before_mean_token": mu}
    return out


# --------------------------------------------------------------------------------------------------------------
# Figs. 10 / 11: Grad-CAM of the post-MA tokens


class PostMAFeature(nn.Module):
    """Grad-CAM wrapper: a stacked input [B, 3 modalities (RGB, NI, TI), 3, H, W] with fixed camera ids → the
    model's backbone tokens → ``aggregator.forward_tokens`` (f_ir^M) → one ``nn.Identity`` tap per modality (the
    Grad-CAM target layer: its hook sees exactly that modality's call, unlike the official code's hook on the
    shared backbone, which fires three times) → the reductions → f_ma [B, 3D]."""

    def __init__(self, model: nn.Module, cams: torch.Tensor):
        super().__init__()
        self.model = model
        self.cams = cams
        self.taps = nn.ModuleDict({m: nn.Identity() for m in MODALITIES})

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        if stacked.dim() != 5 or stacked.shape[1] != len(MODALITIES):
            raise ValueError(f"PostMAFeature: expected [B, 3, C, H, W] (modalities stacked on dim 1), got "
                             f"{tuple(stacked.shape)}")
        images = {m: stacked[:, i] for i, m in enumerate(MODALITIES)}
        tokens = self.model(images, self.cams).tokens
        seq = [tokens[m] for m in MODALITIES]
        agg = _aggregator(self.model)
        tapped = []
        for m, p in zip(MODALITIES, agg.forward_tokens(seq)):
            if not p.requires_grad:  # everything upstream frozen: the gradient below the tap is not needed
                p = p.detach().requires_grad_(True)
            tapped.append(self.taps[m](p))
        return _reduce(agg, [t[:, 0] for t in seq], tapped)


class FeatureSimilarityTarget:
    """ReID Grad-CAM target (not a classifier argmax, unlike the official ``targets=None``).

    With ``mode="cosine"``: cos(f, r) for a detached reference r, e.g. the mean gallery feature of the sample's
    identity.  With r = the sample's OWN retrieval feature, cos(f, r) is at its maximum 1, where its gradient is
    exactly zero (∂cos/∂f = r/(|f||r|) − (f·r) f/(|f|³|r|) = 0 at f = r), so Grad-CAM would be all zeros; for
    that case ``mode="projection"`` uses f · r/|r| (the cosine similarity times |f|), whose gradient is the unit
    retrieval direction r/|r|: the regions that push the feature along its own direction."""

    def __init__(self, reference: torch.Tensor, mode: str = "projection"):
        if mode not in ("cosine", "projection"):
            raise ValueError(f"FeatureSimilarityTarget: mode {mode!r} is not 'cosine' or 'projection'")
        self.reference = reference.detach()
        self.mode = mode

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        ref = self.reference.to(output.device, output.dtype)
        if self.mode == "cosine":
            return F.cosine_similarity(output, ref, dim=-1)
        return (output * ref / ref.norm().clamp_min(1e-12)).sum(-1)


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM ``reshape_transform``: patch tokens [B, N, D] (row-major, no CLS) → [B, D, h, w]."""
    h, w = grid
    if tokens.dim() != 3 or tokens.shape[1] != h * w:
        raise ValueError(f"tokens_to_grid: expected [B, N = {h}·{w}, D], got {tuple(tokens.shape)}")
    return tokens.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def centre_activations(activations: np.ndarray | torch.Tensor) -> np.ndarray:
    """[B, C, h, w] minus each channel's mean over the positions (per sample): what :func:`gradcam_maps` weights."""
    if isinstance(activations, torch.Tensor):
        activations = activations.detach().float().cpu().numpy()
    return activations - activations.mean(axis=(2, 3), keepdims=True)


def _grid_gradcam_class():
    from pytorch_grad_cam import GradCAM

    class GridGradCAM(GradCAM):
        """GradCAM whose maps stay on the patch grid (the library would resize them to the input size) and, with
        ``centred``, weight the centred activations (:func:`centre_activations`; :func:`gradcam_maps` says why)."""

        def __init__(self, model, target_layers, grid, centred=True):
            super().__init__(model, target_layers, reshape_transform=lambda t: tokens_to_grid(t, grid))
            self.grid, self.centred = tuple(grid), centred

        def get_target_width_height(self, input_tensor):
            return self.grid[1], self.grid[0]

        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
            if self.centred:  # the weights (mean gradients) do not depend on the activations
                activations = centre_activations(activations)
            return super().get_cam_image(input_tensor, target_layer, targets, activations, grads, eigen_smooth)

    return GridGradCAM


def gradcam_maps(model: nn.Module, images: Mapping[str, torch.Tensor], cams: torch.Tensor,
                 references: torch.Tensor | None = None, centred: bool = True) -> dict[str, np.ndarray]:
    """Grad-CAM (``pytorch_grad_cam.GradCAM``) of each modality's post-MA patch tokens f_ir^M (Figs. 10, 11), on the
    patch grid ``model.grid`` (16×8 persons, 8×16 vehicles): {modality: [B, h, w] in [0, 1]}.  Target per sample:
    :class:`FeatureSimilarityTarget` to ``references`` [B, 3D] (cosine), or, when None, to the sample's own
    detached retrieval feature (projection, see the class).  The model's mode and gradients are restored.

    ``centred`` (default; ``False`` is the library's Grad-CAM): the activations A_c(x) are centred per channel over
    the positions before the weighting, cam(x) = ReLU(Σ_c w_c (A_c(x) − Ā_c)), i.e. the classic map minus its
    spatial mean.  Eq. 18 mean-pools f_ir^M, so every position gets the same gradient and Σ_c w_c A_c(x) is token
    x's first-order contribution to the target; the part Σ_c w_c Ā_c is the same at every position (the component
    every token shares, cf. :func:`alignment_shared_component`) and carries no spatial information.  On model F it
    is negative and larger than the spatial variation for RGB and NIR, so the classic ReLU erased those maps.  The
    centred map ranks the positions exactly as the classic one; only the ReLU's threshold moves from 0 to the
    spatial mean: it shows where a token pushes the target more than the average token."""
    grid = tuple(getattr(model, "grid", None) or _aggregator(model).grid)
    stacked = torch.stack([images[m] for m in MODALITIES], dim=1)
    wrapper = PostMAFeature(model, cams)
    was_training = model.training
    grid_cam = _grid_gradcam_class()
    maps = {}
    try:
        wrapper.eval()
        with torch.no_grad():
            own = wrapper(stacked)
        if references is None:
            targets = [FeatureSimilarityTarget(f, "projection") for f in own]
        else:
            if tuple(references.shape) != tuple(own.shape):
                raise ValueError(f"gradcam_maps: references {tuple(references.shape)} must match the features "
                                 f"{tuple(own.shape)}")
            targets = [FeatureSimilarityTarget(r, "cosine") for r in references]
        with torch.enable_grad():
            for m in MODALITIES:
                cam = grid_cam(wrapper, [wrapper.taps[m]], grid, centred)
                try:
                    maps[m] = cam(input_tensor=stacked, targets=targets)
                finally:
                    cam.activations_and_grads.release()
    finally:
        wrapper.zero_grad(set_to_none=True)
        model.train(was_training)
    return maps


def is_constant_map(cam: np.ndarray, rtol: float = 1e-3) -> bool:
    """A map with no spatial structure (Figs. 10, 11): its range is at most ``rtol`` × its largest magnitude (an
    all-zero map, what the library returns when the ReLU erased everything, counts)."""
    cam = np.asarray(cam, dtype=np.float64)
    return bool(np.ptp(cam) <= rtol * np.abs(cam).max())


def nonconstant_share(maps: Mapping[str, np.ndarray], rtol: float = 1e-3) -> dict[str, float]:
    """{modality: share of the samples whose :func:`gradcam_maps` map is not constant (:func:`is_constant_map`)}."""
    return {m: float(np.mean([not is_constant_map(c, rtol) for c in maps[m]])) for m in maps}
