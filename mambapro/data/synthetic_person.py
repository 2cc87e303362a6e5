"""The persons of the synthetic benchmark (RGBNT201's layout; :mod:`mambapro.data.synthetic`): their attributes,
which modality shows which, their cameras and :func:`render_person`.

An identity is one value per attribute of :data:`PERSON_VOCAB`; :data:`PERSON_VISIBLE` says which attributes each
modality shows (RGB colours, NIR pattern and material, TIR a heat layout; the bag in all three).
"""

from __future__ import annotations

import numpy as np

from mambapro.data.synthetic_scene import COLOURS, MODS, Camera, background, ellipse, finish, occluder, pick, rect

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
PERSON_HW = (128, 64)  # image size (H, W) per modality

PERSON_CAMERAS = (
    Camera(1.00, 0.05, (0.5, 0.3, 0.2), (0.82, 0.97), 0.10, 11),
    Camera(0.60, 0.25, (0.2, 0.2, 0.6), (0.72, 0.92), 0.20, 12),
    Camera(0.22, 0.40, (0.4, 0.4, 0.2), (0.76, 0.95), 0.10, 13),
    Camera(0.85, 0.10, (0.2, 0.6, 0.2), (0.68, 0.90), 0.35, 14),
)
PERSON_VIEWS = ("front", "back", "side")


# Body parts per silhouette (index 0: side view, 1: front and back), in box coordinates (u from the left, v from the
# top): each part a union of boxes (u0, u1, v0, v1); the legs' and shoes' two boxes move apart by the stride (the
# first by -stride, the second by +stride); the head an ellipse (its arguments to ``ellipse``).
BODY = (
    {"torso": ((0.28, 0.72, 0.17, 0.53),), "arms": ((0.40, 0.60, 0.18, 0.50),), "hands": ((0.40, 0.60, 0.50, 0.55),),
     "legs": ((0.30, 0.55, 0.53, 0.95), (0.45, 0.70, 0.53, 0.95)),
     "shoes": ((0.25, 0.60, 0.95, 1.0), (0.40, 0.78, 0.95, 1.0)), "bag": ((0.62, 0.92, 0.38, 0.62),),
     "head": (0.5, 0.085, 0.22, 0.08)},
    {"torso": ((0.22, 0.78, 0.17, 0.53),), "arms": ((0.06, 0.21, 0.18, 0.50), (0.79, 0.94, 0.18, 0.50)),
     "hands": ((0.06, 0.21, 0.50, 0.55), (0.79, 0.94, 0.50, 0.55)),
     "legs": ((0.25, 0.48, 0.53, 0.95), (0.52, 0.75, 0.53, 0.95)),
     "shoes": ((0.24, 0.49, 0.95, 1.0), (0.51, 0.76, 0.95, 1.0)), "bag": ((0.80, 1.02, 0.40, 0.62),),
     "head": (0.5, 0.085, 0.17, 0.08)},
)
STRIDING = ("legs", "shoes")


def _part(u: np.ndarray, v: np.ndarray, boxes, stride: float) -> np.ndarray:
    """The union of ``boxes``; with a stride, the first box moved left by it and the second right."""
    mask = None
    for i, (u0, u1, v0, v1) in enumerate(boxes):
        if stride:
            u0, u1 = (u0 - stride, u1 - stride) if i == 0 else (u0 + stride, u1 + stride)
        box = rect(u, v, u0, u1, v0, v1)
        mask = box if mask is None else mask | box
    return mask


def render_person(attrs: dict[str, str], cam: Camera, rng: np.random.Generator, seed: int = 0,
                  hw: tuple[int, int] = PERSON_HW, modalities=MODS) -> dict[str, np.ndarray]:
    """A person seen by ``cam``: uint8 [H, W, 3] arrays per modality (NI and TI grey in three channels)."""
    h, w = hw
    light = cam.light * (0.85 + 0.3 * rng.random())
    rgb, nir, tir, ambient = background(seed, cam, hw, rng, light)
    view = PERSON_VIEWS[pick(rng, cam.views)]
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
    torso, arms, hands, legs, shoes, bag = (_part(u, v, BODY[view != "side"][k], stride if k in STRIDING else 0.0)
                                            for k in ("torso", "arms", "hands", "legs", "shoes", "bag"))
    head = ellipse(u, v, *BODY[view != "side"]["head"])
    upper = torso | arms
    has_bag = attrs["bag"] == "yes"
    occl = occluder(rng, u, v, horizontal=rng.random() < 0.6) if rng.random() < cam.occlusion else None
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
    return finish(rgb, nir, tir, rng, light, glare, hw, max(1.0, 0.03 * h), modalities)


def person_caption(a: dict[str, str]) -> str:
    bag = " carrying a bag" if a["bag"] == "yes" else ""
    return f"a person in a {a['top_colour']} top and {a['bottom_colour']} trousers{bag}"
