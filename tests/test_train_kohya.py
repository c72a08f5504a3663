"""kohya export: the saved file, loaded back with diffusers' load_lora_weights, gives the same
images as the in-memory LoRA — SD 1.x and SDXL, with and without text-encoder LoRA, alpha ≠ rank."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors import safe_open

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

import tiny_sd  # noqa: E402
from animlora.training.kohya_format import kohya_state_dict, save_diffusers, save_kohya  # noqa: E402
from animlora.training.network import TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora  # noqa: E402

RANK, ALPHA = 4, 2.0


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {"sd15": tiny_sd.build_sd15(root / "sd15"), "sdxl": tiny_sd.build_sdxl(root / "sdxl")}


def _pipe(family, folder):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _encoders(pipe, family):
    return (pipe.text_encoder, pipe.text_encoder_2) if family == "sdxl" else (pipe.text_encoder,)


def _images(pipe):
    gen = torch.Generator("cpu").manual_seed(0)
    return pipe("lucaxyz, 3d character", num_inference_steps=2, height=32, width=32, output_type="np",
                generator=gen).images


@pytest.mark.parametrize(("family", "with_te"), [("sd15", False), ("sd15", True), ("sdxl", True)])
def test_kohya_file_loads_back_equal(bases, tmp_path, family, with_te):
    pipe = _pipe(family, bases[family])
    base_images = _images(pipe)
    torch.manual_seed(1)
    params = add_lora(pipe.unet, UNET_TARGETS, RANK, ALPHA)
    encoders = _encoders(pipe, family) if with_te else ()
    for encoder in encoders:
        params += add_lora(encoder, TEXT_ENCODER_TARGETS, RANK, ALPHA)
    with torch.no_grad():  # a "trained" LoRA: up matrices are zero at init
        for p in params:
            p.copy_(torch.randn_like(p) * 0.2)
    trained = _images(pipe)
    assert np.abs(trained - base_images).max() > 1e-3  # the LoRA does change the output

    path = tmp_path / "lora.safetensors"
    save_kohya(path, kohya_state_dict(pipe.unet, encoders, family), {"ss_network_dim": str(RANK)})
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        alphas = {float(f.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    assert alphas == {ALPHA}
    assert all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys)
    if family == "sd15":
        assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
        assert "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight" in keys
        te_key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"
    else:
        assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
        assert "lora_unet_output_blocks_0_1_transformer_blocks_1_ff_net_2.alpha" in keys
        te_key = "lora_te2_text_model_encoder_layers_1_mlp_fc2.lora_up.weight"
    assert (te_key in keys) == with_te
    n_modules = len([k for k in keys if k.endswith(".alpha")])
    assert n_modules == len(params) // 2

    fresh = _pipe(family, bases[family])
    fresh.load_lora_weights(str(path))
    loaded = _images(fresh)
    assert np.abs(loaded - trained).max() < 1e-5

    folder = save_diffusers(tmp_path / "diffusers", pipe.unet, encoders, family)
    fresh2 = _pipe(family, bases[family])
    fresh2.load_lora_weights(str(folder), weight_name="pytorch_lora_weights.safetensors")
    assert np.abs(_images(fresh2) - trained).max() < 1e-5
