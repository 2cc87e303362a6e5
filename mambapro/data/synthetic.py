"""The embedded default's data: a deterministic synthetic RGB / NIR / TIR re-identification benchmark written in
the real datasets' layouts (official-implementation.md sec. 3.1), so the real readers load it unchanged.

    python -m mambapro.data.synthetic --out data/synthetic --seed 0 [--size default|tiny] [--force]

writes ``<out>/RGBNT201/`` (persons), ``<out>/RGBNT100/rgbir/`` and ``<out>/msvr310/`` (vehicles),
``<out>/pretrain/{train,val}/`` (captioned RGB images of other identities, for the proxy CLIP pre-training) and
``<out>/summary.json`` (sizes and the complementarity fractions below).

Identities are tuples of discrete attributes spread over the modalities so that fusion is needed: RGB carries colours
(and degrades under low light and glare), NIR carries material and pattern reflectance (independent of colour and of
the light), TIR carries a blurred heat layout (independent of both).  A few attributes are shared (a person's bag, a
vehicle's type).  Identities are drawn without replacement from the joint attribute space, so the three modalities
together tell every identity apart, while each single modality's attribute tuple is shared by several identities;
``summary.json`` reports the fraction of identities whose tuple is unique per modality.  Cameras (and MSVR310's
scenes) vary illumination, glare, viewpoint, scale, occlusion and background.

Determinism: numpy ``Generator`` draws (integers and uniforms only), elementwise arithmetic and comparisons (no
transcendental functions or float reductions, whose last bits may depend on the CPU's SIMD level), PIL's integer
Gaussian blur and baseline JPEG at a fixed quality, no metadata.  One generator per image, keyed by (seed, dataset,
image number).  The output is generated in a temporary folder and renamed into place at the end.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mambapro.data.readers import DataError

__all__ = [
    "PERSON_VISIBLE",
    "PERSON_VOCAB",
    "SIZES",
    "VEHICLE_VISIBLE",
    "VEHICLE_VOCAB",
    "SyntheticSizes",
    "attribute_oracle",
    "generate",
    "read_caption_set",
    "render_person",
    "render_vehicle",
    "unique_fractions",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
JPEG_QUALITY = 90
MODS = ("RGB", "NI", "TI")

# --------------------------------------------------------------------------------------------------------------
# Attributes: identity = one value per attribute; VISIBLE says which attributes each modality shows.

PERSON_VOCAB: dict[str, tuple[str, ...]] = {
    "top_colour": ("red", "green", "blue", "yellow", "white", "black"),
    "bottom_colour": ("grey", "blue", "black", "brown"),
    "bag": ("no", "yes"),
    "top_pattern": ("plain", "horizontal stripes", "vertical stripes", "checks"),
    "bottom_material": ("cotton", "synthetic"),
    "heat_layout": ("t-shirt", "coat", "hood", "shorts", "vest", "chilled"),
}
PERSON_VISIBLE = {
    "RGB": ("top_colour", "bottom_colour", "bag"),
    "NI": ("top_pattern", "bottom_material", "bag"),
    "TI": ("heat_layout", "bag"),
}
VEHICLE_VOCAB: dict[str, tuple[str, ...]] = {
    "colour": ("white", "black", "red", "blue", "silver", "yellow"),
    "type": ("sedan", "suv", "van"),
    "decal": ("none", "stripe", "double stripe", "checks"),
    "windows": ("clear", "tinted"),
    "heat_layout": ("engine front", "engine rear", "hot tyres", "exhaust"),
}
VEHICLE_VISIBLE = {
    "RGB": ("colour", "type"),
    "NI": ("decal", "windows", "type"),
    "TI": ("heat_layout", "type"),
}

COLOURS = {
    "red": (200, 35, 35), "green": (40, 150, 60), "blue": (40, 70, 200), "yellow": (230, 200, 40),
    "white": (232, 232, 228), "black": (28, 28, 30), "grey": (128, 128, 128), "brown": (120, 80, 40),
    "silver": (172, 176, 182),
}
SKIN = ((230, 190, 160), (200, 150, 110), (150, 100, 70), (100, 70, 50))
TROUSER_BLUE = (50, 60, 140)
# TIR temperature (0-255 grey) of each person region under each heat layout: head, torso, arms, hands, legs
PERSON_HEAT = {
    "t-shirt": (230, 200, 215, 225, 150),
    "coat": (230, 105, 115, 215, 150),
    "hood": (125, 175, 165, 215, 150),
    "shorts": (230, 150, 140, 210, 220),
    "vest": (230, 215, 110, 200, 150),
    "chilled": (190, 130, 125, 150, 125),
}


@dataclass(frozen=True)
class SyntheticSizes:
    """Identities and images per dataset.  ``per_id`` counts samples (triplets); for the vehicle sets' test ids
    ``query_per_id`` of them go to the query folder."""

    person_train_ids: int = 40
    person_test_ids: int = 60
    person_per_id: int = 8
    vehicle_train_ids: int = 40
    vehicle_test_ids: int = 50
    vehicle_per_id: int = 10
    msvr_train_ids: int = 20
    msvr_test_ids: int = 10
    msvr_scenes_per_id: int = 3
    msvr_per_scene: int = 3
    query_per_id: int = 2
    pretrain_person_ids: int = 160
    pretrain_vehicle_ids: int = 160
    pretrain_per_id: int = 4
    pretrain_val_fraction: float = 0.2


SIZES = {
    "default": SyntheticSizes(),
    "tiny": SyntheticSizes(person_train_ids=6, person_test_ids=4, person_per_id=4, vehicle_train_ids=6,
                           vehicle_test_ids=4, vehicle_per_id=5, msvr_train_ids=4, msvr_test_ids=3,
                           msvr_scenes_per_id=2, msvr_per_scene=2, pretrain_person_ids=10, pretrain_vehicle_ids=10,
                           pretrain_per_id=2),
}

# image sizes (H, W) per modality
PERSON_HW = (128, 64)
RGBNT100_HW = (128, 256)  # fixed by the official crop boxes: three 256x128 crops side by side
MSVR_HW = (64, 128)


# --------------------------------------------------------------------------------------------------------------
# Cameras: per-camera illumination, glare, viewpoints, scale, occlusion and background


@dataclass(frozen=True)
class Camera:
    light: float  # RGB gain (1 = daylight, 0.2 = night)
    glare: float  # probability of a saturating glare spot in RGB
    views: tuple[float, ...]  # probabilities of the views (persons: front/back/side; vehicles: left/right/f-l/f-r)
    scale: tuple[float, float]  # object size range (fraction of the image)
    occlusion: float  # probability of an occluder in front of the object
    background: int  # seed of the background's colours and texture


PERSON_CAMERAS = (
    Camera(1.00, 0.05, (0.5, 0.3, 0.2), (0.82, 0.97), 0.10, 11),
    Camera(0.60, 0.25, (0.2, 0.2, 0.6), (0.72, 0.92), 0.20, 12),
    Camera(0.22, 0.40, (0.4, 0.4, 0.2), (0.76, 0.95), 0.10, 13),
    Camera(0.85, 0.10, (0.2, 0.6, 0.2), (0.68, 0.90), 0.35, 14),
)
VEHICLE_CAMERAS = (
    Camera(1.00, 0.05, (0.4, 0.4, 0.1, 0.1), (0.82, 0.97), 0.10, 21),
    Camera(0.90, 0.15, (0.1, 0.1, 0.4, 0.4), (0.75, 0.95), 0.15, 22),
    Camera(0.70, 0.10, (0.5, 0.2, 0.2, 0.1), (0.70, 0.90), 0.30, 23),
    Camera(0.50, 0.30, (0.2, 0.5, 0.1, 0.2), (0.80, 0.97), 0.10, 24),
    Camera(0.35, 0.35, (0.3, 0.3, 0.2, 0.2), (0.72, 0.92), 0.20, 25),
    Camera(0.20, 0.45, (0.25, 0.25, 0.25, 0.25), (0.78, 0.96), 0.10, 26),
    Camera(0.80, 0.20, (0.1, 0.4, 0.1, 0.4), (0.70, 0.93), 0.25, 27),
    Camera(0.15, 0.50, (0.4, 0.1, 0.4, 0.1), (0.76, 0.95), 0.15, 28),
)
PERSON_VIEWS = ("front", "back", "side")
VEHICLE_VIEWS = ("left", "right", "front-left", "front-right")


def _background(seed: int, cam: Camera, hw: tuple[int, int], rng: np.random.Generator, light: float):
    """Per-camera background in the three modalities (colours from the camera's seed, small per-image jitter)."""
    h, w = hw
    b = np.random.default_rng([seed, 7, cam.background])
    top, ground = b.integers(40, 220, 3), b.integers(40, 200, 3)
    horizon = int(h * (0.35 + 0.3 * b.random()))
    period = int(b.integers(6, 20))
    ys = np.arange(h)[:, None]
    xs = np.arange(w)[None, :]
    upper = ys < horizon + int(rng.integers(-3, 4))
    bands = ((xs + int(rng.integers(0, period))) // period) % 2 == 1
    rgb = np.where(upper[..., None], top[None, None, :], ground[None, None, :]).astype(np.float32)
    rgb = rgb * np.where((upper & bands)[..., None], np.float32(0.8), np.float32(1.0))
    rgb = np.broadcast_to(rgb, (h, w, 3)) * np.float32(light)
    nir_top, nir_ground = int(b.integers(60, 160)), int(b.integers(50, 140))
    nir = np.where(upper, np.float32(nir_top), np.float32(nir_ground)) * np.where(upper & bands, 0.85, 1.0)
    ambient = int(b.integers(35, 90))
    tir = np.where(upper, np.float32(ambient), np.float32(ambient + 15))
    nir = np.broadcast_to(nir, (h, w)).astype(np.float32)
    tir = np.broadcast_to(tir, (h, w)).astype(np.float32)
    return rgb, nir, tir, ambient


def _pick(rng: np.random.Generator, probs) -> int:
    return int(np.searchsorted(np.cumsum(probs), rng.random() * sum(probs), side="right"))


def _rect(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u < u1) & (v >= v0) & (v < v1)


def _ellipse(x, y, cx, cy, rx, ry):
    dx, dy = (x - cx) / rx, (y - cy) / ry
    return dx * dx + dy * dy <= 1.0


def _finish(rgb, nir, tir, rng: np.random.Generator, light: float, glare: bool, hw, blur: float,
            modalities) -> dict[str, np.ndarray]:
    """Glare and noise, TIR blur, quantisation to uint8 three-channel arrays."""
    h, w = hw
    out = {}
    if "RGB" in modalities:
        if glare:  # a saturating spot (lamp, sun, headlight), three concentric rings
            ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
            cx, cy = w * rng.random(), h * (0.1 + 0.8 * rng.random())
            r = min(h, w) * (0.15 + 0.25 * rng.random())
            for k, add in ((1.5, 60.0), (1.0, 90.0), (0.5, 150.0)):
                rgb = rgb + np.float32(add) * _ellipse(xs, ys, cx, cy, r * k, r * k)[..., None]
        amp = int(4 + 40 * max(0.0, 1.0 - light))  # sensor noise grows in low light
        rgb = rgb + rng.integers(-amp, amp + 1, rgb.shape).astype(np.float32)
        out["RGB"] = np.clip(rgb, 0, 255).astype(np.uint8)
    if "NI" in modalities:
        nir = nir + rng.integers(-6, 7, nir.shape).astype(np.float32)
        out["NI"] = np.repeat(np.clip(nir, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if "TI" in modalities:
        t = Image.fromarray(np.clip(tir, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
        t = np.asarray(t).astype(np.int16) + rng.integers(-3, 4, (h, w)).astype(np.int16)
        out["TI"] = np.repeat(np.clip(t, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return out


def _occluder(rng, u, v, horizontal: bool):
    """An occluder (barrier, bonnet or pole) covering part of the object, in box coordinates."""
    if horizontal:
        v0 = 0.62 + 0.25 * rng.random()
        return _rect(u, v, -1.0, 2.0, v0, 2.0)
    u0 = rng.random() * 0.8
    return _rect(u, v, u0, u0 + 0.12 + 0.1 * rng.random(), -1.0, 2.0)


# --------------------------------------------------------------------------------------------------------------
# Rendering


def render_person(attrs: dict[str, str], cam: Camera, rng: np.random.Generator, seed: int = 0,
                  hw: tuple[int, int] = PERSON_HW, modalities=MODS) -> dict[str, np.ndarray]:
    """A person seen by ``cam``: uint8 [H, W, 3] arrays per modality (NI and TI grey in three channels)."""
    h, w = hw
    light = cam.light * (0.85 + 0.3 * rng.random())
    rgb, nir, tir, ambient = _background(seed, cam, hw, rng, light)
    view = PERSON_VIEWS[_pick(rng, cam.views)]
    bh = h * (cam.scale[0] + (cam.scale[1] - cam.scale[0]) * rng.random())
    bw = bh * (0.42 if view != "side" else 0.30)
    x0 = (w - bw) * rng.random()
    y0 = (h - bh) * (0.3 + 0.7 * rng.random())
    ys, xs = np.arange(h, dtype=np.float32)[:, None] + 0.5, np.arange(w, dtype=np.float32)[None, :] + 0.5
    u, v = (xs - x0) / bw, (ys - y0) / bh
    mirror = rng.random() < 0.5
    if mirror:
        u = 1.0 - u
    stride = 0.07 * rng.random()
    if view == "side":
        torso = _rect(u, v, 0.28, 0.72, 0.17, 0.53)
        arms = _rect(u, v, 0.40, 0.60, 0.18, 0.50)
        hands = _rect(u, v, 0.40, 0.60, 0.50, 0.55)
        legs = _rect(u, v, 0.30 - stride, 0.55 - stride, 0.53, 0.95) | _rect(u, v, 0.45 + stride, 0.70 + stride,
                                                                             0.53, 0.95)
        shoes = _rect(u, v, 0.25 - stride, 0.60 - stride, 0.95, 1.0) | _rect(u, v, 0.40 + stride, 0.78 + stride,
                                                                             0.95, 1.0)
        bag = _rect(u, v, 0.62, 0.92, 0.38, 0.62)
        head = _ellipse(u, v, 0.5, 0.085, 0.22, 0.08)
    else:
        torso = _rect(u, v, 0.22, 0.78, 0.17, 0.53)
        arms = _rect(u, v, 0.06, 0.21, 0.18, 0.50) | _rect(u, v, 0.79, 0.94, 0.18, 0.50)
        hands = _rect(u, v, 0.06, 0.21, 0.50, 0.55) | _rect(u, v, 0.79, 0.94, 0.50, 0.55)
        legs = _rect(u, v, 0.25 - stride, 0.48 - stride, 0.53, 0.95) | _rect(u, v, 0.52 + stride, 0.75 + stride,
                                                                             0.53, 0.95)
        shoes = _rect(u, v, 0.24 - stride, 0.49 - stride, 0.95, 1.0) | _rect(u, v, 0.51 + stride, 0.76 + stride,
                                                                             0.95, 1.0)
        bag = _rect(u, v, 0.80, 1.02, 0.40, 0.62)
        head = _ellipse(u, v, 0.5, 0.085, 0.17, 0.08)
    upper = torso | arms
    has_bag = attrs["bag"] == "yes"
    occl = _occluder(rng, u, v, horizontal=rng.random() < 0.6) if rng.random() < cam.occlusion else None
    hair = view == "back"

    if "RGB" in modalities:
        skin = np.array(SKIN[int(rng.integers(0, len(SKIN)))], np.float32)
        cast = (0.9 + 0.2 * rng.random(3)).astype(np.float32) * np.float32(light)  # white balance x light
        bottom = TROUSER_BLUE if attrs["bottom_colour"] == "blue" else COLOURS[attrs["bottom_colour"]]
        for mask, colour in ((head, (40, 30, 25) if hair else skin), (upper, COLOURS[attrs["top_colour"]]),
                             (hands, skin), (legs, bottom), (shoes, (35, 35, 38))):
            rgb = np.where(mask[..., None], np.asarray(colour, np.float32) * cast, rgb)
        if has_bag:
            rgb = np.where(bag[..., None], np.asarray((95, 62, 30), np.float32) * cast, rgb)
        if occl is not None:
            rgb = np.where(occl[..., None], np.asarray(rng.integers(30, 120, 3), np.float32) * cast, rgb)
    if "NI" in modalities:  # active NIR: reflectance only, the same for every paint colour and light
        gain = np.float32(0.9 + 0.2 * rng.random())
        period = max(2, int(round(0.055 * bh)))
        yy = np.floor((ys - y0) / period).astype(np.int32) % 2
        xx = np.floor((xs - x0) / period).astype(np.int32) % 2
        pattern = {"plain": np.zeros((h, w), np.int32), "horizontal stripes": np.broadcast_to(yy, (h, w)),
                   "vertical stripes": np.broadcast_to(xx, (h, w)), "checks": yy ^ xx}[attrs["top_pattern"]]
        top = np.where(pattern == 1, np.float32(205), np.float32(95)) if attrs["top_pattern"] != "plain" else 130
        nir = np.where(head, np.float32(95 if hair else 160), nir)
        nir = np.where(upper, top, nir)
        nir = np.where(hands, np.float32(160), nir)
        nir = np.where(legs, np.float32(70 if attrs["bottom_material"] == "cotton" else 195), nir)
        nir = np.where(shoes, np.float32(45), nir)
        if has_bag:
            nir = np.where(bag, np.float32(115), nir)
        if occl is not None:
            nir = np.where(occl, np.float32(100), nir)
        nir = nir * gain
    if "TI" in modalities:  # heat layout, independent of light and colour
        t_head, t_torso, t_arms, t_hands, t_legs = PERSON_HEAT[attrs["heat_layout"]]
        hair_cool = 25 if hair else 0
        for mask, temp in ((head, t_head - hair_cool), (torso, t_torso), (arms, t_arms), (hands, t_hands),
                           (legs, t_legs), (shoes, 95)):
            tir = np.where(mask, np.float32(temp), tir)
        if has_bag:
            tir = np.where(bag, np.float32(ambient + 25), tir)
        if occl is not None:
            tir = np.where(occl, np.float32(ambient + 10), tir)
    glare = rng.random() < cam.glare
    return _finish(rgb, nir, tir, rng, light, glare, hw, max(1.0, 0.03 * h), modalities)


VEHICLE_HEAT = {  # body, hot zone value; zones in side-view box coordinates (front at u = 1)
    "engine front": (115, 230),
    "engine rear": (115, 230),
    "hot tyres": (105, 235),
    "exhaust": (120, 250),
}
_CABINS = {"sedan": (0.24, 0.72, 0.10), "suv": (0.16, 0.84, 0.04), "van": (0.04, 0.92, 0.0)}


def render_vehicle(attrs: dict[str, str], cam: Camera, rng: np.random.Generator, seed: int = 0,
                   hw: tuple[int, int] = RGBNT100_HW, modalities=MODS, light: float | None = None,
                   glare_prob: float | None = None) -> dict[str, np.ndarray]:
    """A vehicle seen by ``cam`` (``light`` / ``glare_prob`` override the camera's, e.g. by MSVR310's scene)."""
    h, w = hw
    base_light = cam.light if light is None else light
    light = base_light * (0.85 + 0.3 * rng.random())
    rgb, nir, tir, ambient = _background(seed, cam, hw, rng, light)
    view = VEHICLE_VIEWS[_pick(rng, cam.views)]
    bw = w * (cam.scale[0] + (cam.scale[1] - cam.scale[0]) * rng.random())
    bh = min(h * 0.95, bw * 0.45)
    x0 = (w - bw) * rng.random()
    y0 = (h - bh) * (0.4 + 0.6 * rng.random())
    ys, xs = np.arange(h, dtype=np.float32)[:, None] + 0.5, np.arange(w, dtype=np.float32)[None, :] + 0.5
    u, v = (xs - x0) / bw, (ys - y0) / bh
    mirrored = view in ("left", "front-left")
    if mirrored:
        u = 1.0 - u  # front faces left
    u_full = u
    three_quarter = view.startswith("front")
    face = _rect(u, v, 0.76, 1.0, 0.12, 0.85) if three_quarter else np.zeros((h, w), bool)
    if three_quarter:  # compressed side plus the front face
        u = u / 0.76
    cab_u0, cab_u1, cab_v0 = _CABINS[attrs["type"]]
    body = _rect(u, v, 0.0, 1.0, 0.36, 0.82)
    cabin = _rect(u, v, cab_u0, cab_u1, cab_v0, 0.36)
    windows = _rect(u, v, cab_u0 + 0.04, cab_u1 - 0.04, cab_v0 + 0.05, 0.34)
    if attrs["type"] == "van":
        windows = _rect(u, v, 0.72, 0.88, 0.06, 0.34)
    radius = 0.17 * bh
    span = bw * (0.76 if three_quarter else 1.0)
    wheels = np.zeros((h, w), bool)
    for wu in (0.2, 0.8):
        cx = x0 + (bw - wu * span if mirrored else wu * span)
        wheels |= _ellipse(xs, ys, cx, y0 + 0.82 * bh, radius, radius)
    decal = attrs["decal"]
    period = max(2, int(round(0.08 * bh)))
    yy = np.floor((ys - y0) / period).astype(np.int32) % 2
    xx = np.floor((xs - x0) / period).astype(np.int32) % 2
    decal_mask = {"none": np.zeros((h, w), bool), "stripe": _rect(u, v, 0.06, 0.94, 0.50, 0.62),
                  "double stripe": _rect(u, v, 0.06, 0.94, 0.44, 0.50) | _rect(u, v, 0.06, 0.94, 0.60, 0.66),
                  "checks": _rect(u, v, 0.06, 0.94, 0.44, 0.68) & ((yy ^ xx) == 1)}[decal]
    lights_front = _rect(u, v, 0.95, 1.0, 0.42, 0.54)
    lights_rear = _rect(u, v, 0.0, 0.04, 0.42, 0.54)
    body, cabin, windows = body & ~face, cabin & ~face, windows & ~face
    decal_mask, lights_front, lights_rear = decal_mask & ~face, lights_front & ~face, lights_rear & ~face
    occl = _occluder(rng, u, v, horizontal=rng.random() < 0.4) if rng.random() < cam.occlusion else None
    windscreen = face & _rect(u_full, v, 0.78, 0.98, cab_v0 + 0.05, 0.4)
    headlights = face & _rect(u_full, v, 0.78, 0.98, 0.5, 0.6) & ~_rect(u_full, v, 0.82, 0.94, 0.5, 0.6)
    shell = body | cabin | face

    if "RGB" in modalities:
        cast = (0.9 + 0.2 * rng.random(3)).astype(np.float32) * np.float32(light)
        paint = np.asarray(COLOURS[attrs["colour"]], np.float32) * cast
        rgb = np.where(shell[..., None], paint, rgb)
        for mask, colour in ((windows | windscreen, (55, 62, 75)), (wheels, (25, 25, 25)),
                             (lights_rear, (200, 30, 30))):
            rgb = np.where(mask[..., None], np.asarray(colour, np.float32) * cast, rgb)
        on = np.float32(1.0 if light < 0.45 else 0.0)  # headlights on at night: bright whatever the light
        lamp = np.asarray((235, 235, 205), np.float32) * (cast * (1 - on) + on)
        rgb = np.where((lights_front | headlights)[..., None], lamp, rgb)
        if occl is not None:
            rgb = np.where(occl[..., None], np.asarray(rng.integers(30, 120, 3), np.float32) * cast, rgb)
    if "NI" in modalities:
        gain = np.float32(0.9 + 0.2 * rng.random())
        nir = np.where(shell, np.float32(140), nir)
        nir = np.where(decal_mask, np.float32(235), nir)
        nir = np.where(windows | windscreen, np.float32(45 if attrs["windows"] == "tinted" else 175), nir)
        nir = np.where(wheels, np.float32(40), nir)
        nir = np.where(lights_front | lights_rear | headlights, np.float32(200), nir)
        if occl is not None:
            nir = np.where(occl, np.float32(100), nir)
        nir = nir * gain
    if "TI" in modalities:
        body_t, hot = VEHICLE_HEAT[attrs["heat_layout"]]
        tir = np.where(shell, np.float32(body_t), tir)
        tir = np.where(windows | windscreen, np.float32(ambient + 20), tir)
        tir = np.where(wheels, np.float32(150), tir)
        layout = attrs["heat_layout"]
        if layout == "engine front":
            zone = (_rect(u, v, 0.74, 1.0, 0.36, 0.80) & body) | (face & (v >= 0.4))
        elif layout == "engine rear":
            zone = _rect(u, v, 0.0, 0.26, 0.36, 0.80) & body
        elif layout == "hot tyres":
            zone = wheels
        else:
            zone = _rect(u, v, 0.0, 0.08, 0.72, 0.86)
            tir = np.where(_rect(u, v, 0.74, 1.0, 0.36, 0.80) & body, np.float32(170), tir)
        tir = np.where(zone, np.float32(hot), tir)
        if occl is not None:
            tir = np.where(occl, np.float32(ambient + 10), tir)
    glare = rng.random() < (cam.glare if glare_prob is None else glare_prob)
    return _finish(rgb, nir, tir, rng, light, glare, hw, max(1.0, 0.03 * h), modalities)


# --------------------------------------------------------------------------------------------------------------
# Identities


def _tuple(attrs: dict[str, str], keys) -> tuple[str, ...]:
    return tuple(attrs[k] for k in keys)


def unique_fractions(identities: list[dict[str, str]], visible: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Fraction of identities whose attribute tuple is unique, for each modality and each combination of them."""
    out = {}
    for r in (1, 2, 3):
        for combo in combinations(MODS, r):
            keys = sorted({k for m in combo for k in visible[m]})
            tuples = [_tuple(a, keys) for a in identities]
            counts = {t: tuples.count(t) for t in set(tuples)}
            out["+".join(combo)] = sum(counts[t] == 1 for t in tuples) / max(1, len(tuples))
    return out


def _draw_identities(rng: np.random.Generator, vocab, n: int, taken: set) -> list[dict[str, str]]:
    out = []
    keys = list(vocab)
    while len(out) < n:
        attrs = {k: vocab[k][int(rng.integers(0, len(vocab[k])))] for k in keys}
        t = _tuple(attrs, keys)
        if t not in taken:
            taken.add(t)
            out.append(attrs)
    return out


def _force_collisions(ids: list[dict[str, str]], vocab, visible, taken: set) -> None:
    """Make sure no single modality tells every identity of ``ids`` apart: where one does, give one identity the
    modality's attributes of another (keeping the joint tuples distinct).  Rarely needed beyond tiny sizes."""
    keys = list(vocab)
    for _ in range(20):
        changed = False
        for m in MODS:
            fr = unique_fractions(ids, visible)[m]
            if len(ids) < 2 or fr < 1.0:
                continue
            for i, j in combinations(range(len(ids)), 2):
                new = dict(ids[j], **{k: ids[i][k] for k in visible[m]})
                t = _tuple(new, keys)
                if t not in taken:
                    taken.discard(_tuple(ids[j], keys))
                    taken.add(t)
                    ids[j] = new
                    changed = True
                    break
        if not changed:
            return
    raise RuntimeError("could not make every single modality ambiguous; use more identities")


# --------------------------------------------------------------------------------------------------------------
# Writing


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False,
                                          progressive=False)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class _CameraCycle:
    """Cameras handed out round-robin from a random start: every camera of a split is used (once it has at least
    k images) and about equally often, and any k consecutive images come from k different cameras."""

    def __init__(self, rng: np.random.Generator, k: int):
        self.rng, self.k, self.next = rng, k, int(rng.integers(0, k))

    def take(self, n: int, shuffle: bool = True) -> list[int]:
        cams = [(self.next + t) % self.k for t in range(n)]
        self.next += n
        return [cams[i] for i in self.rng.permutation(n)] if shuffle else sorted(cams)


def _pids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    return sorted(int(p) for p in rng.choice(np.arange(low, high + 1), size=n, replace=False))


def _labelled(train_ids, train_pids, test_ids, test_pids) -> dict[str, list[dict]]:
    """Identities with their raw ids, as written to summary.json (the benchmark's ground truth)."""
    return {"train": [{"pid": p, **a} for p, a in zip(train_pids, train_ids)],
            "test": [{"pid": p, **a} for p, a in zip(test_pids, test_ids)]}


def _split_stats(records: list[tuple[int, int, int]]) -> dict[str, int]:
    return {"ids": len({r[0] for r in records}), "images": len(records), "cameras": len({r[1] for r in records}),
            "scenes": len({r[2] for r in records if r[2] >= 0})}


def _split_identities(rng: np.random.Generator, vocab, visible, n_train: int, n_test: int, taken: set,
                      id_high: int) -> tuple[list, list, list[int], list[int]]:
    """Train and test identities (disjoint attribute tuples) and their sorted raw ids, drawn from 1..id_high."""
    train_ids = _draw_identities(rng, vocab, n_train, taken)
    test_ids = _draw_identities(rng, vocab, n_test, taken)
    _force_collisions(train_ids, vocab, visible, taken)
    _force_collisions(test_ids, vocab, visible, taken)
    pids = _pids(rng, len(train_ids) + len(test_ids), 1, id_high)
    order = rng.permutation(len(pids))
    return (train_ids, test_ids, sorted(pids[i] for i in order[: len(train_ids)]),
            sorted(pids[i] for i in order[len(train_ids):]))


def _make_rgbnt201(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 201])
    train_ids, test_ids, train_pids, test_pids = _split_identities(
        rng, PERSON_VOCAB, PERSON_VISIBLE, sz.person_train_ids, sz.person_test_ids, taken, 999)
    stats, serial = {}, 0
    for split, folder, ids, raw in (("train", "train_171", train_ids, train_pids),
                                    ("test", "test", test_ids, test_pids)):
        recs = []
        cycle = _CameraCycle(rng, len(PERSON_CAMERAS))
        for attrs, pid in zip(ids, raw):
            for k, cam in enumerate(cycle.take(sz.person_per_id)):
                serial += 1
                img = render_person(attrs, PERSON_CAMERAS[cam], np.random.default_rng([seed, 201, serial]), seed)
                name = f"{pid:06d}_cam{cam + 1}_{k:04d}.jpg"
                for m in MODS:
                    _write(out / "RGBNT201" / folder / m / name, _jpeg(img[m]))
                recs.append((pid, cam, -1))
        stats[split] = _split_stats(recs)
    return {"splits": {"train": stats["train"], "query": stats["test"], "gallery": stats["test"]},
            "image_size_hw": list(PERSON_HW), "identities": _labelled(train_ids, train_pids, test_ids, test_pids),
            "visible": PERSON_VISIBLE}


def _make_rgbnt100(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 100])
    train_ids, test_ids, train_pids, test_pids = _split_identities(
        rng, VEHICLE_VOCAB, VEHICLE_VISIBLE, sz.vehicle_train_ids, sz.vehicle_test_ids, taken, 600)
    recs = {"train": [], "query": [], "gallery": []}
    serial = 0
    base = out / "RGBNT100" / "rgbir"
    for split, ids, raw in (("train", train_ids, train_pids), ("test", test_ids, test_pids)):
        cycle = _CameraCycle(rng, len(VEHICLE_CAMERAS))
        for attrs, pid in zip(ids, raw):
            cams = cycle.take(sz.vehicle_per_id)
            for k, cam in enumerate(cams):
                serial += 1
                img = render_vehicle(attrs, VEHICLE_CAMERAS[cam], np.random.default_rng([seed, 100, serial]), seed)
                strip = np.concatenate([img[m] for m in MODS], axis=1)  # RGB | NI | TI, 768 x 128
                if split == "train":
                    target = "train"
                else:  # the first query_per_id go to the query folder (the rest of the id spans >= 2 cameras)
                    target = "query" if k < sz.query_per_id else "gallery"
                folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}[target]
                _write(base / folder / f"{pid:04d}_c{cam + 1}_{serial:05d}.jpg", _jpeg(strip))
                recs[target].append((pid, cam, -1))
    return {"splits": {k: _split_stats(v) for k, v in recs.items()}, "image_size_hw": list(RGBNT100_HW),
            "identities": _labelled(train_ids, train_pids, test_ids, test_pids), "visible": VEHICLE_VISIBLE}


def _make_msvr310(out: Path, seed: int, sz: SyntheticSizes, taken: set) -> dict:
    rng = np.random.default_rng([seed, 310])
    train_ids, test_ids, train_vids, test_vids = _split_identities(
        rng, VEHICLE_VOCAB, VEHICLE_VISIBLE, sz.msvr_train_ids, sz.msvr_test_ids, taken, 9999)
    recs = {"train": [], "query": [], "gallery": []}
    serial, scene_no = 0, 0
    for split, ids, raw in (("train", train_ids, train_vids), ("test", test_ids, test_vids)):
        cycle = _CameraCycle(rng, len(VEHICLE_CAMERAS))
        for attrs, vid in zip(ids, raw):
            k = 0
            for s in range(sz.msvr_scenes_per_id):
                scene_no += 1
                scene_light = 0.15 + 0.85 * rng.random()  # the scene (time of day) sets the light
                scene_glare = 0.5 * (1.0 - scene_light)
                for cam in cycle.take(sz.msvr_per_scene, shuffle=False):
                    serial += 1
                    img = render_vehicle(attrs, VEHICLE_CAMERAS[cam], np.random.default_rng([seed, 310, serial]),
                                         seed, hw=MSVR_HW, light=scene_light, glare_prob=scene_glare)
                    if split == "train":
                        target = "train"
                    else:  # queries come from the id's first scene; its other scenes keep the gallery valid
                        target = "query" if s == 0 and k < sz.query_per_id else "gallery"
                    folder = MSVR_FOLDERS[target]
                    name = f"{vid:04d}_s{scene_no:03d}_v{cam}_{k:03d}.jpg"
                    for m, sub in zip(MODS, ("vis", "ni", "th")):
                        _write(out / "msvr310" / folder / f"{vid:04d}" / sub / name, _jpeg(img[m]))
                    recs[target].append((vid, cam, scene_no))
                    k += 1
    return {"splits": {k: _split_stats(v) for k, v in recs.items()}, "image_size_hw": list(MSVR_HW),
            "identities": _labelled(train_ids, train_vids, test_ids, test_vids), "visible": VEHICLE_VISIBLE}


MSVR_FOLDERS = {"train": "bounding_box_train", "query": "query3", "gallery": "bounding_box_test"}
CAPTION_COLUMNS = ("file", "caption", "domain", "colour", "lower_colour", "shape", "bag", "view")


def _person_caption(a: dict[str, str]) -> str:
    bag = " carrying a bag" if a["bag"] == "yes" else ""
    return f"a person in a {a['top_colour']} top and {a['bottom_colour']} trousers{bag}"


def _vehicle_caption(a: dict[str, str], view: str) -> str:
    return f"a {a['colour']} {'SUV' if a['type'] == 'suv' else a['type']} seen from the {view}"


def _make_pretrain(out: Path, seed: int, sz: SyntheticSizes, taken_p: set, taken_v: set) -> dict:
    """RGB images of identities disjoint from the ReID sets, with coarse attribute captions (no identity)."""
    rng = np.random.default_rng([seed, 999])
    people = _draw_identities(rng, PERSON_VOCAB, sz.pretrain_person_ids, taken_p)
    vehicles = _draw_identities(rng, VEHICLE_VOCAB, sz.pretrain_vehicle_ids, taken_v)
    rows = {"train": [], "val": []}
    serial = 0
    for domain, ids in (("person", people), ("vehicle", vehicles)):
        n_val = max(1, int(round(len(ids) * sz.pretrain_val_fraction)))
        for i, attrs in enumerate(ids):
            split = "val" if i >= len(ids) - n_val else "train"
            for _ in range(sz.pretrain_per_id):
                serial += 1
                r = np.random.default_rng([seed, 999, serial])
                if domain == "person":
                    cam = PERSON_CAMERAS[int(r.integers(0, len(PERSON_CAMERAS)))]
                    img = render_person(attrs, cam, r, seed, modalities=("RGB",))["RGB"]
                    row = {"caption": _person_caption(attrs), "colour": attrs["top_colour"],
                           "lower_colour": attrs["bottom_colour"], "shape": "person", "bag": attrs["bag"],
                           "view": "n/a"}
                else:
                    view = "side" if r.random() < 0.5 else "front"
                    probs = (0.5, 0.5, 0.0, 0.0) if view == "side" else (0.0, 0.0, 0.5, 0.5)
                    base = VEHICLE_CAMERAS[int(r.integers(0, len(VEHICLE_CAMERAS)))]
                    cam = Camera(base.light, base.glare, probs, base.scale, base.occlusion, base.background)
                    img = render_vehicle(attrs, cam, r, seed, hw=MSVR_HW, modalities=("RGB",))["RGB"]
                    row = {"caption": _vehicle_caption(attrs, view), "colour": attrs["colour"], "lower_colour": "n/a",
                           "shape": attrs["type"], "bag": "n/a", "view": view}
                name = f"{domain}_{serial:05d}.jpg"
                _write(out / "pretrain" / split / name, _jpeg(img))
                rows[split].append({"file": name, "domain": domain, **row})
    n_val = {d: max(1, int(round(len(ids) * sz.pretrain_val_fraction))) for d, ids in (("person", people),
                                                                                     ("vehicle", vehicles))}
    identities = {d: {"train": ids[: len(ids) - n_val[d]], "val": ids[len(ids) - n_val[d]:]}
                  for d, ids in (("person", people), ("vehicle", vehicles))}
    for split, rs in rows.items():
        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=CAPTION_COLUMNS, lineterminator="\n")
        wr.writeheader()
        wr.writerows(rs)
        _write(out / "pretrain" / split / "captions.csv", buf.getvalue().encode())
    out = {split: {"images": len(rs), "persons": sum(r["domain"] == "person" for r in rs),
                   "vehicles": sum(r["domain"] == "vehicle" for r in rs),
                   "distinct_captions": len({r["caption"] for r in rs})} for split, rs in rows.items()}
    out["identities"] = identities
    return out


def _tree_digest(root: Path) -> str:
    """SHA-256 over every file's relative path and content."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _build(out: Path, seed: int, size: str) -> dict:
    sz = SIZES[size]
    taken_p, taken_v = set(), set()
    datasets = {
        "RGBNT201": _make_rgbnt201(out, seed, sz, taken_p),
        "RGBNT100": _make_rgbnt100(out, seed, sz, taken_v),
        "MSVR310": _make_msvr310(out, seed, sz, taken_v),
    }
    for d in datasets.values():
        ids = d["identities"]
        vis = d.pop("visible")
        d["visible_attributes"] = {m: list(k) for m, k in vis.items()}
        d["unique_fraction"] = {"all": unique_fractions(ids["train"] + ids["test"], vis),
                                "train": unique_fractions(ids["train"], vis),
                                "test": unique_fractions(ids["test"], vis)}
    summary = {
        "generator": "mambapro.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "sizes": asdict(sz),
        "datasets": datasets,
        "pretrain": _make_pretrain(out, seed, sz, taken_p, taken_v),
        "vocabulary": {"person": {k: list(v) for k, v in PERSON_VOCAB.items()},
                       "vehicle": {k: list(v) for k, v in VEHICLE_VOCAB.items()}},
    }
    summary["content_sha256"] = _tree_digest(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def generate(out: str | Path, seed: int = 0, size: str = "default", force: bool = False) -> dict:
    """Write the benchmark to ``out`` (atomically) and return its summary.  An existing non-empty ``out`` that
    differs from what this seed and size produce is refused unless ``force``; an identical one is left as it is."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary = _build(tmp, seed, size)
        if out.exists() and any(out.iterdir()):
            if _tree_digest(out) == _tree_digest(tmp):
                log.info("%s is already up to date", out)
                return summary
            if not force:
                raise FileExistsError(f"{out} exists, is not empty and differs from the benchmark of seed {seed}, "
                                      f"size {size!r}; pass --force (force=True) to replace it")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        return summary
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# --------------------------------------------------------------------------------------------------------------
# Reading the caption set


def read_caption_set(root: str | Path, split: str, domain: str | None = None) -> list[dict]:
    """Records of ``<root>/pretrain/<split>/captions.csv``: {"path", "file", "caption", "domain", "attributes"}
    where "attributes" maps each attribute column (colour, lower_colour, shape, bag, view; "n/a" where the caption
    says nothing) to its value.  ``domain`` ("person" / "vehicle") keeps one kind only."""
    folder = Path(root) / "pretrain" / split
    table = folder / "captions.csv"
    if not table.is_file():
        raise DataError(f"caption table not found: {table}")
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        missing_cols = [c for c in CAPTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise DataError(f"{table}: missing column(s) {missing_cols}")
        rows = list(reader)
    records, missing = [], []
    for row in rows:
        if domain is not None and row["domain"] != domain:
            continue
        path = folder / row["file"]
        if not path.is_file():
            missing.append(str(path))
        records.append({"path": str(path), "file": row["file"], "caption": row["caption"], "domain": row["domain"],
                        "attributes": {c: row[c] for c in CAPTION_COLUMNS[3:]}})
    if missing:
        raise DataError(f"{table}: {len(missing)} listed image(s) missing: {', '.join(missing[:5])}")
    if not records:
        raise DataError(f"{table}: no records" + (f" of domain {domain!r}" if domain else ""))
    return records


# --------------------------------------------------------------------------------------------------------------
# Attribute oracle: what a perfect recogniser of some modalities' attributes would score


def attribute_oracle(root: str | Path, dataset: str, modalities=MODS, ties: str = "pessimistic",
                     draws: int = 20) -> dict[str, float]:
    """mAP / Rank-1 (percent) on the test split of a generated ``dataset`` for features that are exactly the
    identity's attribute tuple in ``modalities`` (distance 0 for the same tuple, 2 otherwise), under the dataset's
    protocol.  ``ties="pessimistic"`` ranks tied non-matches first (mambapro.metrics' rule); ``"random"`` averages
    ``draws`` random tie orders.  A ceiling for models that see only those modalities."""
    from mambapro.data.loaders import test_order
    from mambapro.data.readers import read_dataset
    from mambapro.metrics import evaluate_rank

    root = Path(root)
    summary = json.loads((root / "summary.json").read_text())
    info = summary["datasets"][dataset]
    by_pid = {i["pid"]: i for i in info["identities"]["test"]}
    keys = sorted({k for m in modalities for k in info["visible_attributes"][m]})
    data = read_dataset(dataset, root)
    samples, q, g = test_order(data)
    codes = {}
    code = np.array([codes.setdefault(_tuple(by_pid[s.pid], keys), len(codes)) for s in samples])
    dist = np.where(code[q][:, None] == code[g][None, :], 0.0, 2.0)
    meta = {k: np.array([getattr(s, k) for s in samples]) for k in ("pid", "camid", "sceneid")}
    args = (meta["pid"][q], meta["pid"][g], meta["camid"][q], meta["camid"][g])
    kw = {"q_sceneids": meta["sceneid"][q], "g_sceneids": meta["sceneid"][g], "protocol": data.protocol}
    if ties == "pessimistic":
        runs = [evaluate_rank(dist, *args, **kw)]
    elif ties == "random":
        rng = np.random.default_rng(0)
        runs = [evaluate_rank(dist + 1e-3 * rng.random(dist.shape), *args, **kw) for _ in range(draws)]
    else:
        raise ValueError(f"ties must be 'pessimistic' or 'random', got {ties!r}")
    return {"mAP": 100 * float(np.mean([r[1] for r in runs])), "R1": 100 * float(np.mean([r[0][0] for r in runs]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate the synthetic RGB/NIR/TIR ReID benchmark.")
    p.add_argument("--out", default="data/synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="default", choices=sorted(SIZES))
    p.add_argument("--force", action="store_true", help="replace a different existing output")
    p.add_argument("--oracle", action="store_true",
                   help="only print the attribute-oracle ceilings of the benchmark already in --out")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.oracle:
        logging.getLogger("mambapro.data.readers").setLevel(logging.WARNING)
        combos = [c for r in (1, 2, 3) for c in combinations(MODS, r)]
        print(f"{'dataset':<9} {'modalities':<10} {'mAP (pess.)':>11} {'R1 (pess.)':>10} {'mAP (rand.)':>11} "
              f"{'R1 (rand.)':>10}")
        for name in ("RGBNT201", "RGBNT100", "MSVR310"):
            for c in combos:
                pe = attribute_oracle(a.out, name, c)
                ra = attribute_oracle(a.out, name, c, ties="random")
                print(f"{name:<9} {'+'.join(c):<10} {pe['mAP']:11.1f} {pe['R1']:10.1f} {ra['mAP']:11.1f} "
                      f"{ra['R1']:10.1f}")
        return 0
    try:
        summary = generate(a.out, a.seed, a.size, a.force)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, d in summary["datasets"].items():
        uf = d["unique_fraction"]["all"]
        print(f"{name}: " + ", ".join(f"{s} {v['ids']} ids / {v['images']} images" for s, v in d["splits"].items())
              + f"; unique tuples RGB {uf['RGB']:.2f}, NI {uf['NI']:.2f}, TI {uf['TI']:.2f}, "
              f"all {uf['RGB+NI+TI']:.2f}")
    pre = summary["pretrain"]
    print("pretrain: " + ", ".join(f"{s} {pre[s]['images']} images ({pre[s]['distinct_captions']} distinct captions)"
                                   for s in ("train", "val")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
