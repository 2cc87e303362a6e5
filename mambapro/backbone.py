"""The shared image encoder: a CLIP visual tower from ``open_clip`` (or an ImageNet ViT from ``timm``, Table 9) run
token by token so that camera embedding, adapters and prompts can be inserted (official-implementation.md secs.
1.1-1.4, 1.7).

Token pipeline per modality (official ``modeling/clip/model.py:438-476``): conv1 -> flatten -> prepend CLS ->
camera embedding on CLS only (SIE, sec. 1.2) -> + positional embedding -> ln_pre -> blocks (prompts appended and
removed in each, adapters inside) -> ln_post on all tokens -> @ proj on all tokens: [B, 1 + N, out_dim].  The three
modalities share the one tower (three calls).

Importing this module registers ``mambapro/model_configs/*.json`` (the tiny CLIP ``mambapro-tiny``) with open_clip.

Sizes of added modules are given at the paper's width 768 (``prompt.transfer_hidden``, ``adapter.bottleneck``,
``adapter.rank``) and scale by width / 768 on another width (the tiny tower: 384 -> 64); layer indices
(``start_layer``) are on the paper's 12-layer scale and map onto the tower's depth with
:func:`mambapro.config.scale_layers`.

The ``timm`` kind keeps the ViT's width as ``out_dim`` (768 at paper scale, as the official ImageNet-ViT path and
TransReID): a timm ViT has no CLIP projection, and adding a new one would add untrained parameters the paper does not
count.  Its positional embedding is resized by timm (bicubic) when loading.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import open_clip
import timm
import torch
from open_clip.model import _build_vision_tower, resize_pos_embed
from torch import nn

from mambapro import weights
from mambapro.adapters import adapted_layer, build_adapters
from mambapro.config import MODALITIES, Config, scale_layers
from mambapro.prompts import build_prompts
from mambapro.weights import TIMM_EQUIVALENTS, TINY_ARCH

MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")
open_clip.add_model_config(MODEL_CONFIG_DIR)

PAPER_WIDTH = 768
PAPER_LAYERS = 12
TIMM_KEY = "backbone.timm_pretrained"  # the config field naming the timm tower's weights (not backbone.pretrained)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights named by ``backbone.pretrained`` (or ``backbone.timm_pretrained``) that are neither cached
    nor downloadable."""


# --------------------------------------------------------------------------------------------------------------
# Weights


def _offline() -> bool:
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "HF_OFFLINE"))


def _reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(arch: str, tag: str, reason: str, example: str, key: str = "backbone.pretrained"
                 ) -> WeightsUnavailable:
    """``key``: the config field that names the weights (``backbone.timm_pretrained`` for the timm tower)."""
    return WeightsUnavailable(
        f"{key} = {tag!r}: the {arch} weights are not cached here and cannot be downloaded ({reason}). "
        f"Fetch them on a machine with network access (e.g. {example}) and point the config at the file: "
        f"`{key}: /path/to/{os.path.basename(urlparse(example).path) or 'weights.pt'}`."
    )


def resolve_clip_checkpoint(arch: str, tag: str) -> str:
    """Local path of open_clip weights ``tag`` for ``arch``: a file, the cache, or a download.  Fails at once (no
    retries) offline or when the hub is unreachable, saying how to provide a local file."""
    if os.path.isfile(tag):
        return tag
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ValueError(f"backbone.pretrained = {tag!r} is neither a file nor an open_clip tag of {arch} "
                         f"(tags: {tags})")
    cached = weights.cached_clip_file(cfg)
    if cached:
        return cached
    example = cfg.get("url") or f"https://huggingface.co/{cfg.get('hf_hub', '')}"
    if _offline():
        raise _unavailable(arch, tag, "HF_HUB_OFFLINE is set", example)
    if cfg.get("hf_hub") and _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        prefer_hf = True
    elif cfg.get("url") and _reachable(cfg["url"]):
        prefer_hf = False
    else:
        raise _unavailable(arch, tag, "no network connection", example)
    try:
        return open_clip.download_pretrained(cfg, prefer_hf_hub=prefer_hf)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
        raise _unavailable(arch, tag, f"{type(e).__name__}: {e}", example) from e


def read_visual_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The visual tower's tensors from an open_clip / OpenAI checkpoint (state dict, ``{"state_dict": ...}``, or an
    OpenAI TorchScript archive), keys without the ``visual.`` prefix.  A visual-only state dict is accepted as is."""
    try:
        sd = open_clip.factory.load_state_dict(path)
    except RuntimeError as e:
        if "TorchScript" not in str(e):
            raise ValueError(f"backbone.pretrained = {path!r}: cannot read the checkpoint ({e})") from e
        sd = torch.jit.load(path, map_location="cpu").state_dict()
    if any(k.startswith("visual.") for k in sd):
        return {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    return dict(sd)


def load_clip_tower(tower: nn.Module, path: str) -> None:
    """Load a checkpoint into an open_clip visual tower, resizing the positional embedding from the pretrained grid
    bilinearly (``align_corners=False``, no antialiasing: the official ``model.py:694-710``) with open_clip's
    ``resize_pos_embed``; the CLS entry is kept as is."""
    sd = read_visual_state_dict(path)
    if "positional_embedding" in sd:
        holder = {"visual.positional_embedding": sd["positional_embedding"]}
        resize_pos_embed(holder, SimpleNamespace(visual=tower), interpolation="bilinear", antialias=False)
        sd["positional_embedding"] = holder["visual.positional_embedding"]
    missing, unexpected = tower.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"backbone.pretrained = {path!r} does not fit this tower: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")


# --------------------------------------------------------------------------------------------------------------
# Towers


def build_clip_tower(arch: str, image_size: tuple[int, int], pretrained: str | None) -> nn.Module:
    """An open_clip ``VisionTransformer`` for ``image_size`` (H, W), random or loaded from ``pretrained``."""
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(f"backbone.arch = {arch!r} is not an open_clip model (see open_clip.list_models())")
    vision_cfg = dict(model_cfg["vision_cfg"])
    if "timm_model_name" in vision_cfg or isinstance(vision_cfg.get("layers"), (list, tuple)):
        raise ValueError(f"backbone.arch = {arch!r}: only open_clip's own ViT towers are supported")
    patch = vision_cfg.get("patch_size", 16)
    if image_size[0] % patch or image_size[1] % patch:
        raise ValueError(f"data.image_size = {tuple(image_size)} is not a multiple of {arch}'s patch size {patch}")
    vision_cfg["image_size"] = tuple(image_size)
    tower = _build_vision_tower(model_cfg["embed_dim"], vision_cfg, quick_gelu=model_cfg.get("quick_gelu", False))
    if getattr(tower, "attn_pool", None) is not None or getattr(tower, "final_ln_after_pool", False):
        raise ValueError(f"backbone.arch = {arch!r}: attention-pooled towers are not supported")
    if pretrained:
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
        if tag_cfg and tag_cfg.get("quick_gelu", False) != model_cfg.get("quick_gelu", False):
            warnings.warn(f"backbone: weights {pretrained!r} were trained with quick_gelu="
                          f"{tag_cfg.get('quick_gelu', False)} but {arch} uses quick_gelu="
                          f"{model_cfg.get('quick_gelu', False)} (OpenAI weights need ViT-B-16-quickgelu)",
                          stacklevel=2)
        load_clip_tower(tower, resolve_clip_checkpoint(arch, pretrained))
    return tower


def build_timm_tower(arch: str, image_size: tuple[int, int], pretrained: str | None) -> nn.Module:
    """A timm ViT for ``image_size``: ``arch`` is a timm name or a CLIP arch mapped by :data:`TIMM_EQUIVALENTS`
    (a CLIP tag such as ``"openai"`` then stands for that entry's ImageNet weights).  ``pretrained`` is None
    (random), a timm tag, or a local timm checkpoint file."""
    name, default_tag = TIMM_EQUIVALENTS.get(arch, (arch, None))
    if pretrained and open_clip.get_pretrained_cfg(arch, pretrained):
        pretrained = default_tag
    if name == TINY_ARCH:
        if pretrained:
            raise ValueError(f"{TIMM_KEY} = {pretrained!r}: the tiny timm ViT (backbone.kind: timm with "
                             f"arch {TINY_ARCH}) has no pretrained weights; set {TIMM_KEY}: null")
        v = open_clip.get_model_config(TINY_ARCH)["vision_cfg"]
        return timm.models.vision_transformer.VisionTransformer(
            img_size=tuple(image_size), patch_size=v["patch_size"], embed_dim=v["width"], depth=v["layers"],
            num_heads=v["width"] // v["head_width"], num_classes=0)
    kwargs = dict(img_size=tuple(image_size), num_classes=0)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if os.path.isfile(pretrained):
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": pretrained}, **kwargs)
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{TIMM_KEY} = {pretrained!r} is not a timm checkpoint of {name} "
                             f"(backbone.kind: timm): {e}") from e
    full = f"{name}.{pretrained}"
    try:
        pcfg = timm.models.get_pretrained_cfg(full)
    except Exception:  # noqa: BLE001
        pcfg = None
    if pcfg is None:
        raise ValueError(f"{TIMM_KEY} = {pretrained!r} is neither a file nor a timm tag of {name}")
    if pcfg.hf_hub_id and not weights.cached_hf_file(pcfg.hf_hub_id):
        example = pcfg.url or f"https://huggingface.co/{pcfg.hf_hub_id}"
        if _offline():
            raise _unavailable(name, pretrained, "HF_HUB_OFFLINE is set", example, TIMM_KEY)
        if not _reachable("https://huggingface.co"):
            raise _unavailable(name, pretrained, "no network connection", example, TIMM_KEY)
    return timm.create_model(full, pretrained=True, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# Backbone


def _scaled(n: int, width: int) -> int:
    return max(1, round(n * width / PAPER_WIDTH))


class Backbone(nn.Module):
    """Tower + camera embedding + per-layer adapters + prompts.  Parameters: ``tower.*`` (the pretrained encoder,
    frozen under CLIP(L)), ``camera_embedding`` [num_cameras, width], ``adapters.<layer>.*``, ``prompts.*``.

    Attributes: ``kind``, ``grid`` (h, w), ``width``, ``out_dim``, ``num_layers``, ``image_size`` (H, W).
    ``tower`` reuses an already built tower of the same kind and image size (complexity tables, tests)."""

    def __init__(self, cfg: Config, num_cameras: int, tower: nn.Module | None = None):
        super().__init__()
        b = cfg.backbone
        self.kind, self.image_size = b.kind, tuple(cfg.data.image_size)
        if b.kind == "clip":
            self.tower = tower if tower is not None else build_clip_tower(b.arch, self.image_size, b.pretrained)
            blocks = self.tower.transformer.resblocks
            self.width, self.out_dim = self.tower.transformer.width, self.tower.output_dim
            self.grid = tuple(self.tower.grid_size)
        elif b.kind == "timm":
            self.tower = tower if tower is not None else build_timm_tower(b.arch, self.image_size, b.timm_pretrained)
            t = self.tower
            if t.cls_token is None or t.reg_token is not None or t.no_embed_class or t.dynamic_img_size:
                raise ValueError(f"backbone.arch = {b.arch!r}: needs a timm ViT with one class token, "
                                 "no register tokens and a fixed image size")
            blocks = t.blocks
            self.width = self.out_dim = t.embed_dim
            self.grid = tuple(t.patch_embed.grid_size)
        else:
            raise ValueError(f"backbone.kind = {b.kind!r} is not one of: clip, timm")
        self.num_layers = len(blocks)
        self.tower.requires_grad_(not b.frozen)

        self.sie_coe = b.sie_coe
        self.camera_embedding = None
        if b.camera_embedding:
            if num_cameras < 1:
                raise ValueError(f"num_cameras = {num_cameras}: the camera embedding needs at least one camera")
            self.camera_embedding = nn.Parameter(torch.zeros(num_cameras, self.width))
            nn.init.trunc_normal_(self.camera_embedding, std=0.02)

        cfg = scale_layers(cfg, self.num_layers) if self.num_layers != PAPER_LAYERS else cfg
        adapter_cfg = dataclasses.replace(cfg.adapter, bottleneck=_scaled(cfg.adapter.bottleneck, self.width),
                                          rank=_scaled(cfg.adapter.rank, self.width))
        prompt_cfg = dataclasses.replace(cfg.prompt, transfer_hidden=_scaled(cfg.prompt.transfer_hidden, self.width))
        self.adapters = build_adapters(adapter_cfg, self.width, self.num_layers)
        self.prompts = build_prompts(prompt_cfg, self.width, self.num_layers)

    # -- token pipeline ---------------------------------------------------------------------------------------

    def embed(self, images: torch.Tensor, cams: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embedding, CLS, camera embedding on CLS, positional embedding, ln_pre: [B, 1 + N, width]."""
        if images.dim() != 4 or tuple(images.shape[-2:]) != self.image_size or images.shape[1] != 3:
            raise ValueError(f"backbone expects images [B, 3, {self.image_size[0]}, {self.image_size[1]}] "
                             f"(data.image_size), got {list(images.shape)}")
        t = self.tower
        if self.kind == "clip":
            x = t.conv1(images).flatten(2).transpose(1, 2)
            cls, pos = t.class_embedding, t.positional_embedding
        else:
            x = t.patch_embed(images)
            cls, pos = t.cls_token.reshape(-1), t.pos_embed[0]
        cls = cls.to(x.dtype).expand(x.shape[0], 1, -1)
        if self.camera_embedding is not None and cams is not None:
            cls = cls + self.sie_coe * self.camera_embedding[cams].unsqueeze(1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        if self.kind == "clip":
            return t.ln_pre(t.patch_dropout(x))
        return t.norm_pre(t.patch_drop(t.pos_drop(x)))

    def forward_layer(self, x: torch.Tensor, layer: int, modality: int, carried: torch.Tensor | None = None):
        """One block with its prompts and adapter; returns (tokens [B, 1 + N, width], carried prompt or None)."""
        prompts = self.prompts if self.prompts is not None and self.prompts.active(layer) else None
        n = x.shape[1]
        if prompts is not None:
            x = torch.cat([x, prompts.tokens(layer, modality, carried, x.shape[0]).to(x.dtype)], dim=1)
        adapter = self.adapters[str(layer)] if self.adapters is not None and str(layer) in self.adapters else None
        x = adapted_layer(x, *self.branches(layer), adapter)
        if prompts is not None:
            carried = prompts.carry(x[:, n:], modality)
            x = x[:, :n]
        return x, carried

    def branches(self, layer: int):
        """(attn, ffn) of ``layer``: attn(x) = MHSA(LN1(x)), ffn(x) = FFN(LN2(x)), layer scale and drop path
        included (both identities in CLIP and in timm's ViT-B)."""
        if self.kind == "clip":
            block = self.tower.transformer.resblocks[layer]
            return (lambda x: block.ls_1(block.attention(block.ln_1(x))),
                    lambda x: block.ls_2(block.mlp(block.ln_2(x))))
        block = self.tower.blocks[layer]
        return (lambda x: block.drop_path1(block.ls1(block.attn(block.norm1(x)))),
                lambda x: block.drop_path2(block.ls2(block.mlp(block.norm2(x)))))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """ln_post on all tokens, then @ proj on all tokens (CLIP); the final norm (timm)."""
        if self.kind == "clip":
            return self.tower.ln_post(x) @ self.tower.proj
        return self.tower.norm(x)

    def forward(self, images: torch.Tensor, modality: str, cams: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens [B, 1 + N, out_dim] of one modality (``"RGB"``, ``"NI"`` or ``"TI"``)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of: {', '.join(MODALITIES)}")
        m = MODALITIES.index(modality)
        x, carried = self.embed(images, cams), None
        for layer in range(self.num_layers):
            x, carried = self.forward_layer(x, layer, m, carried)
        return self.head(x)

