"""``clip``: CLIP image embeddings (transformers ``CLIPModel``), default
``openai/clip-vit-large-patch14``: the projected image embedding, the space CLIP
compares images in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animlora.backends.embedding._hf import HFImageEmbedder, pooled


class ClipEmbedder(HFImageEmbedder):
    backend = "clip"

    @staticmethod
    def default_model(settings: Any) -> str:
        return settings.clip_model

    def load_model(self, path: Path) -> Any:
        from transformers import CLIPModel

        return CLIPModel.from_pretrained(str(path))

    def features(self, model: Any, pixel_values: Any) -> Any:
        return pooled(model.get_image_features(pixel_values=pixel_values))
