"""File size and key count of a kohya LoRA on the full-size SD 1.5 and SDXL layouts.

The U-Net and text encoders are built on torch's ``meta`` device (no memory, no weights),
peft adds the kohya module set, and only the LoRA matrices are made real (zeros) before our
converter writes the file exactly as the trainer does, once per ``train.save_precision``.

    python benchmarks/lora_size.py             # rank 32, with text-encoder LoRA
    python benchmarks/lora_size.py --rank 16 --no-te
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

SD15_UNET = {"cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64}
SDXL_UNET = {
    "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048, "attention_head_dim": [5, 10, 20],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True, "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816, "sample_size": 128,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
CLIP_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20}


def build(family: str, rank: int, alpha: float, te: bool):
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from animlora.training.network import ADAPTER, TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora, lora_layers

    with torch.device("meta"):
        unet = UNet2DConditionModel(**(SDXL_UNET if family == "sdxl" else SD15_UNET))
        configs = [CLIP_L, CLIP_G] if family == "sdxl" else [CLIP_L]
        encoders = tuple(CLIPTextModel(CLIPTextConfig(**c)) for c in configs) if te else ()
        add_lora(unet, UNET_TARGETS, rank, alpha)
        for encoder in encoders:
            add_lora(encoder, TEXT_ENCODER_TARGETS, rank, alpha)
    for model in (unet, *encoders):
        for layer in lora_layers(model).values():
            for side in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
                side.weight = torch.nn.Parameter(torch.zeros(side.weight.shape))
    return unet, encoders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=16)
    parser.add_argument("--no-te", action="store_true", help="U-Net LoRA only")
    args = parser.parse_args()

    from animlora.training.kohya_format import kohya_state_dict, save_dtype, save_kohya

    with tempfile.TemporaryDirectory() as tmp:
        for family in ("sd15", "sdxl"):
            unet, encoders = build(family, args.rank, args.alpha, not args.no_te)
            for precision in ("fp16", "bf16", "fp32"):
                state = kohya_state_dict(unet, encoders, family, dtype=save_dtype(precision))
                path = save_kohya(Path(tmp) / f"{family}-{precision}.safetensors", state, {"ss_network_dim": "x"})
                params = sum(v.numel() for k, v in state.items() if not k.endswith(".alpha"))
                print(f"{family:5s} rank {args.rank} {'U-Net' if args.no_te else 'U-Net + TE':10s} {precision}: "
                      f"{len(state)} keys, {params / 1e6:.2f} M parameters, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
