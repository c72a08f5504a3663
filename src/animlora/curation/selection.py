"""Choosing a character's training images: quality, near-duplicates out, diversity.

Diversity is farthest-point sampling on the identity embeddings (or cheap colour+silhouette
features when there are none): each pick is the candidate farthest from everything picked so
far, weighted by its quality and discounted for every image already taken from the same shot,
track or video — so 400 images cover the film instead of 400 frames of one scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-8)


def rank01(values: Sequence[float | None]) -> np.ndarray:
    """Ranks scaled to [0, 1]; unknown values get 0.5."""
    arr = np.array([np.nan if v is None else float(v) for v in values], np.float64)
    out = np.full(len(arr), 0.5)
    known = ~np.isnan(arr)
    if known.sum() > 1:
        order = arr[known].argsort().argsort()
        out[known] = order / (known.sum() - 1)
    return out


def quality_scores(sharpness: Sequence[float | None], size: Sequence[float | None],
                   truncated: Sequence[bool | None], truncated_penalty: float) -> np.ndarray:
    """Sharp, large, untruncated instances first: mean of sharpness and size ranks, times a
    penalty for instances cut by the frame edge."""
    q = 0.5 * rank01(sharpness) + 0.5 * rank01(size)
    penalty = np.array([truncated_penalty if t else 1.0 for t in truncated])
    return q * penalty


def near_duplicates(features: np.ndarray, pictures: np.ndarray, quality: np.ndarray,
                    similarity: float, distance: float) -> dict[int, int]:
    """Images to drop, each with the kept image it repeats: of each group of near-duplicates
    only the best-quality one stays. Two images are near-duplicates when they show the same
    identity (``features`` cosine above ``similarity``) **and** the same picture: ``pictures``
    are appearance signatures as vectors (rows of ``cutouts.signature_vector``: the figure as
    8x8 cells of mean Lab colour and coverage, so pose and framing count) whose mean absolute
    difference (0-255) is under ``distance`` (255: the identity alone decides). The identity
    embedding alone is not enough: it is made to bring different poses and expressions of one
    character together."""
    if len(features) == 0:
        return {}
    x = normalize(features)
    p = np.asarray(pictures, np.float32)
    order = sorted(range(len(x)), key=lambda i: (-quality[i], i))
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for i in order:
        if kept:
            same = (x[kept] @ x[i] > similarity) & (np.abs(p[kept] - p[i]).mean(axis=1) < distance)
            if same.any():
                dropped[i] = kept[int(np.argmax(same))]
                continue
        kept.append(i)
    return dict(sorted(dropped.items()))


@dataclass(frozen=True)
class Pick:
    index: int
    distance: float  # distance to the nearest earlier pick when chosen (inf for the first)
    score: float


def farthest_point(
    features: np.ndarray,
    k: int,
    quality: np.ndarray | None = None,
    groups: Sequence[Sequence[object]] | None = None,
    *,
    quality_weight: float = 0.35,
    spread_penalty: float = 0.15,
) -> list[Pick]:
    """Greedy farthest-point sampling with quality weights and a shot/track/video spread penalty.

    ``groups[i]`` lists the group keys of candidate i (e.g. its shot, track and video; ``None``
    entries ignored). Deterministic: ties go to the lower index.
    """
    n = len(features)
    k = min(k, n)
    if k <= 0:
        return []
    x = normalize(features)
    q = np.ones(n) if quality is None else np.asarray(quality, np.float64)
    weight = (1.0 - quality_weight) + quality_weight * q
    keys = [[g for g in (groups[i] if groups else ()) if g is not None] for i in range(n)]
    members: dict[object, list[int]] = {}
    for i, ks in enumerate(keys):
        for g in ks:
            members.setdefault(g, []).append(i)
    crowd = np.zeros(n, np.float64)  # images already taken from each candidate's groups

    def take(i: int) -> None:
        chosen[i] = True
        for g in keys[i]:
            crowd[members[g]] += 1.0

    chosen = np.zeros(n, bool)
    first = int(np.argmax(weight))
    picks = [Pick(first, float("inf"), float(weight[first]))]
    take(first)
    mind = np.linalg.norm(x - x[first], axis=1)
    while len(picks) < k:
        score = mind * weight / (1.0 + spread_penalty * crowd)
        score[chosen] = -1.0
        best = int(np.argmax(score))
        picks.append(Pick(best, float(mind[best]), float(score[best])))
        take(best)
        mind = np.minimum(mind, np.linalg.norm(x - x[best], axis=1))
    return picks


def coverage_radius(features: np.ndarray, selected: Sequence[int]) -> float:
    """Largest distance from any candidate to its nearest selected one (lower = better cover)."""
    x = normalize(features)
    s = x[list(selected)]
    d = np.linalg.norm(x[:, None, :] - s[None, :, :], axis=2).min(axis=1)
    return float(d.max())


def simple_features(rgba: np.ndarray, alpha_threshold: float = 0.15) -> np.ndarray:
    """A cheap appearance vector when no identity embedding exists: a CIELAB colour histogram of
    the figure (4x4x4) and its silhouette on a 12x12 grid."""
    import cv2

    mask = rgba[..., 3] > int(alpha_threshold * 255)
    if not mask.any():
        return np.zeros(64 + 144, np.float32)
    lab = cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2LAB)[mask]
    hist, _ = np.histogramdd(lab.astype(np.float32), bins=(4, 4, 4), range=((0, 256), (0, 256), (0, 256)))
    hist = hist.ravel() / max(1.0, hist.sum())
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    sil = cv2.resize(crop, (12, 12), interpolation=cv2.INTER_AREA).ravel()
    sil = sil / max(1e-6, np.linalg.norm(sil))
    return np.concatenate([np.sqrt(hist) * 1.0, sil * 0.7]).astype(np.float32)
