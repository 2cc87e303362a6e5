"""Backbone (mambapro/backbone.py): token loop == open_clip's visual tower, checkpoint loading (state dict,
TorchScript archive, bilinear positional-embedding resize), camera embedding (official sec. 1.2), freezing
(sec. 1.7), fast failure without weights, the timm ViT of Table 9, and paper-scale geometry (sec. 1.1)."""

from __future__ import annotations

import time

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mambapro import weights
from mambapro.backbone import (
    TIMM_EQUIVALENTS,
    Backbone,
    WeightsUnavailable,
    build_timm_tower,
    resolve_clip_checkpoint,
)
from mambapro.complexity import paper_config
from mambapro.config import resolve_config


def tiny_cfg(**sections):
    return resolve_config("bare", overrides=sections)


@pytest.fixture(scope="module")
def model_tiny_clip():
    torch.manual_seed(0)
    return open_clip.create_model("mambapro-tiny", pretrained=None, force_image_size=(128, 64)).eval()


def test_tiny_config_is_registered_with_open_clip():
    cfg = open_clip.get_model_config("mambapro-tiny")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    assert (v["width"], v["layers"], v["patch_size"], v["width"] // v["head_width"], cfg["embed_dim"]) == (
        48, 4, 8, 3, 48)
    assert (t["context_length"], t["width"], t["heads"], t["layers"], t["vocab_size"]) == (32, 48, 3, 2, 49408)
    assert cfg["quick_gelu"] is True
    assert open_clip.get_tokenizer("mambapro-tiny")(["a person"]).shape == (1, 32)


def test_tokens_equal_open_clip_visual_after_loading_a_local_checkpoint(model_tiny_clip, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(model_tiny_clip.state_dict(), path)
    b = Backbone(tiny_cfg(backbone={"pretrained": str(path), "camera_embedding": False}), num_cameras=3).eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        tokens = b(x, "RGB")
        visual = model_tiny_clip.visual
        visual.output_tokens = True
        pooled, patches = visual(x)
        visual.output_tokens = False
    assert tokens.shape == (2, 1 + 16 * 8, 48)
    torch.testing.assert_close(tokens[:, 0], pooled)  # CLS after ln_post @ proj
    torch.testing.assert_close(tokens[:, 1:], patches @ visual.proj)  # ln_post and proj on ALL tokens
    torch.testing.assert_close(tokens[:, 0], model_tiny_clip.encode_image(x))
    with_cams = Backbone(tiny_cfg(backbone={"pretrained": str(path)}), num_cameras=3).eval()
    with torch.no_grad():
        with_cams.camera_embedding.zero_()
        torch.testing.assert_close(with_cams(x, "TI", torch.tensor([0, 2])), tokens)  # zero camera embedding


def test_camera_embedding_goes_on_cls_before_positions_and_ln_pre():
    torch.manual_seed(0)
    b = Backbone(tiny_cfg(backbone={"sie_coe": 1.5}), num_cameras=3)
    assert b.camera_embedding.shape == (3, 48) and b.camera_embedding.requires_grad
    assert 0.015 < b.camera_embedding.std() < 0.025  # trunc_normal(0.02)
    x, cams = torch.randn(2, 3, 128, 64), torch.tensor([2, 0])
    t = b.tower
    patches = t.conv1(x).flatten(2).transpose(1, 2)
    cls = t.class_embedding + 1.5 * b.camera_embedding[cams]
    expected = t.ln_pre(torch.cat([cls[:, None], patches], 1) + t.positional_embedding)
    torch.testing.assert_close(b.embed(x, cams), expected)


def test_positional_embedding_is_resized_bilinearly(tmp_path):
    torch.manual_seed(0)
    square = open_clip.create_model("mambapro-tiny", pretrained=None, force_image_size=(64, 64))
    path = tmp_path / "square.pt"
    torch.save(square.state_dict(), path)
    b = Backbone(tiny_cfg(backbone={"pretrained": str(path)}), num_cameras=1)
    old = square.visual.positional_embedding.detach()  # 1 + 8 x 8 positions
    grid = old[1:].reshape(1, 8, 8, 48).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(16, 8), mode="bilinear", align_corners=False)  # official model.py:694-710
    expected = torch.cat([old[:1], resized.permute(0, 2, 3, 1).reshape(128, 48)])
    torch.testing.assert_close(b.tower.positional_embedding.detach(), expected)
    torch.testing.assert_close(b.tower.conv1.weight, square.visual.conv1.weight)


@pytest.mark.filterwarnings("ignore")  # tracing warnings
def test_torchscript_archive_like_openai_weights(model_tiny_clip, tmp_path):
    x, text = torch.randn(1, 3, 128, 64), torch.zeros(1, 32, dtype=torch.long)
    path = tmp_path / "tiny-jit.pt"
    torch.jit.trace(model_tiny_clip, (x, text), strict=False, check_trace=False).save(str(path))
    b = Backbone(tiny_cfg(backbone={"pretrained": str(path), "camera_embedding": False}), num_cameras=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(b(x, "NI")[:, 0], model_tiny_clip.visual(x))


def test_missing_weights_fail_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "cached_clip_file", lambda cfg: None)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match=r"backbone.pretrained: /path/to/ViT-B-16.pt"):
        resolve_clip_checkpoint("ViT-B-16-quickgelu", "openai")
    assert time.perf_counter() - start < 1.0  # no download retries
    with pytest.raises(ValueError, match="tags: openai"):
        resolve_clip_checkpoint("ViT-B-16-quickgelu", "laion-nonexistent")
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag"):
        resolve_clip_checkpoint("mambapro-tiny", "/nonexistent/ViT-B-16.pt")


def test_freezing_clip_l_and_clip_f():
    frozen = Backbone(tiny_cfg(backbone={"frozen": True}, adapter={"kind": "pfa"}), num_cameras=2)
    assert not any(p.requires_grad for p in frozen.tower.parameters())
    assert all(p.requires_grad for p in frozen.adapters.parameters()) and frozen.camera_embedding.requires_grad
    full = Backbone(tiny_cfg(backbone={"frozen": False}), num_cameras=2)
    assert all(p.requires_grad for p in full.parameters())


def test_geometry_for_persons_and_vehicles():
    persons = Backbone(tiny_cfg(), num_cameras=1)
    assert (persons.grid, persons.width, persons.out_dim, persons.num_layers) == ((16, 8), 48, 48, 4)
    vehicles = Backbone(tiny_cfg(data={"image_size": [64, 128]}), num_cameras=1)
    assert vehicles.grid == (8, 16) and vehicles.tower.positional_embedding.shape == (129, 48)
    with pytest.raises(ValueError, match=r"images \[B, 3, 64, 128\]"):
        vehicles(torch.zeros(1, 3, 128, 64), "RGB")
    with pytest.raises(ValueError, match="modality 'IR'"):
        vehicles(torch.zeros(1, 3, 64, 128), "IR")
    with pytest.raises(ValueError, match="not a multiple of mambapro-tiny's patch size 8"):
        Backbone(tiny_cfg(data={"image_size": [60, 128]}), num_cameras=1)


def test_paper_scale_geometry(model_paper_tower):
    b = Backbone(paper_config("A"), num_cameras=4, tower=model_paper_tower)
    # sec. 1.1: 256x128 -> 16 x 8 grid, 129 positions, width 768, projection to 512; 86,140,416 parameters
    assert (b.grid, b.width, b.out_dim, b.num_layers) == ((16, 8), 768, 512, 12)
    assert b.tower.positional_embedding.shape == (129, 768)
    assert sum(p.numel() for p in b.tower.parameters()) == 86_140_416


def test_added_sizes_scale_with_width_and_depth():
    b = Backbone(tiny_cfg(adapter={"kind": "bna", "start_layer": 6}, prompt={"kind": "sp", "start_layer": 9}),
                 num_cameras=1)
    assert b.adapters["2"].fc1.out_features == 24  # 384 at width 768 -> 24 at width 48
    assert b.prompts.layers["3"].transfer[0][0].out_features == 24
    assert list(b.adapters.keys()) == ["2", "3"] and list(b.prompts.layers.keys()) == ["3"]  # 6/12, 9/12 of 4


def test_tiny_timm_vit_matches_timm_and_keeps_its_width():
    torch.manual_seed(0)
    cfg = tiny_cfg(backbone={"kind": "timm", "camera_embedding": False})
    b = Backbone(cfg, num_cameras=1).eval()
    assert (b.grid, b.width, b.out_dim) == ((16, 8), 48, 48)
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(b(x, "RGB"), b.tower.forward_features(x))
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_timm_tower("mambapro-tiny", (128, 64), "/some/clip.pt")


def test_paper_timm_vit_and_its_weights(monkeypatch):
    assert TIMM_EQUIVALENTS["ViT-B-16-quickgelu"] == ("vit_base_patch16_224", "orig_in21k_ft_in1k")
    tower = build_timm_tower("ViT-B-16-quickgelu", (256, 128), None)
    assert tower.pos_embed.shape == (1, 129, 768) and tower.embed_dim == 768
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "cached_hf_file", lambda repo, filenames=(): None)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="jx_vit_base_p16_224-80ecf9dd.pth"):  # the official ImageNet ViT
        build_timm_tower("ViT-B-16-quickgelu", (256, 128), "openai")
    assert time.perf_counter() - start < 1.0


def test_timm_weights_errors_name_backbone_timm_pretrained(monkeypatch):
    """The timm tower reads backbone.timm_pretrained: its errors must tell the user to set that field."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "cached_hf_file", lambda repo, filenames=(): None)
    with pytest.raises(WeightsUnavailable) as err:
        build_timm_tower("ViT-B-16-quickgelu", (256, 128), "orig_in21k_ft_in1k")
    msg = str(err.value)
    assert msg.startswith("backbone.timm_pretrained = 'orig_in21k_ft_in1k'")
    assert "`backbone.timm_pretrained: /path/to/jx_vit_base_p16_224-80ecf9dd.pth`" in msg
    assert "backbone.pretrained" not in msg
    with pytest.raises(ValueError, match=r"^backbone.timm_pretrained = 'nonexistent' is neither a file nor"):
        build_timm_tower("vit_tiny_patch16_224", (64, 32), "nonexistent")
    with pytest.raises(ValueError, match=r"set backbone.timm_pretrained: null"):
        build_timm_tower("mambapro-tiny", (128, 64), "/some/clip.pt")


def test_timm_checkpoint_file_is_loaded_and_resized(tmp_path):
    torch.manual_seed(0)
    source = build_timm_tower("vit_tiny_patch16_224", (224, 224), None)  # 14 x 14 grid
    path = tmp_path / "vit_tiny.pth"
    torch.save(source.state_dict(), path)
    tower = build_timm_tower("vit_tiny_patch16_224", (64, 32), str(path))
    assert tower.pos_embed.shape == (1, 1 + 4 * 2, 192)  # resized by timm on load
    torch.testing.assert_close(tower.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(tower.cls_token, source.cls_token)
