"""Backbone weights files: where the pretrained weights named by ``backbone.pretrained`` / ``timm_pretrained``
live on this machine (the configured file, or the locally cached download of an open_clip / timm tag: Hugging Face
cache or open_clip's URL cache), and their digest, which a checkpoint records (:mod:`mambapro.checkpoints`).
:mod:`mambapro.backbone` builds towers from these files."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from mambapro.config import Config
from mambapro.results import file_digest

__all__ = ["HF_FILES", "TIMM_EQUIVALENTS", "TINY_ARCH", "cached_clip_file", "cached_hf_file", "weights_digest",
           "weights_file"]

HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
TINY_ARCH = "mambapro-tiny"
# Table 9's ImageNet ViT for each CLIP arch (official: ImageNet-21k ViT-B/16 ``jx_vit_base_p16_224-80ecf9dd.pth``,
# which is timm's ``vit_base_patch16_224.orig_in21k_ft_in1k``).  The tiny CLIP maps to a timm ViT of its own size.
TIMM_EQUIVALENTS = {
    "ViT-B-16-quickgelu": ("vit_base_patch16_224", "orig_in21k_ft_in1k"),
    "ViT-B-16": ("vit_base_patch16_224", "orig_in21k_ft_in1k"),
    TINY_ARCH: (TINY_ARCH, None),
}


def cached_hf_file(repo_id: str, filenames=HF_FILES) -> str | None:
    """The first of ``filenames`` of Hugging Face repository ``repo_id`` present in the local cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        path = try_to_load_from_cache(repo_id, name)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def cached_clip_file(pretrained_cfg: dict) -> str | None:
    """A locally cached file for an open_clip pretrained tag (Hugging Face cache or open_clip's URL cache)."""
    if pretrained_cfg.get("file"):
        return pretrained_cfg["file"]
    repo = pretrained_cfg.get("hf_hub", "").rstrip("/")
    if repo:
        repo_id, _, filename = repo.rpartition("/") if repo.count("/") > 1 else (repo, "", "")
        path = cached_hf_file(repo_id, (filename,) if filename else HF_FILES)
        if path:
            return path
    url = pretrained_cfg.get("url", "")
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
        if path.is_file():
            return str(path)
    return None


def weights_file(cfg: Config) -> str | None:
    """The local file the backbone's pretrained weights load from: the configured path, or the cached download of
    an open_clip / timm tag (found as :mod:`mambapro.backbone` finds it); None for random weights or a tag whose
    file is not found (a checkpoint then keeps the whole tower)."""
    import open_clip
    import timm

    b = cfg.backbone
    tag = b.pretrained if b.kind == "clip" else b.timm_pretrained
    if not tag or os.path.isfile(tag):
        return tag or None
    if b.kind == "clip":
        tag_cfg = open_clip.get_pretrained_cfg(b.arch, tag)
        return cached_clip_file(tag_cfg) if tag_cfg else None
    name, default_tag = TIMM_EQUIVALENTS.get(b.arch, (b.arch, None))
    if open_clip.get_pretrained_cfg(b.arch, tag):  # a CLIP tag stands for the ImageNet weights (build_timm_tower)
        tag = default_tag
    try:
        hub = timm.models.get_pretrained_cfg(f"{name}.{tag}").hf_hub_id
    except Exception:  # noqa: BLE001 - an unknown tag: build_model has said so already
        return None
    return cached_hf_file(hub) if hub else None


def weights_digest(cfg: Config) -> str | None:
    """SHA-256 (16 hex digits) of :func:`weights_file`, None for random weights.  A checkpoint records it: a run is
    not resumed on top of weights that changed (the proxy CLIP re-trained upstream), and its frozen tower is rebuilt
    from the file.  Hashed once per process and file version (path, size, mtime)."""
    path = weights_file(cfg)
    return None if path is None else file_digest(path)[:16]
