"""The settings a Flux run actually uses: what Flux trainers do differently from SD's defaults,
each change said once in the plan's warnings (the ``3d-character-flux`` preset sets them all, so
it gets none)."""

from __future__ import annotations

from typing import Any

from animlora.errors import MissingDependencyError


def flux_settings(settings: Any, device: str) -> tuple[Any, list[str]]:
    """(effective settings, notes) for a Flux base model on ``device``."""
    s = settings
    update: dict[str, Any] = {}
    notes: list[str] = []
    if s.train_text_encoder:
        update["train_text_encoder"] = False
        notes.append("Flux: the T5 and CLIP text encoders stay frozen (their embeddings are cached once); "
                     "train.train_text_encoder is ignored")
    if s.shuffle_caption:
        update["shuffle_caption"] = False
        notes.append("Flux: caption shuffle is off (the cached embeddings are of each caption as written, "
                     "and T5 reads sentences); caption dropout still works")
    if s.min_snr_gamma:
        update["min_snr_gamma"] = 0.0
        notes.append("Flux: min-SNR weighting does not apply to flow matching; train.min_snr_gamma is ignored")
    if s.mixed_precision == "fp16":
        update["mixed_precision"] = "bf16"
        notes.append("Flux: fp16 overflows in the transformer; training in bf16 instead")
    if s.quantize_base != "none":
        if device != "cuda":
            update["quantize_base"] = "none"
            notes.append(f"train.quantize_base = {s.quantize_base} needs a CUDA GPU (bitsandbytes); skipped on "
                         "the CPU: the transformer is loaded unquantized")
        else:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError("bitsandbytes", "train8bit",
                                             f"a quantized Flux base (train.quantize_base = {s.quantize_base})") from exc
            if s.quantize_base == "int8":
                notes.append("Flux: train.quantize_base = int8 is bitsandbytes' LLM.int8, which computes in fp16; it "
                             "held 38.5 GB at 1024² on a full-size transformer before its blocks were checkpointed "
                             "reentrantly, not measured since (docs/training.md); nf4 held 12.7 GB")
    return (s.model_copy(update=update) if update else s), notes
