"""Typed configuration: one dataclass tree that mirrors ``params.yaml``, plus named ablation presets.

A *profile* is a full configuration (the embedded CPU default, or paper scale for one dataset); a *preset* is a
small override of it naming one row of the paper's ablation tables (Tables 3, 4, 5, 6, 8, 9, 11) or one point
of its hyper-parameter curves (Figs. 8, 9).  Defaults follow the official code (``official-implementation.md``);
where the paper differs the paper's variant is an option, named in the field's comment.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

MODALITIES = ("RGB", "NI", "TI")


@dataclass
class BackboneConfig:
    kind: str = "clip"  # "clip" (open_clip visual tower) | "timm" (ImageNet ViT, Table 9)
    arch: str = "mambapro-tiny"  # open_clip model name (e.g. "ViT-B-16-quickgelu") or timm model name
    pretrained: str | None = None  # kind "clip": open_clip tag ("openai") or a local checkpoint file
    timm_pretrained: str | None = None  # kind "timm" (Table 9): timm tag or a local file; None = random init
    frozen: bool = True  # True: CLIP(L), only added modules train; False: CLIP(F), full fine-tuning
    camera_embedding: bool = True  # SIE on the CLS token (official code, sec. 1.2; not in the paper)
    sie_coe: float = 1.0


@dataclass
class AdapterConfig:
    kind: str = "none"  # "none" | "pfa" | "bna" | "lora"  (Table 5)
    position: str = "side_ffn"  # "side_ffn" | "behind_ffn" | "side_mhsa" | "behind_mhsa"  (Table 8)
    hidden_ratio: float = 2.0  # PFA: 768 -> 1536 -> 768
    bottleneck: int = 384  # BNA hidden width (768 -> 384 -> 768)
    rank: int = 64  # LoRA rank r
    activation: str = "quickgelu"  # official code; "gelu" is the paper's Eq. (2)
    start_layer: int = 0  # adapters in layers start_layer..L-1 (Fig. 9c)
    block_input: bool = False  # side-FFN PFA reads post-MHSA F-bar (official); True: layer input F (paper Eq. 2)


@dataclass
class PromptConfig:
    kind: str = "none"  # "none" | "ip" | "sp" | "srp_separation" | "srp_fusion"  (Table 4, Fig. 4)
    length: int = 4  # N_pr prompts per modality slot (Fig. 9a)
    start_layer: int = 0  # prompts in layers start_layer..L-1 (Fig. 9b)
    activation: str = "quickgelu"  # official code; "gelu" is the paper's
    transfer_hidden: int = 384  # SP/RP transfer block 768 -> 384 -> 768 (scaled with width for tiny models)
    sp_identity: bool = True  # official p + T(p); False is the paper's Eq. (6), T(p)
    rp_identity: bool = True  # official p + p_f + RP(p_f); False is the paper's Eq. (8)
    init: str = "zeros"  # official zero init; "normal" is the paper's "randomly initialised"


@dataclass
class AggregationConfig:
    kind: str = "none"  # "none" | "sum" | "concat" | "transformer" | "intra_ma" | "inter_ma" | "ma" | "ma_trans"
    num_blocks: int = 2  # stacked blocks (Fig. 9d)
    d_state: int = 16  # N (Fig. 8a)
    dt_rank: int | None = None  # None -> ceil(D / 16) (Fig. 8b)
    expand: int = 2
    d_conv: int = 3
    bidirectional: bool = False
    dt_init: str = "official"  # "official": dt init wiped by AAM._init_weights; "mamba": Mamba's dt init
    scan_backend: str = "auto"  # "auto" | "cuda" | "native" | "chunked" | "reference"


@dataclass
class LossConfig:
    id_weight: float = 0.25  # lambda_1
    triplet_weight: float = 1.0  # lambda_2
    label_smoothing: float = 0.1
    triplet_margin: float | None = None  # None: soft margin (official NO_MARGIN=True)
    direct: bool = True  # True: DIRECT=1 (concatenated CLS + MA); False: per-modality CLS + MA


@dataclass
class DataConfig:
    dataset: str = "RGBNT201"  # "RGBNT201" | "RGBNT100" | "MSVR310"  (reader and protocol)
    root: str = "data/synthetic"
    image_size: tuple[int, int] = (128, 64)  # (H, W); paper: 256x128 persons, 128x256 vehicles
    batch_size: int = 32
    num_instances: int = 4  # K
    test_batch_size: int = 64
    num_workers: int = 0
    shared_augmentation: bool = False  # official: independent draws per modality
    pad: int = 10
    erasing_prob: float = 0.5
    cache_images: bool = False  # keep decoded, resized images in memory (same tensors; off at paper scale)


@dataclass
class TrainConfig:
    epochs: int = 60
    warmup_epochs: int = 10
    base_lr: float = 3.5e-4
    backbone_lr: float = 5e-6  # backbone's own parameters under full fine-tuning (CLIP(F))
    bias_lr_factor: float = 2.0
    weight_decay: float = 1e-4
    weight_decay_bias: float = 1e-4
    eval_every: int = 1
    seed: int = 1111
    amp: bool = True  # used on CUDA only; CPU runs in fp32
    device: str = "auto"


@dataclass
class EvalConfig:
    rerank: bool = False
    missing: tuple[str, ...] = ()  # subset of "r", "n", "t", "rn", "rt", "nt"


@dataclass
class Config:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------------
# Overrides


class ConfigError(ValueError):
    """A configuration key, value, profile or preset that does not exist."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert YAML/JSON values (lists, ints) to the annotated field type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def apply_overrides(cfg: Config, overrides: dict[str, Any], where: str = "override") -> Config:
    """Return a copy of ``cfg`` with nested ``{section: {key: value}}`` or dotted ``{"section.key": value}``
    overrides applied.  Unknown sections or keys raise :class:`ConfigError` listing the valid ones."""
    cfg = copy.deepcopy(cfg)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in overrides.items():
        if "." in key:
            section, _, sub = key.partition(".")
            items = {sub: value}
        else:
            section, items = key, value
        if section not in sections:
            raise ConfigError(f"{where}: unknown section {section!r}; valid sections: {', '.join(sections)}")
        if not isinstance(items, dict):
            raise ConfigError(f"{where}: section {section!r} needs a mapping, got {items!r}")
        obj = getattr(cfg, section)
        hints = typing.get_type_hints(type(obj))
        valid = [f.name for f in dataclasses.fields(obj)]
        for name, v in items.items():
            if name not in valid:
                raise ConfigError(f"{where}: unknown key {section}.{name}; valid keys: {', '.join(valid)}")
            setattr(obj, name, _coerce(v, hints[name], f"{where}: {section}.{name}"))
    validate(cfg)
    return cfg


_CHOICES = {
    ("backbone", "kind"): ("clip", "timm"),
    ("adapter", "kind"): ("none", "pfa", "bna", "lora"),
    ("adapter", "position"): ("side_ffn", "behind_ffn", "side_mhsa", "behind_mhsa"),
    ("adapter", "activation"): ("quickgelu", "gelu"),
    ("prompt", "kind"): ("none", "ip", "sp", "srp_separation", "srp_fusion"),
    ("prompt", "activation"): ("quickgelu", "gelu"),
    ("prompt", "init"): ("zeros", "normal"),
    ("aggregation", "kind"): ("none", "sum", "concat", "transformer", "intra_ma", "inter_ma", "ma", "ma_trans"),
    ("aggregation", "dt_init"): ("official", "mamba"),
    ("aggregation", "scan_backend"): ("auto", "cuda", "native", "chunked", "reference"),
    ("data", "dataset"): ("RGBNT201", "RGBNT100", "MSVR310"),
}


def validate(cfg: Config) -> None:
    """Check every enumerated field; raise :class:`ConfigError` naming the key and the valid values."""
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{section}.{name} = {value!r} is not one of: {', '.join(choices)}")
    bad = [m for m in cfg.eval.missing if m not in MISSING_SETTINGS]
    if bad:
        raise ConfigError(f"eval.missing: {bad} not in {', '.join(MISSING_SETTINGS)}")
    if cfg.data.batch_size % cfg.data.num_instances:
        raise ConfigError(
            f"data.batch_size = {cfg.data.batch_size} is not a multiple of data.num_instances = "
            f"{cfg.data.num_instances}"
        )


# Missing-modality settings (DeMo's TEST.MISS): which modalities are zero-filled.
MISSING_SETTINGS = {
    "r": ("RGB",),
    "n": ("NI",),
    "t": ("TI",),
    "rn": ("RGB", "NI"),
    "rt": ("RGB", "TI"),
    "nt": ("NI", "TI"),
}


# --------------------------------------------------------------------------------------------------------------
# Presets: one per table row / curve point.  Each is an override of the profile's configuration.

_FULL = {  # row F: CLIP(L) + PFA + SRP(Fusion) + MA
    "adapter": {"kind": "pfa"},
    "prompt": {"kind": "srp_fusion"},
    "aggregation": {"kind": "ma"},
}


def _with(base: dict, **sections: dict) -> dict:
    out = copy.deepcopy(base)
    for section, items in sections.items():
        out.setdefault(section, {}).update(items)
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # Table 3 (and Table 12): key components.  F is also Table 6 "MA", Table 9 "CLIP (L)", Table 11 "MA(Mamba)".
    "A": {"backbone": {"frozen": True}},
    "B": {"backbone": {"frozen": False}},
    "C": {"adapter": {"kind": "pfa"}},
    "D": {"prompt": {"kind": "srp_fusion"}},
    "E": {"adapter": {"kind": "pfa"}, "prompt": {"kind": "srp_fusion"}},
    "F": _FULL,
    "G": _with(_FULL, backbone={"frozen": False}),
    # Table 4: prompt mechanisms (CLIP(L) + prompt only); SRP(Fusion) is row D
    "prompt-ip": {"prompt": {"kind": "ip"}},
    "prompt-sp": {"prompt": {"kind": "sp"}},
    "prompt-srp-separation": {"prompt": {"kind": "srp_separation"}},
    # Table 5: adapters (CLIP(L) + adapter only); PFA is row C
    "adapter-lora-64": {"adapter": {"kind": "lora", "rank": 64}},
    "adapter-lora-256": {"adapter": {"kind": "lora", "rank": 256}},
    "adapter-lora-384": {"adapter": {"kind": "lora", "rank": 384}},
    "adapter-bna": {"adapter": {"kind": "bna"}},
    # Table 6: aggregation methods on top of PFA + SRP; MA is row F
    **{
        f"agg-{k.replace('_', '-')}": _with(_FULL, aggregation={"kind": k})
        for k in ("sum", "concat", "transformer", "intra_ma", "inter_ma")
    },
    # Table 8: PFA positions (CLIP(L) + PFA only); side of FFN is row C
    **{
        f"pfa-{p.replace('_', '-')}": {"adapter": {"kind": "pfa", "position": p}}
        for p in ("behind_ffn", "side_mhsa", "behind_mhsa")
    },
    # Table 9: ImageNet ViT backbone (through timm) with the full model; CLIP (L) / (F) are rows F / G
    "vit-l": _with(_FULL, backbone={"kind": "timm", "frozen": True}),
    "vit-f": _with(_FULL, backbone={"kind": "timm", "frozen": False}),
    # Table 11: MA with its Mamba blocks replaced by Transformer blocks; MA(Mamba) is row F
    "ma-trans": _with(_FULL, aggregation={"kind": "ma_trans"}),
    # Fig. 8: d_state (F: 16) and dt_rank (F: ceil(D/16))
    **{f"dstate-{n}": _with(_FULL, aggregation={"d_state": n}) for n in (4, 8, 32, 64)},
    **{f"dtrank-{r}": _with(_FULL, aggregation={"dt_rank": r}) for r in (4, 16, 64)},
    # Fig. 9: prompt length (F: 4), first SRP / PFA layer of 12 (F: 0), number of MA blocks (F: 2)
    **{f"plen-{n}": _with(_FULL, prompt={"length": n}) for n in (2, 8, 16)},
    **{f"srp-from-{s}": _with(_FULL, prompt={"start_layer": s}) for s in (3, 6, 9)},
    **{f"pfa-from-{s}": _with(_FULL, adapter={"start_layer": s}) for s in (3, 6, 9)},
    **{f"mablocks-{n}": _with(_FULL, aggregation={"num_blocks": n}) for n in (1, 3, 4)},
}

# Each paper table / figure as (row label, preset) pairs: rows shared between tables train once.
TABLES: dict[str, list[tuple[str, str]]] = {
    "table3": [(r, r) for r in "ABCDEFG"],
    "table4": [("CLIP(L) + IP", "prompt-ip"), ("CLIP(L) + SP", "prompt-sp"),
               ("CLIP(L) + SRP(Separation)", "prompt-srp-separation"), ("CLIP(L) + SRP(Fusion)", "D")],
    "table5": [("CLIP(L) + LoRA-r(64)", "adapter-lora-64"), ("CLIP(L) + LoRA-r(256)", "adapter-lora-256"),
               ("CLIP(L) + LoRA-r(384)", "adapter-lora-384"), ("CLIP(L) + BNA", "adapter-bna"),
               ("CLIP(L) + PFA", "C")],
    "table6": [("Sum", "agg-sum"), ("Concat", "agg-concat"), ("Transformer", "agg-transformer"),
               ("Intra-MA", "agg-intra-ma"), ("Inter-MA", "agg-inter-ma"), ("MA", "F")],
    "table8": [("Side (FFN)", "C"), ("Behind (FFN)", "pfa-behind-ffn"), ("Side (MHSA)", "pfa-side-mhsa"),
               ("Behind (MHSA)", "pfa-behind-mhsa")],
    "table9": [("ViT (L)", "vit-l"), ("ViT (F)", "vit-f"), ("CLIP (L)", "F"), ("CLIP (F)", "G")],
    "table11": [("MA(Trans)", "ma-trans"), ("MA(Mamba)", "F")],
    "fig8_dstate": [("4", "dstate-4"), ("8", "dstate-8"), ("16", "F"), ("32", "dstate-32"), ("64", "dstate-64")],
    "fig8_dtrank": [("4", "dtrank-4"), ("default", "F"), ("16", "dtrank-16"), ("64", "dtrank-64")],
    "fig9a_prompt_length": [("2", "plen-2"), ("4", "F"), ("8", "plen-8"), ("16", "plen-16")],
    "fig9b_srp_depth": [("1-12", "F"), ("4-12", "srp-from-3"), ("7-12", "srp-from-6"), ("10-12", "srp-from-9")],
    "fig9c_pfa_depth": [("1-12", "F"), ("4-12", "pfa-from-3"), ("7-12", "pfa-from-6"), ("10-12", "pfa-from-9")],
    "fig9d_ma_blocks": [("1", "mablocks-1"), ("2", "F"), ("3", "mablocks-3"), ("4", "mablocks-4")],
}


def preset_overrides(name: str) -> dict[str, Any]:
    """The override dictionary of a named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def scale_layers(cfg: Config, num_layers: int) -> Config:
    """Map 12-layer start indices (the paper's Fig. 9 depths) onto a backbone with ``num_layers`` layers."""
    cfg = copy.deepcopy(cfg)
    for section in (cfg.adapter, cfg.prompt):
        section.start_layer = min(num_layers - 1, math.floor(section.start_layer * num_layers / 12))
    return cfg


# --------------------------------------------------------------------------------------------------------------
# Profiles

def _paper_profile(dataset: str, image_size: list[int], batch: int, k: int, epochs: int, warmup: int,
                   direct: bool) -> dict[str, Any]:
    """Paper scale: ViT-B/16 with OpenAI CLIP weights (Table 9's ImageNet ViT: the official ImageNet-21k ViT-B/16
    as a timm tag), the real dataset under ``data/``, the official yml's schedule and DIRECT mode (secs. 1.6, 4)."""
    return {
        "backbone": {"arch": "ViT-B-16-quickgelu", "pretrained": "openai", "timm_pretrained": "orig_in21k_ft_in1k"},
        "data": {"dataset": dataset, "root": "data", "image_size": image_size, "batch_size": batch,
                 "num_instances": k, "test_batch_size": batch, "num_workers": 8},
        "train": {"epochs": epochs, "warmup_epochs": warmup},
        "loss": {"direct": direct},
    }


PROFILES: dict[str, dict[str, Any]] = {
    # embedded CPU default: synthetic data, tiny proxy-pretrained CLIP, pure-PyTorch scan
    "default": {},
    "rgbnt201": _paper_profile("RGBNT201", [256, 128], 64, 4, 60, 10, direct=True),
    "rgbnt100": _paper_profile("RGBNT100", [128, 256], 128, 16, 30, 5, direct=False),
    "msvr310": _paper_profile("MSVR310", [128, 256], 64, 4, 60, 10, direct=False),
}


def build_config(profile: str = "default", preset: str | None = None, overrides: dict | None = None) -> Config:
    """Profile, then preset, then explicit overrides (``params.yaml`` or the command line) on top."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    cfg = apply_overrides(Config(), PROFILES[profile], where=f"profile {profile}")
    if preset is not None:
        cfg = apply_overrides(cfg, preset_overrides(preset), where=f"preset {preset}")
    if overrides:
        cfg = apply_overrides(cfg, overrides, where="overrides")
    return cfg
