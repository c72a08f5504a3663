"""Tiny randomly-initialised Stable Diffusion 1.x / SDXL pipelines built from configs, as
diffusers tests itself: real classes, 32-channel blocks, fixed seeds, no network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_tokenizer(folder: Path) -> Path:
    """A CLIP BPE tokenizer whose vocabulary is single characters (no merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    # GPT-2's byte → printable-character table, which CLIP's BPE uses
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tokenizer(folder)
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=32)
    return tok


def _text_encoder(vocab_size: int, projection: bool, seed: int, hidden: int = 32):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=32, projection_dim=hidden,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def build_sd15(folder: Path, seed: int = 0, inpainting: bool = False) -> Path:
    """Save a tiny SD 1.x pipeline (diffusers layout) into ``folder``; 2× VAE downsampling.

    ``inpainting``: a StableDiffusionInpaintPipeline (U-Net in_channels 9: latents, mask, masked image)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=9 if inpainting else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32, attention_head_dim=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        sample_size=32,
    )
    tok = _tokenizer(folder / "_tok")
    encoder = _text_encoder(len(tok), projection=False, seed=seed + 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return folder


def build_sdxl(folder: Path, seed: int = 0) -> Path:
    """Save a tiny SDXL pipeline (two text encoders, text_time conditioning)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        sample_size=32,
    )
    tok = _tokenizer(folder / "_tok")
    enc1 = _text_encoder(len(tok), projection=False, seed=seed + 2)
    enc2 = _text_encoder(len(tok), projection=True, seed=seed + 3)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=enc1, text_encoder_2=enc2, tokenizer=tok, tokenizer_2=tok,
                                     unet=unet, scheduler=scheduler)
    pipe.save_pretrained(str(folder))
    return folder


def write_dataset(folder: Path, n: int = 4, size: tuple[int, int] = (32, 32), seed: int = 0,
                  alpha: bool = True) -> Path:
    """A dataset folder: images/ (RGBA blobs on transparent ground), captions/, metadata.json."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "captions").mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.zeros((h, w, 4), np.uint8)
        img[..., :3] = rng.integers(0, 255, 3)
        r = min(w, h) * (0.25 + 0.1 * i / max(n, 1))
        inside = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < r * r
        img[..., 3] = np.where(inside, 255, 0)
        img[..., :3] = np.where(inside[..., None], img[..., :3], 0)
        mode = "RGBA" if alpha else "RGB"
        Image.fromarray(img if alpha else img[..., :3], mode).save(folder / "images" / f"img_{i:02d}.png")
        (folder / "captions" / f"img_{i:02d}.txt").write_text(f"lucaxyz, 3d character, pose {i}, smiling")
    (folder / "metadata.json").write_text(json.dumps({"character": "luca", "trigger": "lucaxyz", "images": n}))
    return folder


def build_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny CLIP (text + vision towers, 32 px) with its processor, saved as a model folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = _tokenizer(folder)
    n = len(tok)
    config = CLIPConfig(
        text_config=dict(vocab_size=n, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=32, bos_token_id=n - 2, eos_token_id=n - 1,
                         pad_token_id=n - 1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                           num_hidden_layers=2),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(folder))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}), tokenizer=tok)
    processor.save_pretrained(str(folder))
    return folder
