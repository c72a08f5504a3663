"""Flux.1 LoRAs: the transformer's LoRA, flow-matching steps, cached text embeddings, and the
LoRA file in the key format ComfyUI and sd-scripts use for Flux.

What the Flux trainers do, read from kohya-ss/sd-scripts (``flux_train_network.py``,
``library/flux_train_utils.py``, ``networks/lora_flux.py``, 48d368fa) and ostris/ai-toolkit:

- **Network**: every Linear of the double- and single-stream blocks (sd-scripts' ``lora_flux``
  module set): attention q/k/v/out of both streams, both MLPs, the modulation linears, the single
  blocks' ``linear1`` (q, k, v and the MLP input fused) and ``linear2``. The T5 and CLIP text
  encoders stay frozen; their outputs are computed once and cached (ai-toolkit and sd-scripts do
  not train them either), then the encoders leave the GPU.
- **Flow matching**: ``x_t = (1 − σ) x₀ + σ ε``, the transformer predicts ``ε − x₀`` (sd-scripts'
  ``model_prediction_type = raw``), plain MSE (min-SNR does not apply). σ is sampled as
  ``timestep_sampling`` says: ``flux_shift`` (sigmoid of a normal, shifted by the image's token
  count as Flux's own schedule; sd-scripts' recommendation), ``shift`` (fixed
  ``discrete_flow_shift``), ``sigmoid``, ``logit_normal`` (SD3) or ``uniform``.
- **Guidance**: [dev] is guidance-distilled; training passes ``guidance_scale`` (1.0, as
  sd-scripts recommends) into its guidance embedding. [schnell] has none.

Key format. diffusers' Flux transformer splits what the original (BFL) model fuses: ``to_q``,
``to_k``, ``to_v`` are one ``img_attn.qkv`` (the context stream's ``add_*_proj`` are
``txt_attn.qkv``), and a single block's q, k, v and ``proj_mlp`` are one ``linear1``. The kohya
file uses the BFL names (``lora_unet_double_blocks_0_img_attn_qkv``), which ComfyUI maps through
``lora_unet_<diffusion_model key>`` and sd-scripts, Forge and diffusers read. A fused module is
written as sd-scripts' ``split_qkv`` writes it: the parts' down matrices stacked (rank n·r), the
up matrix block-diagonal; its alpha is n·α so that alpha / rank — the scale every loader applies —
stays α / r (sd-scripts keeps α there, which would load a split LoRA at 1/n strength).
"""

from __future__ import annotations

import math
import re
from typing import Any

from animlora.training.network import ADAPTER, lora_layers

#: peft target (regex, matched against the whole module path): sd-scripts' lora_flux module set
TARGETS = (
    r"(transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|norm1\.linear|norm1_context\.linear)"
    r"|single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out|norm\.linear))"
)

# diffusers module (inside a block) → (BFL module, part of a fused module or None)
DOUBLE = {
    "attn.to_q": ("img_attn.qkv", 0), "attn.to_k": ("img_attn.qkv", 1), "attn.to_v": ("img_attn.qkv", 2),
    "attn.add_q_proj": ("txt_attn.qkv", 0), "attn.add_k_proj": ("txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn.qkv", 2),
    "attn.to_out.0": ("img_attn.proj", None), "attn.to_add_out": ("txt_attn.proj", None),
    "ff.net.0.proj": ("img_mlp.0", None), "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None), "ff_context.net.2": ("txt_mlp.2", None),
    "norm1.linear": ("img_mod.lin", None), "norm1_context.linear": ("txt_mod.lin", None),
}
SINGLE = {
    "attn.to_q": ("linear1", 0), "attn.to_k": ("linear1", 1), "attn.to_v": ("linear1", 2),
    "proj_mlp": ("linear1", 3), "proj_out": ("linear2", None), "norm.linear": ("modulation.lin", None),
}
_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
TIMESTEP_SAMPLINGS = ("flux_shift", "shift", "sigmoid", "logit_normal", "uniform")


def bfl_module(name: str) -> tuple[str, int | None]:
    """diffusers module path → (kohya/ComfyUI key of the BFL module, part index when fused)."""
    m = _BLOCK.match(name)
    if m is None:
        raise ValueError(f"no Flux (BFL) name for transformer module {name!r}")
    double = m[1] == "transformer_blocks"
    table = DOUBLE if double else SINGLE
    if m[3] not in table:
        raise ValueError(f"no Flux (BFL) name for transformer module {name!r}")
    target, part = table[m[3]]
    block = "double_blocks" if double else "single_blocks"
    return f"lora_unet_{block}_{m[2]}_" + target.replace(".", "_"), part


def add_lora(transformer: Any, rank: int, alpha: float) -> list[Any]:
    """Freeze the transformer and add the LoRA (kohya init: down Kaiming-uniform, up zero)."""
    from animlora.training.network import add_lora as add

    return add(transformer, TARGETS, rank, alpha)


# -- kohya / ComfyUI file ---------------------------------------------------------------
def kohya_state_dict(transformer: Any, dtype: Any = None) -> dict[str, Any]:
    """The transformer's LoRA with BFL keys; fused modules stacked and block-diagonal (exact)."""
    import torch

    groups: dict[str, dict[int | None, tuple[Any, Any, float]]] = {}
    for name, layer in lora_layers(transformer).items():
        key, part = bfl_module(name)
        groups.setdefault(key, {})[part] = (layer.lora_A[ADAPTER].weight.detach(), layer.lora_B[ADAPTER].weight.detach(),
                                            float(layer.lora_alpha[ADAPTER]))
    state: dict[str, Any] = {}
    for key, parts in sorted(groups.items()):
        if None in parts:
            down, up, alpha = parts[None]
        else:
            order = sorted(parts)
            n = len(order)
            if order != list(range(n)) or n not in (3, 4):
                raise ValueError(f"{key}: LoRA on parts {order} of a fused module; all its parts need one")
            downs = [parts[i][0] for i in order]
            ups = [parts[i][1] for i in order]
            if len({d.shape[0] for d in downs}) != 1 or len({parts[i][2] for i in order}) != 1:
                raise ValueError(f"{key}: the fused parts need one rank and one alpha")
            rank = downs[0].shape[0]
            down = torch.cat(downs, dim=0)
            up = torch.zeros((sum(u.shape[0] for u in ups), n * rank), dtype=ups[0].dtype, device=ups[0].device)
            row = 0
            for j, u in enumerate(ups):
                up[row : row + u.shape[0], j * rank : (j + 1) * rank] = u
                row += u.shape[0]
            alpha = parts[0][2] * n  # alpha / (n·r) == α / r
        cast = dtype or down.dtype
        state[f"{key}.lora_down.weight"] = down.to("cpu", cast).contiguous()
        state[f"{key}.lora_up.weight"] = up.to("cpu", cast).contiguous()
        state[f"{key}.alpha"] = torch.tensor(alpha, dtype=cast)
    return state


def _parts_of(key: str) -> tuple[str, list[str]]:
    """kohya key → (diffusers block prefix, the diffusers modules it holds, in fused order)."""
    m = re.match(r"^lora_unet_(double|single)_blocks_(\d+)_(.+)$", key)
    if m is None:
        raise ValueError(f"not a Flux transformer LoRA key: {key!r}")
    double = m[1] == "double"
    table = DOUBLE if double else SINGLE
    prefix = f"{'transformer_blocks' if double else 'single_transformer_blocks'}.{m[2]}"
    members = sorted(((part or 0, name) for name, (bfl, part) in table.items() if bfl.replace(".", "_") == m[3]))
    if not members:
        raise ValueError(f"not a Flux transformer LoRA key: {key!r}")
    return prefix, [name for _, name in members]


def kohya_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A kohya/sd-scripts Flux LoRA (any model size) → diffusers' peft format
    (``transformer.<module>.lora_A/lora_B.weight``) with alpha / rank baked into the down matrix.

    Fused modules are split as sd-scripts' ``split_qkv`` loader does: block-diagonal up matrices
    give each part its own rows of the down matrix; a dense one (sd-scripts' default, one shared
    down) gives every part the whole down matrix and its rows of the up matrix. The parts' sizes
    come from the up matrix: q, k, v equal thirds; a single block's ``linear1`` is 3·d + 4·d."""
    import torch

    out: dict[str, Any] = {}
    bases = sorted({k.rsplit(".", 2)[0] for k in state if k.endswith(".lora_down.weight")})
    for base in bases:
        down = state[f"{base}.lora_down.weight"].float()
        up = state[f"{base}.lora_up.weight"].float()
        rank = down.shape[0]
        alpha = float(state[f"{base}.alpha"]) if f"{base}.alpha" in state else float(rank)
        down = down * (alpha / rank)
        prefix, members = _parts_of(base)
        if len(members) == 1:
            out[f"transformer.{prefix}.{members[0]}.lora_A.weight"] = down
            out[f"transformer.{prefix}.{members[0]}.lora_B.weight"] = up
            continue
        n = len(members)
        if n == 4:
            d = up.shape[0] // 7
            dims = [d, d, d, up.shape[0] - 3 * d]
        else:
            dims = [up.shape[0] // 3] * 3
        offsets = [sum(dims[:j]) for j in range(n)]
        sparse = rank % n == 0
        if sparse:
            r = rank // n
            for j in range(n):
                rows = up[offsets[j] : offsets[j] + dims[j]]
                off_diagonal = torch.cat([rows[:, :j * r], rows[:, (j + 1) * r :]], dim=1)
                sparse = sparse and bool(torch.all(off_diagonal == 0))
        for j, member in enumerate(members):
            rows = up[offsets[j] : offsets[j] + dims[j]]
            if sparse:
                r = rank // n
                out[f"transformer.{prefix}.{member}.lora_A.weight"] = down[j * r : (j + 1) * r].contiguous()
                out[f"transformer.{prefix}.{member}.lora_B.weight"] = rows[:, j * r : (j + 1) * r].contiguous()
            else:
                out[f"transformer.{prefix}.{member}.lora_A.weight"] = down.clone()
                out[f"transformer.{prefix}.{member}.lora_B.weight"] = rows.contiguous()
    return out


def is_flux_lora(state_keys: Any) -> bool:
    return any(str(k).startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for k in state_keys)


# -- flow matching ----------------------------------------------------------------------
def sample_sigmas(method: str, batch: int, generator: Any, *, latent_hw: tuple[int, int], sigmoid_scale: float = 1.0,
                  shift: float = 3.1582, logit_mean: float = 0.0, logit_std: float = 1.0) -> Any:
    """Noise levels σ ∈ (0, 1) as sd-scripts' ``get_noisy_model_input_and_timesteps``."""
    import torch

    if method == "uniform":
        return torch.rand((batch,), generator=generator)
    if method == "logit_normal":
        return torch.sigmoid(torch.randn((batch,), generator=generator) * logit_std + logit_mean)
    sigmas = torch.sigmoid(sigmoid_scale * torch.randn((batch,), generator=generator))
    if method == "shift":
        return (sigmas * shift) / (1 + (shift - 1) * sigmas)
    if method == "flux_shift":
        h, w = latent_hw
        tokens = (h // 2) * (w // 2)
        mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (tokens - 256)  # Flux's linear shift (256 → 0.5, 4096 → 1.15)
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    if method == "sigmoid":
        return sigmas
    raise ValueError(f"unknown timestep sampling {method!r}; choices: {', '.join(TIMESTEP_SAMPLINGS)}")


def pack(latents: Any) -> Any:
    """(B, C, H, W) → (B, H/2·W/2, 4C): Flux's 2×2 patches (``FluxPipeline._pack_latents``)."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(packed: Any, channels: int, height: int, width: int) -> Any:
    b = packed.shape[0]
    x = packed.view(b, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, height, width)


def image_ids(height: int, width: int, device: Any, dtype: Any) -> Any:
    """Positions of the packed latent tokens (``FluxPipeline._prepare_latent_image_ids``)."""
    import torch

    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def predict(transformer: Any, noisy: Any, sigmas: Any, embeds: Any, pooled: Any, guidance: float | None,
            dtype: Any) -> Any:
    """The transformer's flow prediction for latents (B, C, H, W), unpacked to that shape."""
    import torch

    b, c, h, w = noisy.shape
    device = noisy.device
    guidance_vec = (torch.full((b,), float(guidance), device=device, dtype=dtype)
                    if guidance is not None and transformer.config.guidance_embeds else None)
    out = transformer(
        hidden_states=pack(noisy).to(dtype), timestep=sigmas.to(device, dtype), guidance=guidance_vec,
        pooled_projections=pooled.to(dtype), encoder_hidden_states=embeds.to(dtype),
        txt_ids=torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype),
        img_ids=image_ids(h, w, device, dtype), return_dict=False,
    )[0]
    return unpack(out, c, h, w)


# -- text embeddings ------------------------------------------------------------------------
def max_sequence_length(tokenizer_2: Any, guidance: bool) -> int:
    """T5 tokens: 512 for [dev], 256 for [schnell] (as their pipelines), capped by the tokenizer."""
    return min(512 if guidance else 256, int(getattr(tokenizer_2, "model_max_length", 512) or 512))


def encode_texts(tokenizers: tuple, encoders: tuple, texts: list[str], device: Any, max_length: int) -> dict[str, tuple[Any, Any]]:
    """text → (T5 hidden states [seq, d], CLIP pooled [d]) on the CPU, as ``FluxPipeline.encode_prompt``."""
    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline(scheduler=None, vae=None, text_encoder=encoders[0], tokenizer=tokenizers[0],
                        text_encoder_2=encoders[1], tokenizer_2=tokenizers[1], transformer=None)
    cache: dict[str, tuple[Any, Any]] = {}
    with torch.no_grad():
        for text in dict.fromkeys(texts):
            embeds, pooled, _ = pipe.encode_prompt(text, prompt_2=None, device=device, max_sequence_length=max_length)
            cache[text] = (embeds[0].float().cpu(), pooled[0].float().cpu())
    return cache


# -- memory ---------------------------------------------------------------------------------
TRANSFORMER_PARAMS = 11.9e9
# bf16; bitsandbytes NF4 and int8 with their scales. int8 is 1.05 bytes resident, but during a
# step it held another 1.66 (measured: 38.5 GB peak at 1024² on the full-size transformer, 12.3 GB
# resident; benchmarks/flux_memory.py on an H200, bitsandbytes 0.50.2): each layer's input, kept
# out of checkpointing's reach. Int8 blocks are now checkpointed reentrantly, which drops them
# (flux_model.enable_checkpointing); not measured on a GPU since, so the estimate keeps the figure.
BYTES_PER_PARAM = {"none": 2.0, "int8": 1.05 + 1.66, "nf4": 0.56}
LORA_PARAMS_PER_RANK = 5.37e6  # sd-scripts' module set on the full-size transformer, per unit of rank


def estimate_memory_gb(settings: Any, batch_size: int) -> float:
    """Transformer weights (bf16 or quantized) + LoRA with AdamW state and gradients + activations
    (≈4 GB at 1024² with gradient checkpointing, 24 GB without) + CUDA context. The text encoders
    are gone by then (embeddings cached); caching runs before the transformer is loaded."""
    weights = TRANSFORMER_PARAMS * BYTES_PER_PARAM[settings.quantize_base] / 1e9
    lora = LORA_PARAMS_PER_RANK * settings.network_dim * 16 / 1e9  # fp32 weight, grad, 2 Adam moments
    act = (4.0 if settings.gradient_checkpointing else 24.0) * batch_size * (settings.resolution / 1024) ** 2
    vae = 0.0 if settings.cache_latents else 0.4 * batch_size
    return round(weights + lora + act + vae + 0.8, 1)


def is_real_size(folder: Any) -> bool:
    """A full-size transformer (inner dim ≥ 1024), from its config without loading it."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, TypeError):
        return True
    return int(config.get("num_attention_heads", 24)) * int(config.get("attention_head_dim", 128)) >= 1024


def has_guidance(folder: Any) -> bool:
    """[dev] (guidance-distilled) rather than [schnell], from the transformer's config."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, TypeError):
        return True
    return bool(config.get("guidance_embeds", True))
