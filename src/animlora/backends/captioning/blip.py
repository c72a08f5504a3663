"""BLIP / BLIP-2 captioner: a plain sentence per image (BLIP follows no instructions), completed by
the template's measured framing, view, lighting and background."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from animlora.backends.captioning import hf
from animlora.backends.captioning.base import Captioner, CaptionInput, CaptionResult

if TYPE_CHECKING:
    from animlora.config.schema import CaptionSettings, ModelsSettings


DEFAULT_MODEL = "blip-large"


class BlipCaptioner(Captioner):
    name = "blip"
    default_model = DEFAULT_MODEL

    def __init__(self, settings: CaptionSettings, models: ModelsSettings) -> None:
        import torch
        from transformers import AutoConfig, AutoProcessor

        self.settings = settings
        path = hf.weights(settings.model, self.default_model, models)
        self.device, self.dtype = hf.device_and_dtype(settings.device)
        try:
            config = AutoConfig.from_pretrained(path)
            if config.model_type == "blip-2":
                from transformers import Blip2ForConditionalGeneration as Model
            else:
                from transformers import BlipForConditionalGeneration as Model
            self.processor = AutoProcessor.from_pretrained(path)
            self.model = Model.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            from animlora.errors import BadInputError

            raise BadInputError(path, f"not a loadable BLIP model ({exc})") from exc
        self.torch = torch

    def generate(self, images: list[Any]) -> list[str]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, num_beams=3)
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]

    def caption(self, items: Sequence[CaptionInput]) -> list[CaptionResult]:
        results = []
        step = self.settings.batch_size
        for start in range(0, len(items), step):
            batch = list(items[start : start + step])
            texts = self.generate([hf.pil_image(item) for item in batch])
            results += [hf.description_result(item, text, self.name, self.settings) for item, text in zip(batch, texts, strict=True)]
        return results

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
