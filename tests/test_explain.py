"""The mean Grad-CAM map of Figs. 10 / 11 (mambapro.figures, mambapro.viz) and the measurement helpers of
benchmarks/explain_miniature.py (issue 21), on toy inputs with hand-computed values and on a small untrained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from mambapro import figures, probe, viz
from mambapro.config import MODALITIES

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "explain_miniature.py"


@pytest.fixture(scope="module")
def ex():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def small_model():
    """An untrained preset-F model on 32 x 16 images (4 x 2 patch grid), 5 classes, 2 cameras."""
    from mambapro.config import resolve_config
    from mambapro.model import build_model

    torch.manual_seed(0)
    cfg = resolve_config("bare", "F", {"data": {"image_size": [32, 16]}})
    return build_model(cfg, 5, 2).eval()


def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, 3, 32, 16, generator=g) for m in MODALITIES}, torch.tensor([0, 1, 0][:b])


# --------------------------------------------------------------------------------------------------------------
# mambapro.figures: the mean map and its edge mass


def test_mean_maps_is_the_mean_of_the_per_sample_maps():
    rng = np.random.default_rng(0)
    maps = {m: rng.random((5, 4, 2)) for m in MODALITIES}
    means = figures.mean_maps(maps)
    for m in MODALITIES:
        assert means[m].shape == (4, 2)
        np.testing.assert_allclose(means[m], sum(maps[m][i] for i in range(5)) / 5)
        assert 0 <= means[m].min() and means[m].max() <= 1


def test_edge_mass_hand_computed():
    cam = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])  # total 8; bottom row 4 of 8 positions' 2
    assert figures.edge_mass(cam, "bottom") == pytest.approx((4 / 8) / (2 / 8))
    assert figures.edge_mass(cam, "top") == 0.0
    assert figures.edge_mass(cam, "left") == pytest.approx(1.0)
    assert figures.edge_mass(cam, "bottom", width=2) == pytest.approx((6 / 8) / (4 / 8))
    right = np.array([[0.0, 3.0], [1.0, 0.0]])  # right column 3 of 4: (3/4) / (1/2)
    assert figures.edge_mass(right, "right") == pytest.approx(1.5)
    assert all(figures.edge_mass(np.ones((8, 4)), e) == pytest.approx(1.0) for e in figures.EDGES)
    assert np.isnan(figures.edge_mass(np.zeros((2, 2)), "top"))
    with pytest.raises(ValueError, match="non-negative"):
        figures.edge_mass(-cam, "top")
    with pytest.raises(ValueError, match="edge"):
        figures.edge_mass(cam, "middle")


def test_edge_notes_print_the_four_edge_masses():
    notes = figures._edge_notes({"RGB": np.ones((8, 4)), "TI": np.array([[0.0, 0.0], [1.0, 1.0]])})
    assert notes["RGB"].splitlines() == ["edge mass / uniform", "top 1.00, bottom 1.00", "left 1.00, right 1.00"]
    assert notes["TI"].splitlines()[1] == "top 0.00, bottom 2.00"


def test_mean_images_is_the_pixelwise_mean():
    images = {m: torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) for m in MODALITIES}
    means = figures.mean_images(images)
    assert means["NI"].shape == (3, 2, 2)
    assert torch.equal(means["NI"], (images["NI"][0] + images["NI"][1]) / 2)


def test_mean_gradcam_equals_the_mean_of_probe_maps(small_model):
    images, cams = _inputs()
    per_sample = probe.gradcam_maps(small_model, images, cams)
    means = figures.mean_gradcam(small_model, images, cams)
    for m in MODALITIES:
        assert means[m].shape == tuple(small_model.grid) == (4, 2)
        np.testing.assert_allclose(means[m], per_sample[m].mean(0), atol=1e-6)
        assert 0 <= means[m].min() and means[m].max() <= 1


def test_mean_gradcam_figure_one_scale_and_values(tmp_path, monkeypatch):
    """Three mean images beside three maps drawn on one colour scale [0, max of the three], each cell's value
    printed (grid ≤ 64 cells), the notes under the maps."""
    drawn = {}
    monkeypatch.setattr(viz, "save_figure", lambda fig, out: drawn.setdefault("fig", fig) and [])
    maps = {"RGB": np.full((4, 2), 0.2), "NI": np.full((4, 2), 0.5), "TI": np.array([[0, 0.1]] * 4)}
    images = {m: torch.zeros(3, 32, 16) for m in MODALITIES}
    viz.mean_gradcam_figure(images, maps, tmp_path / "mean", notes={"RGB": "edge mass / uniform\nbottom 2.00"})
    axes = drawn["fig"].axes[:6]
    for ax in axes[1::2]:
        assert ax.images[0].get_clim() == (0.0, 0.5)
        assert len(ax.texts) == 8
    assert axes[1].texts[0].get_text() == "0.20" and "bottom 2.00" in axes[1].get_xlabel()
    monkeypatch.undo()  # the real save_figure writes png + pdf
    paths = viz.mean_gradcam_figure(images, maps, tmp_path / "mean")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_gradcam_writes_the_mean_map_and_its_numbers(tiny_root, tmp_path):
    """figures.gradcam (Figs. 10 / 11) also draws ``<name>_mean`` and records each modality's mean map (the mean
    of the maps of the same ``share_samples`` samples) and its edge masses in ``<name>_share.json``."""
    from mambapro.config import resolve_config
    from mambapro.data.loaders import build_data
    from mambapro.model import build_model

    cfg = resolve_config("bare", "F", {"data": {"root": str(tiny_root), "image_size": [32, 16], "batch_size": 8,
                                                "test_batch_size": 8}})
    data = build_data(cfg, 0)
    torch.manual_seed(0)
    small_model = build_model(cfg, data.num_classes, data.num_cameras).eval()
    paths = figures.gradcam(small_model, data, tmp_path, "fig10", "persons", seed=0, samples=2, share_samples=4)
    assert {tmp_path / "fig10_mean.png", tmp_path / "fig10_mean.pdf"} <= set(paths)
    stats = json.loads((tmp_path / "fig10_share.json").read_text())
    many = figures._test_batch(data, 4, 0, distinct=False)
    maps = probe.gradcam_maps(small_model, many["images"], many["camid"])
    assert stats["samples"] == 4
    for m in MODALITIES:
        np.testing.assert_allclose(stats["mean_map"][m], maps[m].mean(0), atol=1e-6)
        assert stats["edge_mass_vs_uniform"][m]["bottom"] == pytest.approx(
            figures.edge_mass(maps[m].mean(0), "bottom"), rel=1e-6)


# --------------------------------------------------------------------------------------------------------------
# benchmarks/explain_miniature.py


def test_centred_gradcam_hand_computed(ex):
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]]])  # mean token (1, 0.5)
    g = torch.tensor([[1.0, -1.0]]).expand(1, 4, 2)  # w = (1, -1): cam = 0.5, -1.5, 1.5, -0.5 → ReLU → / 1.5
    np.testing.assert_allclose(ex.centred_gradcam(a, g, (2, 2)), [[[1 / 3, 0.0], [1.0, 0.0]]], atol=1e-6)


def test_gradcam_at_post_ma_reproduces_probe(ex, small_model):
    """The hand-written Grad-CAM at the post-MA tap is the library's map of Figs. 10 / 11."""
    images, cams = _inputs()
    ours = ex.gradcam_at(small_model, images, cams, "post_ma")
    theirs = probe.gradcam_maps(small_model, images, cams)
    for m in MODALITIES:
        np.testing.assert_allclose(ours[m], theirs[m], atol=1e-4)
    for where in ("pre_ma", small_model.backbone.num_layers - 2):
        maps = ex.gradcam_at(small_model, images, cams, where)
        assert maps["TI"].shape == (3, 4, 2) and maps["TI"].max() == pytest.approx(1.0, abs=1e-5)
    assert not hasattr(small_model.backbone, "forward_layer") or "forward_layer" not in vars(small_model.backbone)
    with pytest.raises(ValueError, match="where"):
        ex.gradcam_at(small_model, images, cams, "nowhere")


def test_reversed_scans_flip_the_sequence_and_restore(ex):
    from mambapro.aggregation import SSM

    torch.manual_seed(0)
    net = torch.nn.Sequential(SSM(8, 4, 2, "reference"))
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        plain = net(x)
        with ex.reversed_scans(net) as count:
            reversed_out = net(x)
        assert count == 1
        assert torch.allclose(reversed_out, net(x.flip(1)).flip(1), atol=1e-6)
        assert torch.equal(net(x), plain)
    assert not torch.allclose(reversed_out, plain, atol=1e-3)  # the scan is causal: the order matters


def test_explained_share_hand_computed(ex):
    values = np.array([0.0, 2.0, 4.0, 6.0]).reshape(4, 1, 1)  # mean 3, total 20; group means 1, 5: between 16
    assert ex.explained_share(values, np.array([0, 0, 1, 1]))[0] == pytest.approx(0.8)
    assert ex.explained_share(values, np.array([0, 1, 2, 3]))[0] == pytest.approx(1.0)


def test_gradient_energy_hand_computed(ex):
    step = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(1, 3, 2, 2)  # dx² = 1 at the left column only
    assert ex.gradient_energy(step, (1, 1)) == pytest.approx(np.array([[0.5]]))
    np.testing.assert_allclose(ex.gradient_energy(step, (1, 2)), [[1.0, 0.0]])
    assert ex.gradient_energy(torch.ones(2, 3, 4, 4), (2, 2)).max() == 0


def test_strip_mask(ex):
    mask = ex.strip_mask((8, 4), (4, 2), "bottom")
    assert mask[6:].all() and not mask[:6].any()
    right = ex.strip_mask((8, 4), (4, 2), "right")
    assert right[:, 2:].all() and not right[:, :2].any()


def test_differentiable_mean_cos_matches_probe(ex):
    g = torch.Generator().manual_seed(1)
    tokens = {m: torch.randn(2, 3, 4, generator=g) + 2 for m in MODALITIES}
    raw = probe.cross_modal_similarity(tokens)
    centred = probe.centred_cross_modal_similarity(tokens)
    assert float(ex.differentiable_mean_cos(tokens, False)) == pytest.approx(
        np.mean([v.mean() for v in raw.values()]), abs=1e-6)
    assert float(ex.differentiable_mean_cos(tokens, True)) == pytest.approx(
        np.mean([v.mean() for v in centred.values()]), abs=1e-6)


def test_update_stats_hand_computed(ex):
    before = {m: torch.tensor([[[x, 0.0]]]) for m, x in zip(MODALITIES, (1.0, -1.0, 0.0))}
    same = {m: t + torch.tensor([0.0, 2.0]) for m, t in before.items()}  # one update (0, 2) for every modality
    stats = ex.update_stats(before, same)
    assert stats["update cos"] == pytest.approx(1.0)
    # spread: tokens' mean (0, 0), RMS norm sqrt(2/3); update RMS norm 2
    assert stats["update/spread"] == pytest.approx(2 / np.sqrt(2 / 3))


def test_stage_tokens_ends_at_the_models_own_features(ex, small_model):
    images, cams = _inputs()
    stages = dict(ex.stage_tokens(small_model, images, cams))
    with torch.no_grad():
        out = small_model(images, cams)
        after = small_model.aggregation.forward_tokens([out.tokens[m] for m in MODALITIES])
    assert torch.allclose(stages["MA input (Fig. 6 before)"]["TI"], out.tokens["TI"][:, 1:])
    last = [k for k in stages if k.endswith("(Fig. 6 after)")]
    assert len(last) == 1 and torch.allclose(stages[last[0]]["NI"], after[1], atol=1e-6)
    final = torch.cat([stages["f_final^M (Eq. 18)"][m][:, 0] for m in MODALITIES], dim=1)
    assert torch.allclose(final, out.feature, atol=1e-5)
    assert len([k for k in stages if k.startswith("backbone block")]) == small_model.backbone.num_layers


def test_loss_direction_is_a_cosine(ex, small_model):
    from mambapro.config import resolve_config
    from mambapro.losses import ReIDLoss

    images, _ = _inputs(4, seed=2)
    batch = {"images": images, "camid": torch.tensor([0, 1, 0, 1]), "pid": torch.tensor([0, 0, 1, 1])}
    out = ex.loss_direction(small_model, batch, ReIDLoss(resolve_config("bare", "F").loss))
    assert set(out) == {"cos(grad sim, -grad loss) raw", "cos(grad sim, -grad loss) centred"}
    assert all(-1 <= v <= 1 for v in out.values())
    assert out == ex.loss_direction(small_model, batch, ReIDLoss(resolve_config("bare", "F").loss))


def test_uncorrelated_update_cosine_hand_computed(ex):
    """Two unit vectors at cosine 0.5 plus orthogonal updates of norm 1 each (x·y stays 0.5, norms √2): 0.25."""
    x, y = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.5, np.sqrt(0.75), 0.0, 0.0])
    ux, uy = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])
    measured = (x + ux) @ (y + uy) / np.linalg.norm(x + ux) / np.linalg.norm(y + uy)
    assert ex.uncorrelated_update_cosine(0.5, 1.0) == pytest.approx(measured) == pytest.approx(0.25)


def test_position_share_and_sample_part_hand_computed(ex):
    """Two samples, two positions, one channel, weight 1: A = [[0, 2], [2, 4]] → P = [1, 3] (centred ±1), every
    sample's centred map is ±1 too: the shared part is all of it (share 1), the sample part is zero."""
    a = torch.tensor([[[0.0], [2.0]], [[2.0], [4.0]]])
    g = torch.ones(2, 2, 1)
    assert ex.position_share(a, g) == pytest.approx(1.0)
    assert np.all(ex.centred_gradcam(a, g, (1, 2), sample_part=True) == 0)
    b = torch.tensor([[[0.0], [2.0]], [[2.0], [0.0]]])  # P = [1, 1]: nothing shared
    assert ex.position_share(b, g) == pytest.approx(0.0)
    np.testing.assert_allclose(ex.centred_gradcam(b, g, (1, 2), sample_part=True), [[[0, 1]], [[1, 0]]], atol=1e-6)
