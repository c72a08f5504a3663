"""The Captioner protocol: images of one character in, caption fields out.

A backend implements one method, :meth:`Captioner.caption`, over a batch. It returns fields
(``{"view": {"value": "side view", "confidence": 0.7}, ...}``) rather than finished text, so
that composition, lint and the token budget live in one place (:mod:`animlora.text.captions`) and
the dataset stage can prune identity-intrinsic traits per character.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# The fields every backend is asked for (a VLM through its prompt, the template by measurement).
FIELDS = ("framing", "view", "pose", "expression", "outfit", "lighting", "time_of_day", "background")


@dataclass(frozen=True)
class CaptionInput:
    """One instance to caption."""

    key: str
    image: np.ndarray  # RGBA cut-out, uint8 HxWx4
    trigger: str
    character: str
    frame: np.ndarray | None = None  # RGB source frame, when known
    bbox: tuple[int, int, int, int] | None = None  # x, y, w, h of the instance in the frame
    clothed: bool | None = None  # from the character's description; None = not known


@dataclass(frozen=True)
class CaptionResult:
    """Fields of one instance; ``text`` is a free caption when fields could not be had."""

    fields: dict[str, dict[str, Any]]
    source: str
    text: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        values = [float(f.get("confidence", 1.0)) for f in self.fields.values() if f.get("value")]
        if not values:
            return 0.3 if self.text else 0.0
        return float(sum(values) / len(values))


class Captioner(ABC):
    """Base of every captioning backend."""

    name: ClassVar[str]

    def __repr__(self) -> str:
        return f"captioner:{self.name}"

    @abstractmethod
    def caption(self, items: Sequence[CaptionInput]) -> list[CaptionResult]:
        """One result per input, in order; never raises for one bad answer (record it in ``note``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free model memory."""


def composite_on(image: np.ndarray, color: tuple[int, int, int] = (127, 127, 127)) -> np.ndarray:
    """RGB of an RGBA cut-out over a flat colour (what a VLM is shown)."""
    rgb = image[..., :3].astype(np.float32)
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    bg = np.array(color, np.float32)
    return (rgb * alpha + bg * (1 - alpha)).round().clip(0, 255).astype(np.uint8)
