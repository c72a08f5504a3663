"""Aspect-ratio buckets as kohya sd-scripts makes them: one enumeration for the dataset stage
(which crops each image to a bucket) and the built-in trainer (which batches by bucket)."""

from __future__ import annotations

import math


def enumerate_buckets(resolution: int, step: int, min_side: int, max_side: int) -> list[tuple[int, int]]:
    """Every (w, h) on the ``step`` grid within [min_side, max_side] whose area is at most
    ``resolution``², as large as possible for its aspect ratio, plus the square bucket
    (sd-scripts' ``make_bucket_resolutions``; it always has the square one)."""
    max_area = resolution * resolution
    buckets: set[tuple[int, int]] = set()
    width = min_side
    while width <= max_side:
        height = min(max_side, (max_area // width) // step * step)
        if height >= min_side:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    square = max(min_side, min(max_side, resolution // step * step or resolution))
    buckets.add((square, square))
    return sorted(buckets)


def nearest_bucket(aspect: float, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect (w/h) is closest in log scale; the larger area wins ties."""
    target = math.log(aspect)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))
