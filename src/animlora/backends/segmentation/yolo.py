"""ultralytics YOLO-seg backend: listed so `--model yolo` gives a clear answer; not built yet."""

from __future__ import annotations

from animlora.backends.segmentation.base import Frames, Instance, Segmenter
from animlora.errors import ConfigError


class YoloSegmenter(Segmenter):
    name = "yolo"

    def __init__(self, settings, models) -> None:  # type: ignore[no-untyped-def]
        raise ConfigError(
            "segmentation backend 'yolo' is not implemented in this version; "
            "use segment.backend isnet (CPU), classic (no weights) or sam2 (GPU)"
        )

    def segment(self, frames: Frames) -> list[Instance]:  # pragma: no cover - never constructed
        raise NotImplementedError
