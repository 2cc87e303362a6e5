"""Figures on synthetic inputs: files written, axes titled and labelled, data drawn where the labels say."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_rgba
from torch import nn

from mambapro import probe, viz
from mambapro.config import MODALITIES, TABLES


@pytest.fixture
def figures(monkeypatch):
    """Capture every Figure the functions save (and still write the files)."""
    captured = []
    original = viz.save_figure

    def save(fig, out, **kw):
        captured.append(fig)
        return original(fig, out, **kw)

    monkeypatch.setattr(viz, "save_figure", save)
    return captured


def _check_files(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not list(stem.parent.glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)  # not mkstemp's 0600


def _non_empty(ax):
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


# --------------------------------------------------------------------------------------------------------------
# A tiny model with the project's interfaces: model(images, cams).tokens, model.grid, aggregator.forward_tokens /
# reduce


class FakeAggregator(nn.Module):
    def __init__(self, dim, grid, mix=0.0):
        super().__init__()
        self.grid, self.mix = grid, mix
        self.mixers = nn.ModuleList(nn.Linear(dim, dim) for _ in MODALITIES)
        for lin in self.mixers:
            nn.init.eye_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward_tokens(self, tokens):
        patches = [t[:, 1:] for t in tokens]
        shared = torch.stack(patches).mean(0)
        return [lin((1 - self.mix) * p + self.mix * shared) for lin, p in zip(self.mixers, patches)]

    def reduce(self, cls, patch_tokens):
        return torch.cat([(c + p.mean(1)) / 2 for c, p in zip(cls, patch_tokens)], dim=1)

    def forward(self, tokens):
        return self.reduce([t[:, 0] for t in tokens], self.forward_tokens(tokens))


class FakeModel(nn.Module):
    def __init__(self, grid, patch=4, dim=16, mix=0.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.grid, self.patch = grid, patch
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=g) * 0.3)
            self.embed.bias.zero_()
        self.aggregator = FakeAggregator(dim, grid, mix)

    def forward(self, images, cams=None):
        tokens = {}
        for m in MODALITIES:
            x = self.embed(images[m]).flatten(2).transpose(1, 2)  # [B, N, D], row-major
            tokens[m] = torch.cat([x.mean(1, keepdim=True), x], dim=1)
        feature = self.aggregator([tokens[m] for m in MODALITIES])
        return SimpleNamespace(feature=feature, tokens=tokens)


def _planted_images(grid, patch, spots, batch=2, seed=0):
    """Low-noise images with one bright patch per modality at ``spots[m] = (row, col)`` of the patch grid."""
    g = torch.Generator().manual_seed(seed)
    h, w = grid[0] * patch, grid[1] * patch
    images = {}
    for m in MODALITIES:
        x = torch.randn(batch, 3, h, w, generator=g) * 0.05
        r, c = spots[m]
        x[:, :, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] += 3.0
        images[m] = x
    return images


@pytest.mark.parametrize("grid, spots", [
    ((4, 2), {"RGB": (0, 1), "NI": (3, 0), "TI": (2, 1)}),  # person-like: tall grid
    ((2, 4), {"RGB": (1, 3), "NI": (0, 0), "TI": (1, 1)}),  # vehicle-like: wide grid
])
@pytest.mark.parametrize("frozen", [False, True])
def test_gradcam_maps_on_grid_and_bright_at_planted_token(grid, spots, frozen):
    model = FakeModel(grid)
    if frozen:
        model.requires_grad_(False)
    model.train()
    images = _planted_images(grid, model.patch, spots)
    maps = probe.gradcam_maps(model, images, torch.zeros(2, dtype=torch.long))
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    for m in MODALITIES:
        cam = maps[m]
        assert cam.shape == (2, *grid)
        assert cam.min() >= 0 and np.isfinite(cam).all()
        for b in range(2):
            assert np.unravel_index(cam[b].argmax(), grid) == spots[m], m  # each modality's own planted token


def test_gradcam_own_feature_cosine_target_is_degenerate():
    """Why the own-feature target is a projection: cos(f, f.detach()) has zero gradient at f."""
    f = torch.randn(12, requires_grad=True)
    F.cosine_similarity(f, f.detach(), dim=-1).backward()
    assert f.grad.abs().max() < 1e-6
    f.grad = None
    probe.FeatureSimilarityTarget(f.detach(), "projection")(f).backward()
    assert torch.allclose(f.grad, f.detach() / f.detach().norm())


def test_gradcam_with_reference_features():
    grid = (4, 2)
    model = FakeModel(grid)
    images = _planted_images(grid, model.patch, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)})
    with torch.no_grad():
        refs = model(images).feature + 0.5  # another feature: cosine target has a gradient
    maps = probe.gradcam_maps(model, images, torch.zeros(2, dtype=torch.long), references=refs)
    assert maps["NI"].shape == (2, 4, 2) and maps["NI"].max() > 0
    with pytest.raises(ValueError, match="references"):
        probe.gradcam_maps(model, images, torch.zeros(2, dtype=torch.long), references=refs[:, :3])


def test_tokens_to_grid_is_row_major():
    t = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)
    g = probe.tokens_to_grid(t, (2, 4))
    assert g.shape == (2, 3, 2, 4) and g[1, 2, 1, 3] == t[1, 7, 2] and g[0, 0, 1, 0] == t[0, 4, 0]
    with pytest.raises(ValueError, match="N = 4·2"):
        probe.tokens_to_grid(t[:, :7], (4, 2))


def test_gradcam_figure(tmp_path, figures):
    grid = (4, 2)
    model = FakeModel(grid, patch=8)
    images = _planted_images(grid, 8, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)})
    maps = probe.gradcam_maps(model, images, torch.zeros(2, dtype=torch.long))
    paths = viz.gradcam_figure(images, maps, tmp_path / "fig10_gradcam", row_labels=["ID 1", "ID 2"])
    _check_files(paths, tmp_path / "fig10_gradcam")
    axes = figures[-1].axes
    assert len(axes) == 12 and all(ax.images for ax in axes)
    assert [ax.get_title() for ax in axes[:6]] == ["RGB", "RGB Grad-CAM", "NIR", "NIR Grad-CAM", "TIR",
                                                   "TIR Grad-CAM"]
    assert axes[6].get_ylabel() == "ID 2"
    assert axes[1].images[0].get_array().shape == (32, 16, 3)  # overlay at the image's size


class OffsetModel(FakeModel):
    """Every patch token carries a large offset o (channel 0, which no image reaches) and the CLS is −3o, so the
    own-feature target's gradient points against o: the classic Grad-CAM map w·A(x) is negative at every position
    (as RGB and NIR of the trained model F), with the planted token's structure on top."""

    def __init__(self, grid, offset=50.0):
        super().__init__(grid)
        self.register_buffer("offset", torch.zeros(self.embed.out_channels))
        self.offset[0] = offset
        with torch.no_grad():
            self.embed.weight[0] = 0
            self.embed.bias.copy_(self.offset)

    def forward(self, images, cams=None):
        tokens = {}
        for m in MODALITIES:
            x = self.embed(images[m]).flatten(2).transpose(1, 2)
            tokens[m] = torch.cat([-3 * self.offset.expand(x.shape[0], 1, -1), x], dim=1)
        feature = self.aggregator([tokens[m] for m in MODALITIES])
        return SimpleNamespace(feature=feature, tokens=tokens)


def test_is_constant_map():
    assert probe.is_constant_map(np.zeros((4, 2))) and probe.is_constant_map(np.full((4, 2), 0.7))
    assert probe.is_constant_map(0.7 + 1e-6 * np.random.default_rng(0).random((4, 2)))
    structured = np.zeros((4, 2))
    structured[1, 0] = 1.0
    assert not probe.is_constant_map(structured) and not probe.is_constant_map(structured * 1e-6)
    maps = {"RGB": np.stack([structured, np.zeros((4, 2))]), "NI": np.stack([structured] * 2)}
    assert probe.nonconstant_share(maps) == {"RGB": 0.5, "NI": 1.0}


def test_centred_gradcam_shows_structure_under_shared_negative_offset():
    grid, spots = (4, 2), {"RGB": (0, 1), "NI": (3, 0), "TI": (2, 1)}
    model = OffsetModel(grid)
    images = _planted_images(grid, model.patch, spots)
    cams = torch.zeros(2, dtype=torch.long)
    classic = probe.gradcam_maps(model, images, cams, centred=False)  # the library's method: ReLU erases everything
    assert probe.nonconstant_share(classic) == {m: 0.0 for m in MODALITIES}
    maps = probe.gradcam_maps(model, images, cams)
    assert probe.nonconstant_share(maps) == {m: 1.0 for m in MODALITIES}
    for m in MODALITIES:
        for b in range(2):
            assert np.unravel_index(maps[m][b].argmax(), grid) == spots[m], m


def test_centre_activations_is_classic_map_minus_its_mean():
    rng = np.random.default_rng(0)
    acts, w = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(2, 5))
    classic = np.einsum("bc,bchw->bhw", w, acts)
    centred = np.einsum("bc,bchw->bhw", w, probe.centre_activations(torch.as_tensor(acts)))
    assert np.allclose(centred, classic - classic.mean(axis=(1, 2), keepdims=True))


def test_gradcam_figure_labels_constant_maps(tmp_path, figures):
    grid = (4, 2)
    images = _planted_images(grid, 8, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)}, batch=1)
    structured = np.zeros((1, *grid), dtype=np.float32)
    structured[0, 1, 1] = 1.0
    maps = {"RGB": structured, "NI": np.zeros_like(structured), "TI": structured}
    viz.gradcam_figure(images, maps, tmp_path / "fig10_constant")
    texts = [[t.get_text() for t in ax.texts] for ax in figures[-1].axes]
    assert texts == [[], [], [], ["constant"], [], []]  # only the NIR Grad-CAM panel


# --------------------------------------------------------------------------------------------------------------
# Fig. 6


def test_cross_modal_similarity_position_by_position():
    a = torch.randn(2, 5, 8)
    sims = probe.cross_modal_similarity([a, a.clone(), -a])
    assert list(sims) == ["RGB–NIR", "RGB–TIR", "NIR–TIR"]
    assert sims["RGB–NIR"].shape == (10,)
    assert np.allclose(sims["RGB–NIR"], 1, atol=1e-5) and np.allclose(sims["RGB–TIR"], -1, atol=1e-5)
    # position by position, not pooled: permuting one modality's positions changes the similarities
    perm = torch.cat([a[:, 1:], a[:, :1]], dim=1)
    assert not np.allclose(probe.cross_modal_similarity([a, perm, a])["RGB–NIR"], 1)


def test_alignment_similarities_before_is_pre_ma():
    model = FakeModel((4, 2), mix=0.9)  # the fake MA pulls the modalities together
    images = _planted_images((4, 2), 4, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)}, batch=3)
    sims = probe.alignment_similarities(model, images, torch.zeros(3, dtype=torch.long))
    out = model(images)
    expected_before = F.cosine_similarity(out.tokens["RGB"][:, 1:], out.tokens["TI"][:, 1:], dim=-1).flatten()
    assert np.allclose(sims["RGB–TIR"]["before"], expected_before.detach().numpy(), atol=1e-6)
    for pair in sims:
        assert sims[pair]["after"].mean() > sims[pair]["before"].mean()
    with pytest.raises(ValueError, match="no aggregator"):
        model.aggregator = None
        probe.alignment_similarities(model, images, torch.zeros(3, dtype=torch.long))


def test_alignment_figure_labels_match_data(tmp_path, figures):
    rng = np.random.default_rng(0)
    sims = {p: {"before": rng.normal(0.1, 0.05, 400), "after": rng.normal(0.8, 0.05, 400)}
            for p in ("RGB–NIR", "RGB–TIR", "NIR–TIR")}
    paths = viz.alignment_figure(sims, tmp_path / "fig6")
    _check_files(paths, tmp_path / "fig6")
    axes = figures[-1].axes
    assert [ax.get_title() for ax in axes] == ["RGB vs NIR", "RGB vs TIR", "NIR vs TIR"]
    for ax in axes:
        assert ax.get_xlabel() == "Cosine similarity" and ax.get_ylabel() == "Density"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [viz.BEFORE, viz.AFTER]
        peaks = {}
        for line in ax.get_lines():
            x, y = line.get_data()
            peaks[line.get_label()] = x[np.argmax(y)]
        assert peaks[viz.BEFORE] == pytest.approx(0.1, abs=0.05)  # "Before MA" draws the pre-MA data
        assert peaks[viz.AFTER] == pytest.approx(0.8, abs=0.05)


# --------------------------------------------------------------------------------------------------------------
# Fig. 5


def test_select_identities_most_samples_first():
    pids = np.array([5] * 3 + [2] * 6 + [9] * 6 + [1] * 2 + [7] * 4)
    index, ids = viz.select_identities(pids, num_ids=3, per_id=5)
    assert ids.tolist() == [2, 9, 7]  # most samples, ties by id
    assert index.tolist() == [3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 17, 18, 19, 20]
    assert viz.default_perplexity(300) == 60 and viz.default_perplexity(31) == 10


def test_tsne_figure(tmp_path, figures):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), [9, 8, 8, 8, 3, 8])
    centres = rng.normal(size=(6, 16)) * 3
    panels = [(title, centres[pids] + rng.normal(size=(len(pids), 16)) * s, pids)
              for (title, _), s in zip(viz.FIG5_PANELS, (2.0, 1.0, 0.5, 0.2))]
    paths = viz.tsne_figure(panels, tmp_path / "fig5_tsne", num_ids=4, per_id=8)
    _check_files(paths, tmp_path / "fig5_tsne")
    fig = figures[-1]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["(a) CLIP(L)", "(b) + PFA", "(c) + SRP", "(d) + MA"]
    for ax in axes:
        assert len(ax.collections) == 4  # the same 4 ids in every panel
        assert [len(c.get_offsets()) for c in ax.collections] == [8, 8, 8, 8]
        assert [c.get_label() for c in ax.collections] == ["ID 0", "ID 1", "ID 2", "ID 3"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ID 0", "ID 1", "ID 2", "ID 3"]
    with pytest.raises(ValueError, match="other samples"):
        viz.tsne_figure([panels[0], (panels[1][0], panels[1][1], pids[::-1])], tmp_path / "x")
    with pytest.raises(ValueError, match="perplexity"):
        viz.tsne_embedding(np.ones((5, 3)), perplexity=5)


# --------------------------------------------------------------------------------------------------------------
# Figs. 8, 9 and training curves


def _curve(key):
    points = []
    for i, (label, preset) in enumerate(TABLES[key]):
        p = {"label": label, "preset": preset, "seeds": 2}
        for w in ("last", "best"):
            for m in ("mAP", "R1", "R5", "R10"):
                p[f"{w}_{m}_mean"] = 50.0 + i + (3 if w == "best" else 0) + (5 if m == "R1" else 0)
                p[f"{w}_{m}_std"] = 1.0 + i
        points.append(p)
    return points


@pytest.mark.parametrize("panels, n", [(viz.FIG8_PANELS, 2), (viz.FIG9_PANELS, 4)])
def test_hyperparameter_figure(tmp_path, figures, panels, n):
    curves = {key: _curve(key) for key in viz.panel_curves(panels)}
    stem = tmp_path / f"fig{8 if n == 2 else 9}"
    _check_files(viz.hyperparameter_figure(curves, panels, stem), stem)
    fig = figures[-1]
    assert len(fig.axes) == n
    for ax, panel in zip(fig.axes, panels):
        key, title, xlabel = viz.panel_curves([panel])[0], panel[1], panel[2]
        assert ax.get_title() == title and ax.get_xlabel() == xlabel and ax.get_ylabel() == "%"
        assert [t.get_text() for t in ax.get_xticklabels()] == [label for label, _ in TABLES[key]]
        assert len(ax.lines) >= 4 and _non_empty(ax)
        map_last = next(c for c in ax.containers if c.get_label() == "mAP (last epoch)")
        assert list(map_last.lines[0].get_ydata()) == [p["last_mAP_mean"] for p in curves[key]]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["mAP (last epoch)", "mAP (best epoch on test, paper protocol)", "Rank-1 (last epoch)",
                      "Rank-1 (best epoch on test, paper protocol)"] + (
                          ["zero init (official)", "normal init (paper)"] if n == 4 else [])
    with pytest.raises(ValueError, match="no data for curve"):
        viz.hyperparameter_figure({}, panels, tmp_path / "x")


def test_fig9a_draws_both_prompt_initialisations(tmp_path, figures):
    """Panel (a): the zero-init (official, F) and normal-init (paper) prompt-length curves, told apart by marker
    and labelled; each curve's rings name its own reference preset."""
    keys = ("fig9a_prompt_length", "fig9a_prompt_length_normal")
    assert viz.panel_curves(viz.FIG9_PANELS)[:3] == [*keys, "fig9b_srp_depth"]
    curves = {key: _curve(key) for key in viz.panel_curves(viz.FIG9_PANELS)}
    for p in curves[keys[1]]:
        p.update(reference="plen-4-normal", last_mAP_mean=p["last_mAP_mean"] + 20)
    curves[keys[1]][3]["last_mAP_beyond_noise"] = True  # N_pr 16 differs from plen-4-normal
    viz.hyperparameter_figure(curves, viz.FIG9_PANELS, tmp_path / "fig9")
    ax = figures[-1].axes[0]
    map_last = [c for c in ax.containers if c.get_label() == "mAP (last epoch)"]
    assert [c.lines[0].get_marker() for c in map_last] == ["o", "s"]
    for c, key in zip(map_last, keys):
        assert list(c.lines[0].get_ydata()) == [p["last_mAP_mean"] for p in curves[key]]
    x_zero, x_normal = (np.asarray(c.lines[0].get_xdata()) for c in map_last)
    assert np.allclose(x_normal - x_zero, 0.16)  # side by side around the ticks 0..3
    proxies = {line.get_label(): line.get_marker() for line in ax.lines if not len(line.get_xdata())}
    assert proxies == {"zero init (official)": "o", "normal init (paper)": "s"}
    ring = viz.beyond_noise_label("plen-4-normal")
    rings = [line for line in ax.lines if line.get_label() == ring]
    assert len(rings) == 1 and list(rings[0].get_ydata()) == [curves[keys[1]][3]["last_mAP_mean"]]
    assert list(rings[0].get_xdata()) == [x_normal[3]]
    assert [t.get_text() for t in figures[-1].legends[0].get_texts()][-3:] == [*proxies, ring]
    assert all(len(a.containers) == 4 for a in figures[-1].axes[1:])  # panels (b)-(d): one curve each, as before
    curves[keys[1]] = curves[keys[1]][:3]
    with pytest.raises(ValueError, match="different points"):
        viz.hyperparameter_figure(curves, viz.FIG9_PANELS, tmp_path / "bad")


def test_hyperparameter_figure_rings_the_points_beyond_the_noise(tmp_path, figures):
    curves = {key: _curve(key) for key, _, _ in viz.FIG8_PANELS}
    curves["fig8_dstate"][0]["last_mAP_beyond_noise"] = True  # d_state 4: differs from F
    curves["fig8_dtrank"][3]["best_mAP_beyond_noise"] = True
    viz.hyperparameter_figure(curves, viz.FIG8_PANELS, tmp_path / "fig8")
    fig = figures[-1]
    rings = [[line for line in ax.lines if line.get_label() == viz.BEYOND_NOISE_LABEL] for ax in fig.axes]
    assert [len(r) for r in rings] == [1, 1]
    assert list(rings[0][0].get_ydata()) == [curves["fig8_dstate"][0]["last_mAP_mean"]]
    assert list(rings[1][0].get_ydata()) == [curves["fig8_dtrank"][3]["best_mAP_mean"]]
    assert [t.get_text() for t in fig.legends[0].get_texts()][-1] == viz.BEYOND_NOISE_LABEL


def test_training_curves_figure(tmp_path, figures):
    runs = []
    for seed in (0, 1):
        hist = [{"epoch": e, "lr": 1e-3, "loss": 4.0 / e + seed} for e in range(1, 7)]
        for h in hist[1::2]:
            h["mAP"] = 10.0 * h["epoch"] + seed
        runs.append({"seed": seed, "history": hist, "best": {"epoch": 6, "mAP": 60.0 + seed}})
    paths = viz.training_curves_figure({"preset": "F", "profile": "default", "runs": runs}, tmp_path / "curves_F")
    _check_files(paths, tmp_path / "curves_F")
    ax_loss, ax_map = figures[-1].axes
    assert ax_loss.get_title() == "Training loss" and ax_map.get_ylabel() == "mAP (%)"
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["seed 0", "seed 1"]
    assert list(ax_map.lines[0].get_xdata()) == [2, 4, 6]  # evaluation epochs only
    assert figures[-1].get_suptitle() == "Preset F (profile default)"


# --------------------------------------------------------------------------------------------------------------
# Rank list


def test_ranked_gallery_protocols():
    d = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    pids = np.array([1, 1, 2, 1, 3, 1])
    cams = np.array([0, 0, 1, 2, 0, 1])
    keep, ok = viz.ranked_gallery(d, 1, 0, pids, cams, topk=3)
    assert keep.tolist() == [2, 3, 4] and ok.tolist() == [False, True, False]  # same id + camera removed
    scenes = np.array([5, 6, 5, 5, 5, 6])
    keep, ok = viz.ranked_gallery(d, 1, 0, pids, cams, topk=10, protocol="scene", query_sceneid=5,
                                  gallery_sceneids=scenes)
    assert keep.tolist() == [1, 2, 4, 5] and ok.tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="sceneid"):
        viz.ranked_gallery(d, 1, 0, pids, cams, protocol="scene")


def test_rank_list_figure(tmp_path, figures):
    rng = np.random.default_rng(0)
    g = 14
    pids = np.array([3, 3] + [3] * 3 + list(range(10, 19)))
    cams = np.array([0, 1, 2, 0, 1] + [0] * 9)
    d = np.arange(g, dtype=float)
    calls = []

    def load(kind, index, modality):
        calls.append((kind, index, modality))
        return rng.integers(0, 255, size=(32, 16, 3), dtype=np.uint8)

    paths = viz.rank_list_figure(d, 3, 0, pids, cams, load, tmp_path / "ranklist")
    _check_files(paths, tmp_path / "ranklist")
    axes = np.array(figures[-1].axes).reshape(3, 11)
    assert ("gallery", 0, "RGB") not in calls and ("gallery", 3, "TI") not in calls  # same id + camera skipped
    assert axes[0, 0].get_title() == "Query\nID 3" and axes[0, 1].get_title() == "Rank 1\nID 3"
    assert [axes[r, 0].get_ylabel() for r in range(3)] == ["RGB", "NIR", "TIR"]
    assert to_rgba(axes[1, 1].spines["left"].get_edgecolor()) == to_rgba("tab:green")  # gallery 1: id 3
    assert to_rgba(axes[2, 4].spines["top"].get_edgecolor()) == to_rgba("tab:red")  # 4th kept item: id 10
    assert all(ax.images for ax in axes.ravel())


@pytest.mark.slow  # builds the project's tiny model: 6 s idle, 40 s on a busy 2-core machine
def test_real_model_wrapper_reproduces_retrieval_feature():
    """With the project's model (tiny default profile, row F): the Grad-CAM wrapper's f_ma equals the model's
    retrieval feature, and the maps live on ``model.grid``."""
    model_mod = pytest.importorskip("mambapro.model")
    pytest.importorskip("mambapro.aggregation")
    from mambapro.config import resolve_config

    torch.manual_seed(0)
    cfg = resolve_config("bare", "F")
    model = model_mod.build_model(cfg, 5, 2).eval()
    h, w = cfg.data.image_size
    images = {m: torch.randn(2, 3, h, w) for m in MODALITIES}
    cams = torch.zeros(2, dtype=torch.long)
    wrapper = probe.PostMAFeature(model, cams)
    with torch.no_grad():
        assert torch.allclose(wrapper(torch.stack([images[m] for m in MODALITIES], 1)), model(images, cams).feature,
                              atol=1e-5)
    maps = probe.gradcam_maps(model, images, cams)
    assert maps["TI"].shape == (2, *model.grid) and maps["TI"].max() > 0


def test_alignment_figure_constant_similarity(tmp_path, figures):
    """Sum aggregation makes the modalities identical after MA: similarity 1 everywhere, a KDE is undefined."""
    sims = {"RGB–NIR": {"before": np.linspace(-0.2, 0.4, 50), "after": np.ones(50)}}
    viz.alignment_figure(sims, tmp_path / "fig6_const")
    ax = figures[-1].axes[0]
    after = next(line for line in ax.lines if line.get_label() == viz.AFTER)
    assert list(after.get_xdata()) == [1.0, 1.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [viz.BEFORE, viz.AFTER]


def _offset_tokens(batch=3, n=6, dim=32, offset=20.0, seed=0):
    """RGB = NIR = o + z, TIR = o − 2z: the mean token is exactly o, the known shared component."""
    g = torch.Generator().manual_seed(seed)
    o = torch.zeros(dim, dtype=torch.float64)
    o[:4] = offset
    z = torch.randn(batch, n, dim, generator=g, dtype=torch.float64)
    return o, z, {"RGB": o + z, "NI": o + z, "TI": o - 2 * z}


def test_shared_token_and_its_share():
    o, z, tokens = _offset_tokens()
    assert torch.allclose(probe.shared_token(tokens).double(), o, atol=1e-5)
    expected = (o ** 2).sum() / ((o ** 2).sum() + 2 * (z ** 2).sum(-1).mean())  # cross terms cancel
    assert probe.shared_share(tokens) == pytest.approx(float(expected), rel=1e-6)
    assert probe.shared_share({m: t - o for m, t in tokens.items()}) == pytest.approx(0, abs=1e-10)
    pos = torch.linspace(-5, 5, z.shape[1], dtype=torch.float64)[:, None] * torch.ones(z.shape[2])
    shifted = {m: t + pos for m, t in tokens.items()}  # a per-position component on top
    assert probe.shared_token(shifted, by_position=True).shape == (6, 32)
    assert probe.shared_share(shifted, by_position=True) > probe.shared_share(shifted) + 0.05


def test_centred_similarity_removes_the_shared_offset():
    o, z, tokens = _offset_tokens()
    raw = probe.cross_modal_similarity(tokens)
    centred = probe.centred_cross_modal_similarity(tokens)
    assert list(centred) == list(raw) and centred["RGB–NIR"].shape == (18,)
    assert all(raw[p].min() > 0.5 for p in raw)  # the paper's measure: all pairs look aligned
    assert np.allclose(centred["RGB–NIR"], 1, atol=1e-5)  # identical up to the offset: still identical
    assert np.allclose(centred["RGB–TIR"], -1, atol=1e-5) and np.allclose(centred["NIR–TIR"], -1, atol=1e-5)
    # a modality's own offset (a modality gap) is not removed by the global mean
    gap = {**tokens, "TI": tokens["TI"] + 100 * torch.eye(32, dtype=torch.float64)[10]}
    assert probe.centred_cross_modal_similarity(gap)["RGB–TIR"].max() < -0.5
    assert np.allclose(probe.centred_cross_modal_similarity(gap)["RGB–NIR"], 1, atol=1e-5)


def test_alignment_shared_component_on_fake_model():
    model = FakeModel((4, 2), mix=0.5)
    with torch.no_grad():
        model.embed.bias.fill_(20.0)  # a large offset shared by every token
    images = _planted_images((4, 2), 4, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)}, batch=3)
    stats = probe.alignment_shared_component(model, images, torch.zeros(3, dtype=torch.long))
    assert stats["before_share_mean_token"] > 0.9 and stats["after_share_mean_token"] > 0.9
    assert stats["before_share_position_means"] >= stats["before_share_mean_token"]
    assert stats["before_cos_cls_mean"] == pytest.approx(1, abs=1e-5)  # the fake CLS is the patches' mean
    assert stats["after_cos_before_mean_token"] == pytest.approx(1, abs=1e-5)  # the fake MA is affine, mean kept
    assert stats["before_token_rms"] ** 2 * stats["before_share_mean_token"] == pytest.approx(
        stats["before_mean_token_norm"] ** 2, rel=1e-4)
    assert "before_cos_ln_post_bias_proj" not in stats  # no project backbone: no candidates


def test_alignment_similarities_has_centred_measure():
    model = FakeModel((4, 2), mix=0.5)
    images = _planted_images((4, 2), 4, {"RGB": (0, 0), "NI": (1, 1), "TI": (3, 1)}, batch=3)
    sims = probe.alignment_similarities(model, images, torch.zeros(3, dtype=torch.long))
    out = model(images)
    before = {m: out.tokens[m][:, 1:].detach() for m in MODALITIES}
    assert set(sims["RGB–NIR"]) == {"before", "after", "before_centred", "after_centred"}
    assert np.allclose(sims["RGB–NIR"]["before_centred"], probe.centred_cross_modal_similarity(before)["RGB–NIR"],
                       atol=1e-6)


def test_alignment_figure_draws_both_measures(tmp_path, figures):
    rng = np.random.default_rng(0)
    sims = {p: {"before": rng.normal(0.99, 0.003, 400), "after": rng.normal(0.96, 0.005, 400),
                "before_centred": rng.normal(0.1, 0.05, 400), "after_centred": rng.normal(0.6, 0.05, 400)}
            for p in ("RGB–NIR", "RGB–TIR", "NIR–TIR")}
    paths = viz.alignment_figure(sims, tmp_path / "fig6_both")
    _check_files(paths, tmp_path / "fig6_both")
    fig = figures[-1]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["RGB vs NIR", "RGB vs TIR", "NIR vs TIR", "RGB vs NIR, centred",
                                               "RGB vs TIR, centred", "NIR vs TIR, centred"]
    assert {ax.get_xlabel() for ax in axes[3:]} == {"Cosine similarity of centred tokens"}
    headings = [sub.get_suptitle().split(":")[0] for sub in fig.subfigs]
    assert headings == ["Paper's measure", "Centred (not in the paper)"]
    for ax, (before, after) in zip(axes, [(0.99, 0.96)] * 3 + [(0.1, 0.6)] * 3):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [viz.BEFORE, viz.AFTER]
        peaks = {line.get_label(): line.get_xdata()[np.argmax(line.get_ydata())] for line in ax.get_lines()}
        assert peaks[viz.BEFORE] == pytest.approx(before, abs=0.03)
        assert peaks[viz.AFTER] == pytest.approx(after, abs=0.03)


@pytest.mark.slow  # builds the project's tiny model: 6 s idle, 40 s on a busy 2-core machine
def test_offset_candidates_on_real_model():
    """A large ln_post bias dominates every token: the mean token's direction is ln_post.bias @ proj."""
    model_mod = pytest.importorskip("mambapro.model")
    from mambapro.config import resolve_config

    torch.manual_seed(0)
    cfg = resolve_config("bare", "F")
    model = model_mod.build_model(cfg, 5, 2).eval()
    with torch.no_grad():
        model.backbone.tower.ln_post.bias.copy_(100 * torch.randn_like(model.backbone.tower.ln_post.bias))
    h, w = cfg.data.image_size
    images = {m: torch.randn(2, 3, h, w) for m in MODALITIES}
    stats = probe.alignment_shared_component(model, images, torch.zeros(2, dtype=torch.long))
    assert stats["before_cos_ln_post_bias_proj"] > 0.99 and stats["before_share_mean_token"] > 0.95
    assert {"before_cos_pos_mean_head", "after_cos_before_mean_token"} <= set(stats)
