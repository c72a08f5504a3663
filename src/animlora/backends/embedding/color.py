"""``color``: a CPU descriptor of a 3D character's look, no weights needed.

Three things tell animated characters apart at a glance: their palette (skin, hair,
clothes), where on the body each colour sits, and their silhouette. The descriptor, all
computed on the masked pixels of the cut-out (alpha >= 0.5), is the concatenation of
weighted, L2-normalised blocks:

1. **hue** — circular histogram of the CIELAB hue angle, weighted by chroma, so grey and
   dark pixels count little and a global brightness change barely moves it;
2. **chroma plane** — soft 2-D histogram of (a*, b*) (the palette in a perceptual space);
3. **lightness** — histogram of L* divided by the cut-out's median L* (shading pattern, not
   exposure);
4. **layout** — per horizontal band of the silhouette (head ... feet): mean a*, b*, relative
   L* and how much of the band the character fills;
5. **shape** — log Hu moments, aspect ratio, fill ratio, radial profile and width profile;
6. **texture** — uniform local-binary-pattern histogram of L* inside the eroded mask, and
   edge contrast.

Block weights favour colour: two characters with one rig but different clothes (the common
case in a film's crowd) differ only in colour, while one character's colours stay put under
a new light once exposure is divided out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from animlora.backends.embedding.base import l2_normalise

if TYPE_CHECKING:
    from animlora.config.schema import EmbedSettings, ModelsSettings

VERSION = "2"  # 2: silhouette weight 0.6 -> 0.2 (docs/identity.md, "The silhouette block")
HUE_BINS = 18
AB_BINS = 8
AB_RANGE = 80.0
L_BINS = 8
GREY_WORLD = 0.6  # strength of the white balance (0 = none, 1 = full grey-world)
BANDS = 5
RADIAL_BINS = 24
WIDTH_BANDS = 8
# the silhouette changes with pose and framing more than between two characters of one film:
# at 0.6 it split Buck and mixed Frank on the labelled film (ARI 0.75), at 0-0.35 the film's
# clusters are one character each (ARI 0.92-1.0) and the seeds are unchanged
WEIGHTS = {"hue": 1.0, "ab": 1.0, "lightness": 0.45, "layout": 0.9, "shape": 0.2, "texture": 0.3}


class ColorEmbedder:
    """CIELAB palette + colour layout + silhouette + texture descriptor (see module doc)."""

    def __init__(self, settings: EmbedSettings | None = None, models: ModelsSettings | None = None) -> None:
        self.size = settings.color_size if settings is not None else 128
        self.key = f"color-v{VERSION}-{self.size}"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return l2_normalise(np.stack([describe(image, self.size) for image in images]))


def _prepare(rgba: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop to the silhouette, fit in ``size``: (Lab float32 HxWx3, bool mask HxW)."""
    import cv2

    if rgba.ndim == 2:
        rgba = np.dstack([rgba, rgba, rgba, np.full_like(rgba, 255)])
    if rgba.shape[2] == 3:
        rgba = np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])
    mask = rgba[..., 3] >= 128
    if mask.sum() < 16:  # (nearly) empty alpha: describe the whole image rather than nothing
        mask = np.ones(mask.shape, bool)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb = rgba[y0:y1, x0:x1, :3]
    alpha = mask[y0:y1, x0:x1].astype(np.float32)
    h, w = alpha.shape
    scale = size / max(h, w)
    nh, nw = max(4, round(h * scale)), max(4, round(w * scale))
    rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_AREA)
    small = alpha >= 0.5
    if small.sum() < 4:
        small = alpha > 0
    lab = cv2.cvtColor(normalise_light(rgb, small), cv2.COLOR_RGB2Lab)
    return lab, small


def normalise_light(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Divide out most of the scene's light: a partial grey-world white balance (a tinted key
    light) and an exposure gain (a darker shot), both in linear RGB. Partial, because a full
    grey-world would also erase a character's own overall colour."""
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2
    px = lin[mask]
    means = np.maximum(px.mean(0), 1e-4)
    lin = lin * (means.mean() / means) ** GREY_WORLD
    bright = float(np.quantile(lin[mask].max(1), 0.9))
    lin = lin * (0.8 / max(bright, 1e-4))
    return np.clip(lin, 0.0, 1.0) ** (1 / 2.2)


def _soft_hist_1d(values: np.ndarray, weights: np.ndarray, bins: int, lo: float, hi: float,
                  circular: bool = False) -> np.ndarray:
    """Linear-interpolation ("soft") histogram: small shifts move mass smoothly between bins."""
    pos = (values - lo) / (hi - lo) * bins - 0.5
    left = np.floor(pos).astype(np.int64)
    frac = (pos - left).astype(np.float32)
    right = left + 1
    if circular:
        left %= bins
        right %= bins
    else:
        left = np.clip(left, 0, bins - 1)
        right = np.clip(right, 0, bins - 1)
    hist = np.bincount(left, weights * (1 - frac), minlength=bins)
    hist += np.bincount(right, weights * frac, minlength=bins)
    return hist[:bins].astype(np.float32)


def _hellinger(hist: np.ndarray) -> np.ndarray:
    total = hist.sum()
    return np.sqrt(hist / total) if total > 0 else hist


def _colour_blocks(lab: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    px = lab[mask]
    light, a, b = px[:, 0], px[:, 1], px[:, 2]
    chroma = np.hypot(a, b)
    hue = np.arctan2(b, a)  # -pi..pi
    hue_hist = _soft_hist_1d(hue, chroma, HUE_BINS, -np.pi, np.pi, circular=True)
    # achromatic share as one extra bin, so an all-grey character still has a palette
    grey = np.float32((chroma < 6).mean() * max(chroma.sum(), 1.0) / max(len(chroma), 1) * 3)
    hue_block = _hellinger(np.append(hue_hist, grey))

    ab = np.clip(np.stack([a, b], 1), -AB_RANGE + 1e-3, AB_RANGE - 1e-3)
    pa = (ab[:, 0] + AB_RANGE) / (2 * AB_RANGE) * AB_BINS - 0.5
    pb = (ab[:, 1] + AB_RANGE) / (2 * AB_RANGE) * AB_BINS - 0.5
    ia, ib = np.floor(pa).astype(int), np.floor(pb).astype(int)
    fa, fb = pa - ia, pb - ib
    ab_hist = np.zeros(AB_BINS * AB_BINS, np.float64)
    for da, wa in ((0, 1 - fa), (1, fa)):
        for db, wb in ((0, 1 - fb), (1, fb)):
            ja = np.clip(ia + da, 0, AB_BINS - 1)
            jb = np.clip(ib + db, 0, AB_BINS - 1)
            ab_hist += np.bincount(ja * AB_BINS + jb, wa * wb, minlength=AB_BINS * AB_BINS)
    ab_block = _hellinger(ab_hist.astype(np.float32))

    median_l = max(float(np.median(light)), 1.0)
    rel = light / median_l
    l_block = _hellinger(_soft_hist_1d(np.clip(rel, 0, 2), np.ones_like(rel), L_BINS, 0, 2))

    # layout: horizontal bands from the top of the silhouette to its bottom
    rows = np.nonzero(mask)[0]
    edges = np.linspace(0, mask.shape[0], BANDS + 1)
    band_of = np.clip(np.searchsorted(edges, rows, side="right") - 1, 0, BANDS - 1)
    layout = []
    band_width = mask.shape[1]
    for band in range(BANDS):
        sel = band_of == band
        rows_in_band = max(1.0, edges[band + 1] - edges[band])
        cover = sel.sum() / (rows_in_band * band_width)
        if sel.any():
            layout += [a[sel].mean() / 40, b[sel].mean() / 40, rel[sel].mean() - 1, cover]
        else:
            layout += [0.0, 0.0, 0.0, 0.0]
    return {
        "hue": hue_block,
        "ab": ab_block,
        "lightness": l_block,
        "layout": np.asarray(layout, np.float32) / np.sqrt(BANDS),
    }


def _shape_block(mask: np.ndarray) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    hu = cv2.HuMoments(cv2.moments(m, binaryImage=True)).ravel()[:4]
    hu = -np.sign(hu) * np.log10(np.abs(hu) + 1e-30) / 10
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    angle = np.arctan2(ys - cy, xs - cx)
    dist = np.hypot(ys - cy, xs - cx)
    bins = ((angle + np.pi) / (2 * np.pi) * RADIAL_BINS).astype(int) % RADIAL_BINS
    radial = np.zeros(RADIAL_BINS, np.float32)
    np.maximum.at(radial, bins, dist.astype(np.float32))
    radial /= max(radial.max(), 1e-6)
    width_rows = mask.sum(1).astype(np.float32)
    bands = np.array_split(width_rows, WIDTH_BANDS)
    widths = np.array([band.mean() if len(band) else 0 for band in bands], np.float32)
    widths /= max(widths.max(), 1e-6)
    aspect = np.log(h / w)
    fill = mask.mean()
    return np.concatenate([hu, [aspect, fill], radial / np.sqrt(RADIAL_BINS / 4), widths / np.sqrt(WIDTH_BANDS / 4)])


_LBP_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _texture_block(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import cv2

    light = lab[..., 0]
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    if inner.sum() < 4:
        return np.zeros(11, np.float32)
    ys, xs = np.nonzero(inner)
    centre = light[ys, xs]
    bits = np.stack([light[ys + dy, xs + dx] >= centre + 1.0 for dy, dx in _LBP_OFFSETS], 1)
    transitions = (bits != np.roll(bits, 1, axis=1)).sum(1)
    ones = bits.sum(1)
    code = np.where(transitions <= 2, ones, 9)  # uniform patterns 0..8, the rest in 9
    hist = _hellinger(np.bincount(code, minlength=10).astype(np.float32))
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3)
    contrast = float(np.hypot(gx, gy)[inner].mean() / max(float(centre.mean()), 1.0))
    return np.append(hist, np.float32(min(contrast, 2.0)))


def describe(rgba: np.ndarray, size: int = 128) -> np.ndarray:
    """The descriptor of one RGBA cut-out (before the final L2 normalisation)."""
    lab, mask = _prepare(rgba, size)
    blocks = _colour_blocks(lab, mask)
    blocks["shape"] = _shape_block(mask)
    blocks["texture"] = _texture_block(lab, mask)
    parts = []
    for name, weight in WEIGHTS.items():
        block = np.nan_to_num(np.asarray(blocks[name], np.float32))
        norm = float(np.linalg.norm(block))
        parts.append(block / norm * weight if norm > 1e-9 else block)
    return np.concatenate(parts).astype(np.float32)
