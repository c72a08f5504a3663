"""Per-frame measures: sharpness, perceptual hash, black bars (the extract stage), the black
surround of an iris or a porthole (segment and caption), and the colour of the light
(grey-edge: the colour embedder's per-shot light, the captions' colour temperature).

The extract stage's measures work on the luma plane (io/video.py ``luma``), so no RGB
conversion is made for a frame that is not saved; ``black_surround`` takes a saved RGB frame.
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


# An iris or porthole matte: pure black around the picture. The frame's outer ring is mostly
# black (<= SURROUND_DARK), the black region joined to the frame's edge covers SURROUND_MIN_SHARE
# of the frame, and SURROUND_PURE of it is pure black (<= 4: a film's night sky is not; film: the
# iris-out at 8:08, 0.97; the end credits' dark frames 0.00-0.47 outside their black cards)
SURROUND_DARK = 10
SURROUND_RING = 0.6
SURROUND_MIN_SHARE = 0.15
SURROUND_PURE = 0.9
SURROUND_RECT = 0.9  # the picture fills this share of its box: a rectangle (an iris's disc: 0.79)


def black_surround(image: np.ndarray) -> np.ndarray | None:
    """The black matte around the picture of an RGB frame (an iris closing on a character, a
    porthole or telescope view) as a bool mask, or None when the frame has none."""
    import cv2

    ring = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3),
                           image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)])
    if (ring.max(axis=1) <= SURROUND_DARK).mean() < SURROUND_RING:  # no grey conversion for most frames
        return None
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    _, labels = cv2.connectedComponents((gray <= SURROUND_DARK).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    matte = np.isin(labels, edge[edge > 0])
    if matte.mean() < SURROUND_MIN_SHARE or (gray[matte] <= 4).mean() < SURROUND_PURE:
        return None
    rows, cols = np.flatnonzero(~matte.all(axis=1)), np.flatnonzero(~matte.all(axis=0))
    if len(rows) == 0:
        return matte  # all black: no picture at all
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    if (~matte).sum() >= SURROUND_RECT * box:
        return None  # a rectangle of picture: bars left in the frame, not an iris
    return matte


GREY_EDGE_P = 6.0  # Minkowski norm of the gradients: the strongest edges weigh most
GREY_EDGE_WIDTH = 192  # pictures are measured at about this width


def estimate_light(rgb: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray | None:
    """Grey-edge estimate of the light's colour (3 linear-RGB values summing to 3), or None:
    the Minkowski norm of each linear-RGB channel's gradient over the ``valid`` pixels (edges of
    a scene average to grey far more reliably than its surfaces do: a meadow is green, its edges
    are not). Used for the per-shot light of the colour embedder (identity/light.py) and the
    captions' colour temperature."""
    import cv2

    h, w = rgb.shape[:2]
    scale = GREY_EDGE_WIDTH / max(w, 1)
    if scale < 1:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if valid is not None:
            valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2
    lin = cv2.GaussianBlur(lin, (0, 0), 1.0)
    gx = cv2.Sobel(lin, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lin, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.hypot(gx, gy)
    keep = np.ones(grad.shape[:2], bool) if valid is None else cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    # saturated pixels say nothing about the light
    keep &= lin.max(2) < 0.98
    if keep.sum() < 64:
        return None
    g = grad[keep].astype(np.float64)
    e = (g**GREY_EDGE_P).mean(0) ** (1 / GREY_EDGE_P)
    if not np.all(np.isfinite(e)) or e.sum() <= 1e-9:
        return None
    return (3 * e / e.sum()).astype(np.float32)
