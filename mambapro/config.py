"""Typed configuration: one dataclass tree, the named profiles and presets, and :func:`resolve_config`.

A *profile* (``profiles.yaml`` beside this file) is a full configuration: the embedded CPU default, or paper scale
for one dataset.  A *preset* (``presets.yaml``) is a small override of it naming one row of the paper's ablation
tables (Tables 3, 4, 5, 6, 8, 9, 11, 12) or one point of its hyper-parameter curves (Figs. 8, 9).  Both files are
the only definitions; every entry point (DVC stages, the engine's command line, notebooks, figures, complexity)
builds its configuration with :func:`resolve_config`.  Defaults follow the official code
(``official-implementation.md``); where the paper differs the paper's variant is an option, named in the field's
comment.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambapro.registry import ACTIVATIONS, ADAPTER_POSITIONS, ADAPTERS, AGGREGATORS, DATASETS, PROMPTS, SCAN_BACKENDS

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
    # Validation (not in the paper, which picks its best epoch on the test set): hold out this many training
    # identities, chosen with validation_seed, train on the rest and evaluate on them instead of the test split.
    validation_ids: int = 0  # 0: train on every training identity, evaluate on the test split
    validation_seed: int = 0


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
    # Paper scale on a GPU (issue 20; mambapro.engine).  The defaults keep the official path: fp16 AMP with a
    # GradScaler, deterministic kernels, no TF32, eager mode, last.pt after every epoch, `auto` may pick the CPU.
    require_gpu: bool = False  # `device: auto` without a usable GPU is an error (set by the paper profiles)
    amp_dtype: str = "float16"  # "bfloat16": bf16 autocast, no GradScaler
    deterministic: bool = True  # false: cuDNN benchmark on, deterministic algorithms off
    tf32: bool = False  # TF32 matmuls and convolutions on CUDA; needs deterministic: false
    compile: bool = False  # torch.compile of the model's forward and backward
    checkpoint_every: int = 1  # last.pt every N epochs (and after the last one)


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


# The choices of every enumerated key: the kinds are read from their registries (mambapro/registry.py), which the
# modules implementing them fill; the rest are options of a single module.
_CHOICES = {
    ("backbone", "kind"): ("clip", "timm"),
    ("adapter", "kind"): ADAPTERS,
    ("adapter", "position"): ADAPTER_POSITIONS,
    ("adapter", "activation"): ACTIVATIONS,
    ("prompt", "kind"): PROMPTS,
    ("prompt", "activation"): ACTIVATIONS,
    ("prompt", "init"): ("zeros", "normal"),
    ("aggregation", "kind"): AGGREGATORS,
    ("aggregation", "dt_init"): ("official", "mamba"),
    ("aggregation", "scan_backend"): SCAN_BACKENDS,
    ("data", "dataset"): DATASETS,
    ("train", "amp_dtype"): ("float16", "bfloat16"),
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
    for section in dataclasses.fields(cfg):  # every float, whatever its range: YAML's .inf / .nan, "Infinity"
        for f in dataclasses.fields(getattr(cfg, section.name)):
            value = getattr(getattr(cfg, section.name), f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{section.name}.{f.name} = {value!r} must be a finite number")
    t, d, a, p, g, lo = cfg.train, cfg.data, cfg.adapter, cfg.prompt, cfg.aggregation, cfg.loss
    for key, value, ok, rule in (  # ranges; the paper's and official values in official-implementation.md sec. 4
        ("train.epochs", t.epochs, t.epochs >= 1, ">= 1"),
        ("train.warmup_epochs", t.warmup_epochs, 0 <= t.warmup_epochs < t.epochs,
         f"in [0, train.epochs = {t.epochs})"),
        ("train.base_lr", t.base_lr, t.base_lr > 0, "> 0"),
        ("train.backbone_lr", t.backbone_lr, t.backbone_lr > 0, "> 0"),
        ("train.bias_lr_factor", t.bias_lr_factor, t.bias_lr_factor > 0, "> 0 (bias lr = base_lr x factor)"),
        ("train.weight_decay", t.weight_decay, t.weight_decay >= 0, ">= 0"),
        ("train.weight_decay_bias", t.weight_decay_bias, t.weight_decay_bias >= 0, ">= 0"),
        ("train.eval_every", t.eval_every, t.eval_every >= 1, ">= 1"),
        ("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 1, ">= 1"),
        ("train.tf32", t.tf32, not (t.tf32 and t.deterministic), "false while train.deterministic is true"),
        ("train.seed", t.seed, 0 <= t.seed < 2**63, "in [0, 2**63)"),
        ("data.num_instances", d.num_instances, d.num_instances >= 1, ">= 1"),
        ("data.batch_size", d.batch_size, d.batch_size >= 1, ">= 1"),
        ("data.test_batch_size", d.test_batch_size, d.test_batch_size >= 1, ">= 1"),
        ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0 (0: load in the main process)"),
        ("data.pad", d.pad, d.pad >= 0, ">= 0"),
        ("data.validation_ids", d.validation_ids, d.validation_ids >= 0, ">= 0 (0: evaluate on the test split)"),
        ("data.erasing_prob", d.erasing_prob, 0 <= d.erasing_prob <= 1, "in [0, 1]"),
        ("data.image_size", d.image_size, min(d.image_size) >= 1, "positive (H, W)"),
        ("backbone.sie_coe", cfg.backbone.sie_coe, cfg.backbone.sie_coe >= 0, ">= 0"),
        ("adapter.hidden_ratio", a.hidden_ratio, a.hidden_ratio > 0, "> 0"),
        ("adapter.bottleneck", a.bottleneck, a.bottleneck >= 1, ">= 1"),
        ("adapter.rank", a.rank, a.rank >= 1, ">= 1"),
        ("adapter.start_layer", a.start_layer, 0 <= a.start_layer <= 11, "in [0, 11] (a layer of 12, Fig. 9c)"),
        ("prompt.length", p.length, p.length >= 1, ">= 1"),
        ("prompt.start_layer", p.start_layer, 0 <= p.start_layer <= 11, "in [0, 11] (a layer of 12, Fig. 9b)"),
        ("prompt.transfer_hidden", p.transfer_hidden, p.transfer_hidden >= 1, ">= 1"),
        ("aggregation.num_blocks", g.num_blocks, g.num_blocks >= 1, ">= 1"),
        ("aggregation.d_state", g.d_state, g.d_state >= 1, ">= 1"),
        ("aggregation.dt_rank", g.dt_rank, g.dt_rank is None or g.dt_rank >= 1, ">= 1 or null"),
        ("aggregation.expand", g.expand, g.expand >= 1, ">= 1"),
        ("aggregation.d_conv", g.d_conv, g.d_conv >= 1, ">= 1"),
        ("loss.id_weight", lo.id_weight, lo.id_weight >= 0, ">= 0"),
        ("loss.triplet_weight", lo.triplet_weight, lo.triplet_weight >= 0, ">= 0"),
        ("loss.label_smoothing", lo.label_smoothing, 0 <= lo.label_smoothing < 1, "in [0, 1)"),
        ("loss.triplet_margin", lo.triplet_margin, lo.triplet_margin is None or lo.triplet_margin >= 0,
         ">= 0, or null for the soft margin"),
    ):
        if not ok:
            raise ConfigError(f"{key} = {value!r} must be {rule}")
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
# Presets (one per table row / curve point) and profiles, defined once in the YAML files beside this module

CONFIG_DIR = Path(__file__).resolve().parent
PRESETS_FILE, PROFILES_FILE = CONFIG_DIR / "presets.yaml", CONFIG_DIR / "profiles.yaml"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first[key]}); keep one of the two",
                        key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str, source: str | Path) -> Any:
    """YAML ``text`` read with :class:`UniqueKeyLoader`; an error names ``source``, the line and the key."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else str(source)
        raise ConfigError(f"{where}: {getattr(e, 'problem', None) or e}") from None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e})") from e
    data = load_yaml_text(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of names, got {type(data).__name__}")
    return data


PRESETS: dict[str, dict[str, Any]] = _load_yaml(PRESETS_FILE)
PROFILES: dict[str, dict[str, Any]] = _load_yaml(PROFILES_FILE)
for _name, _entry in PROFILES.items():
    if not isinstance(_entry, dict) or set(_entry) != {"config", "pipeline"}:
        raise ConfigError(f"{PROFILES_FILE}: profile {_name!r} needs exactly the keys 'config' and 'pipeline'")

# Each paper table / figure as (row label, preset) pairs: rows shared between tables train once.  Table 12 is
# Table 3's rows on a vehicle set (the vehicle profile's runs).
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
    "table12": [(r, r) for r in "ABCDEFG"],
    "fig8_dstate": [("4", "dstate-4"), ("8", "dstate-8"), ("16", "F"), ("32", "dstate-32"), ("64", "dstate-64")],
    "fig8_dtrank": [("4", "dtrank-4"), ("default", "F"), ("16", "dtrank-16"), ("64", "dtrank-64")],
    "fig9a_prompt_length": [("2", "plen-2"), ("4", "F"), ("8", "plen-8"), ("16", "plen-16")],
    # Fig. 9a again with the paper's "randomly initialised" prompts (prompt.init normal; the row above: the official
    # zero initialisation, under which a slot's prompts stay one token repeated N_pr times)
    "fig9a_prompt_length_normal": [("2", "plen-2-normal"), ("4", "plen-4-normal"), ("8", "plen-8-normal"),
                                   ("16", "plen-16-normal")],
    "fig9b_srp_depth": [("1-12", "F"), ("4-12", "srp-from-3"), ("7-12", "srp-from-6"), ("10-12", "srp-from-9")],
    "fig9c_pfa_depth": [("1-12", "F"), ("4-12", "pfa-from-3"), ("7-12", "pfa-from-6"), ("10-12", "pfa-from-9")],
    "fig9d_ma_blocks": [("1", "mablocks-1"), ("2", "F"), ("3", "mablocks-3"), ("4", "mablocks-4")],
    # Not in the paper: full fine-tuning's backbone rate, on a validation split (mambapro.selection)
    "backbone_lr_B": [("5e-6", "val-B-lr5e-6"), ("4.3e-5", "val-B-lr43e-6"), ("3e-4", "val-B-lr3e-4"),
                      ("3e-3", "val-B-lr3e-3")],
    "backbone_lr_G": [("5e-6", "val-G-lr5e-6"), ("4.3e-5", "val-G-lr43e-6"), ("3e-4", "val-G-lr3e-4"),
                      ("3e-3", "val-G-lr3e-3")],
}


def preset_overrides(name: str) -> dict[str, Any]:
    """The override dictionary of a named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (in {PRESETS_FILE}); valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name] or {})


def profile_entry(name: str) -> dict[str, Any]:
    """A profile's ``{"config": overrides, "pipeline": {...}}``; an unknown name lists the valid ones."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r} (in {PROFILES_FILE}); valid profiles: {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])


def scale_layers(cfg: Config, num_layers: int) -> Config:
    """Map 12-layer start indices (the paper's Fig. 9 depths) onto a backbone with ``num_layers`` layers."""
    cfg = copy.deepcopy(cfg)
    for section in (cfg.adapter, cfg.prompt):
        section.start_layer = min(num_layers - 1, math.floor(section.start_layer * num_layers / 12))
    return cfg


def resolve_config(profile: str = "default", preset: str | None = None, overrides: dict | None = None) -> Config:
    """The configuration of ``preset`` under ``profile``: dataclass defaults, then the profile, then the preset,
    then explicit ``overrides`` (the command line's ``--set``), each validated."""
    cfg = apply_overrides(Config(), profile_entry(profile)["config"] or {}, where=f"{PROFILES_FILE.name} {profile}")
    if preset is not None:
        cfg = apply_overrides(cfg, preset_overrides(preset), where=f"{PRESETS_FILE.name} {preset}")
    if overrides:
        cfg = apply_overrides(cfg, overrides, where="overrides")
    return cfg


def object_kind(profile: str) -> str:
    """"person" or "vehicle": the ``object`` fact of ``profile``'s ``data.dataset`` (registered with the dataset's
    reader in ``mambapro/data/readers.py``).  The one place that decides whether a profile's runs are on persons or
    on vehicles (Table 12, Fig. 11, ``verify``, the pipeline's ``vehicle`` stages)."""
    return DATASETS.fact(resolve_config(profile).data.dataset, "object")
