"""Which modules get a LoRA, and adding it with peft.

The set is kohya sd-scripts' (``networks/lora.py``): every Linear and 1×1 Conv inside the
U-Net's transformer blocks — attention q/k/v/out, the feed-forward's two projections and
``proj_in``/``proj_out`` — and, in the text encoder(s), the attention and MLP projections.
"""

from __future__ import annotations

from typing import Any

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
ADAPTER = "default"


def add_lora(model: Any, targets: tuple[str, ...] | str, rank: int, alpha: float) -> list[Any]:
    """Freeze ``model``, add a LoRA (rank, alpha) on ``targets`` (module-name suffixes, or one regex
    matched against the whole module path); return the trainable parameters.

    peft's default init is kohya's: down (A) Kaiming-uniform, up (B) zeros, so the untrained
    LoRA changes nothing."""
    from peft import LoraConfig

    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets if isinstance(targets, str) else list(targets), init_lora_weights=True)
    model.add_adapter(config)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_layers(model: Any) -> dict[str, Any]:
    """Module path → peft LoRA layer, for every module of ``model`` that carries the adapter."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)
            and ADAPTER in module.lora_A}


def lora_parameters(model: Any) -> dict[str, Any]:
    """Stable name → tensor of every LoRA weight of ``model`` (for resume state and tests)."""
    return {n: p for n, p in model.named_parameters() if "lora_" in n}
