"""What the enhance stage enlarges for the dataset, and how the dataset crops from it.

A crop needs enhancement when filling its aspect-ratio bucket would enlarge it more than
``dataset.max_enlarge`` by plain resampling. The enhance stage then enlarges the region the
dataset would crop at full bucket size (a little margin around it, inside the frame); the
dataset later plans its crop on that enlarged image as on a frame, so its own resampling
stays within ``max_enlarge``. Both sides call :func:`enhancement_need`, so they agree.
"""

from __future__ import annotations

import math
from typing import Any

from animlora.buckets import enumerate_buckets
from animlora.curation.images import Box, plan_crop

REGION_MARGIN = 0.06  # of the crop's size, each side: the dataset's mask box differs a little from the bbox


def enhancement_need(box: Box, frame_size: tuple[int, int], s: Any) -> tuple[tuple[int, int, int, int], float] | None:
    """(region of the frame to enlarge as x, y, w, h; the enlargement its bucket wants), or None
    when plain resampling within ``s.max_enlarge`` (dataset settings) fills the bucket."""
    buckets = enumerate_buckets(s.resolution, s.bucket_step, s.min_bucket, s.max_bucket)
    kwargs = {"buckets": buckets, "step": s.bucket_step, "margin": s.context_margin, "min_side": 1,
              "max_aspect": s.max_aspect}
    plain = plan_crop(box, frame_size, max_enlarge=s.max_enlarge, **kwargs)
    if plain is not None and not plain.limited:
        return None
    full = plan_crop(box, frame_size, max_enlarge=1e9, **kwargs)
    if full is None or full.scale <= s.max_enlarge + 1e-6:
        return None  # limited by the frame's shape, not by size: enlarging does not help
    x, y, w, h = full.crop
    W, H = frame_size
    x0, y0 = max(0, math.floor(x - w * REGION_MARGIN)), max(0, math.floor(y - h * REGION_MARGIN))
    x1, y1 = min(W, math.ceil(x + w * (1 + REGION_MARGIN))), min(H, math.ceil(y + h * (1 + REGION_MARGIN)))
    return (x0, y0, x1 - x0, y1 - y0), round(float(full.scale), 4)


def settings_fingerprint(s: Any) -> tuple[Any, ...]:
    """The dataset settings that decide which crops are enlarged and where (enhance's settings hash)."""
    return (s.resolution, s.bucket_step, s.min_bucket, s.max_bucket, s.context_margin, s.max_aspect, s.max_enlarge)
