"""What the Hugging Face image backends share: device and dtype, the image processor,
batched inference under ``torch.inference_mode``. Each backend module says only which
model class it loads and how it pools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from animlora.backends.embedding.base import composite, l2_normalise
from animlora.errors import BadInputError
from animlora.models import resolve

if TYPE_CHECKING:
    from animlora.config.schema import EmbedSettings, ModelsSettings


class HFImageEmbedder:
    """Base of clip / siglip / dinov2: resolves weights at construction (so a missing model
    fails before any work), loads them on first use."""

    backend: str = ""

    def __init__(self, settings: EmbedSettings, models: ModelsSettings, model_name: str | None = None) -> None:
        self.settings = settings
        self.model_name = model_name or self.default_model(settings)
        self.path: Path = resolve(self.model_name, models)
        self.key = f"{self.backend}:{self.model_name}"
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"
        self._dtype: Any = None

    # -- what a backend says ---------------------------------------------------------
    @staticmethod
    def default_model(settings: EmbedSettings) -> str:
        raise NotImplementedError

    def load_model(self, path: Path) -> Any:
        raise NotImplementedError

    def features(self, model: Any, pixel_values: Any) -> Any:
        """(batch, dim) tensor of image features."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from transformers import AutoImageProcessor

        wanted = self.settings.device
        use_cuda = torch.cuda.is_available() and wanted in ("auto", "cuda")
        if wanted == "cuda" and not torch.cuda.is_available():
            from animlora.errors import ConfigError

            raise ConfigError("embed.device = 'cuda' but no CUDA GPU is visible; use auto or cpu")
        self._device = "cuda" if use_cuda else "cpu"
        self._dtype = torch.float16 if use_cuda and self.settings.half else torch.float32
        try:
            self._processor = AutoImageProcessor.from_pretrained(str(self.path))
            model = self.load_model(self.path)
        except (OSError, ValueError) as exc:
            raise BadInputError(self.path, f"cannot load {self.key} from here ({exc})".splitlines()[0]) from exc
        self._model = model.to(self._device, dtype=self._dtype).eval()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        if self._model is None:
            self._load()
        out = []
        size = self.settings.batch_size
        for start in range(0, len(images), size):
            batch = [composite(img, self.settings.background) for img in images[start : start + size]]
            inputs = self._processor(images=batch, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self._device, dtype=self._dtype)
            with torch.inference_mode():
                feats = self.features(self._model, pixels)
            out.append(feats.float().cpu().numpy())
        return l2_normalise(np.concatenate(out, axis=0))


def pooled(output: Any) -> Any:
    """transformers 5 returns a ModelOutput from get_image_features; 4.x a tensor."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output
