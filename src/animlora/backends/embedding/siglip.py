"""``siglip``: SigLIP image embeddings (transformers ``SiglipModel``), default
``google/siglip-base-patch16-224``: the attention-pooled image embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animlora.backends.embedding._hf import HFImageEmbedder, pooled


class SiglipEmbedder(HFImageEmbedder):
    backend = "siglip"

    @staticmethod
    def default_model(settings: Any) -> str:
        return settings.siglip_model

    def load_model(self, path: Path) -> Any:
        from transformers import SiglipModel

        return SiglipModel.from_pretrained(str(path))

    def features(self, model: Any, pixel_values: Any) -> Any:
        return pooled(model.get_image_features(pixel_values=pixel_values))
