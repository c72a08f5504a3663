"""What the segment stage makes of one instance: measurements, the RGBA cut-out and its
context variants (transparent / original background / blurred background)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animlora.backends.segmentation.base import Instance


@dataclass(frozen=True)
class Measures:
    area_fraction: float  # mask (alpha >= threshold) area / frame area
    truncated: int  # frame edges the mask touches, 0..4
    sharpness: float  # variance of the Laplacian of the gray image over the mask


def measure(image: np.ndarray, inst: Instance, threshold: float) -> Measures:
    height, width = image.shape[:2]
    x, y, w, h = inst.bbox
    mask = inst.alpha >= threshold
    area = float(mask.sum()) / (height * width)
    edges = 0
    if y == 0 and mask[0].any():
        edges += 1
    if y + h >= height and mask[-1].any():
        edges += 1
    if x == 0 and mask[:, 0].any():
        edges += 1
    if x + w >= width and mask[:, -1].any():
        edges += 1
    sharpness = mask_sharpness(image[y : y + h, x : x + w], mask)
    return Measures(area, edges, sharpness)


def mask_sharpness(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian of the gray image over the mask, its outline included:
    a sharp character has crisp edges against its background and within (eyes, fur,
    clothes); motion or focus blur softens both. Smooth shading alone scores low, which is
    why the instance threshold (prefilter.blur_threshold) is far below the frame one."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    values = cv2.Laplacian(gray, cv2.CV_64F)[mask]
    return float(values.var()) if values.size else 0.0


def padded_box(bbox: tuple[int, int, int, int], padding: float, height: int, width: int) -> tuple[int, int, int, int]:
    x, y, w, h = bbox
    pad = int(round(padding * max(w, h)))
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
    return x0, y0, x1 - x0, y1 - y0


def crop_alpha(inst: Instance, box: tuple[int, int, int, int], threshold: float) -> np.ndarray:
    """The instance's matte in ``box`` (float32), zero below the threshold, soft above it."""
    bx, by, bw, bh = box
    x, y, w, h = inst.bbox
    out = np.zeros((bh, bw), np.float32)
    out[y - by : y - by + h, x - bx : x - bx + w] = inst.alpha
    out[out < threshold] = 0.0
    return out


def rgba_cutout(image: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    bx, by, bw, bh = box
    crop = image[by : by + bh, bx : bx + bw]
    a = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.dstack([crop, a])


def blurred_context(image: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    """The character sharp over its own background blurred (the original pipeline's
    "blurred background" variant: context without a second character in focus)."""
    import cv2

    bx, by, bw, bh = box
    crop = image[by : by + bh, bx : bx + bw].astype(np.float32)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigma)
    a = alpha[..., None]
    return np.clip(a * crop + (1 - a) * blurred + 0.5, 0, 255).astype(np.uint8)
