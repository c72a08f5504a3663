"""Synthetic shaded 3D-style characters with known identities, for the identity tests.

Each character is a few ellipsoids (head, hair cap, torso, legs) shaded with a Lambert
term under one of two light set-ups (direction, intensity and tint), jittered in scale and
position, on a transparent background: what a segmentation cut-out of a rendered character
looks like, minus the detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 96


@dataclass(frozen=True)
class Character:
    name: str
    body_w: float  # torso half-width, fraction of the canvas
    body_h: float
    head_r: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]


CHARACTERS = [
    Character("round_blue", 0.20, 0.18, 0.13, (235, 185, 150), (90, 55, 30), (40, 80, 200), (60, 60, 70)),
    # same rig as round_blue, different colours
    Character("round_red", 0.20, 0.18, 0.13, (235, 185, 150), (220, 190, 90), (200, 40, 40), (40, 140, 60)),
    Character("tall_purple", 0.11, 0.25, 0.10, (150, 100, 70), (20, 20, 20), (130, 50, 160), (25, 25, 30)),
    Character("wide_yellow", 0.28, 0.16, 0.12, (120, 170, 80), (70, 50, 20), (230, 200, 40), (120, 80, 40)),
]

# (light direction x, y, z (towards the viewer), intensity, RGB tint)
LIGHTS = [
    ((-0.5, -0.6, 0.62), 1.0, (1.0, 1.0, 1.0)),
    ((0.7, -0.2, 0.68), 0.72, (1.0, 0.9, 0.78)),
]


def _ellipsoid(canvas, zbuf, cx, cy, rx, ry, colour, light, yy, xx):
    dx, dy = (xx - cx) / rx, (yy - cy) / ry
    inside = dx**2 + dy**2 <= 1
    nz = np.sqrt(np.clip(1 - dx**2 - dy**2, 0, 1))
    (lx, ly, lz), intensity, tint = light
    norm = np.sqrt(lx * lx + ly * ly + lz * lz)
    lambert = np.clip((dx * lx + dy * ly + nz * lz) / norm, 0, 1)
    shade = (0.3 + 0.7 * lambert) * intensity
    rgb = np.asarray(colour, np.float32)[None, None, :] * np.asarray(tint, np.float32) * shade[..., None]
    front = inside & (nz >= zbuf)
    canvas[front, :3] = rgb[front]
    canvas[front, 3] = 255
    zbuf[front] = nz[front]


def render(character: Character, light_index: int, rng: np.random.Generator) -> np.ndarray:
    """One RGBA uint8 cut-out of ``character`` under light set-up ``light_index``."""
    canvas = np.zeros((SIZE, SIZE, 4), np.float32)
    zbuf = np.full((SIZE, SIZE), -1.0, np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    s = SIZE * rng.uniform(0.85, 1.05)
    ox, oy = SIZE / 2 + rng.uniform(-4, 4), SIZE / 2 + rng.uniform(-3, 3)
    # a light set-up is not one exact light: shots of one scene vary a little
    (lx, ly, lz), intensity, tint = LIGHTS[light_index]
    light = ((lx + rng.uniform(-0.15, 0.15), ly + rng.uniform(-0.15, 0.15), lz), intensity * rng.uniform(0.9, 1.1), tint)
    c = character
    body_y = oy + 0.05 * s
    leg_y = body_y + c.body_h * s + 0.08 * s
    for side in (-1, 1):
        _ellipsoid(canvas, zbuf, ox + side * c.body_w * 0.45 * s, leg_y, c.body_w * 0.4 * s, 0.12 * s,
                   c.pants, light, yy, xx)
    _ellipsoid(canvas, zbuf, ox, body_y, c.body_w * s, c.body_h * s, c.shirt, light, yy, xx)
    head_y = body_y - c.body_h * s - c.head_r * s * 0.8
    _ellipsoid(canvas, zbuf, ox, head_y, c.head_r * s, c.head_r * s, c.skin, light, yy, xx)
    _ellipsoid(canvas, zbuf, ox, head_y - c.head_r * s * 0.55, c.head_r * s * 1.05, c.head_r * s * 0.55,
               c.hair, light, yy, xx)
    noise = rng.normal(0, 3, (SIZE, SIZE, 3))
    canvas[..., :3] = np.where(canvas[..., 3:4] > 0, canvas[..., :3] + noise, 0)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def dataset(per_character: int = 30, seed: int = 0) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Images, identity labels and light set-ups; each character half under each light."""
    rng = np.random.default_rng(seed)
    images, labels, lights = [], [], []
    for label, character in enumerate(CHARACTERS):
        for i in range(per_character):
            light = i % 2
            images.append(render(character, light, rng))
            labels.append(label)
            lights.append(light)
    return images, labels, lights
