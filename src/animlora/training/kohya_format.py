"""Our own peft → kohya conversion, so the file loads in A1111, ComfyUI, sd-scripts and diffusers.

Keys: ``lora_unet_<module path with _>``, ``lora_te_…`` (SD 1.x) or ``lora_te1_…``/``lora_te2_…``
(SDXL), each with ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``. Written by hand
rather than with diffusers' converter because that one writes alpha = rank whatever
``lora_alpha`` was (the LoRA then loads at the wrong strength) and mangles U-Net keys when a
text-encoder LoRA is present. Two naming details UIs depend on:

- SD 1.x U-Net names are diffusers' module paths (kohya trains SD 1.x on the diffusers U-Net);
  SDXL names are the original (sgm) ``input_blocks``/``middle_block``/``output_blocks`` ones,
  as kohya's SDXL trainer writes them.
- text-encoder names keep CLIP's ``text_model_`` level (``lora_te_text_model_encoder_layers_0_…``):
  transformers 5 dropped ``text_model.`` from ``CLIPTextModel``'s module paths, so it is put back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from animlora.io.files import atomic_write_bytes
from animlora.training.network import ADAPTER, lora_layers

_DOWN = re.compile(r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$")
_MID = re.compile(r"^mid_block\.attentions\.0\.(.*)$")
_UP = re.compile(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$")


def sgm_module_name(name: str, layers_per_block: int) -> str:
    """diffusers U-Net module path → the original SD/SDXL (sgm) one, for transformer modules."""
    if m := _DOWN.match(name):
        block, layer, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + block * (layers_per_block + 1) + layer}.1.{rest}"
    if m := _MID.match(name):
        return f"middle_block.1.{m[1]}"
    if m := _UP.match(name):
        block, layer, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{block * (layers_per_block + 1) + layer}.1.{rest}"
    raise ValueError(f"no sgm name for U-Net module {name!r}")


def unet_key(name: str, family: str, layers_per_block: int) -> str:
    if family == "sdxl":
        name = sgm_module_name(name, layers_per_block)
    return "lora_unet_" + name.replace(".", "_")


def text_encoder_key(name: str, prefix: str) -> str:
    name = name.removeprefix("text_model.")
    return f"{prefix}text_model_" + name.replace(".", "_")


def _pairs(model: Any) -> list[tuple[str, Any, Any, float]]:
    out = []
    for name, layer in lora_layers(model).items():
        out.append((name, layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight, float(layer.lora_alpha[ADAPTER])))
    return out


def save_dtype(name: str) -> Any:
    """``train.save_precision`` → torch dtype (fp16 | bf16 | fp32)."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def kohya_state_dict(unet: Any, text_encoders: tuple[Any, ...], family: str, dtype: Any = None) -> dict[str, Any]:
    """The LoRA of ``unet`` and ``text_encoders`` as a kohya state dict (tensors on the CPU)."""
    import torch

    def put(sd: dict, key: str, down: Any, up: Any, alpha: float) -> None:
        cast = dtype or down.dtype
        sd[f"{key}.lora_down.weight"] = down.detach().to("cpu", cast).contiguous()
        sd[f"{key}.lora_up.weight"] = up.detach().to("cpu", cast).contiguous()
        sd[f"{key}.alpha"] = torch.tensor(alpha, dtype=cast)

    state: dict[str, Any] = {}
    layers_per_block = int(getattr(unet.config, "layers_per_block", 2))
    for name, down, up, alpha in _pairs(unet):
        put(state, unet_key(name, family, layers_per_block), down, up, alpha)
    prefixes = ("lora_te1_", "lora_te2_") if family == "sdxl" else ("lora_te_",)
    for encoder, prefix in zip(text_encoders, prefixes, strict=False):
        for name, down, up, alpha in _pairs(encoder):
            put(state, text_encoder_key(name, prefix), down, up, alpha)
    return state


def save_kohya(path: str | Path, state: dict[str, Any], metadata: dict[str, str]) -> Path:
    """Write atomically (temp file + rename): a full disk fails cleanly, never half a file.
    Adds sd-scripts' ``sshs_model_hash``/``sshs_legacy_hash`` (what additional-networks indexes)."""
    from safetensors.torch import save

    from animlora.training.metadata import addnet_hashes

    metadata = {k: str(v) for k, v in metadata.items()}
    metadata.update(addnet_hashes(state, metadata))
    data = save(state, metadata=metadata)
    return atomic_write_bytes(path, data)


def kohya_metadata(
    *,
    family: str,
    base_model: str,
    output_name: str,
    dim: int,
    alpha: float,
    trigger: str,
    dataset_hash: str,
    steps: int,
    epoch: int,
    num_images: int,
    resolution: int,
    unet_lr: float,
    text_encoder_lr: float | None,
    seed: int,
    prediction_type: str = "epsilon",
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The per-save ``ss_*`` metadata and ModelSpec's core fields; the trainer adds the rest of
    what sd-scripts records (``metadata.run_metadata``) through ``extra``."""
    import json
    import time

    from animlora.training.metadata import modelspec

    now = time.time()
    meta = {
        "ss_network_module": "networks.lora_flux" if family == "flux" else "networks.lora",
        "ss_network_dim": str(dim),
        "ss_network_alpha": str(alpha),
        "ss_network_args": json.dumps({}),
        "ss_base_model_version": {"sdxl": "sdxl_base_v1-0", "flux": "flux1"}.get(family, "sd_v1"),
        "ss_v2": "False",
        "ss_sd_model_name": Path(base_model).name if base_model else "",
        "ss_output_name": output_name,
        "ss_training_comment": f"trigger: {trigger}",
        "ss_trigger_word": trigger,
        "ss_dataset_hash": dataset_hash,
        "ss_steps": str(steps),
        "ss_epoch": str(epoch),
        "ss_num_train_images": str(num_images),
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_learning_rate": str(unet_lr),
        "ss_unet_lr": str(unet_lr),
        "ss_text_encoder_lr": str(text_encoder_lr) if text_encoder_lr is not None else "None",
        "ss_network_train_unet_only": str(text_encoder_lr is None),
        "ss_seed": str(seed),
        "ss_training_finished_at": str(now),
        **modelspec(family=family, title=output_name, resolution=resolution, trigger=trigger,
                    prediction_type=prediction_type, timestamp=now),
        "animlora.format": "kohya",
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta


def save_diffusers(folder: str | Path, unet: Any, text_encoders: tuple[Any, ...], family: str,
                   dtype: Any = None) -> Path:
    """The diffusers/peft format (``pytorch_lora_weights.safetensors`` + adapter metadata),
    written into a temp folder and renamed; ``dtype`` casts the weights (None: as trained)."""
    import shutil

    from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
    from peft.utils import get_peft_model_state_dict

    from animlora.errors import AnimloraError

    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    def layers(model: Any) -> dict[str, Any]:
        state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
        return {k: v.detach().to("cpu", dtype or v.dtype) for k, v in state.items()}

    part = "transformer" if family == "flux" else "unet"  # Flux: ``unet`` is the transformer
    kwargs: dict[str, Any] = {
        f"{part}_lora_layers": layers(unet),
        f"{part}_lora_adapter_metadata": unet.peft_config[ADAPTER].to_dict(),
    }
    names = ("text_encoder", "text_encoder_2")
    for name, encoder in zip(names, text_encoders, strict=False):
        if lora_layers(encoder):
            kwargs[f"{name}_lora_layers"] = layers(encoder)
            kwargs[f"{name}_lora_adapter_metadata"] = encoder.peft_config[ADAPTER].to_dict()
    cls = {"sdxl": StableDiffusionXLPipeline, "flux": FluxPipeline}.get(family, StableDiffusionPipeline)
    try:
        cls.save_lora_weights(str(tmp), weight_name="pytorch_lora_weights.safetensors", **kwargs)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AnimloraError(f"{folder}: cannot write ({exc.strerror or exc})") from exc
    return folder
