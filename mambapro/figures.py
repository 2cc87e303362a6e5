"""Every figure of the paper from the pipeline's trained runs (what ``notebooks/figures.ipynb`` calls).

Loads each needed run's best checkpoint (one seed), extracts test features, probes the model (token alignment and
Grad-CAM, :mod:`mambapro.probe`) and hands the data to the plotting functions of :mod:`mambapro.viz`: Fig. 5 (t-SNE
of models A, C, E, F), Fig. 6 (cross-modal token alignment before / after MA, model F), Figs. 8 / 9
(hyper-parameter curves), Figs. 10 / 11 (Grad-CAM of the post-MA tokens, person model F and the vehicle run, and the
mean map over 64 test samples beside the mean input image), a rank list and the training curves of every preset.
The quick tier (:func:`quick_figures`) draws those that need Table 3's runs only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mambapro import probe, results, viz
from mambapro.config import Config, object_kind, resolve_config
from mambapro.tables import QUICK_PRESETS


def load_run(cfg: Config, run_dir: str | Path, seed: int):
    """The model of ``<run_dir>/best.pt`` (one seed's run folder) in eval mode and the run's data."""
    from mambapro.checkpoints import restore_model
    from mambapro.data.loaders import build_data

    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"figures need the run {path}; run its `dvc repro train@...` stage first")
    model, _ = restore_model(path, cfg, seed)
    return model.eval(), build_data(cfg, seed)


def _test_batch(data, n: int, seed: int, distinct: bool = True) -> dict:
    """``n`` test samples (deterministic): of distinct identities, or any (``distinct=False``, for statistics over
    more samples than the test set has identities), collated like a loader batch."""
    pids = data.test_meta["pids"]
    rng = np.random.default_rng(seed)
    pool = [int(np.flatnonzero(pids == p)[0]) for p in np.unique(pids)] if distinct else range(len(pids))
    picks = sorted(rng.choice(list(pool), size=min(n, len(pool)), replace=False).tolist())
    items = [data.test_loader.dataset[i] for i in picks]
    return {"images": {m: torch.stack([it["images"][m] for it in items]) for m in items[0]["images"]},
            "camid": torch.tensor([it["camid"] for it in items]), "pid": torch.tensor([it["pid"] for it in items])}


def _image_loader(data, size: tuple[int, int]):
    from mambapro.data.loaders import test_order
    from mambapro.data.readers import load_images

    samples, _, _ = test_order(data.dataset)
    index = {"query": data.query_index, "gallery": data.gallery_index}

    def load(kind: str, i: int, modality: str) -> np.ndarray:
        image = load_images(samples[int(index[kind][i])])[modality]
        return np.asarray(image.resize((size[1], size[0])))

    return load


def training_curves(folder: Path, presets: list[str], out: Path) -> list[Path]:
    written = []
    for preset in presets:
        written += viz.training_curves_figure(results.load_metrics(folder, preset), out / "training_curves" / preset)
    return written


def hyperparameter_curves(folder: Path, out: Path) -> list[Path]:
    """Figs. 8 and 9 from the runs' metrics."""
    from mambapro.tables import curve_data

    written = []
    for name, panels in (("fig8_dstate_dtrank", viz.FIG8_PANELS), ("fig9_depths_lengths", viz.FIG9_PANELS)):
        curves = {key: curve_data(key, folder) for key in viz.panel_curves(panels)}
        written += viz.hyperparameter_figure(curves, panels, out / name)
    return written


def tsne(profile: str, out: Path, seed: int) -> list[Path]:
    """Fig. 5: retrieval features of models A, C, E, F (:data:`mambapro.viz.FIG5_PANELS`)."""
    from mambapro.engine import extract_features

    panels = []
    for title, preset in viz.FIG5_PANELS:
        model, data = load_run(resolve_config(profile, preset), results.run_dir(profile, preset, seed), seed)
        feats = extract_features(model, data.test_loader, torch.device("cpu"))
        panels.append((title, feats.numpy(), data.test_meta["pids"]))
    return viz.tsne_figure(panels, out / "fig5_tsne")


def alignment(model, data, out: Path, seed: int) -> list[Path]:
    """Fig. 6: the paper's and the centred cross-modal cosine similarity of the same samples' tokens before and after
    MA, and what the component shared by every token is (``fig6_shared_component.json``)."""
    batch = _test_batch(data, 16, seed)
    sims = probe.alignment_similarities(model, batch["images"], batch["camid"])
    stats = probe.alignment_shared_component(model, batch["images"], batch["camid"])
    stats["mean_similarity"] = {pair: {k: float(np.mean(v)) for k, v in s.items()} for pair, s in sims.items()}
    return viz.alignment_figure(sims, out / "fig6_alignment") + [
        results.write_json(out / "fig6_shared_component.json", stats)]


EDGES = ("top", "bottom", "left", "right")


def mean_maps(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{modality: the mean over the samples of its per-sample maps [B, h, w] → [h, w]} (each map is in [0, 1], so
    the mean is too): what every sample's Grad-CAM map shares, e.g. a position bias (Figs. 10 / 11)."""
    return {m: np.asarray(c, dtype=np.float64).mean(axis=0) for m, c in maps.items()}


def mean_images(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{modality: the pixel-wise mean [3, H, W] of a batch [B, 3, H, W]} (normalised as the model sees them)."""
    return {m: x.detach().float().mean(dim=0) for m, x in images.items()}


def edge_mass(cam: np.ndarray, edge: str, width: int = 1) -> float:
    """How much of a non-negative map's mass lies in its outermost ``width`` rows (``edge`` "top" / "bottom") or
    columns ("left" / "right"), relative to a uniform map: (strip's share of Σ cam) / (strip's share of the
    positions).  1 = no bias towards that edge; e.g. 2 on an 8-row map = the bottom row holds 25 % of the mass."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or (cam < 0).any():
        raise ValueError(f"edge_mass: expected a non-negative [h, w] map, got shape {cam.shape}")
    if edge not in EDGES:
        raise ValueError(f"edge_mass: edge {edge!r} is not one of {', '.join(EDGES)}")
    h, w = cam.shape
    if not 1 <= width <= (h if edge in ("top", "bottom") else w):
        raise ValueError(f"edge_mass: width {width} does not fit a {h}x{w} map")
    strip = {"top": cam[:width], "bottom": cam[h - width:], "left": cam[:, :width], "right": cam[:, w - width:]}[edge]
    total = cam.sum()
    if total <= 0:
        return float("nan")
    return float((strip.sum() / total) / (strip.size / cam.size))


def mean_gradcam(model, images: dict[str, torch.Tensor], cams: torch.Tensor) -> dict[str, np.ndarray]:
    """The mean centred Grad-CAM map of the post-MA tokens per modality (:func:`mambapro.probe.gradcam_maps`, the
    maps of Figs. 10 / 11, averaged over the batch: :func:`mean_maps`), [h, w] each."""
    return mean_maps(probe.gradcam_maps(model, images, cams))


def _edge_notes(means: dict[str, np.ndarray]) -> dict[str, str]:
    """Each map's :func:`edge_mass` on the four edges, as three lines under its panel."""
    return {m: "edge mass / uniform\n" + "\n".join(", ".join(f"{e} {edge_mass(c, e):.2f}" for e in pair)
                                                  for pair in (EDGES[:2], EDGES[2:])) for m, c in means.items()}


def gradcam(model, data, out: Path, name: str, title: str, seed: int, samples: int = 4,
            share_samples: int = 64) -> list[Path]:
    """Figs. 10 / 11: centred Grad-CAM of the post-MA tokens of ``samples`` test identities; over ``share_samples``
    test samples, the share of non-constant maps per modality and the mean map beside the mean input image
    (``<name>_mean``: a bias every sample shares, :func:`mean_maps`); numbers in ``<name>_share.json`` (the share,
    each modality's mean map and its :func:`edge_mass` on every edge)."""
    b = _test_batch(data, samples, seed)
    maps = probe.gradcam_maps(model, b["images"], b["camid"])
    labels = [f"id {int(p)}" for p in b["pid"]]
    written = viz.gradcam_figure(b["images"], maps, out / name, row_labels=labels,
                                 title=f"{title} (centred Grad-CAM of $f_{{ir}}^M$)")
    many = _test_batch(data, share_samples, seed, distinct=False)
    many_maps = probe.gradcam_maps(model, many["images"], many["camid"])
    share = probe.nonconstant_share(many_maps)
    count = len(many["pid"])
    print(f"{name}: share of non-constant Grad-CAM maps per modality over {count} samples: {share}")
    means = mean_maps(many_maps)
    written += viz.mean_gradcam_figure(mean_images(many["images"]), means, out / f"{name}_mean",
                                       notes=_edge_notes(means),
                                       title=f"{title}: mean centred Grad-CAM of $f_{{ir}}^M$ over {count} test "
                                             f"samples, beside the mean input image")
    stats = {"samples": count, "share": share, "mean_map": {m: c.tolist() for m, c in means.items()},
             "edge_mass_vs_uniform": {m: {e: edge_mass(c, e) for e in EDGES} for m, c in means.items()}}
    return written + [results.write_json(out / f"{name}_share.json", stats)]


def rank_list(model, data, image_size: tuple[int, int], out: Path, query: int = 0) -> list[Path]:
    """The first query's top-10 gallery, three modality rows, correct matches marked."""
    from mambapro.engine import extract_features
    from mambapro.metrics import compute_distance_matrix

    feats = extract_features(model, data.test_loader, torch.device("cpu"))
    dist = compute_distance_matrix(feats[data.query_index], feats[data.gallery_index]).numpy()
    meta = data.test_meta
    q_at, g_at = data.query_index[query], data.gallery_index
    return viz.rank_list_figure(
        dist[query], int(meta["pids"][q_at]), int(meta["camids"][q_at]), meta["pids"][g_at], meta["camids"][g_at],
        _image_loader(data, image_size), out / "rank_list", query_index=query, protocol=data.protocol,
        query_sceneid=int(meta["sceneids"][q_at]), gallery_sceneids=meta["sceneids"][g_at])


def core_figures(profile: str, out: Path, seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    """The figures that need Table 3's runs only: Fig. 5 (A, C, E, F), Fig. 6, Fig. 10 (persons) or Fig. 11 (a
    vehicle profile's own runs; :func:`mambapro.config.object_kind`) and the rank list (F)."""
    written = tsne(profile, out, seed)
    cfg = resolve_config(profile, "F")
    model, data = load_run(cfg, results.run_dir(profile, "F", seed), seed)
    written += alignment(model, data, out, seed)
    if object_kind(profile) == "person":
        written += gradcam(model, data, out, "fig10_gradcam_person", "Fig. 10: persons", seed, gradcam_samples)
    else:
        written += gradcam(model, data, out, "fig11_gradcam_vehicle", "Fig. 11: vehicles", seed, gradcam_samples)
    return written + rank_list(model, data, cfg.data.image_size, out)


def make_all_figures(profile: str, presets: list[str], seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    """Every figure of ``profile``'s runs into ``results/<profile>/figures`` (run from the project root): the
    training curves of ``presets``, Figs. 8 and 9 and :func:`core_figures`.  Fails on the first run it needs that
    does not exist."""
    folder = results.results_dir(profile)
    out = folder / "figures"
    written = training_curves(folder, presets, out) + hyperparameter_curves(folder, out)
    return written + core_figures(profile, out, seed, gradcam_samples)


def quick_figures(profile: str, seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    """The quick tier's figures (``results/<profile>/quick/figures``): Table 3's training curves and
    :func:`core_figures`."""
    folder = results.results_dir(profile)
    out = folder / "quick" / "figures"
    return training_curves(folder, QUICK_PRESETS, out) + core_figures(profile, out, seed, gradcam_samples)


def vehicle_figures(profile: str, vehicle_profile: str, seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    """Fig. 11 from the vehicle runs of a person profile (``runs/<profile>/vehicle``)."""
    namespace = results.vehicle_namespace(profile)
    model, data = load_run(resolve_config(vehicle_profile, "F"), results.run_dir(namespace, "F", seed), seed)
    return gradcam(model, data, results.results_dir(namespace) / "figures", "fig11_gradcam_vehicle",
                   "Fig. 11: vehicles", seed, gradcam_samples)
