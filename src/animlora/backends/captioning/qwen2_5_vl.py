"""Qwen2.5-VL-Instruct captioner, schema-guided: asked for JSON fields, answer parsed robustly
(JSON → repair → re-ask with a stricter prompt → plain caption), the path taken recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from animlora.backends.captioning import hf
from animlora.backends.captioning.base import Captioner, CaptionInput, CaptionResult
from animlora.backends.captioning.schema import PROMPT, RETRY_PROMPT, parse_fields

if TYPE_CHECKING:
    from animlora.config.schema import CaptionSettings, ModelsSettings


DEFAULT_MODEL = "qwen2.5-vl-3b"


class QwenVLCaptioner(Captioner):
    name = "qwen2_5_vl"
    default_model = DEFAULT_MODEL

    def __init__(self, settings: CaptionSettings, models: ModelsSettings) -> None:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.settings = settings
        path = hf.weights(settings.model, self.default_model, models)
        self.device, self.dtype = hf.device_and_dtype(settings.device)
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if settings.load_in_4bit:
            if not self.device.startswith("cuda"):
                from animlora.errors import ConfigError

                raise ConfigError("caption.load_in_4bit needs a CUDA device (bitsandbytes); set it false on CPU")
            try:
                from transformers import BitsAndBytesConfig
            except ImportError as exc:  # pragma: no cover - depends on the install
                from animlora.errors import MissingDependencyError

                raise MissingDependencyError("bitsandbytes", "models", "4-bit Qwen2.5-VL") from exc
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=self.dtype)
            kwargs["device_map"] = self.device
        self.processor = AutoProcessor.from_pretrained(path)
        self.processor.tokenizer.padding_side = "left"
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kwargs)
        if not settings.load_in_4bit:
            self.model = self.model.to(self.device)
        self.model.eval()
        self.torch = torch

    def ask(self, items: list[CaptionInput], prompt: str) -> list[str]:
        images = [hf.pil_image(item) for item in items]
        messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}] for _ in items]
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.device)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False)
        out = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]

    def caption(self, items: Sequence[CaptionInput]) -> list[CaptionResult]:
        results = []
        step = self.settings.batch_size
        for start in range(0, len(items), step):
            batch = list(items[start : start + step])
            results += answers_to_results(batch, self.ask, self.settings, self.name)
        return results

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()


def answers_to_results(batch: list[CaptionInput], ask: Any, settings: CaptionSettings, source: str) -> list[CaptionResult]:
    """Ask, parse, re-ask the unparsed with the stricter prompt, then fall back to a plain caption."""
    answers = ask(batch, PROMPT)
    parsed = [parse_fields(a) for a in answers]
    for attempt in range(settings.retries):
        missing = [i for i, (fields, _) in enumerate(parsed) if not fields]
        if not missing:
            break
        again = ask([batch[i] for i in missing], RETRY_PROMPT)
        for i, answer in zip(missing, again, strict=True):
            fields, how = parse_fields(answer)
            if fields:
                parsed[i] = (fields, f"{how} after {attempt + 1} retry")
            answers[i] = answer
    results = []
    for item, answer, (fields, how) in zip(batch, answers, parsed, strict=True):
        if fields:
            note = "" if how == "json" else f"answer {how}"
            results.append(CaptionResult(hf.with_measured(item, fields, settings), source, note=note))
        else:
            result = hf.description_result(item, answer, source, settings, confidence=0.5)
            used = "plain caption used" if "description" in result.fields else "no usable answer, measured fields only"
            results.append(CaptionResult(result.fields, result.source,
                                         note=f"no JSON after {settings.retries} retries; {used}"))
    return results
