"""Synthetic frames with known character masks: shaded shapes on textured backgrounds."""

from __future__ import annotations

import numpy as np


def textured_background(height: int, width: int, seed: int) -> np.ndarray:
    """A soft multi-colour texture (like a painted set), greenish-grey tones."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width]
    base = np.array([90, 120, 95], np.float32)
    grain = rng.normal(0, 4, (height, width, 3)).astype(np.float32)
    return np.clip(base + 50 * (noise - 0.5) + grain, 0, 255).astype(np.uint8)


def shaded_ellipse(image: np.ndarray, centre: tuple[int, int], axes: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """Draw a ball-shaded ellipse; return its mask (bool)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = centre
    ax, ay = axes
    r = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    mask = r <= 1.0
    light = np.clip(1.15 - 0.5 * (((xx - cx + 0.3 * ax) / ax) ** 2 + ((yy - cy + 0.3 * ay) / ay) ** 2), 0.55, 1.15)
    shaded = np.clip(np.array(colour, np.float32)[None, None] * light[..., None], 0, 255)
    image[mask] = shaded[mask].astype(np.uint8)
    return mask


def scene(seed: int, shapes: list[tuple[tuple[int, int], tuple[int, int], tuple[int, int, int]]],
          height: int = 180, width: int = 320) -> tuple[np.ndarray, list[np.ndarray]]:
    image = textured_background(height, width, seed)
    masks = [shaded_ellipse(image, c, a, col) for c, a, col in shapes]
    return image, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
