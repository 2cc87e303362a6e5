"""The paper's figures from data: t-SNE (Fig. 5), cross-modal token alignment before / after MA (Fig. 6), the
hyper-parameter curves (Figs. 8, 9), Grad-CAM of the post-MA tokens (Figs. 10, 11), training curves and a rank list.

Every figure function takes data in (features, similarities, maps, metrics dictionaries), writes ``<out>.png`` and
``<out>.pdf`` (each to a temporary name, then renamed) and returns the two paths.  Figures are drawn on
:class:`matplotlib.figure.Figure` objects (no pyplot state, any backend).  The data of Figs. 6, 10 and 11 come from
probing a model (:mod:`mambapro.probe`).  What the authors' visualisation code does, and its bugs, is in
official-implementation.md sec. 8; where we differ it is said in the function's docstring.  Fig. 1(b) is drawn by
``benchmarks/aggregation_cost.py``.
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

from mambapro.config import MODALITIES
from mambapro.probe import DISPLAY, is_constant_map
from mambapro.results import atomic_path

FIG5_PANELS = (("(a) CLIP(L)", "A"), ("(b) + PFA", "C"), ("(c) + SRP", "E"), ("(d) + MA", "F"))
FIG8_PANELS = (("fig8_dstate", "(a) $d_{state}$", "$d_{state}$ (hidden state size $N$)"),
               ("fig8_dtrank", "(b) $dt_{rank}$", "$dt_{rank}$ (default $\\lceil D/16 \\rceil$)"))
# A panel's first item: one curve key of TABLES, or several drawn together (told apart by marker, CURVE_LABELS).
# Fig. 9a: prompt length under the official zero initialisation (F) and under the paper's random one.
FIG9_PANELS = ((("fig9a_prompt_length", "fig9a_prompt_length_normal"), "(a) Prompt length",
                "prompts per modality $N_{pr}$"),
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


def alignment_figure(similarities: Mapping[str, Mapping[str, np.ndarray]], out: str | Path) -> list[Path]:
    """Fig. 6: seaborn KDE of the cross-modal cosine similarities, one panel per pair, "Before MA" drawn from the
    pre-MA data and "After MA" from the post-MA data.  The authors' code (official-implementation.md sec. 8,
    ``metrics.py:381-392``) swaps the two labels; this one does not, and layers the densities instead of stacking
    them (``multiple="stack"`` would add the two curves).  When the data has ``before_centred`` / ``after_centred``
    (:func:`mambapro.probe.alignment_similarities`), a second row, titled as such, draws the centred measure."""
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


def mean_gradcam_figure(mean_images: Mapping[str, torch.Tensor], mean_maps: Mapping[str, np.ndarray],
                        out: str | Path, notes: Mapping[str, str] | None = None, title: str | None = None,
                        mean: float = 0.5, std: float = 0.5) -> list[Path]:
    """Figs. 10 / 11, averaged: per modality (RGB, NIR, TIR) the mean input image [3, H, W] (normalised) beside the
    mean Grad-CAM map [h, w] on the patch grid (:func:`mambapro.figures.mean_maps`), one colour scale for the
    three maps; a bias every sample shares (a bright edge) shows in the map, and whether the images share it in the
    image.  Grids of at most 64 cells print their values; ``notes[modality]`` goes under its map."""
    h, w = mean_images["RGB"].shape[-2:]
    top = max(float(np.max(mean_maps[m])) for m in MODALITIES) or 1.0
    cell = 2.2 / max(h, w)
    fig = Figure(figsize=(max(6 * cell * w, 7.5) + 1.2, cell * h + (1.5 if notes else 0.9)), layout="constrained")
    axes = fig.subplots(1, 6, squeeze=False)[0]
    shown = None
    for j, m in enumerate(MODALITIES):
        cam = np.asarray(mean_maps[m], dtype=np.float64)
        ax_img, ax_cam = axes[2 * j], axes[2 * j + 1]
        ax_img.imshow(denormalize(mean_images[m], mean, std))
        ax_img.set_title(f"{DISPLAY[m]}\nmean image", fontsize=FONT - 1)
        shown = ax_cam.imshow(cam, cmap="jet", vmin=0.0, vmax=top, extent=(0, w, h, 0), interpolation="nearest")
        if cam.size <= 64:
            ch, cw = h / cam.shape[0], w / cam.shape[1]
            for (r, c), value in np.ndenumerate(cam):
                ax_cam.text((c + 0.5) * cw, (r + 0.5) * ch, f"{value:.2f}", ha="center", va="center",
                            fontsize=FONT - 4, color="white")
        ax_cam.set_title(f"{DISPLAY[m]}\nmean Grad-CAM", fontsize=FONT - 1)
        if notes and m in notes:
            ax_cam.set_xlabel(notes[m], fontsize=FONT - 3)
        for ax in (ax_img, ax_cam):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="mean map")
    fig.suptitle(title or "Mean centred Grad-CAM of the post-MA tokens $f_{ir}^M$ beside the mean input image",
                 fontsize=FONT)
    return save_figure(fig, out)


# --------------------------------------------------------------------------------------------------------------
# Figs. 8 / 9: hyper-parameter curves


CURVE_LABELS = {"fig9a_prompt_length": "zero init (official)", "fig9a_prompt_length_normal": "normal init (paper)"}
CURVE_MARKERS = ("o", "s", "^", "D")  # the first, second, ... curve of a panel (hollow after the first)


def beyond_noise_label(reference: str = "F") -> str:
    """The legend entry of the rings: mAP points that differ from the curve's ``reference`` preset."""
    return f"mAP differs from {reference} beyond the seed noise (Welch p < 0.05)"


BEYOND_NOISE_LABEL = beyond_noise_label()


def panel_curves(panels: Sequence[tuple[str | tuple[str, ...], str, str]]) -> list[str]:
    """Every curve key that ``panels`` draw, in order (a panel's first item is one key or a tuple of keys)."""
    return [k for key, _, _ in panels for k in ((key,) if isinstance(key, str) else key)]


def hyperparameter_figure(curves: Mapping[str, Sequence[Mapping[str, Any]]],
                          panels: Sequence[tuple[str | tuple[str, ...], str, str]],
                          out: str | Path, which: Sequence[str] = ("last", "best"), title: str | None = None
                          ) -> list[Path]:
    """Fig. 8 (``panels=FIG8_PANELS``) or Fig. 9 (``FIG9_PANELS``): mAP and Rank-1 vs the hyper-parameter, mean ±
    std over seeds as error bars, solid for the last epoch, dashed for the best epoch on test (paper protocol).
    A panel with several curves (Fig. 9a: zero and normal prompt initialisation) draws each with its own marker,
    labelled in the legend by :data:`CURVE_LABELS`.  A black ring marks each mAP point whose difference from its
    curve's reference (preset F; :func:`mambapro.tables.curve_reference`) exceeds the seed noise
    (``<which>_mAP_beyond_noise``: Welch's test, :func:`mambapro.table_inputs.versus_reference`).
    ``curves[key]`` is :func:`mambapro.tables.curve_data`'s list of points (label, ``<which>_<metric>_mean/_std``)."""
    fig = Figure(figsize=(4.2 * len(panels), 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {"mAP": "tab:blue", "R1": "tab:orange"}
    dashes = {"last": "-", "best": "--"}
    curve_labels, ring_labels = [], []
    for ax, (panel_keys, panel_title, xlabel) in zip(axes, panels):
        keys = panel_curves([(panel_keys, panel_title, xlabel)])
        for key in keys:
            if key not in curves or not curves[key]:
                raise ValueError(f"hyperparameter_figure: no data for curve {key!r}")
        ticks = [str(p["label"]) for p in curves[keys[0]]]
        if any([str(p["label"]) for p in curves[k]] != ticks for k in keys):
            raise ValueError(f"hyperparameter_figure: curves {', '.join(keys)} of one panel have different points")
        x = np.arange(len(ticks))
        for j, key in enumerate(keys):
            points, marker = curves[key], CURVE_MARKERS[j]
            shift = (j - (len(keys) - 1) / 2) * 0.16  # curves side by side; 0 for a single curve
            ring_label = beyond_noise_label(points[0].get("reference", "F"))
            for metric in ("mAP", "R1"):
                for w in which:
                    mean = [p[f"{w}_{metric}_mean"] for p in points]
                    std = [p[f"{w}_{metric}_std"] for p in points]
                    xw = x + shift + (0.04 if w == "best" else -0.04)
                    ax.errorbar(xw, mean, yerr=std, color=colors[metric], linestyle=dashes[w], marker=marker,
                                markersize=4, markerfacecolor=None if j == 0 else "white", capsize=3, linewidth=1.6,
                                label=f"{'mAP' if metric == 'mAP' else 'Rank-1'} ({WHICH_LABEL[w]})")
                    beyond = [i for i, p in enumerate(points) if p.get(f"{w}_mAP_beyond_noise")]
                    if metric == "mAP" and beyond:
                        ax.plot(xw[beyond], [mean[i] for i in beyond], linestyle="", marker="o", markersize=11,
                                markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.4,
                                label=ring_label)
                        ring_labels.append(ring_label)
            if len(keys) > 1:  # the legend entry telling this panel's curves apart
                curve_labels.append(CURVE_LABELS.get(key, key))
                ax.plot([], [], color="0.3", linestyle="", marker=marker, markersize=6,
                        markerfacecolor=None if j == 0 else "white", label=curve_labels[-1])
        ax.set_xticks(x, ticks)
        ax.set_title(panel_title, fontsize=FONT + 1)
        ax.set_xlabel(xlabel, fontsize=FONT)
        ax.set_ylabel("%", fontsize=FONT)
        ax.grid(alpha=0.3)
    legend = {}  # one entry per label over every panel (a panel may have no ringed point); curves, then rings last
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    for label in dict.fromkeys(curve_labels + ring_labels):
        legend[label] = legend.pop(label)
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


# --------------------------------------------------------------------------------------------------------------
# Not in the paper: the backbone-rate study on the validation split (mambapro.selection)


def backbone_lr_figure(points: Sequence[Mapping[str, Any]], out: str | Path, chosen: float | None = None,
                       chance: float | None = None) -> list[Path]:
    """Validation mAP (last epoch, mean ± std over seeds) of B (full fine-tuning) and G (full fine-tuning with PFA,
    SRP and MA) against the backbone learning rate (log axis; :func:`mambapro.selection.study_points`), the rule's
    choice marked, the validation split's chance level as a dotted line: how much learning rate full fine-tuning
    needs, and what it costs G."""
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for model, label, color in (("B", "B: CLIP(F)", "tab:blue"), ("G", "G: CLIP(F) + PFA + SRP + MA", "tab:red")):
        shown = [p for p in points if p[f"{model}_mAP_mean"] is not None]
        ax.errorbar([p["backbone_lr"] for p in shown], [p[f"{model}_mAP_mean"] for p in shown],
                    yerr=[p[f"{model}_mAP_std"] for p in shown], marker="o", capsize=3, color=color, label=label)
    if chosen is not None:
        ax.axvline(chosen, color="black", lw=1, ls="--", label=f"chosen: {chosen:g}")
    if chance is not None:
        ax.axhline(chance, color="grey", lw=1, ls=":", label="chance (random features)")
    ax.axvline(5e-6, color="tab:green", lw=1, ls="-.", label="official 5e-6")
    ax.set_xscale("log")
    ax.set_xlabel("backbone learning rate (train.backbone_lr)", fontsize=FONT)
    ax.set_ylabel("validation mAP (%), last epoch", fontsize=FONT)
    ax.legend(fontsize=FONT - 2)
    fig.suptitle("Full fine-tuning's backbone rate, on 10 held-out training ids", fontsize=FONT)
    return save_figure(fig, out)
