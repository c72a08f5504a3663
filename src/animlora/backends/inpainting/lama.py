"""LaMa (large-mask inpainting, Fourier convolutions) through spandrel: the default.

Weights: the ``big-lama`` model (resolved by animlora.models; spandrel reads the .pt or
.safetensors checkpoint and checks it is LaMa). spandrel pads the image to LaMa's size
multiple and crops the result back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.inpainting.base import Inpainter
from animlora.errors import BadInputError


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    for pattern in ("*.safetensors", "*.pt", "*.pth", "*.ckpt"):
        found = sorted(path.rglob(pattern))
        if found:
            return found[0]
    raise BadInputError(path, "no LaMa checkpoint (.safetensors/.pt/.pth/.ckpt) in this model folder")


class LamaInpainter(Inpainter):
    name = "lama"

    def __init__(self, settings: Any, models: Any, descriptor: Any = None) -> None:
        super().__init__(settings, models)
        path = None
        if descriptor is None:
            from animlora.models import resolve

            # the weights first: without them (the CPU default) the fallback is known before
            # torch and spandrel are imported (~10 CPU-s, far more wall on a busy disk)
            path = _weights_file(resolve("big-lama", models))
        import torch

        if descriptor is None:
            from spandrel import ModelLoader

            assert path is not None
            try:
                descriptor = ModelLoader().load_from_file(path)
            except Exception as exc:  # spandrel raises its own UnsupportedModelError etc.
                raise BadInputError(path, f"spandrel cannot load this as LaMa ({exc})") from exc
        if getattr(descriptor, "architecture", None) is None or descriptor.architecture.id != "LaMa":
            raise BadInputError(Path("big-lama"), "the checkpoint is not a LaMa model")
        cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if cuda else "cpu")
        self.model = descriptor.to(self.device).eval()

    def inpaint(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        m = torch.from_numpy(hole.astype(np.float32)).to(self.device)[None, None]
        with torch.inference_mode():
            y = self.model(x, m)
        return (y[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
