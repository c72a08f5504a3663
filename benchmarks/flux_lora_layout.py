"""The Flux kohya LoRA on the full-size Flux.1 [dev] layout: key count, file sizes, and whether
diffusers' own kohya-Flux converter reads it as our converter does.

The transformer is built on torch's ``meta`` device (no weights); only the LoRA matrices are made
real (random), then written exactly as the trainer writes them.

    python benchmarks/flux_lora_layout.py            # rank 16, fp16
    python benchmarks/flux_lora_layout.py --rank 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from animlora.training import flux
    from animlora.training.network import ADAPTER, lora_layers

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
        flux.add_lora(model, args.rank, float(args.rank))
    gen = torch.Generator().manual_seed(0)
    for layer in lora_layers(model).values():
        for side in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
            side.weight = torch.nn.Parameter(torch.randn(side.weight.shape, generator=gen) * 0.01)
    kohya = flux.kohya_state_dict(model, dtype=torch.float16)
    peft = {k: v.half() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()}
    with tempfile.TemporaryDirectory() as tmp:
        save_file(kohya, f"{tmp}/k.safetensors")
        save_file(peft, f"{tmp}/d.safetensors")
        sizes = [Path(f"{tmp}/{n}.safetensors").stat().st_size / 1e6 for n in ("k", "d")]
    modules = sum(k.endswith(".alpha") for k in kohya)
    print(f"rank {args.rank}: {len(lora_layers(model))} peft modules -> {modules} kohya modules ({len(kohya)} keys); "
          f"fp16 kohya file {sizes[0]:.1f} MB, diffusers file {sizes[1]:.1f} MB")
    ours = flux.kohya_to_diffusers({k: v.float() for k, v in kohya.items()})
    theirs = FluxPipeline.lora_state_dict({k: v.float() for k, v in kohya.items()})
    worst = 0.0
    for key in ours:
        if key.endswith("lora_A.weight"):
            up = key.replace("lora_A", "lora_B")
            x = torch.randn(ours[key].shape[1], generator=gen)
            a, b = ours[up] @ (ours[key] @ x), theirs[up].float() @ (theirs[key].float() @ x)
            worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    print(f"diffusers' converter: {len(theirs)} keys, same key set as ours: {set(theirs) == set(ours)}; "
          f"max relative difference of B·A·x: {worst:.2e}")


if __name__ == "__main__":
    main()
