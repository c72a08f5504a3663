"""The Enhancer protocol: an RGB crop in, a larger RGB crop out, and the quality gate.

An enhancer enlarges an HxWx3 uint8 image by ``factor`` (its output is exactly
``round(W*factor) x round(H*factor)``, so an alpha resized to that size with
:func:`resize_alpha` stays aligned with it). :func:`structure_similarity` is the gate: the
result shrunk back to the source's size is compared with the source (SSIM on luminance);
a model that drifts (invents structure, shifts, changes colours) scores low.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from animlora.backends import registry
from animlora.backends.registry import BackendEntry


class Enhancer(ABC):
    name: ClassVar[str]

    def __init__(self, settings: Any, models: Any) -> None:
        self.settings = settings
        self.models_settings = models

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method})"

    @property
    def method(self) -> str:
        """What made the pixels, for the lineage (backend, and model where there is one)."""
        return self.name

    @property
    def max_factor(self) -> float:
        """The largest enlargement this enhancer makes in one pass."""
        return float(self.settings.max_scale)

    @abstractmethod
    def enhance(self, image: np.ndarray, factor: float) -> np.ndarray:
        """``image`` HxWx3 uint8 RGB -> ``out_size(W, H, factor)`` uint8 RGB."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory)."""


def out_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """The (w, h) of a ``factor`` enlargement (every enhancer and the alpha use this one)."""
    return max(1, int(round(width * factor))), max(1, int(round(height * factor)))


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The alpha on the enhanced image's pixel grid (cv2's half-pixel centres, as the RGB)."""
    import cv2

    return cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)


def structure_similarity(source: np.ndarray, enhanced: np.ndarray) -> float:
    """SSIM (Gaussian window, sigma 1.5) between ``source`` and ``enhanced`` shrunk to its size,
    on luminance; 1.0 = the enhancement kept the source's structure exactly."""
    import cv2

    h, w = source.shape[:2]
    down = cv2.resize(enhanced, (w, h), interpolation=cv2.INTER_AREA) if enhanced.shape[:2] != (h, w) else enhanced

    def gray(a: np.ndarray) -> np.ndarray:
        a = a[..., :3] if a.ndim == 3 else a
        return (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a).astype(np.float64)

    x, y = gray(source), gray(down)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim.mean())


# The family's part of the one backend table (backends/registry.py).
BACKENDS: dict[str, BackendEntry] = registry.BACKENDS["enhance"]


def get_enhancer(name: str, settings: Any, models: Any, **options: Any) -> Enhancer:
    """The backend ``name`` built from the ``enhance`` settings section."""
    return registry.get_backend("enhance", name, settings, models, **options)
