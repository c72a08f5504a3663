"""The ``template`` captioner: CPU, no weights, fields measured from the cut-out and its frame.

framing from the mask against the frame edges (or the cut-out's own silhouette), view from
left-right symmetry and eyes, outfit colours from the masked palette named in CIELAB (only for a
character that wears clothes: its description says so, or its colours are not all one material
or one colour family), lighting and time of day from
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
        if not wears_clothes(item.clothed, measured["outfit"][2], measured["framing"][0]):
            measured["outfit"] = ("", 0.0, measured["outfit"][2])  # a bare animal or a prop: no outfit
        fields = {}
        for name, (phrase, confidence, info) in measured.items():
            if not phrase:
                continue
            entry = {"value": phrase, "confidence": round(float(confidence), 3)}
            if name == "outfit" and phrase:
                entry["colors"] = info.get("colors", [])
            entry["measured"] = {k: v for k, v in info.items() if k != "colors"}
            fields[name] = entry
        return CaptionResult(fields, self.name)


# a figure of which one material (one colour under shading) covers this share is one continuous
# fur, skin or surface: nothing on it reads as clothing
ONE_MATERIAL = 0.85
# ... and a figure of which one colour family (greys; browns and beige) covers this share: clothes
# bring a colour of another family over more than a quarter of a figure
ONE_FAMILY = 0.75


def wears_clothes(hint: bool | None, outfit_info: dict, framing: str = "") -> bool:
    """Whether the outfit colours may be called clothes: the character's own description says
    so (``hint``), else only when the figure is not one continuous material and is not a
    close-up (a face's eyes, mouth and fur below the top fifth are no outfit)."""
    if hint is not None:
        return hint
    if framing == "close-up":
        return False
    if float(outfit_info.get("one_family", 0.0)) >= ONE_FAMILY:
        return False  # shades of one colour family (grey and dark grey fur): markings, not clothes
    return float(outfit_info.get("one_material", 0.0)) < ONE_MATERIAL
