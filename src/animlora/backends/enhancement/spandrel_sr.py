"""Super-resolution models through spandrel (Real-ESRGAN, Compact, SwinIR, DAT, HAT, ...).

Weights: ``enhance.sr_model`` (a registry name resolved by animlora.models, or a file set in
``models.paths``); spandrel reads the released .pth/.safetensors and says which architecture,
scale and purpose it is: anything but a 3-channel super-resolution model is refused. Big
images run in tiles (``enhance.tile`` px, ``enhance.tile_pad`` px of context); on CUDA the
model runs in fp16 where the architecture supports it (``enhance.half``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.enhancement.base import Enhancer, out_size
from animlora.errors import BadInputError


def weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    for pattern in ("*.safetensors", "*.pth", "*.pt", "*.ckpt"):
        found = sorted(path.rglob(pattern))
        if found:
            return found[0]
    raise BadInputError(path, "no super-resolution checkpoint (.safetensors/.pth/.pt/.ckpt) in this model folder")


class SpandrelEnhancer(Enhancer):
    name = "spandrel"

    def __init__(self, settings: Any, models: Any, descriptor: Any = None, model_name: str | None = None) -> None:
        super().__init__(settings, models)
        import torch

        self.model_name = model_name or settings.sr_model
        if descriptor is None:
            from spandrel import ModelLoader

            from animlora.models import resolve

            path = weights_file(resolve(settings.sr_model, models))
            try:
                descriptor = ModelLoader().load_from_file(path)
            except Exception as exc:  # spandrel raises its own UnsupportedModelError etc.
                raise BadInputError(path, f"spandrel cannot load this as an image model ({exc})") from exc
        if getattr(descriptor, "purpose", None) != "SR" or getattr(descriptor, "input_channels", 3) != 3:
            arch = getattr(getattr(descriptor, "architecture", None), "id", "?")
            raise BadInputError(Path(self.model_name), f"not a 3-channel super-resolution model ({arch}, purpose "
                                                       f"{getattr(descriptor, 'purpose', '?')})")
        cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if cuda else "cpu")
        self.half = bool(settings.half and cuda and descriptor.supports_half)
        self.descriptor = descriptor.to(self.device).eval()
        if self.half:
            self.descriptor.half()
        self.scale = int(descriptor.scale)

    @property
    def method(self) -> str:
        arch = self.descriptor.architecture.id
        return f"spandrel:{self.model_name} ({arch} x{self.scale}{', fp16' if self.half else ''})"

    @property
    def max_factor(self) -> float:
        return float(min(self.settings.max_scale, self.scale))

    def enhance(self, image: np.ndarray, factor: float) -> np.ndarray:
        import cv2
        import torch

        from animlora.backends.enhancement.tiles import run_tiled

        h, w = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None]
        x = x.half() / 255.0 if self.half else x.float() / 255.0
        with torch.inference_mode():
            y = run_tiled(self.descriptor, x, self.scale, self.settings.tile, self.settings.tile_pad)
        out = (y[0].float().permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        size = out_size(w, h, factor)
        if (out.shape[1], out.shape[0]) != size:  # the model's own scale, brought to the one asked
            smaller = size[0] < out.shape[1]
            out = cv2.resize(out, size, interpolation=cv2.INTER_AREA if smaller else cv2.INTER_CUBIC)
        return out

    def close(self) -> None:
        import torch

        self.descriptor = self.descriptor.cpu()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
