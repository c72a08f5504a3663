"""What the frame tells about an instance beyond its own cut-out: text laid over the
picture (:mod:`.detection`). The prefilter stage calls it; it works on plain numpy frames and
masks."""

from __future__ import annotations

from animlora.backends.text.detection import (
    DETECTORS,
    OpenCVTextDetector,
    PPOCRTextDetector,
    TextDetector,
    lines_mask,
    make_text_detector,
    resolve_text_detector,
    text_cover,
    text_over_length,
)

__all__ = ["DETECTORS", "OpenCVTextDetector", "PPOCRTextDetector", "TextDetector", "lines_mask",
           "make_text_detector", "resolve_text_detector", "text_cover", "text_over_length"]
