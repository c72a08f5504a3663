"""The Inpainter protocol: an RGB image and a hole mask in, the model's RGB output out.

The output is the model's raw prediction for the whole image; callers composite it into
the hole (and may compare it with the input outside the hole as a sanity check).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import import_module
from typing import Any, ClassVar

import numpy as np

from animlora.errors import ConfigError, MissingDependencyError


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


@dataclass(frozen=True)
class BackendEntry:
    target: str
    packages: tuple[str, ...]
    extra: str
    description: str


BACKENDS: dict[str, BackendEntry] = {
    "lama": BackendEntry("animlora.backends.inpainting.lama:LamaInpainter", ("torch", "spandrel"), "models",
                         "LaMa (big-lama weights) through spandrel"),
    "opencv": BackendEntry("animlora.backends.inpainting.opencv:OpenCVInpainter", ("cv2",), "cpu",
                           "OpenCV Telea / Navier-Stokes, no weights"),
    "sd": BackendEntry("animlora.backends.inpainting.sd:SDInpainter", ("torch", "diffusers", "transformers"), "models",
                       "Stable Diffusion inpainting (diffusers), text-guided; occluder removal only"),
}


def availability() -> dict[str, bool]:
    return {n: all(importlib.util.find_spec(p) is not None for p in e.packages) for n, e in BACKENDS.items()}


def get_inpainter(name: str, settings: Any, models: Any, **options: Any) -> Inpainter:
    """The backend ``name`` built from its settings section; ``options`` go to its constructor
    (the sd backend's ``seed`` and ``device``)."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise ConfigError(f"unknown inpainting backend {name!r}; choices: {', '.join(BACKENDS)}")
    for pkg in entry.packages:
        if importlib.util.find_spec(pkg) is None:
            raise MissingDependencyError(pkg, entry.extra, f"inpainting backend '{name}'")
    module, _, cls = entry.target.partition(":")
    return getattr(import_module(module), cls)(settings, models, **options)
