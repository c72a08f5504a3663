"""The Inpainter protocol: an RGB image and a hole mask in, the model's RGB output out.

The output is the model's raw prediction for the whole image; callers composite it into
the hole (and may compare it with the input outside the hole as a sanity check).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from animlora.backends import registry
from animlora.backends.registry import BackendEntry


class Inpainter(ABC):
    name: ClassVar[str]
    # True: ``inpaint`` takes a ``prompt`` keyword (text-guided backends)
    text_guided: ClassVar[bool] = False

    def __init__(self, settings: Any, models: Any) -> None:
        self.settings = settings
        self.models_settings = models

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @abstractmethod
    def inpaint(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB, ``hole`` HxW bool (True = fill) -> HxWx3 uint8."""


# The family's part of the one backend table (backends/registry.py); the old names stay.
BACKENDS: dict[str, BackendEntry] = registry.BACKENDS["inpainting"]


def availability() -> dict[str, bool]:
    return registry.available("inpainting")


def get_inpainter(name: str, settings: Any, models: Any, **options: Any) -> Inpainter:
    """The backend ``name`` built from its settings section; ``options`` go to its constructor
    (the sd backend's ``seed`` and ``device``)."""
    return registry.get_backend("inpainting", name, settings, models, **options)
