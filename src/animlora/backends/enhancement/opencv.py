"""The CPU path, no weights: light denoise, CLAHE on luminance, edge-aware upscaling.

1. Light non-local-means denoise (``enhance.denoise``; compression noise would otherwise be
   enlarged with the picture).
2. CLAHE on the L channel of CIELAB (``enhance.clahe``, a low clip limit: local contrast,
   colours untouched).
3. Bicubic enlargement, then iterative back-projection: the result, shrunk back, is made to
   equal the (denoised) source, which steepens edges that bicubic smears.
4. Edge-aware clamp: no pixel leaves the local range (3x3 at the output scale) of a linear
   enlargement, so sharpened edges get no halos or ringing.

It adds no detail that is not in the source: it is a cleaner, crisper enlargement than plain
resampling, not a super-resolution model (docs/enhance.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animlora.backends.enhancement.base import Enhancer, out_size


class OpenCVEnhancer(Enhancer):
    name = "opencv"

    def __init__(self, settings: Any, models: Any = None) -> None:
        super().__init__(settings, models)

    @property
    def max_factor(self) -> float:
        return float(min(self.settings.max_scale, self.settings.cpu_max_scale))

    def enhance(self, image: np.ndarray, factor: float) -> np.ndarray:
        import cv2

        s = self.settings
        h, w = image.shape[:2]
        src = image
        if s.denoise > 0 and min(h, w) >= 8:
            src = cv2.fastNlMeansDenoisingColored(src, None, s.denoise, s.denoise, 3, 7)
        if s.clahe > 0:
            lab = cv2.cvtColor(src, cv2.COLOR_RGB2LAB)
            tiles = max(1, min(8, min(h, w) // 32))
            lab[..., 0] = cv2.createCLAHE(clipLimit=float(s.clahe), tileGridSize=(tiles, tiles)).apply(lab[..., 0])
            src = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        size = out_size(w, h, factor)
        if size == (w, h):
            return src.copy()
        base = cv2.resize(src, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
        out = base.copy()
        target = src.astype(np.float32)
        for _ in range(s.cpu_iterations):
            error = target - cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
            out += cv2.resize(error, size, interpolation=cv2.INTER_CUBIC)
        # the local range of a linear enlargement (which never overshoots), not of the bicubic one
        span = cv2.resize(src, size, interpolation=cv2.INTER_LINEAR)
        kernel = np.ones((max(3, int(round(factor)) | 1),) * 2, np.uint8)
        out = np.clip(out, cv2.erode(span, kernel).astype(np.float32), cv2.dilate(span, kernel).astype(np.float32))
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
