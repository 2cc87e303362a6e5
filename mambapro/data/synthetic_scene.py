"""What persons and vehicles of the synthetic benchmark (:mod:`mambapro.data.synthetic`) are drawn with: colours,
cameras (illumination, glare, viewpoints, scale, occlusion, background), box-coordinate shapes, occluders and the
last steps every image shares (glare, sensor noise, the TIR blur, quantisation).

Determinism as the package says: integer and uniform draws of the caller's numpy ``Generator``, elementwise
arithmetic and comparisons, PIL's integer Gaussian blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

MODS = ("RGB", "NI", "TI")

COLOURS = {
    "red": (200, 35, 35), "green": (40, 150, 60), "blue": (40, 70, 200), "yellow": (230, 200, 40),
    "white": (232, 232, 228), "black": (28, 28, 30), "grey": (128, 128, 128), "brown": (120, 80, 40),
    "silver": (172, 176, 182),
}


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


def background(seed: int, cam: Camera, hw: tuple[int, int], rng: np.random.Generator, light: float):
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


def pick(rng: np.random.Generator, probs) -> int:
    return int(np.searchsorted(np.cumsum(probs), rng.random() * sum(probs), side="right"))


def rect(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u < u1) & (v >= v0) & (v < v1)


def ellipse(x, y, cx, cy, rx, ry):
    dx, dy = (x - cx) / rx, (y - cy) / ry
    return dx * dx + dy * dy <= 1.0


def finish(rgb, nir, tir, rng: np.random.Generator, light: float, glare: bool, hw, blur: float,
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
                rgb = rgb + np.float32(add) * ellipse(xs, ys, cx, cy, r * k, r * k)[..., None]
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


def occluder(rng, u, v, horizontal: bool):
    """An occluder (barrier, bonnet or pole) covering part of the object, in box coordinates."""
    if horizontal:
        v0 = 0.62 + 0.25 * rng.random()
        return rect(u, v, -1.0, 2.0, v0, 2.0)
    u0 = rng.random() * 0.8
    return rect(u, v, u0, u0 + 0.12 + 0.1 * rng.random(), -1.0, 2.0)
