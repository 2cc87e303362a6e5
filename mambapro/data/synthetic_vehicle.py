"""The vehicles of the synthetic benchmark (RGBNT100's and MSVR310's layouts; :mod:`mambapro.data.synthetic`):
their attributes, which modality shows which, their cameras and :func:`render_vehicle`.

An identity is one value per attribute of :data:`VEHICLE_VOCAB`; :data:`VEHICLE_VISIBLE` says which attributes each
modality shows (RGB colour, NIR decal and windows, TIR a heat layout; the type in all three).
"""

from __future__ import annotations

import numpy as np

from mambapro.data.synthetic_scene import COLOURS, MODS, Camera, background, ellipse, finish, occluder, pick, rect

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
RGBNT100_HW = (128, 256)  # (H, W) per modality, fixed by the official crop boxes: three 256x128 crops side by side
MSVR_HW = (64, 128)

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
VEHICLE_VIEWS = ("left", "right", "front-left", "front-right")


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
    rgb, nir, tir, ambient = background(seed, cam, hw, rng, light)
    view = VEHICLE_VIEWS[pick(rng, cam.views)]
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
    face = rect(u, v, 0.76, 1.0, 0.12, 0.85) if three_quarter else np.zeros((h, w), bool)
    if three_quarter:  # compressed side plus the front face
        u = u / 0.76
    cab_u0, cab_u1, cab_v0 = _CABINS[attrs["type"]]
    body = rect(u, v, 0.0, 1.0, 0.36, 0.82)
    cabin = rect(u, v, cab_u0, cab_u1, cab_v0, 0.36)
    windows = rect(u, v, cab_u0 + 0.04, cab_u1 - 0.04, cab_v0 + 0.05, 0.34)
    if attrs["type"] == "van":
        windows = rect(u, v, 0.72, 0.88, 0.06, 0.34)
    radius = 0.17 * bh
    span = bw * (0.76 if three_quarter else 1.0)
    wheels = np.zeros((h, w), bool)
    for wu in (0.2, 0.8):
        cx = x0 + (bw - wu * span if mirrored else wu * span)
        wheels |= ellipse(xs, ys, cx, y0 + 0.82 * bh, radius, radius)
    decal = attrs["decal"]
    period = max(2, int(round(0.08 * bh)))
    yy = np.floor((ys - y0) / period).astype(np.int32) % 2
    xx = np.floor((xs - x0) / period).astype(np.int32) % 2
    decal_mask = {"none": np.zeros((h, w), bool), "stripe": rect(u, v, 0.06, 0.94, 0.50, 0.62),
                  "double stripe": rect(u, v, 0.06, 0.94, 0.44, 0.50) | rect(u, v, 0.06, 0.94, 0.60, 0.66),
                  "checks": rect(u, v, 0.06, 0.94, 0.44, 0.68) & ((yy ^ xx) == 1)}[decal]
    lights_front = rect(u, v, 0.95, 1.0, 0.42, 0.54)
    lights_rear = rect(u, v, 0.0, 0.04, 0.42, 0.54)
    body, cabin, windows = body & ~face, cabin & ~face, windows & ~face
    decal_mask, lights_front, lights_rear = decal_mask & ~face, lights_front & ~face, lights_rear & ~face
    occl = occluder(rng, u, v, horizontal=rng.random() < 0.4) if rng.random() < cam.occlusion else None
    windscreen = face & rect(u_full, v, 0.78, 0.98, cab_v0 + 0.05, 0.4)
    headlights = face & rect(u_full, v, 0.78, 0.98, 0.5, 0.6) & ~rect(u_full, v, 0.82, 0.94, 0.5, 0.6)
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
            zone = (rect(u, v, 0.74, 1.0, 0.36, 0.80) & body) | (face & (v >= 0.4))
        elif layout == "engine rear":
            zone = rect(u, v, 0.0, 0.26, 0.36, 0.80) & body
        elif layout == "hot tyres":
            zone = wheels
        else:
            zone = rect(u, v, 0.0, 0.08, 0.72, 0.86)
            tir = np.where(rect(u, v, 0.74, 1.0, 0.36, 0.80) & body, np.float32(170), tir)
        tir = np.where(zone, np.float32(hot), tir)
        if occl is not None:
            tir = np.where(occl, np.float32(ambient + 10), tir)
    glare = rng.random() < (cam.glare if glare_prob is None else glare_prob)
    return finish(rgb, nir, tir, rng, light, glare, hw, max(1.0, 0.03 * h), modalities)


def vehicle_caption(a: dict[str, str], view: str) -> str:
    return f"a {a['colour']} {'SUV' if a['type'] == 'suv' else a['type']} seen from the {view}"
