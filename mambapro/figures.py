"""Every figure of the paper from the pipeline's trained runs (what ``notebooks/figures.ipynb`` calls).

Loads each needed run's best checkpoint (one seed), extracts test features and tokens, and hands them to the
plotting functions of :mod:`mambapro.viz`: Fig. 5 (t-SNE of models A, C, E, F), Fig. 6 (cross-modal token alignment
before / after MA, model F), Figs. 8 / 9 (hyper-parameter curves), Figs. 10 / 11 (Grad-CAM of the post-MA tokens,
person model F and the vehicle run), a rank list and the training curves of every preset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mambapro import viz
from mambapro.config import Config
from mambapro.pipeline import load_params, preset_config
from mambapro.tables import load_metrics


def load_run(cfg: Config, run_dir: str | Path, seed: int):
    """The model of ``<run_dir>/seed<seed>/best.pt`` in eval mode and the run's data."""
    from mambapro.data.loaders import build_data
    from mambapro.engine import load_checkpoint
    from mambapro.model import build_model

    path = Path(run_dir) / f"seed{seed}" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"figures need the run {path}; run its `dvc repro train@...` stage first")
    data = build_data(cfg, seed)
    model = build_model(cfg, data.num_classes, data.num_cameras)
    model.load_state_dict(load_checkpoint(path, cfg, seed)["model"])
    return model.eval(), data


def _test_batch(data, n: int, seed: int) -> dict:
    """``n`` test samples of distinct identities (deterministic), collated like a loader batch."""
    pids = data.test_meta["pids"]
    rng = np.random.default_rng(seed)
    firsts = [int(np.flatnonzero(pids == p)[0]) for p in np.unique(pids)]
    picks = sorted(rng.choice(firsts, size=min(n, len(firsts)), replace=False).tolist())
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


def training_curves(params: dict, results_dir: Path, out: Path) -> list[Path]:
    written = []
    for preset in params["train_presets"]:
        written += viz.training_curves_figure(load_metrics(results_dir, preset), out / "training_curves" / preset)
    return written


def hyperparameter_curves(results_dir: Path, out: Path) -> list[Path]:
    """Figs. 8 and 9 from the runs' metrics."""
    from mambapro.tables import curve_data

    written = []
    for name, panels in (("fig8_dstate_dtrank", viz.FIG8_PANELS), ("fig9_depths_lengths", viz.FIG9_PANELS)):
        curves = {key: curve_data(key, results_dir) for key, _, _ in panels}
        written += viz.hyperparameter_figure(curves, panels, out / name)
    return written


def tsne(params: dict, runs_dir: Path, out: Path, seed: int) -> list[Path]:
    """Fig. 5: retrieval features of models A, C, E, F (:data:`mambapro.viz.FIG5_PANELS`)."""
    from mambapro.engine import extract_features

    panels = []
    for title, preset in viz.FIG5_PANELS:
        model, data = load_run(preset_config(preset, params), runs_dir / preset, seed)
        feats = extract_features(model, data.test_loader, torch.device("cpu"))
        panels.append((title, feats.numpy(), data.test_meta["pids"]))
    return viz.tsne_figure(panels, out / "fig5_tsne")


def alignment(model, data, out: Path, seed: int) -> list[Path]:
    """Fig. 6: cross-modal cosine similarity of the same samples' tokens before and after MA."""
    batch = _test_batch(data, 16, seed)
    with torch.no_grad():
        sims = viz.alignment_similarities(model, batch["images"], batch["camid"])
    return viz.alignment_figure(sims, out / "fig6_alignment")


def gradcam(model, data, out: Path, name: str, title: str, seed: int, samples: int = 4) -> list[Path]:
    """Figs. 10 / 11: Grad-CAM of the post-MA tokens of ``samples`` test identities."""
    b = _test_batch(data, samples, seed)
    maps = viz.gradcam_maps(model, b["images"], b["camid"])
    labels = [f"id {int(p)}" for p in b["pid"]]
    return viz.gradcam_figure(b["images"], maps, out / name, row_labels=labels, title=title)


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


def vehicle_run(params: dict, runs_dir: Path, seed: int):
    """The model and data of ``params.yaml``'s vehicle run (Fig. 11)."""
    from mambapro.config import apply_overrides

    v = params["vehicle"]
    cfg = apply_overrides(preset_config(v["preset"], params), v["overrides"], where="params.yaml vehicle.overrides")
    return load_run(cfg, runs_dir / v["name"], seed)


def make_all_figures(params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
                     results_dir: str | Path = "results", out_dir: str | Path = "results/figures",
                     seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    """Every figure; fails on the first run it needs that does not exist."""
    params = load_params(params_file)
    runs_dir, results_dir, out = Path(runs_dir), Path(results_dir), Path(out_dir)
    written = training_curves(params, results_dir, out) + hyperparameter_curves(results_dir, out)
    written += tsne(params, runs_dir, out, seed)
    person_cfg = preset_config("F", params)
    model, data = load_run(person_cfg, runs_dir / "F", seed)
    written += alignment(model, data, out, seed)
    written += gradcam(model, data, out, "fig10_gradcam_person", "Fig. 10: persons", seed, gradcam_samples)
    vmodel, vdata = vehicle_run(params, runs_dir, seed)
    written += gradcam(vmodel, vdata, out, "fig11_gradcam_vehicle", "Fig. 11: vehicles", seed, gradcam_samples)
    written += rank_list(model, data, person_cfg.data.image_size, out)
    return written
