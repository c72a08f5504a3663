"""What the Hugging Face captioners share: weights through the resolver, device and dtype,
images as the model sees them, and the template's measured fields to complete a description."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from animlora.backends.captioning.base import CaptionInput, CaptionResult, composite_on

if TYPE_CHECKING:
    from pathlib import Path

    from animlora.config.schema import CaptionSettings, ModelsSettings

# fields the template measures better than a captioning model sees them (box, frame statistics)
MEASURED = ("framing", "view", "lighting", "time_of_day", "background")


def weights(name: str, default: str, models: ModelsSettings) -> Path:
    from animlora.models import resolve

    return resolve(name or default, models)


def device_and_dtype(setting: str) -> tuple[str, Any]:
    import torch

    device = setting
    if setting == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from animlora.errors import ConfigError

        raise ConfigError(f"caption.device = {setting!r} but no CUDA device is available; use auto or cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return device, dtype


def pil_image(item: CaptionInput) -> Any:
    """The cut-out on neutral grey: the character without the film's background."""
    from PIL import Image

    return Image.fromarray(composite_on(item.image))


def with_measured(item: CaptionInput, fields: dict[str, dict[str, Any]], settings: CaptionSettings) -> dict[str, Any]:
    """Add the template's measured fields the model did not give."""
    from animlora.backends.captioning.template import TemplateCaptioner

    measured = TemplateCaptioner(settings).caption_one(item).fields
    out = dict(fields)
    for name in MEASURED:
        if name not in out and name in measured:
            out[name] = measured[name]
    return out


def description_result(item: CaptionInput, text: str, source: str, settings: CaptionSettings,
                       confidence: float = 0.7) -> CaptionResult:
    """A free-text model's sentence as the ``description`` field, completed by measurement."""
    from animlora.backends.captioning.schema import plain_caption
    from animlora.text.captions import lint_text

    sentence = lint_text(plain_caption(text), ban_words=settings.ban_words, style_words=settings.style_words)
    fields: dict[str, dict[str, Any]] = {}
    note = ""
    if sentence:
        fields["description"] = {"value": sentence, "confidence": confidence}
    else:
        note = f"{source} gave no usable sentence ({text[:60]!r}); measured fields only"
    return CaptionResult(with_measured(item, fields, settings), f"{source}+template", note=note)
