"""Running an image-to-image model tile by tile, without seams.

Each tile is run with ``pad`` pixels of its surroundings and only its inner part is kept
(Real-ESRGAN's scheme): where ``pad`` covers the model's receptive field, the result equals
one pass over the whole image, and memory stays one tile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_tiled(model: Callable[[Any], Any], x: Any, scale: int, tile: int, pad: int) -> Any:
    """``model`` (N,C,H,W -> N,C,H*scale,W*scale) applied to ``x`` in ``tile``-px tiles with
    ``pad`` px of context each side; ``tile`` <= 0 (or an image no larger) runs it whole."""
    import torch

    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(x)
    out: Any = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            py0, px0, py1, px1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
            y = model(x[:, :, py0:py1, px0:px1])
            if out is None:
                out = torch.zeros((n, y.shape[1], h * scale, w * scale), dtype=y.dtype, device=y.device)
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = \
                y[:, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
    return out
