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


def bucket_for(width: int, height: int, buckets: list[tuple[int, int]], step: int) -> tuple[int, int]:
    """The bucket an image trains in: the nearest-aspect bucket, unless filling it would enlarge
    the image — then the image's own size floored to ``step`` (sd-scripts' ``bucket_no_upscale``,
    which the dataset stage's TOML sets: a small crop is never blown up at training time either)."""
    bw, bh = nearest_bucket(width / height, buckets)
    if max(bw / width, bh / height) <= 1.0:
        return bw, bh
    return max(step, width // step * step), max(step, height // step * step)
