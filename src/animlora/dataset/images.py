"""Dataset images: an aspect-ratio bucket per image, a crop around the character, a background.

The crop is the character's box grown by ``context_margin`` and widened (not cut) to the bucket's
aspect ratio, taken from the source frame when there is one — so the character keeps its
surroundings — or from the cut-out padded with transparency. Nothing is enlarged by more than
``max_upscale``: a small crop gets a smaller bucket (sd-scripts' ``bucket_no_upscale`` does the
same at training time).

Backgrounds: ``alpha`` (RGBA: the original pixels under an alpha mask, for sd-scripts'
``alpha_mask = true`` masked loss — trainers that ignore alpha still see the real context),
``context`` (the frame as is), ``flat`` (one colour), ``blur`` (the frame heavily blurred).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def bucket_sizes(resolution: int, step: int, min_side: int, max_side: int) -> list[tuple[int, int]]:
    """(w, h) buckets of about ``resolution``² pixels, sides multiples of ``step`` (as sd-scripts)."""
    area = resolution * resolution
    out = set()
    w = min_side
    while w <= max_side:
        h = min(max_side, (area // w) // step * step)
        if h >= min_side:
            out.add((w, h))
            out.add((h, w))
        w += step
    return sorted(out)


def choose_bucket(aspect: float, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect (w/h) is closest in log scale; the larger area wins ties."""
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - math.log(aspect)), -b[0] * b[1]))


def fit_box(box: tuple[float, float, float, float], aspect: float) -> tuple[float, float, float, float]:
    """Grow a box (x, y, w, h) about its centre to ``aspect`` (w/h)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    return cx - w / 2, cy - h / 2, w, h


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # RGB or RGBA uint8
    info: dict[str, Any]


def _place_cutout(cutout: np.ndarray, frame: np.ndarray, bbox: tuple[int, int, int, int] | None) -> np.ndarray:
    """The cut-out's alpha as a full-frame mask (cut-outs are stored tight or full-frame)."""
    import cv2

    fh, fw = frame.shape[:2]
    alpha = cutout[..., 3]
    if alpha.shape == (fh, fw):
        return alpha.copy()
    mask = np.zeros((fh, fw), np.uint8)
    if bbox is None:
        raise ValueError("a tight cut-out needs its box to be placed in the frame")
    x, y, w, h = bbox
    if alpha.shape != (h, w):
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    mask[y0:y1, x0:x1] = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    return mask


def render(
    cutout: np.ndarray,
    frame: np.ndarray | None,
    bbox: tuple[int, int, int, int] | None,
    *,
    buckets: list[tuple[int, int]],
    step: int,
    margin: float,
    max_upscale: float,
    min_side: int,
    background: str,
    color: tuple[int, int, int],
    alpha_threshold: float,
    max_aspect: float = 2.0,
) -> Rendered | None:
    """The dataset image of one instance, or None when it would be smaller than ``min_side``."""
    import cv2

    used = background
    if frame is not None:
        canvas = frame
        mask = _place_cutout(cutout, frame, bbox)
    else:
        canvas = np.empty(cutout.shape[:2] + (3,), np.uint8)
        canvas[:] = color
        a = cutout[..., 3:4].astype(np.float32) / 255
        canvas = (cutout[..., :3] * a + canvas * (1 - a)).astype(np.uint8)
        mask = cutout[..., 3].copy()
        if background in ("context", "blur"):
            used = "flat"  # no frame to take the surroundings from
    ys, xs = np.nonzero(mask > int(alpha_threshold * 255))
    if len(xs) == 0:
        return None
    box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
    x, y, w, h = box
    grown = (x - w * margin, y - h * margin, w * (1 + 2 * margin), h * (1 + 2 * margin))
    # a thin standing figure gets more surroundings rather than a 1:6 bucket
    aspect = min(max_aspect, max(1 / max_aspect, grown[2] / grown[3]))
    bw, bh = choose_bucket(aspect, buckets)
    cx, cy, cw, ch = fit_box(grown, bw / bh)
    scale = bw / cw
    if scale > max_upscale:  # a smaller bucket of the same shape instead of enlarging
        out_w = int(cw * max_upscale) // step * step
        out_h = int(round(out_w * bh / bw / step)) * step
    else:
        out_w, out_h = bw, bh
    if min(out_w, out_h) < min_side:
        return None
    # crop (with padding where the box leaves the canvas), then resize
    x0, y0 = int(math.floor(cx)), int(math.floor(cy))
    x1, y1 = int(math.ceil(cx + cw)), int(math.ceil(cy + ch))
    pad = max(0, -x0, -y0, x1 - canvas.shape[1], y1 - canvas.shape[0])
    if pad:
        canvas = cv2.copyMakeBorder(canvas, pad, pad, pad, pad, cv2.BORDER_REPLICATE if frame is not None
                                    else cv2.BORDER_CONSTANT, value=color)
        mask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    rgb = canvas[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    m = mask[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    interp = cv2.INTER_AREA if out_w < rgb.shape[1] else cv2.INTER_CUBIC
    rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
    m = cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    a = (m.astype(np.float32) / 255)[..., None]
    if used == "alpha":
        image = np.dstack([rgb, m])
    elif used == "flat":
        image = (rgb * a + np.array(color, np.float32) * (1 - a)).round().astype(np.uint8)
    elif used == "blur":
        sigma = max(out_w, out_h) / 40
        blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
        image = (rgb * a + blurred * (1 - a)).round().astype(np.uint8)
    else:
        image = rgb
    return Rendered(image, {
        "bucket": [bw, bh], "size": [out_w, out_h], "crop": [round(cx, 1), round(cy, 1), round(cw, 1), round(ch, 1)],
        "scale": round(out_w / cw, 4), "background": used, "upscale_limited": (out_w, out_h) != (bw, bh),
    })
