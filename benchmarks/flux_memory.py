"""GPU memory of the `3d-character-flux` preset on a full-size Flux.1 [dev] transformer (random
weights), measured against the trainer's own estimate (the plan line "~12.8 GB GPU memory").

The transformer has FLUX.1-dev's config (11.9 B parameters), the VAE FLUX.1-dev's, CLIP-L its
real size; T5 has T5-XXL's width (4096) but ``--t5-layers`` layers (24 in T5-XXL) to keep the
build short: the trainer drops the text encoders before it loads the transformer, which the
"resident after loading" line checks. Images are 1024² (the preset's resolution, 4096 tokens).
Random weights change no memory figure of NF4 or bf16; LLM.int8 (int8) treats input columns
above a threshold apart, which depends on the activations (the bytes it keeps for them are
printed). Needs CUDA (the preset's NF4 base is bitsandbytes).

    python benchmarks/flux_memory.py                    # the preset (nf4), then int8
    python benchmarks/flux_memory.py --quantize nf4     # one
    python benchmarks/flux_memory.py --tiny             # the pipeline of the tests, any machine

Printed per run: the peak while loading (text encoders, caching, transformer), what stays
resident when training starts, the peak over the training steps after the first, the peak
reserved by torch's allocator (what nvidia-smi shows, less the CUDA context), and the step time.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

GB = 1e9
#: black-forest-labs/FLUX.1-dev transformer/config.json and vae/config.json
TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                   num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                   axes_dims_rope=(16, 56, 56))
VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
           layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
           use_post_quant_conv=False, mid_block_add_attention=True)


def build_full_size(folder: Path, t5_layers: int) -> Path:
    """A FluxPipeline folder: full-size transformer and VAE, CLIP-L, a T5 of T5-XXL's width."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    import tiny_flux
    import tiny_sd

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # initialised in bf16: no 48 GB fp32 copy of the transformer
    with torch.device(device):
        transformer = FluxTransformer2DModel(**TRANSFORMER).to(torch.bfloat16)
        vae = AutoencoderKL(**VAE).to(torch.bfloat16)
        tok = tiny_sd._tokenizer(folder / "_tok")
        tok.model_max_length = 77
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=3072,
                                            num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                                            bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1,
                                            pad_token_id=len(tok) - 1, projection_dim=768,
                                            hidden_act="quick_gelu")).to(torch.bfloat16)
        tok2 = tiny_flux._t5_tokenizer(max_length=512)
        t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=4096, d_kv=64, d_ff=10240, num_layers=t5_layers,
                                     num_heads=64, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                                     decoder_start_token_id=0)).to(torch.bfloat16)
    torch.set_default_dtype(torch.float32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    params = sum(p.numel() for p in transformer.parameters())
    FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tok, text_encoder_2=t5, tokenizer_2=tok2,
                 transformer=transformer).save_pretrained(str(folder), max_shard_size="10GB")
    print(f"full-size pipeline written: transformer {params / 1e9:.2f} B parameters, T5 {t5_layers} layers")
    del transformer, vae, clip, t5
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def write_images(folder: Path, n: int, size: int) -> Path:
    import tiny_sd

    return tiny_sd.write_dataset(folder, n=n, size=(size, size))


def run(base: Path, data: Path, out: Path, quantize: str, tiny: bool, steps: int) -> dict:
    import torch

    from animlora.config import load_settings
    from animlora.training import flux_model
    from animlora.training.trainer import LoraTrainer

    cuda = torch.cuda.is_available()
    train = {"quantize_base": quantize, "sample_every_n_epochs": 0, "tensorboard": False, "save_every_n_epochs": 1000,
             "epochs": 1000}
    if tiny:
        train.update(resolution=32, min_bucket=16, max_bucket=64, bucket_step=16, allow_cpu=True)
    s = load_settings(preset="3d-character-flux", overrides={"train": train}).settings
    marks: dict = {}
    times: list[float] = []
    prepare = flux_model.prepare

    def measured_prepare(*args, **kwargs):
        result = prepare(*args, **kwargs)
        marks["unet"] = result[0].unet
        if cuda:
            torch.cuda.synchronize()
            marks["load_peak"] = torch.cuda.max_memory_allocated() / GB
            marks["resident"] = torch.cuda.memory_allocated() / GB
        return result

    def on_step(step: int, total: int, metrics: dict) -> None:
        if cuda:
            torch.cuda.synchronize()
            if step == 1:
                torch.cuda.reset_peak_memory_stats()
        times.append(time.perf_counter())

    flux_model.prepare = measured_prepare
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = LoraTrainer(s.train, s.models, seed=0, on_step=on_step)
        _, _, plan = trainer.check_inputs(data, str(base))
        trainer.train(data, out, str(base), fresh=True, stop_after_steps=steps)
    finally:
        flux_model.prepare = prepare
    step_s = statistics.median(b - a for a, b in itertools.pairwise(times[1:])) if len(times) > 2 else float("nan")
    marks.update(estimate=plan.memory_estimate_gb, step_s=step_s, quantize=trainer.settings.quantize_base)
    if cuda:
        marks["steps_peak"] = torch.cuda.max_memory_allocated() / GB
        marks["reserved_peak"] = torch.cuda.max_memory_reserved() / GB
    marks["outliers"] = outlier_copies(marks.pop("unet")) / GB
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return marks


def outlier_copies(model) -> float:
    """Bytes of the bf16/fp16 weight columns that bitsandbytes' LLM.int8 keeps per layer for the
    input columns above its outlier threshold (``state.subB``); 0 for other layers."""
    total = 0
    for module in model.modules():
        sub = getattr(getattr(module, "state", None), "subB", None)
        if sub is not None:
            total += sub.numel() * sub.element_size()
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantize", choices=["int8", "nf4", "none"], action="append")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny Flux pipeline (no GPU needed)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--t5-layers", type=int, default=2)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        if args.tiny:
            import tiny_flux

            base = tiny_flux.build_flux(tmp_path / "flux")
        else:
            base = build_full_size(tmp_path / "flux", args.t5_layers)
        print(f"built in {time.perf_counter() - started:.0f} s")
        data = write_images(tmp_path / "luca", n=4, size=32 if args.tiny else 1024)
        for quantize in args.quantize or ["nf4", "int8"]:
            started = time.perf_counter()
            m = run(base, data, tmp_path / f"run-{quantize}", quantize, args.tiny, args.steps)
            line = f"{quantize:>5} (ran as {m['quantize']}): estimate {m['estimate']} GB"
            if torch.cuda.is_available():
                line += (f" | loading peak {m['load_peak']:.1f} GB, resident at the first step {m['resident']:.1f} GB,"
                         f" steps peak {m['steps_peak']:.1f} GB, reserved peak {m['reserved_peak']:.1f} GB,"
                         f" LLM.int8 outlier weight copies {m['outliers']:.1f} GB")
            print(f"{line} | {m['step_s']:.2f} s/step | {time.perf_counter() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
