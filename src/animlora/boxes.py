"""Boxes ``(x, y, w, h)``: how much two of them overlap. One home for the overlap shares the
segment backend's tracker, the identity stage's tracks and the dataset gate's group rule use."""

from __future__ import annotations

from collections.abc import Sequence


def _box_overlap(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(intersection, area of a, area of b) of two boxes ``(x, y, w, h)``."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    inter = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return inter, aw * ah, bw * bh


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes ``(x, y, w, h)``."""
    inter, area_a, area_b = _box_overlap(a, b)
    return inter / max(area_a + area_b - inter, 1e-9)


def box_inside(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of box ``a`` inside box ``b`` (boxes ``(x, y, w, h)``; 0 for an empty ``a``)."""
    inter, area_a, _ = _box_overlap(a, b)
    return inter / max(area_a, 1e-9)
