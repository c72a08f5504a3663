"""A tiny randomly-initialised Flux.1 pipeline built from configs, as diffusers tests its Flux
pipeline: the real classes (FluxTransformer2DModel with the [dev] guidance embedding, CLIP, T5,
a 16-channel-free VAE), one double and one single block, fixed seeds, no network."""

from __future__ import annotations

import string
from pathlib import Path

from tiny_sd import _text_encoder, _tokenizer


def _t5_tokenizer(max_length: int = 32):
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    vocab += [(c, -1.0) for c in string.ascii_letters + string.digits + ",.{}'-"]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=max_length)


def build_flux(folder: Path, seed: int = 0, guidance: bool = True) -> Path:
    """Save a tiny FluxPipeline (diffusers layout) into ``folder``; ``guidance``: [dev] (a guidance
    embedding) rather than [schnell]."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=guidance,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    tok = _tokenizer(folder / "_tok")
    clip = _text_encoder(len(tok), projection=False, seed=seed + 2)
    tok2 = _t5_tokenizer()
    torch.manual_seed(seed + 3)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                 decoder_start_token_id=0))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tok, text_encoder_2=t5,
                        tokenizer_2=tok2, transformer=transformer)
    pipe.save_pretrained(str(folder))
    return folder
