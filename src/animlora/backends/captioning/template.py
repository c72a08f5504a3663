"""The ``template`` captioner: CPU, no weights, fields measured from the cut-out and its frame.

framing from the box against the frame (or the cut-out's own silhouette), view from left-right
symmetry, outfit colours from the masked palette named in CIELAB, lighting and time of day from
the frame's brightness and colour temperature, background kind from sky/foliage/flatness. Pose
and expression are left to the VLM backends: nothing cheap measures them honestly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from animlora.backends.captioning import analysis
from animlora.backends.captioning.base import Captioner, CaptionInput, CaptionResult

if TYPE_CHECKING:
    from animlora.config.schema import CaptionSettings, ModelsSettings


class TemplateCaptioner(Captioner):
    name = "template"

    def __init__(self, settings: CaptionSettings, models: ModelsSettings | None = None) -> None:
        self.settings = settings

    def caption(self, items: Sequence[CaptionInput]) -> list[CaptionResult]:
        return [self.caption_one(item) for item in items]

    def caption_one(self, item: CaptionInput) -> CaptionResult:
        s = self.settings
        mask = analysis.alpha_mask(item.image, s.alpha_threshold)
        if not mask.any():
            return CaptionResult({}, self.name, note="the cut-out is fully transparent")
        frame_size = None if item.frame is None else (item.frame.shape[1], item.frame.shape[0])
        measured = {
            "framing": analysis.framing(mask, item.bbox, frame_size),
            "view": analysis.view(item.image, mask),
            "outfit": analysis.palette(item.image, mask, s.palette_colors, s.palette_min_share),
            "lighting": analysis.lighting(item.image, mask, item.frame, item.bbox),
            "time_of_day": analysis.time_of_day(item.frame, item.bbox),
            "background": analysis.background(item.frame, item.bbox),
        }
        fields = {}
        for name, (phrase, confidence, info) in measured.items():
            if not phrase:
                continue
            entry = {"value": phrase, "confidence": round(float(confidence), 3)}
            if name == "outfit":
                entry["colors"] = info.get("colors", [])
            entry["measured"] = {k: v for k, v in info.items() if k != "colors"}
            fields[name] = entry
        return CaptionResult(fields, self.name)
