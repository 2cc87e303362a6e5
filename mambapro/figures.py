"""Every figure of the paper from the pipeline's trained runs (what ``notebooks/figures.ipynb`` calls).

Loads each needed run's best checkpoint (one seed), extracts test features and tokens, and hands them to the
plotting functions of :mod:`mambapro.viz`: Fig. 5 (t-SNE of models A, C, E, F), Fig. 6 (cross-modal token alignment
before / after MA, model F), Figs. 8 / 9 (hyper-parameter curves), Figs. 10 / 11 (Grad-CAM of the post-MA tokens,
person model F and the vehicle run), a rank list and the training curves of every preset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mambapro import viz
from mambapro.config import Config
from mambapro.pipeline import load_params, preset_config


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


def make_all_figures(params_file: str | Path = "params.yaml", runs_dir: str | Path = "runs",
                     results_dir: str | Path = "results", out_dir: str | Path = "results/figures",
                     seed: int = 0, gradcam_samples: int = 4) -> list[Path]:
    from mambapro.engine import extract_features
    from mambapro.metrics import compute_distance_matrix
    from mambapro.tables import curve_data

    params = load_params(params_file)
    runs_dir, results_dir, out = Path(runs_dir), Path(results_dir), Path(out_dir)
    written: list[Path] = []
    device = torch.device("cpu")

    for preset in params["train_presets"]:
        metrics = json.loads((results_dir / "runs" / preset / "metrics.json").read_text())
        written += viz.training_curves_figure(metrics, out / "training_curves" / preset)

    for name, panels in (("fig8_dstate_dtrank", viz.FIG8_PANELS), ("fig9_depths_lengths", viz.FIG9_PANELS)):
        curves = {key: curve_data(key, results_dir) for key, _, _ in panels}
        written += viz.hyperparameter_figure(curves, panels, out / name)

    tsne_panels, models = [], {}
    for title, preset in viz.FIG5_PANELS:
        model, data = load_run(preset_config(preset, params), runs_dir / preset, seed)
        models[preset] = (model, data)
        feats = extract_features(model, data.test_loader, device)
        tsne_panels.append((title, feats.numpy(), data.test_meta["pids"]))
    written += viz.tsne_figure(tsne_panels, out / "fig5_tsne")

    model, data = models["F"]
    batch = _test_batch(data, 16, seed)
    with torch.no_grad():
        sims = viz.alignment_similarities(model, batch["images"], batch["camid"])
    written += viz.alignment_figure(sims, out / "fig6_alignment")

    person_cfg = preset_config("F", params)
    runs = [("fig10_gradcam_person", model, data, "Fig. 10: persons")]
    vehicle = params.get("vehicle")
    if vehicle:
        vcfg = preset_config(vehicle["preset"], params)
        from mambapro.config import apply_overrides

        vcfg = apply_overrides(vcfg, vehicle["overrides"], where="params.yaml vehicle.overrides")
        vmodel, vdata = load_run(vcfg, runs_dir / vehicle["name"], seed)
        runs.append(("fig11_gradcam_vehicle", vmodel, vdata, "Fig. 11: vehicles"))
    for name, m, d, title in runs:
        b = _test_batch(d, gradcam_samples, seed)
        maps = viz.gradcam_maps(m, b["images"], b["camid"])
        labels = [f"id {int(p)}" for p in b["pid"]]
        written += viz.gradcam_figure(b["images"], maps, out / name, row_labels=labels, title=title)

    feats = extract_features(model, data.test_loader, device)
    q, g = feats[data.query_index], feats[data.gallery_index]
    dist = compute_distance_matrix(q, g).numpy()
    meta, qi = data.test_meta, 0
    q_at, g_at = data.query_index[qi], data.gallery_index
    written += viz.rank_list_figure(
        dist[qi], int(meta["pids"][q_at]), int(meta["camids"][q_at]), meta["pids"][g_at], meta["camids"][g_at],
        _image_loader(data, person_cfg.data.image_size), out / "rank_list", query_index=qi, protocol=data.protocol,
        query_sceneid=int(meta["sceneids"][q_at]), gallery_sceneids=meta["sceneids"][g_at])
    return written
