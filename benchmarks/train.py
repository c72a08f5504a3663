"""Step time and peak memory of animlora's trainer against a minimal diffusers+peft loop.

Same model, data and settings, one process: both train the same LoRA (kohya module set, rank
and alpha) with AdamW on cached latents, batch 1, fp32 on the CPU (fp16 mixed precision on a
GPU). The reference is the smallest loop that does that job (diffusers' train_text_to_image_lora
reduced to its core); the target is animlora ≤ 1.0× its step time and peak memory.

    python benchmarks/train.py                 # tiny config on the CPU (always)
    python benchmarks/train.py --sd15          # the real SD 1.5 architecture, random weights, 512 px
                                               # (default when a GPU is present)

Memory: on a GPU, torch's peak allocated bytes during the steps; on the CPU, the peak resident
set size above the level before the run, sampled every 2 ms.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

STEPS = 12
WARMUP = 2


class PeakRSS:
    """Peak resident memory above the starting level, from /proc/self/statm."""

    def __init__(self) -> None:
        import os

        self.page = os.sysconf("SC_PAGE_SIZE")
        self.running = False

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.start = self._rss()
        self.peak = self.start
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()

    @property
    def used_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def build_base(folder: Path, sd15: bool) -> Path:
    import tiny_sd

    if not sd15:
        return tiny_sd.build_sd15(folder)
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # stable-diffusion-v1-5/unet/config.json
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
    )
    vae = AutoencoderKL(  # stable-diffusion-v1-5/vae/config.json
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
    )
    tok = tiny_sd._tokenizer(folder / "_tok")
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=3072,
                                           num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                                           bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1,
                                           pad_token_id=len(tok) - 1, projection_dim=768, hidden_act="quick_gelu"))
    tok.model_max_length = 77
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(str(folder))
    return folder


def settings_for(resolution: int, cuda: bool):
    from animlora.config import load_settings

    train = {
        "resolution": resolution, "min_bucket": resolution, "max_bucket": resolution, "bucket_step": 8,
        "network_dim": 16, "network_alpha": 8, "train_text_encoder": False, "optimizer": "adamw",
        "unet_lr": 1e-4, "lr_scheduler": "constant", "min_snr_gamma": 0, "noise_offset": 0, "alpha_mask": False,
        "cache_latents": True, "gradient_checkpointing": False, "mixed_precision": "fp16" if cuda else "no",
        "epochs": 1000, "sample_every_n_epochs": 0, "tensorboard": False, "allow_cpu": True, "max_grad_norm": 1.0,
        "shuffle_caption": False, "caption_dropout": 0.0,
    }
    return load_settings(overrides={"train": train}).settings


def run_ours(base: Path, data: Path, out: Path, resolution: int, cuda: bool) -> tuple[list[float], float]:
    import torch

    from animlora.training.trainer import LoraTrainer

    s = settings_for(resolution, cuda)
    times: list[float] = []
    last = [0.0]

    def on_step(step: int, total: int, metrics: dict) -> None:
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        if last[0]:
            times.append(now - last[0])
        last[0] = now
        if step == WARMUP and cuda:
            torch.cuda.reset_peak_memory_stats()

    trainer = LoraTrainer(s.train, s.models, seed=0, on_step=on_step)
    with PeakRSS() as rss:
        trainer.train(data, out, str(base), fresh=True, stop_after_steps=STEPS)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss.used_mb
    return times[WARMUP - 1 :], peak


def run_reference(base: Path, data: Path, resolution: int, cuda: bool) -> tuple[list[float], float]:
    """The minimal loop: diffusers components + peft LoRA + AdamW, latents cached, fp16 autocast on GPU."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft import LoraConfig
    from PIL import Image

    from animlora.training.network import UNET_TARGETS

    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    times: list[float] = []
    with PeakRSS() as rss:
        pipe = StableDiffusionPipeline.from_pretrained(str(base), safety_checker=None)
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        unet, vae, te, tok = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        for m in (unet, vae, te):
            m.requires_grad_(False)
        torch.manual_seed(0)
        unet.add_adapter(LoraConfig(r=16, lora_alpha=8, target_modules=list(UNET_TARGETS)))
        unet.to(device, dtype)
        te.to(device, dtype)
        vae.to(device, torch.float32)
        params = [p for n, p in unet.named_parameters() if "lora_" in n]
        for p in params:
            p.data = p.data.float()
            p.requires_grad_(True)
        latents, captions = [], []
        with torch.no_grad():
            for path in sorted((data / "images").glob("*.png")):
                img = Image.open(path).convert("RGB").resize((resolution, resolution))
                x = torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1).permute(2, 0, 1)[None].to(device)
                latents.append(vae.encode(x).latent_dist.sample() * vae.config.scaling_factor)
                captions.append((data / "captions" / f"{path.stem}.txt").read_text())
        vae.to("cpu")
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        gen = torch.Generator().manual_seed(0)
        if cuda:
            torch.cuda.synchronize()
        for step in range(STEPS):
            if step == WARMUP and cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            lat = latents[step % len(latents)]
            noise = torch.randn(lat.shape, generator=gen).to(device)
            t = torch.randint(0, 1000, (1,), generator=gen).to(device)
            ids = tok([captions[step % len(captions)]], padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=cuda):
                with torch.no_grad():
                    emb = te(ids)[0]
                pred = unet(noise_scheduler.add_noise(lat, noise, t).to(dtype), t, emb).sample
            loss = F.mse_loss(pred.float(), noise.float())
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step >= WARMUP:
                times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss.used_mb
    del pipe, unet, optimizer
    gc.collect()
    return times, peak


def main() -> None:
    import torch

    import tiny_sd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd15", action="store_true", help="the real SD 1.5 architecture at 512 px")
    parser.add_argument("--tiny", action="store_true", help="the tiny config even when a GPU is present")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both loops")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if cuda:  # the trainer runs cuDNN's deterministic kernels (bit-identical resume): so does the reference
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    sd15 = args.sd15 or (cuda and not args.tiny)
    resolution = 512 if sd15 else 32
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = build_base(root / "base", sd15)
        data = tiny_sd.write_dataset(root / "data", n=4, size=(resolution, resolution))
        # alternate the two, several rounds: the best round of each is reported (a shared machine's
        # load only ever adds time); every round's median is printed too
        ref_rounds, our_rounds = [], []
        for i in range(args.rounds):
            ref_rounds.append(run_reference(base, data, resolution, cuda))
            our_rounds.append(run_ours(base, data, root / f"run{i}", resolution, cuda))
    ref_medians = [statistics.median(t) * 1000 for t, _ in ref_rounds]
    our_medians = [statistics.median(t) * 1000 for t, _ in our_rounds]
    ref_peak = min(p for _, p in ref_rounds)
    our_peak = min(p for _, p in our_rounds)
    ref_ms, our_ms = min(ref_medians), min(our_medians)
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    model = "SD 1.5 U-Net (random weights), 512 px" if sd15 else "tiny SD (32-channel U-Net), 32 px"
    unit = "GPU peak allocated" if cuda else "peak RSS increase"
    print(f"{model} on {where}; LoRA rank 16 on the kohya module set, AdamW, batch 1, "
          f"{STEPS - WARMUP} timed steps (median), best of {args.rounds} alternating rounds")
    print(f"  per-round medians, ms: reference {[round(m) for m in ref_medians]}, animlora {[round(m) for m in our_medians]}")
    print(f"  reference diffusers+peft loop: {ref_ms:8.1f} ms/step   {unit} {ref_peak:8.1f} MB")
    print(f"  animlora trainer:              {our_ms:8.1f} ms/step   {unit} {our_peak:8.1f} MB")
    print(f"  ratio (animlora / reference):  {our_ms / ref_ms:8.2f}× time          {our_peak / max(ref_peak, 1e-6):8.2f}× memory")


if __name__ == "__main__":
    main()
