"""The paper's figures from data: t-SNE (Fig. 5), cross-modal token alignment before / after MA (Fig. 6), the
hyper-parameter curves (Figs. 8, 9), Grad-CAM of the post-MA tokens (Figs. 10, 11), training curves and a rank list.

Every figure function takes data in (features, tensors, a model, metrics dictionaries), writes ``<out>.png`` and
``<out>.pdf`` (each to a temporary name, then renamed) and returns the two paths.  Figures are drawn on
:class:`matplotlib.figure.Figure` objects (no pyplot state, any backend).  What the authors' visualisation code
does, and its bugs, is in official-implementation.md sec. 8; where we differ it is said in the function's docstring.
Fig. 1(b) is drawn by ``benchmarks/aggregation_cost.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn

from mambapro.config import MODALITIES
from mambapro.results import atomic_path

DISPLAY = {"RGB": "RGB", "NI": "NIR", "TI": "TIR"}
PAIRS = (("RGB", "NI"), ("RGB", "TI"), ("NI", "TI"))
FIG5_PANELS = (("(a) CLIP(L)", "A"), ("(b) + PFA", "C"), ("(c) + SRP", "E"), ("(d) + MA", "F"))
FIG8_PANELS = (("fig8_dstate", "(a) $d_{state}$", "$d_{state}$ (hidden state size $N$)"),
               ("fig8_dtrank", "(b) $dt_{rank}$", "$dt_{rank}$ (default $\\lceil D/16 \\rceil$)"))
FIG9_PANELS = (("fig9a_prompt_length", "(a) Prompt length", "prompts per modality $N_{pr}$"),
               ("fig9b_srp_depth", "(b) SRP depth", "layers with SRP"),
               ("fig9c_pfa_depth", "(c) PFA depth", "layers with PFA"),
               ("fig9d_ma_blocks", "(d) MA blocks", "number of MA blocks"))
WHICH_LABEL = {"last": "last epoch", "best": "best epoch on test, paper protocol"}
BEFORE, AFTER = "Before MA", "After MA"
FONT = 10


# --------------------------------------------------------------------------------------------------------------
# Output


def save_figure(fig: Figure, out: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<out>.png`` and ``<out>.pdf`` (a ``.png`` / ``.pdf`` suffix on ``out`` is dropped), each
    to a temporary file in the same folder renamed when complete."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".png", ".pdf") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        path = stem.parent / f"{stem.name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        written.append(path)
    return written


def _colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:  # tab20's strong shades first, then the light ones (pairs of neighbours look alike)
        return [colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))][:n]
    return [colormaps["hsv"](i / n) for i in range(n)]


# --------------------------------------------------------------------------------------------------------------
# Fig. 5: t-SNE


def select_identities(pids: Sequence[int] | np.ndarray, num_ids: int = 12, per_id: int = 25
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic choice of the plotted samples: the ``num_ids`` identities with the most samples (ties: smaller
    id first), and of each its first ``per_id`` samples in order.  Returns (sample indices grouped by id, ids).
    The official code hard-codes 12 RGBNT201 ids × 25 (official-implementation.md sec. 8)."""
    pids = np.asarray(pids)
    ids, counts = np.unique(pids, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], ids[i]))[:num_ids]
    chosen = ids[order]
    index = np.concatenate([np.flatnonzero(pids == pid)[:per_id] for pid in chosen])
    return index, chosen


def default_perplexity(n: int) -> float:
    """60 as the official code (12 ids × 25 = 300 samples) when there are enough samples, otherwise (n - 1) / 3,
    always below n as scikit-learn requires."""
    return float(min(60.0, max(1.0, (n - 1) / 3)))


def tsne_embedding(features: np.ndarray | torch.Tensor, perplexity: float | None = None, seed: int = 1) -> np.ndarray:
    """2-D t-SNE of L2-normalised features with the official settings (``init="pca"``, ``random_state=1``,
    ``learning_rate=100``)."""
    from sklearn.manifold import TSNE

    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    x = F.normalize(x, dim=1).numpy()
    n = x.shape[0]
    perplexity = default_perplexity(n) if perplexity is None else float(perplexity)
    if not 0 < perplexity < n:
        raise ValueError(f"t-SNE perplexity {perplexity} must be in (0, n_samples = {n})")
    tsne = TSNE(n_components=2, init="pca", random_state=seed, learning_rate=100, perplexity=perplexity)
    return tsne.fit_transform(x)


def tsne_figure(panels: Sequence[tuple[str, Any, Any]], out: str | Path, num_ids: int = 12, per_id: int = 25,
                perplexity: float | None = None, seed: int = 1) -> list[Path]:
    """Fig. 5: one t-SNE panel per (title, retrieval features [n, d], pids [n]) — e.g. the models of
    :data:`FIG5_PANELS` (A, C, E, F) — in a row, the SAME identities in every panel (:func:`select_identities`
    on the first panel's pids; every panel must list the same pids in the same order), one colour per id with a
    shared legend."""
    if not panels:
        raise ValueError("tsne_figure: no panels")
    pids0 = np.asarray(panels[0][2])
    for title, feats, pids in panels:
        if not np.array_equal(np.asarray(pids), pids0):
            raise ValueError(f"tsne_figure: panel {title!r} has other samples (pids) than panel {panels[0][0]!r}; "
                             f"extract every model's features from the same test loader")
        if len(feats) != len(pids0):
            raise ValueError(f"tsne_figure: panel {title!r} has {len(feats)} features for {len(pids0)} pids")
    index, ids = select_identities(pids0, num_ids, per_id)
    ids = np.sort(ids)  # colours and legend in id order
    colors = dict(zip(ids.tolist(), _colors(len(ids))))
    fig = Figure(figsize=(3.4 * len(panels) + 1.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, feats, _) in zip(axes, panels):
        emb = tsne_embedding(np.asarray(feats)[index], perplexity, seed)
        labels = pids0[index]
        for pid in ids.tolist():
            sel = labels == pid
            ax.scatter(emb[sel, 0], emb[sel, 1], s=36, marker="*", alpha=0.75, color=colors[pid], label=f"ID {pid}",
                       linewidths=0)
        ax.set_title(title, fontsize=FONT + 2)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="*", linestyle="", markersize=9, color=colors[p], label=f"ID {p}")
               for p in ids.tolist()]
    fig.legend(handles=handles, loc="outside right center", fontsize=FONT - 1, title="Identity",
               ncols=1 if len(ids) <= 16 else 2)
    fig.suptitle(f"t-SNE of L2-normalised retrieval features ({len(ids)} identities × ≤ {per_id} samples)",
                 fontsize=FONT + 1)
    return save_figure(fig, out)


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


def alignment_figure(similarities: Mapping[str, Mapping[str, np.ndarray]], out: str | Path) -> list[Path]:
    """Fig. 6: seaborn KDE of the cross-modal cosine similarities, one panel per pair, "Before MA" drawn from the
    pre-MA data and "After MA" from the post-MA data.  The authors' code (official-implementation.md sec. 8,
    ``metrics.py:381-392``) swaps the two labels; this one does not, and layers the densities instead of stacking
    them (``multiple="stack"`` would add the two curves).  When the data has ``before_centred`` / ``after_centred``
    (:func:`alignment_similarities`), a second row, titled as such, draws the centred measure."""
    pairs = list(similarities)
    rows = [("", "before", "after", "Paper's measure: cosine similarity of the raw tokens",
             "Cosine similarity")]
    if all("before_centred" in similarities[p] and "after_centred" in similarities[p] for p in pairs):
        rows.append((", centred", "before_centred", "after_centred",
                     "Centred (not in the paper): cosine similarity after subtracting the batch's mean token "
                     "(shared by every sample, position and modality)", "Cosine similarity of centred tokens"))
    fig = Figure(figsize=(4.2 * len(pairs), 3.7 * len(rows)), layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for subfig, (suffix, before, after, heading, xlabel) in zip(subfigs, rows):
        axes = subfig.subplots(1, len(pairs), squeeze=False)[0]
        for ax, pair in zip(axes, pairs):
            for label, key, color in ((BEFORE, before, "tab:blue"), (AFTER, after, "tab:green")):
                _density(ax, np.asarray(similarities[pair][key], dtype=np.float64).ravel(), label, color,
                         f"{key} similarities for {pair}")
            ax.set_title(f"{pair.replace('–', ' vs ')}{suffix}", fontsize=FONT + 1)
            ax.set_xlabel(xlabel, fontsize=FONT)
            ax.set_ylabel("Density", fontsize=FONT)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=FONT - 1)
        subfig.suptitle(heading, fontsize=FONT)
    fig.suptitle("Cross-modal similarity of the same sample's patch tokens, position by position", fontsize=FONT + 1)
    return save_figure(fig, out)


def _density(ax, data: np.ndarray, label: str, color, what: str) -> None:
    """One filled seaborn KDE on ``ax``; a vertical line for a constant, a step histogram where seaborn declines."""
    import seaborn as sns

    if data.size == 0:
        raise ValueError(f"alignment_figure: no {what}")
    if np.ptp(data) < 1e-9:  # a KDE of a constant is undefined: mark the value
        ax.axvline(float(data[0]), color=color, label=label, linewidth=2)
        return
    drawn = len(ax.lines)
    sns.kdeplot(x=data, ax=ax, color=color, label=label, linewidth=2, fill=False, warn_singular=False)
    if len(ax.lines) == drawn:  # seaborn declined (e.g. too few distinct values): a density histogram
        ax.hist(data, bins=30, density=True, histtype="step", color=color, label=label, linewidth=2)
        return
    x, y = ax.lines[-1].get_data()
    ax.fill_between(x, y, color=color, alpha=0.2, linewidth=0)


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


def denormalize(image: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    """[3, H, W] normalised with mean = std = 0.5 (official, sec. 10 item 11) → [H, W, 3] float in [0, 1]."""
    return (image.detach().float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(image: torch.Tensor, cam: np.ndarray, mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    """``show_cam_on_image`` of a grid-resolution map resized (bilinear) onto the de-normalised image."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = denormalize(image, mean, std).astype(np.float32)
    mask = cv2.resize(np.asarray(cam, dtype=np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb, np.clip(mask, 0, 1), use_rgb=True)


def gradcam_figure(images: Mapping[str, torch.Tensor], maps: Mapping[str, np.ndarray], out: str | Path,
                   row_labels: Sequence[str] | None = None, title: str | None = None, mean: float = 0.5,
                   std: float = 0.5) -> list[Path]:
    """Figs. 10 / 11: rows = samples; columns = RGB, NIR, TIR, each as the input image then its Grad-CAM overlay.
    Cell aspect follows the images (tall persons, wide vehicles); a constant map (:func:`is_constant_map`) is
    labelled "constant" on its overlay."""
    b, _, h, w = images["RGB"].shape
    for m in MODALITIES:
        if len(maps[m]) != b:
            raise ValueError(f"gradcam_figure: {len(maps[m])} {m} maps for {b} images")
    cell = 1.9 / max(h, w)
    cw, ch = cell * w, cell * h
    fig = Figure(figsize=(6 * cw + 0.6, b * ch + 0.9), layout="constrained")
    axes = fig.subplots(b, 6, squeeze=False)
    for i in range(b):
        for j, m in enumerate(MODALITIES):
            ax_img, ax_cam = axes[i, 2 * j], axes[i, 2 * j + 1]
            ax_img.imshow(denormalize(images[m][i], mean, std))
            ax_cam.imshow(overlay(images[m][i], maps[m][i], mean, std))
            if is_constant_map(maps[m][i]):  # a uniform overlay would look like an answer
                ax_cam.text(0.5, 0.5, "constant", transform=ax_cam.transAxes, ha="center", va="center",
                            fontsize=FONT, fontweight="bold", color="white", rotation=90 if h > w else 0,
                            bbox={"facecolor": "black", "alpha": 0.7, "linewidth": 0})
            if i == 0:
                ax_img.set_title(DISPLAY[m], fontsize=FONT)
                ax_cam.set_title(f"{DISPLAY[m]} Grad-CAM", fontsize=FONT)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=FONT)
    fig.suptitle(title or "Centred Grad-CAM of the post-MA tokens $f_{ir}^M$ (target: similarity to the retrieval "
                 "feature)", fontsize=FONT)
    return save_figure(fig, out)


# --------------------------------------------------------------------------------------------------------------
# Figs. 8 / 9: hyper-parameter curves


BEYOND_NOISE_LABEL = "mAP differs from F beyond the seed noise (Welch p < 0.05)"


def hyperparameter_figure(curves: Mapping[str, Sequence[Mapping[str, Any]]], panels: Sequence[tuple[str, str, str]],
                          out: str | Path, which: Sequence[str] = ("last", "best"), title: str | None = None
                          ) -> list[Path]:
    """Fig. 8 (``panels=FIG8_PANELS``) or Fig. 9 (``FIG9_PANELS``): mAP and Rank-1 vs the hyper-parameter, mean ±
    std over seeds as error bars, solid for the last epoch, dashed for the best epoch on test (paper protocol).
    A black ring marks each mAP point whose difference from preset F exceeds the seed noise
    (``<which>_mAP_beyond_noise``: Welch's test, :func:`mambapro.tables.versus_reference`).
    ``curves[key]`` is :func:`mambapro.tables.curve_data`'s list of points (label, ``<which>_<metric>_mean/_std``)."""
    fig = Figure(figsize=(4.2 * len(panels), 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {"mAP": "tab:blue", "R1": "tab:orange"}
    dashes = {"last": "-", "best": "--"}
    for ax, (key, panel_title, xlabel) in zip(axes, panels):
        if key not in curves or not curves[key]:
            raise ValueError(f"hyperparameter_figure: no data for curve {key!r}")
        points = curves[key]
        x = np.arange(len(points))
        for metric in ("mAP", "R1"):
            for w in which:
                mean = [p[f"{w}_{metric}_mean"] for p in points]
                std = [p[f"{w}_{metric}_std"] for p in points]
                ax.errorbar(x + (0.04 if w == "best" else -0.04), mean, yerr=std, color=colors[metric],
                            linestyle=dashes[w], marker="o", markersize=4, capsize=3, linewidth=1.6,
                            label=f"{'mAP' if metric == 'mAP' else 'Rank-1'} ({WHICH_LABEL[w]})")
                beyond = [i for i, p in enumerate(points) if p.get(f"{w}_mAP_beyond_noise")]
                if metric == "mAP" and beyond:
                    ax.plot(x[beyond] + (0.04 if w == "best" else -0.04), [mean[i] for i in beyond], linestyle="",
                            marker="o", markersize=11, markerfacecolor="none", markeredgecolor="black",
                            markeredgewidth=1.4, label=BEYOND_NOISE_LABEL)
        ax.set_xticks(x, [str(p["label"]) for p in points])
        ax.set_title(panel_title, fontsize=FONT + 1)
        ax.set_xlabel(xlabel, fontsize=FONT)
        ax.set_ylabel("%", fontsize=FONT)
        ax.grid(alpha=0.3)
    legend = {}  # one entry per label over every panel (a panel may have no ringed point); the ring last
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if BEYOND_NOISE_LABEL in legend:
        legend[BEYOND_NOISE_LABEL] = legend.pop(BEYOND_NOISE_LABEL)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=2, fontsize=FONT - 1)
    if title:
        fig.suptitle(title, fontsize=FONT + 1)
    return save_figure(fig, out)


# --------------------------------------------------------------------------------------------------------------
# Training curves


def training_curves_figure(metrics: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Loss and test mAP vs epoch from a ``metrics.json`` (``runs[i].history``), one line per seed; the best
    epoch by test mAP (paper protocol) is starred."""
    runs = metrics.get("runs") or []
    if not runs:
        raise ValueError(f"training_curves_figure: no runs in metrics of preset {metrics.get('preset')!r}")
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_loss, ax_map = fig.subplots(1, 2)
    colors = _colors(len(runs))
    for color, run in zip(colors, runs):
        hist = run["history"]
        ax_loss.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], color=color, label=f"seed {run['seed']}")
        evals = [h for h in hist if h.get("mAP") is not None]  # evaluated epochs only
        ax_map.plot([h["epoch"] for h in evals], [h["mAP"] for h in evals], color=color, marker="o", markersize=3,
                    label=f"seed {run['seed']}")
        best = run.get("best")
        if best:
            ax_map.plot([best["epoch"]], [best["mAP"]], marker="*", markersize=12, color=color, linestyle="")
    ax_loss.set_title("Training loss", fontsize=FONT + 1)
    ax_loss.set_xlabel("epoch", fontsize=FONT)
    ax_loss.set_ylabel("loss", fontsize=FONT)
    ax_map.set_title("Test mAP (★ best epoch)", fontsize=FONT + 1)
    ax_map.set_xlabel("epoch", fontsize=FONT)
    ax_map.set_ylabel("mAP (%)", fontsize=FONT)
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT - 1)
    fig.suptitle(f"Preset {metrics.get('preset', '?')} (profile {metrics.get('profile', '?')})", fontsize=FONT + 1)
    return save_figure(fig, out)


# --------------------------------------------------------------------------------------------------------------
# Rank list


def ranked_gallery(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                   gallery_camids: np.ndarray, topk: int = 10, protocol: str = "camera",
                   query_sceneid: int | None = None, gallery_sceneids: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The top-``topk`` gallery indices by ascending distance and whether each matches the query id, skipping the
    items the protocol removes (official-implementation.md sec. 5): ``"camera"`` (RGBNT201, RGBNT100) same id and
    same camera; ``"scene"`` (MSVR310) same id and same scene."""
    distances = np.asarray(distances)
    gallery_pids, gallery_camids = np.asarray(gallery_pids), np.asarray(gallery_camids)
    if protocol == "camera":
        removed = (gallery_pids == query_pid) & (gallery_camids == query_camid)
    elif protocol == "scene":
        if query_sceneid is None or gallery_sceneids is None:
            raise ValueError("ranked_gallery: protocol 'scene' needs query_sceneid and gallery_sceneids")
        removed = (gallery_pids == query_pid) & (np.asarray(gallery_sceneids) == query_sceneid)
    else:
        raise ValueError(f"ranked_gallery: protocol {protocol!r} is not 'camera' or 'scene'")
    order = np.argsort(distances, kind="stable")
    keep = order[~removed[order]][:topk]
    return keep, gallery_pids[keep] == query_pid


def rank_list_figure(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                     gallery_camids: np.ndarray, load_image: Callable[[str, int, str], np.ndarray],
                     out: str | Path, query_index: int = 0, topk: int = 10, protocol: str = "camera",
                     query_sceneid: int | None = None, gallery_sceneids: np.ndarray | None = None) -> list[Path]:
    """A query and its top-``topk`` gallery (:func:`ranked_gallery`) in three rows (RGB, NIR, TIR), green borders
    for correct matches, red for wrong ones (as DeMo's ``visualize_ranked_results``).  ``load_image(kind, index,
    modality)`` with kind "query" / "gallery" returns an [H, W, 3] image (uint8, or float in [0, 1])."""
    keep, matches = ranked_gallery(distances, query_pid, query_camid, gallery_pids, gallery_camids, topk, protocol,
                                   query_sceneid, gallery_sceneids)
    sample = np.asarray(load_image("query", query_index, "RGB"))
    h, w = sample.shape[:2]
    cell = 1.5 / max(h, w)
    cols = 1 + len(keep)
    fig = Figure(figsize=(cols * cell * w + 0.6, 3 * cell * h + 1.0), layout="constrained")
    axes = fig.subplots(3, cols, squeeze=False)
    for r, m in enumerate(MODALITIES):
        cells = [("query", query_index, "tab:blue")]
        cells += [("gallery", int(g), "tab:green" if ok else "tab:red") for g, ok in zip(keep, matches)]
        for c, (kind, idx, color) in enumerate(cells):
            ax = axes[r, c]
            img = np.asarray(load_image(kind, idx, m))
            ax.imshow(np.clip(img, 0, 1) if img.dtype.kind == "f" else img)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor(color)
                spine.set_linewidth(3)
            if r == 0:
                if kind == "query":
                    ax.set_title(f"Query\nID {query_pid}", fontsize=FONT - 1)
                else:
                    ax.set_title(f"Rank {c}\nID {gallery_pids[idx]}", fontsize=FONT - 1)
        axes[r, 0].set_ylabel(DISPLAY[m], fontsize=FONT)
    rule = "same id and camera" if protocol == "camera" else "same id and scene"
    fig.suptitle(f"Query (blue) and its top-{len(keep)} gallery (green: same id, red: other id; {rule} removed)",
                 fontsize=FONT)
    return save_figure(fig, out)
