"""Write a diffusers SD 1.x pipeline folder as one original-layout (LDM) .safetensors checkpoint,
like the files users download: the reverse of diffusers' ``from_single_file`` conversion
(after diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py, generalised to
any block count so it works on tiny test models)."""

from __future__ import annotations

import json
from pathlib import Path


def _unet_map(config: dict) -> list[tuple[str, str]]:
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out.")]
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    downs, ups = config["down_block_types"], config["up_block_types"]
    for i in range(n):
        for j in range(per):
            pairs.append((f"input_blocks.{(per + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if "CrossAttn" in downs[i]:
                pairs.append((f"input_blocks.{(per + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(per + 1):
            pairs.append((f"output_blocks.{(per + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if "CrossAttn" in ups[i]:
                pairs.append((f"output_blocks.{(per + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            pairs.append((f"input_blocks.{(per + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            slot = 2 if "CrossAttn" in ups[i] else 1
            pairs.append((f"output_blocks.{(per + 1) * i + per}.{slot}.", f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
          ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]


def _convert_unet(sd: dict, config: dict) -> dict:
    pairs = _unet_map(config)
    out = {}
    for key, value in sd.items():
        new = key
        for ldm, hf in pairs:
            if new.startswith(hf):
                new = ldm + new[len(hf):]
                break
        if ".0." in new and any(k in key for k in ("resnets",)):
            for ldm, hf in RESNET:
                new = new.replace(hf, ldm)
        out["model.diffusion_model." + new] = value
    return out


def _convert_vae(sd: dict, config: dict) -> dict:
    n = len(config["block_out_channels"])
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(n):
        for j in range(config.get("layers_per_block", 1) + 1):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
            pairs.append((f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
        if i < n - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{n - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = {}
    for key, value in sd.items():
        new = key
        for ldm, hf in pairs:
            new = new.replace(hf, ldm)
        if "resnets" not in key and "attentions" in key:
            for ldm, hf in attn:
                new = new.replace(hf, ldm)
            if any(new.endswith(f"mid.attn_1.{p}.weight") for p in ("q", "k", "v", "proj_out")):
                value = value.reshape(*value.shape, 1, 1)
        out["first_stage_model." + new] = value
    return out


def write_single_file(pipeline_dir: Path, path: Path) -> Path:
    from safetensors.torch import load_file, save_file

    unet_config = json.loads((pipeline_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((pipeline_dir / "vae" / "config.json").read_text())
    state = {}
    state.update(_convert_unet(load_file(str(pipeline_dir / "unet" / "diffusion_pytorch_model.safetensors")), unet_config))
    state.update(_convert_vae(load_file(str(pipeline_dir / "vae" / "diffusion_pytorch_model.safetensors")), vae_config))
    for key, value in load_file(str(pipeline_dir / "text_encoder" / "model.safetensors")).items():
        key = key.removeprefix("text_model.")
        state["cond_stage_model.transformer.text_model." + key] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
