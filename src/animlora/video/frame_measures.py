"""Per-frame measures the extract stage uses: sharpness, perceptual hash, black bars.

All work on the luma plane (io/video.py ``luma``), so no RGB conversion is made for a
frame that is not saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Crop = tuple[int, int, int, int]  # x, y, w, h


def cropped(y: np.ndarray, crop: Crop | None) -> np.ndarray:
    """The picture inside the crop (a view, no copy)."""
    if crop is None:
        return y
    x0, y0, w, h = crop
    return y[y0 : y0 + h, x0 : x0 + w]


def sharpness(y: np.ndarray, crop: Crop | None = None, scale: float = 1.0) -> float:
    """Variance of the Laplacian of the (cropped) luma, on the 0-255 grayscale scale
    (``scale`` turns video-range luma into it). A score to compare frames of one shot,
    never a gate: smooth 3D shading and depth of field give sharp frames low values."""
    import cv2

    lap = cv2.Laplacian(cropped(y, crop), cv2.CV_16S)
    std = cv2.meanStdDev(lap)[1][0, 0]
    return float(std * std * scale)


def is_black(gray: np.ndarray) -> bool:
    """A black (or nearly black, featureless) picture: nothing can be seen in it."""
    return float(gray.max()) < 40 and float(gray.std()) < 4


def phash(y: np.ndarray, crop: Crop | None = None) -> str:
    """64-bit DCT perceptual hash (the imagehash ``phash`` algorithm) as 16 hex digits."""
    import cv2

    small = cv2.resize(cropped(y, crop), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    # the median as np.median computes it (the mean of the two middle values), without the
    # NaN check that imports numpy.ma (8 ms, once a process)
    bits = low > np.partition(low, (31, 32))[31:33].mean()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def detect_bars(lumas: Sequence[np.ndarray], limited_range: bool = True, min_fraction: float = 0.02) -> Crop | None:
    """Letterbox / pillarbox bars: rows and columns at the edges that stay black in every
    sample. Returns the crop (x, y, w, h) of the picture, or None when there are no bars."""
    if not lumas:
        return None
    h, w = lumas[0].shape
    black = (16 if limited_range else 0) + 12
    row_max = np.zeros(h, np.uint8)
    col_max = np.zeros(w, np.uint8)
    for y in lumas:
        if y.shape != (h, w):
            continue
        row_max = np.maximum(row_max, y.max(axis=1))
        col_max = np.maximum(col_max, y.max(axis=0))

    def edge(values: np.ndarray) -> int:
        lit = np.nonzero(values > black)[0]
        return int(lit[0]) if len(lit) else len(values)

    top, bottom = edge(row_max), edge(row_max[::-1])
    left, right = edge(col_max), edge(col_max[::-1])
    if top + bottom >= h * 0.5 or left + right >= w * 0.5:
        return None  # (nearly) black everywhere in the samples: dark footage, not bars
    top, bottom = (v if v >= h * min_fraction else 0 for v in (top, bottom))
    left, right = (v if v >= w * min_fraction else 0 for v in (left, right))
    if not (top or bottom or left or right):
        return None
    # even offsets and sizes: chroma is subsampled 2x
    x0, y0 = left + (left % 2), top + (top % 2)
    cw = (w - right - x0) // 2 * 2
    ch = (h - bottom - y0) // 2 * 2
    return (x0, y0, cw, ch)


def limited_range(frame: Any) -> bool:
    return frame.color_range != 2 and frame.format.name not in ("yuvj420p", "yuvj422p", "yuvj444p")
