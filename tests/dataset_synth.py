"""Synthetic characters and frames for the caption and dataset tests (drawn with OpenCV)."""

from __future__ import annotations

import numpy as np

SKY = (110, 170, 235)
GRASS = (60, 150, 60)
SHIRT = (200, 35, 35)
PANTS = (40, 80, 200)
SKIN = (235, 190, 160)


def outdoor_frame(w: int = 640, h: int = 360) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[: h // 2] = SKY
    frame[h // 2 :] = GRASS
    rng = np.random.default_rng(0)
    noise = rng.integers(-6, 7, frame.shape)
    return (frame.astype(int) + noise).clip(0, 255).astype(np.uint8)


def draw_person(canvas: np.ndarray, x: int, y: int, height: int, *, facing: str = "front",
                shirt=SHIRT, pants=PANTS) -> None:
    """A person whose top-left of the head box is (x, y); draws into an RGBA canvas."""
    import cv2

    u = height / 8.0  # head unit
    cx = int(x + 1.5 * u)
    head_c = (cx, int(y + u / 2))
    if facing == "side":
        cv2.ellipse(canvas, head_c, (int(u * 0.45), int(u / 2)), 0, 0, 360, (*SKIN, 255), -1)
        cv2.circle(canvas, (head_c[0] + int(u * 0.45), head_c[1]), max(2, int(u * 0.18)), (*SKIN, 255), -1)  # nose
        cv2.rectangle(canvas, (cx - int(u * 0.35), int(y + u)), (cx + int(u * 0.25), int(y + 4 * u)), (*shirt, 255), -1)
        cv2.rectangle(canvas, (cx - int(u * 0.3), int(y + 4 * u)), (cx + int(u * 0.2), int(y + 8 * u) - 1), (*pants, 255), -1)
        cv2.rectangle(canvas, (cx + int(u * 0.2), int(y + 1.3 * u)), (cx + int(u * 1.1), int(y + 1.7 * u)), (*SKIN, 255), -1)
        return
    cv2.circle(canvas, head_c, int(u / 2), (*SKIN, 255), -1)
    if facing == "front":
        for dx in (-0.18, 0.18):
            cv2.circle(canvas, (int(cx + dx * u), int(y + 0.42 * u)), max(1, int(u * 0.08)), (20, 20, 20, 255), -1)
        cv2.line(canvas, (int(cx - 0.15 * u), int(y + 0.72 * u)), (int(cx + 0.15 * u), int(y + 0.72 * u)),
                 (120, 40, 40, 255), max(1, int(u * 0.05)))
    else:  # back: hair covers the head
        cv2.circle(canvas, head_c, int(u / 2), (90, 60, 30, 255), -1)
    cv2.rectangle(canvas, (int(cx - 0.75 * u), int(y + u)), (int(cx + 0.75 * u), int(y + 4 * u)), (*shirt, 255), -1)
    cv2.rectangle(canvas, (int(cx - 0.6 * u), int(y + 4 * u)), (int(cx + 0.6 * u), int(y + 8 * u) - 1), (*pants, 255), -1)


def person_cutout(height: int = 240, facing: str = "front", **kw) -> np.ndarray:
    """A tight RGBA cut-out of a full-body person."""
    u = height / 8.0
    canvas = np.zeros((height, int(3 * u) + 2, 4), np.uint8)
    draw_person(canvas, 0, 0, height, facing=facing, **kw)
    return canvas



def place(frame: np.ndarray, x: int, y: int, height: int, facing: str = "front", **kw):
    """Draw a person into a copy of ``frame``: (frame with person, tight RGBA cut-out, bbox)."""
    h, w = frame.shape[:2]
    layer = np.zeros((h, w, 4), np.uint8)
    draw_person(layer, x, y, height, facing=facing, **kw)
    alpha = layer[..., 3:4].astype(np.float32) / 255
    out = (frame * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)
    ys, xs = np.nonzero(layer[..., 3])
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    cut = layer[y0:y1, x0:x1].copy()
    return out, cut, (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
