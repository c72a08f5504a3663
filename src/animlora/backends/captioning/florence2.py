"""Florence-2 captioner (transformers-native ``Florence2ForConditionalGeneration``): the
``<MORE_DETAILED_CAPTION>`` task's sentence, completed by the template's measured fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from animlora.backends.captioning import hf
from animlora.backends.captioning.base import Captioner, CaptionInput, CaptionResult

if TYPE_CHECKING:
    from animlora.config.schema import CaptionSettings, ModelsSettings

TASK = "<MORE_DETAILED_CAPTION>"


DEFAULT_MODEL = "florence2-large"


class Florence2Captioner(Captioner):
    name = "florence2"
    default_model = DEFAULT_MODEL

    def __init__(self, settings: CaptionSettings, models: ModelsSettings) -> None:
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.settings = settings
        path = hf.weights(settings.model, self.default_model, models)
        self.device, self.dtype = hf.device_and_dtype(settings.device)
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.model = Florence2ForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            from animlora.errors import BadInputError

            raise BadInputError(path, f"not a transformers-native Florence-2 model ({exc}); use "
                                      "florence-community/Florence-2-* weights") from exc
        self.model = self.model.to(self.device).eval()
        self.torch = torch

    def generate(self, items: list[CaptionInput]) -> list[str]:
        images = [hf.pil_image(item) for item in items]
        inputs = self.processor(text=[TASK] * len(images), images=images, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, num_beams=3,
                                      do_sample=False)
        texts = self.processor.batch_decode(out, skip_special_tokens=False)
        answers = []
        for text, image in zip(texts, images, strict=True):
            parsed = self.processor.post_process_generation(text, task=TASK, image_size=image.size)
            answer = parsed.get(TASK, "") if isinstance(parsed, dict) else str(parsed)
            answers.append(answer if isinstance(answer, str) else str(answer))
        return answers

    def caption(self, items: Sequence[CaptionInput]) -> list[CaptionResult]:
        results = []
        step = self.settings.batch_size
        for start in range(0, len(items), step):
            batch = list(items[start : start + step])
            texts = self.generate(batch)
            results += [hf.description_result(item, text, self.name, self.settings) for item, text in zip(batch, texts, strict=True)]
        return results

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
