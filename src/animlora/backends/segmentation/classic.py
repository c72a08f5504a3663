"""The weightless CPU backend: no downloaded model, so the pipeline runs on a fresh laptop.

Characters in animated films are the parts of a frame that differ from its surroundings:

1. **Border colour model.** The frame border is mostly background. Its pixels (CIE Lab) are
   clustered with k-means; a pixel's distance to the nearest background colour is its
   *colour contrast* (textured backgrounds with a few colours stay near 0).
2. **Shot background model.** With three or more frames of a static shot, the per-pixel
   median is the empty set; a pixel's distance to it is its *motion contrast*.
3. The saliency map (the larger of the two, smoothed) is thresholded (Otsu, with a floor)
   into sure/probable foreground and background, which seed **GrabCut** (colour GMMs +
   graph cut), refining edges to the character's outline.
4. The cut is upsampled with linear interpolation and feathered, giving an anti-aliased
   soft matte; instances, splits and tracks then as for every matte backend.

It fails where a character touches most of the border, fills the frame, or shares the
background's colours; ``isnet`` or ``sam2`` are the quality backends.
"""

from __future__ import annotations

import numpy as np

from animlora.backends.segmentation.base import Frames, Instance, Segmenter
from animlora.backends.segmentation.instances import link_tracks, split_matte

WORK_WIDTH = 320  # analysis resolution; GrabCut cost grows with pixels
BORDER = 0.06  # fraction of each side used as the background sample
CLUSTERS = 8
CONTRAST_SCALE = 25.0  # Lab distance that counts as "clearly different"
MIN_SALIENCY = 0.3


def _lab(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)


def colour_contrast(small: np.ndarray, seed: int) -> np.ndarray:
    """Distance (0..1) of each pixel from the border's colours."""
    import cv2

    lab = _lab(small)
    h, w = lab.shape[:2]
    b = max(2, int(BORDER * min(h, w)))
    border = np.concatenate(
        [lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)]
    )
    cv2.setRNGSeed(seed)
    k = min(CLUSTERS, len(border))
    _, _, centres = cv2.kmeans(
        border, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5), 2, cv2.KMEANS_PP_CENTERS
    )
    flat = lab.reshape(-1, 1, 3)
    dist = np.sqrt(((flat - centres[None]) ** 2).sum(-1)).min(1).reshape(h, w)
    # how far the background's own pixels stray from its colours: a busy texture raises
    # the bar, so its grain does not read as characters
    own = np.sqrt(((border[:, None] - centres[None]) ** 2).sum(-1)).min(1)
    scale = max(CONTRAST_SCALE, 2.5 * float(np.percentile(own, 99)))
    return np.clip(dist / scale, 0, 1)


def motion_contrast(smalls: list[np.ndarray]) -> list[np.ndarray] | None:
    """Distance from the shot's median frame, when the camera is static (else None)."""
    if len(smalls) < 3:
        return None
    labs = np.stack([_lab(s) for s in smalls])
    median = np.median(labs, axis=0)
    dists = np.sqrt(((labs - median) ** 2).sum(-1))
    # a moving camera changes most of the frame: the median is then no empty set
    if float(np.median(dists)) > 4.0:
        return None
    return [np.clip(d / CONTRAST_SCALE, 0, 1) for d in dists]


def grabcut_matte(small: np.ndarray, saliency: np.ndarray, seed: int) -> np.ndarray:
    """Binary character mask at analysis resolution, from a saliency map."""
    import cv2

    smooth = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 1.5)
    level, _ = cv2.threshold((smooth * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    level = max(level / 255.0, MIN_SALIENCY)
    fg = smooth >= level
    if fg.sum() < 16:
        return np.zeros(saliency.shape, np.uint8)
    mask = np.full(saliency.shape, cv2.GC_PR_BGD, np.uint8)
    mask[smooth < 0.5 * level] = cv2.GC_BGD
    mask[fg] = cv2.GC_PR_FGD
    sure = cv2.erode(fg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask[(sure > 0) & (smooth >= min(1.0, 1.5 * level))] = cv2.GC_FGD
    if not (mask == cv2.GC_BGD).any() or not np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
        return fg.astype(np.uint8)
    cv2.setRNGSeed(seed)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return fg.astype(np.uint8)
    out = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # close pinholes, drop specks
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return cv2.morphologyEx(cv2.morphologyEx(out, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel)


def soft_matte(binary: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample a binary mask to frame size with anti-aliased (soft) edges."""
    import cv2

    up = cv2.resize(binary.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    sigma = max(0.8, 0.6 * width / binary.shape[1])
    return np.clip(cv2.GaussianBlur(up, (0, 0), sigma), 0, 1)


class ClassicSegmenter(Segmenter):
    name = "classic"

    def segment(self, frames: Frames) -> list[Instance]:
        import cv2

        s = self.settings
        seed = 0
        smalls, sizes = [], []
        for i in range(len(frames)):
            image = frames[i]
            h, w = image.shape[:2]
            scale = min(1.0, WORK_WIDTH / w)
            smalls.append(cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA))
            sizes.append((h, w))
        motion = motion_contrast(smalls) if len({m.shape for m in smalls}) == 1 else None
        instances: list[Instance] = []
        for i, small in enumerate(smalls):
            saliency = colour_contrast(small, seed + i)
            if motion is not None:
                saliency = np.maximum(saliency, motion[i])
            binary = grabcut_matte(small, saliency, seed + i)
            h, w = sizes[i]
            alpha = soft_matte(binary, h, w)
            score = cv2.resize(saliency.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            instances.extend(
                split_matte(alpha, i, s.alpha_threshold, s.min_area_fraction, s.split_overlaps, score=score)
            )
        return link_tracks(instances, frames, s.track_similarity)
