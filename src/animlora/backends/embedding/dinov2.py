"""``dinov2``: DINOv2 self-supervised features (transformers ``Dinov2Model``), default
``facebook/dinov2-base``: the class token joined with the mean of the patch tokens (the
recipe of the DINOv2 paper's linear probes), which keeps both the global look and the parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animlora.backends.embedding._hf import HFImageEmbedder


class Dinov2Embedder(HFImageEmbedder):
    backend = "dinov2"

    @staticmethod
    def default_model(settings: Any) -> str:
        return settings.dinov2_model

    def load_model(self, path: Path) -> Any:
        from transformers import Dinov2Model

        return Dinov2Model.from_pretrained(str(path))

    def features(self, model: Any, pixel_values: Any) -> Any:
        import torch

        hidden = model(pixel_values=pixel_values).last_hidden_state
        return torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], dim=1)
