"""Flux.1 LoRAs on a tiny random Flux pipeline (transformer, CLIP, T5 built from configs): the
family is read from the weights, the kohya file maps key by key in ComfyUI's Flux loader and
reloads with equal output (ComfyUI's patch, diffusers' FluxPipeline), training learns, kill -9 +
resume is bit-identical, and evaluation samples Flux checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import tiny_sd  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from animlora.errors import ConfigError  # noqa: E402
from animlora.training import flux  # noqa: E402
from animlora.training.base_model import family_of_single_file, locate_base_model  # noqa: E402
from train_support import (  # noqa: E402
    SD_SCRIPTS_KEYS,
    TINY_FLUX,
    kill_train_after_state,
    make_trainer,
    overrides,
    sample_prompt_file,
)


def trainer(**train):
    return make_trainer(TINY_FLUX, **train)


@pytest.fixture
def base(tiny_flux) -> Path:
    return tiny_flux


@pytest.fixture
def data(tiny_luca) -> Path:
    return tiny_luca


# -- ComfyUI's Flux LoRA key map, transcribed from comfy/utils.py ``flux_to_diffusers`` and the
# Flux branch of comfy/lora.py ``model_lora_keys_unet`` (a ComfyUI Flux model's weights are the BFL
# ``diffusion_model.*`` keys; every one of them is loadable as ``lora_unet_<key with _>``).
def comfy_flux_to_diffusers(depth: int, depth_single: int, hidden: int) -> dict:
    """diffusers weight key → BFL key, or (BFL key, (dim, offset, size)) for a slice of a fused one."""
    out: dict = {}
    for i in range(depth):
        src, dst = f"transformer_blocks.{i}", f"diffusion_model.double_blocks.{i}"
        for n, part in enumerate(("to_q", "to_k", "to_v")):
            out[f"{src}.attn.{part}.weight"] = (f"{dst}.img_attn.qkv.weight", (0, n * hidden, hidden))
        for n, part in enumerate(("add_q_proj", "add_k_proj", "add_v_proj")):
            out[f"{src}.attn.{part}.weight"] = (f"{dst}.txt_attn.qkv.weight", (0, n * hidden, hidden))
        for a, b in {"attn.to_out.0": "img_attn.proj", "norm1.linear": "img_mod.lin",
                     "norm1_context.linear": "txt_mod.lin", "attn.to_add_out": "txt_attn.proj",
                     "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2", "ff_context.net.0.proj": "txt_mlp.0",
                     "ff_context.net.2": "txt_mlp.2"}.items():
            out[f"{src}.{a}.weight"] = f"{dst}.{b}.weight"
    for i in range(depth_single):
        src, dst = f"single_transformer_blocks.{i}", f"diffusion_model.single_blocks.{i}"
        for n, part in enumerate(("to_q", "to_k", "to_v")):
            out[f"{src}.attn.{part}.weight"] = (f"{dst}.linear1.weight", (0, n * hidden, hidden))
        out[f"{src}.proj_mlp.weight"] = (f"{dst}.linear1.weight", (0, 3 * hidden, 4 * hidden))
        out[f"{src}.norm.linear.weight"] = f"{dst}.modulation.lin.weight"
        out[f"{src}.proj_out.weight"] = f"{dst}.linear2.weight"
    return out


def comfy_patch(transformer, lora: dict) -> dict:
    """The weights ComfyUI runs after loading ``lora`` at strength 1 (its lora_up @ lora_down ×
    alpha / rank added to the BFL weight), mapped back to diffusers' names. Asserts every file key
    is consumed (ComfyUI warns "lora key not loaded" otherwise)."""
    c = transformer.config
    hidden = c.num_attention_heads * c.attention_head_dim
    table = comfy_flux_to_diffusers(c.num_layers, c.num_single_layers, hidden)
    bfl_keys = {v if isinstance(v, str) else v[0] for v in table.values()}
    key_map = {"lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_"): k for k in bfl_keys}
    loaded, deltas = set(), {}
    for name, bfl in key_map.items():
        if f"{name}.lora_up.weight" not in lora:
            continue
        up, down = lora[f"{name}.lora_up.weight"].float(), lora[f"{name}.lora_down.weight"].float()
        alpha = float(lora[f"{name}.alpha"]) / down.shape[0]
        deltas[bfl] = alpha * (up @ down)
        loaded |= {f"{name}.lora_up.weight", f"{name}.lora_down.weight", f"{name}.alpha"}
    assert sorted(set(lora) - loaded) == []
    state = {k: v.clone() for k, v in transformer.state_dict().items()}
    for key, target in table.items():
        bfl, (dim, offset, size) = (target, (0, 0, None)) if isinstance(target, str) else target
        if bfl in deltas:
            delta = deltas[bfl] if size is None else deltas[bfl].narrow(dim, offset, size)
            assert delta.shape == state[key].shape, key
            state[key] += delta
    return state


def images(pipe, prompt="lucaxyz, a 3d character"):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        return pipe(prompt, num_inference_steps=2, width=16, height=16, generator=gen, output_type="np",
                    max_sequence_length=32).images


def test_family_is_read_from_the_weights(base, tmp_path):
    ref = locate_base_model(str(base), load_settings().settings.models)
    assert (ref.family, ref.kind) == ("flux", "folder")
    single = tmp_path / "flux1-dev.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(3, 1), "guidance_in.in_layer.weight": torch.zeros(1)},
              str(single))
    assert family_of_single_file(single) == "flux"
    with pytest.raises(ConfigError, match="Flux.1 weights but the settings ask for SDXL"):
        trainer(family="sdxl").check_inputs(tiny_sd.write_dataset(tmp_path / "d", n=1), str(base))


def test_exported_lora_maps_in_comfyui_and_reloads_with_equal_output(base, tmp_path):
    from diffusers import FluxPipeline

    from animlora.training.evaluation import lora_source
    from animlora.training.kohya_format import save_diffusers
    from animlora.training.network import lora_layers

    pipe = FluxPipeline.from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)
    plain = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    torch.manual_seed(0)
    flux.add_lora(pipe.transformer, 4, 2)
    with torch.no_grad():
        for layer in lora_layers(pipe.transformer).values():
            layer.lora_B["default"].weight.normal_(0, 0.3)  # a trained-looking LoRA (B starts at zero)
    # sd-scripts' lora_flux module set: 10 modules per double block, 3 per single block (fused)
    kohya = flux.kohya_state_dict(pipe.transformer)
    modules = sorted(k[: -len(".alpha")] for k in kohya if k.endswith(".alpha"))
    assert len(modules) == 13 and "lora_unet_single_blocks_0_linear1" in modules
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape == (12, 32)  # 3 parts × rank 4
    assert float(kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 6.0  # 3 × alpha: scale stays 2 / 4
    expected = images(pipe)
    lora_file = tmp_path / "luca.safetensors"
    save_file(kohya, str(lora_file))
    save_diffusers(tmp_path / "diffusers", pipe.transformer, (), "flux")

    fresh = FluxPipeline.from_pretrained(str(base))
    fresh.set_progress_bar_config(disable=True)
    # 1. ComfyUI: every key maps and is consumed; its patch gives the same images
    with torch.no_grad():
        fresh.transformer.load_state_dict(comfy_patch(fresh.transformer, load_file(str(lora_file))))
    assert abs(images(fresh) - expected).max() < 1e-5
    fresh.transformer.load_state_dict(plain)
    assert abs(images(fresh) - expected).max() > 1e-3  # the LoRA changes the picture: the check can fail
    # 2. diffusers' FluxPipeline: the diffusers file, and the kohya file as evaluation loads it
    for source in (str(tmp_path / "diffusers" / "pytorch_lora_weights.safetensors"), lora_source(lora_file, "flux")):
        fresh.load_lora_weights(source, adapter_name="a")
        assert abs(images(fresh) - expected).max() < 1e-5
        fresh.unload_lora_weights()
    # 3. sd-scripts' default (not split) fused module: one shared down matrix, dense up
    dense = dict(load_file(str(lora_file)))
    key = "lora_unet_double_blocks_0_img_attn_qkv"
    dense[f"{key}.lora_down.weight"] = torch.randn(4, 32) * 0.3
    dense[f"{key}.lora_up.weight"] = torch.randn(96, 4) * 0.3
    dense[f"{key}.alpha"] = torch.tensor(2.0)
    fresh.transformer.load_state_dict(comfy_patch(fresh.transformer, dense))
    expected_dense = images(fresh)
    fresh.transformer.load_state_dict(plain)
    fresh.load_lora_weights(flux.kohya_to_diffusers(dense), adapter_name="d")
    assert abs(images(fresh) - expected_dense).max() < 1e-5


def flow_loss(base: Path, data: Path, lora: Path | None) -> float:
    """Flow-matching loss on the dataset at fixed noise levels and noise (the same for every model)."""
    from diffusers import FluxPipeline

    from animlora.training.evaluation import lora_source
    from animlora.training.inputs import load_pixels

    pipe = FluxPipeline.from_pretrained(str(base))
    if lora is not None:
        pipe.load_lora_weights(lora_source(lora, "flux"))
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        cfg = pipe.vae.config
        for image in sorted((data / "images").glob("*.png")):
            caption = (data / "captions" / f"{image.stem}.txt").read_text()
            embeds, pooled, _ = pipe.encode_prompt(caption, None, max_sequence_length=32)
            rgb, _, _ = load_pixels(image, (16, 16))
            lat = (pipe.vae.encode(torch.from_numpy(rgb)[None]).latent_dist.mean - cfg.shift_factor) * cfg.scaling_factor
            for sigma in (0.2, 0.4, 0.6, 0.8):
                noise = torch.randn(lat.shape, generator=gen)
                s = torch.tensor([sigma])
                pred = flux.predict(pipe.transformer, (1 - sigma) * lat + sigma * noise, s, embeds, pooled, 1.0,
                                    torch.float32)
                total += float(((pred - (noise - lat)) ** 2).mean())
    return total


def test_flux_training_learns_and_kill9_resume_is_bit_identical(base, data, tmp_path):
    settings = {"epochs": 3, "save_every_n_epochs": 2, "save_state_every_n_steps": 2, "caption_dropout": 0.25,
                "timestep_sampling": "flux_shift", "alpha_mask": False, "sample_every_n_epochs": 3,
                "sample_prompts": str(sample_prompt_file(tmp_path)), "sample_seeds": [1], "sample_steps": 2}
    # 1. an uninterrupted run learns: the LoRA moves and the flow loss at fixed noise drops
    reference = trainer(**settings).train(data, tmp_path / "ref", str(base))
    assert reference.steps == 12
    weights = load_file(str(reference.final))
    assert all(float(v.abs().max()) > 0 for k, v in weights.items() if k.endswith("lora_up.weight"))
    assert not any(k.startswith("lora_te") for k in weights)  # text encoders frozen
    with safe_open(str(reference.final), "pt") as f:
        meta = f.metadata()
    assert (meta["ss_network_module"], meta["ss_base_model_version"], meta["modelspec.architecture"],
            meta["ss_model_type"], meta["ss_timestep_sampling"], meta["ss_guidance_scale"]) == (
        "networks.lora_flux", "flux1", "flux-1-dev/lora", "dev", "flux_shift", "1.0")
    assert sorted(set(SD_SCRIPTS_KEYS) - set(meta) - {"modelspec.prediction_type"}) == []
    assert (tmp_path / "ref" / "diffusers" / "pytorch_lora_weights.safetensors").is_file()
    before, after = flow_loss(base, data, None), flow_loss(base, data, reference.final)
    assert after < before * 0.99, (before, after)  # a random tiny transformer learns slowly (-2.4% here)

    # 2. the same run killed with SIGKILL after a saved state, then resumed, ends bit-identical
    run = tmp_path / "run"
    kill_train_after_state(data, base, overrides(TINY_FLUX, **settings), run, step=4)
    resumed = trainer(**settings).train(data, run, str(base))
    assert 4 <= resumed.resumed_from < 12 and resumed.steps == 12
    a, b = load_file(str(reference.final)), load_file(str(resumed.final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the samples of the last epoch (cached prompt embeddings, the shared sample loop), equal after the resume
    sample = Path("samples") / "epoch_000003" / "portrait_1.png"
    assert (tmp_path / "ref" / sample).read_bytes() == (run / sample).read_bytes()


def test_preset_plan_and_quantization_on_the_cpu(base, data):
    from animlora.training.flux import estimate_memory_gb

    preset = load_settings(preset="3d-character-flux").settings.train
    assert (preset.family, preset.quantize_base, preset.network_dim, preset.resolution) == ("flux", "nf4", 16, 1024)
    assert estimate_memory_gb(preset, 1) <= 24 * 0.95  # the preset fits a 24 GB GPU
    for other in ("none", "int8"):  # a bf16 base does not fit; nor int8 (38.5 GB measured on an H200)
        assert estimate_memory_gb(preset.model_copy(update={"quantize_base": other}), 1) > 24
    # SD defaults on a Flux base: each change is said once; quantization is skipped on the CPU
    t = trainer(quantize_base="nf4", shuffle_caption=True, train_text_encoder=True, min_snr_gamma=5.0)
    _, ref, plan = t.check_inputs(data, str(base))
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    text = " | ".join(plan.warnings)
    assert "quantize_base = nf4 needs a CUDA GPU" in text and "text encoders stay frozen" in text
    assert "caption shuffle is off" in text and "min-SNR" in text
    assert (t.settings.quantize_base, t.settings.shuffle_caption, t.settings.train_text_encoder) == ("none", False, False)


def test_int8_checkpointing_frees_what_layers_keep_on_their_context_and_keeps_the_gradients(base):
    """bitsandbytes' LLM.int8 keeps each layer's input on its autograd context (``ctx.tensors``);
    diffusers' non-reentrant checkpointing cannot drop that, the reentrant one used for an int8
    base does (measured on an H200: 38.5 GB at 1024² with the default). Shown here with a layer that
    keeps its input the same way, on the tiny Flux (bitsandbytes needs CUDA); the LoRA gradients
    equal those without checkpointing."""
    import copy
    import weakref

    from diffusers import FluxTransformer2DModel

    from animlora.training import flux_model

    kept: list = []

    class KeepsInput(torch.autograd.Function):  # as bitsandbytes' MatMul8bitLt does
        @staticmethod
        def forward(ctx, x):
            ctx.tensors = (x.detach().clone(),)
            kept.append(weakref.ref(ctx.tensors[0]))
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad

    model = FluxTransformer2DModel.from_pretrained(str(base), subfolder="transformer")
    torch.manual_seed(0)
    params = flux.add_lora(model, 4, 4)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)  # up matrices start at zero: give the downs a gradient too
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        block.register_forward_hook(lambda _m, _a, out: tuple(map(KeepsInput.apply, out))
                                    if isinstance(out, tuple) else KeepsInput.apply(out))
    torch.manual_seed(1)
    latents, embeds, pooled = torch.randn(1, 4, 8, 8), torch.randn(1, 8, 32), torch.randn(1, 32)

    def run(mode):
        m = copy.deepcopy(model).train()
        if mode is not None:
            flux_model.enable_checkpointing(m, reentrant=mode == "reentrant")
        kept.clear()
        loss = flux.predict(m, latents, torch.tensor([0.5]), embeds, pooled, 1.0, torch.float32).square().mean()
        alive = sum(r() is not None for r in kept)
        loss.backward()
        return alive, {n: p.grad for n, p in m.named_parameters() if "lora_" in n}

    (plain_alive, plain), (default_alive, default), (reentrant_alive, reentrant) = map(run, (None, "default",
                                                                                             "reentrant"))
    assert plain_alive == default_alive > 0  # non-reentrant checkpointing keeps every context's tensors
    assert reentrant_alive == 0  # reentrant: none until the backward recomputes a block
    assert plain and all(g is not None and float(g.abs().max()) > 0 for g in reentrant.values())
    assert all(torch.allclose(plain[k], reentrant[k], atol=1e-6) and torch.allclose(plain[k], default[k], atol=1e-6)
               for k in plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes quantization needs a CUDA GPU")
@pytest.mark.parametrize("quantize", ["int8", "nf4"])
def test_quantized_base_trains_on_cuda(base, data, tmp_path, monkeypatch, quantize):
    bnb = pytest.importorskip("bitsandbytes")
    from animlora.training import flux_model

    prepare, seen = flux_model.prepare, {}

    def spy(*args, **kwargs):
        comp, params = prepare(*args, **kwargs)
        seen["layers"] = list(comp.unet.modules())
        seen["devices"] = {p.device.type for p in params}
        return comp, params

    monkeypatch.setattr(flux_model, "prepare", spy)
    t = trainer(quantize_base=quantize, mixed_precision="bf16", epochs=2)
    result = t.train(data, tmp_path / quantize, str(base))
    quantized = {"int8": bnb.nn.Linear8bitLt, "nf4": bnb.nn.Linear4bit}[quantize]
    assert any(isinstance(m, quantized) for m in seen["layers"])  # the base really is quantized
    assert seen["devices"] == {"cuda"} and t.settings.quantize_base == quantize and result.steps == 8
    weights = load_file(str(result.final))
    ups = [v for k, v in weights.items() if k.endswith("lora_up.weight")]
    assert ups and all(bool(torch.isfinite(v).all()) and float(v.abs().max()) > 0 for v in ups)
    # the same key set as an unquantized run's file: the export does not see the quantization
    plain = trainer(epochs=1).train(data, tmp_path / "plain", str(base))
    assert set(load_file(str(plain.final))) == set(weights)


def test_evaluation_samples_flux_checkpoints(base, data, tmp_path):
    from animlora.training.evaluation import evaluate_checkpoints, file_checkpoints

    clip = tiny_sd.build_clip(tmp_path / "clip")
    from diffusers import FluxTransformer2DModel

    from animlora.training.kohya_format import kohya_metadata, save_kohya

    transformer = FluxTransformer2DModel.from_pretrained(str(base), subfolder="transformer")
    torch.manual_seed(0)
    params = flux.add_lora(transformer, 4, 4)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.2)
    meta = kohya_metadata(family="flux", base_model=str(base), output_name="luca", dim=4, alpha=4, trigger="lucaxyz",
                          dataset_hash="x", steps=4, epoch=1, num_images=4, resolution=16, unet_lr=1e-4,
                          text_encoder_lr=None, seed=0)
    save_kohya(tmp_path / "luca-000001.safetensors", flux.kohya_state_dict(transformer), meta)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"prompts": [{"name": "portrait", "prompt": "{trigger}, portrait"}]}))
    s = load_settings(overrides={"evaluate": {"clip_model": str(clip), "steps": 2, "seeds": [1, 2], "width": 16,
                                              "height": 16, "cfg": 3.5}}).settings
    out = tmp_path / "evaluation"
    report = evaluate_checkpoints(file_checkpoints([tmp_path / "luca-000001.safetensors"]), out, s.evaluate,
                                  s.models, base_model=str(base), dataset=data, prompts=str(prompts))
    assert (report["family"], report["scheduler"]) == ("flux", "flow_match_euler")
    for label in ("base_model", "luca-000001"):
        assert sorted(p.name for p in (out / label).iterdir()) == ["portrait_s1.png", "portrait_s2.png"]
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(out / "base_model" / "portrait_s1.png"), dtype=float)
    b = np.asarray(Image.open(out / "luca-000001" / "portrait_s1.png"), dtype=float)
    assert abs(a - b).max() > 0  # the LoRA was applied
    assert (out / "comparison_grid.png").is_file() and report["best"]["label"] == "luca-000001"
