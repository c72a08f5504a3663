"""Flux.1 in the built-in trainer: loading (optionally quantized), the text-embedding cache, and
the training loop's Flux step, checkpoint and samples (a :class:`trainer._LoopContext` subclass).

Order of loading, so that a 24 GB GPU holds it: tokenizers, CLIP, T5 and the VAE first; every
caption (and the empty caption for dropout, and the sample prompts) is encoded once; the text
encoders are then dropped, and only then is the transformer loaded — in bf16, or quantized to
8-bit / NF4 with bitsandbytes (``train.quantize_base``, CUDA only).
"""

from __future__ import annotations

import logging
from typing import Any

from animlora.errors import BadInputError, ConfigError
from animlora.training import flux
from animlora.training.base_model import BaseComponents, BaseModelRef
from animlora.training.trainer import _LoopContext

log = logging.getLogger("animlora")

DEFAULT_CONFIG = "black-forest-labs/FLUX.1-dev"


def pipeline_source(ref: BaseModelRef, config: str) -> str:
    """Where the pipeline's other parts (text encoders, VAE, scheduler) come from."""
    if ref.kind != "single_file":
        return str(ref.path or ref.given)
    if not config:
        raise ConfigError(f"{ref.given}: a single-file Flux checkpoint holds only the transformer; name a "
                          f"diffusers Flux folder or hub id (e.g. {DEFAULT_CONFIG}) for its text encoders, VAE "
                          "and configs: train.base_model_config, or --base-model-config on train, evaluate "
                          "and compare")
    return config


def _load(what: str, ref: BaseModelRef, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError) as exc:
        raise BadInputError(ref.path or ref.given, f"cannot load the Flux {what}: {str(exc).splitlines()[0]}") from exc


def load_transformer(ref: BaseModelRef, *, config: str = "", dtype: Any = None, quantize: str = "none") -> Any:
    """The Flux transformer, in ``dtype`` or quantized with bitsandbytes (int8 | nf4)."""
    from diffusers import FluxTransformer2DModel

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantize != "none":
        from diffusers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True) if quantize == "int8" else
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype))
    if ref.kind == "single_file":
        return _load("transformer", ref, FluxTransformer2DModel.from_single_file, str(ref.path),
                     config=pipeline_source(ref, config), subfolder="transformer", **kwargs)
    return _load("transformer", ref, FluxTransformer2DModel.from_pretrained, pipeline_source(ref, config),
                 subfolder="transformer", **kwargs)


def load_flux(ref: BaseModelRef, *, config: str = "", transformer: bool = True, dtype: Any = None,
              quantize: str = "none") -> BaseComponents:
    """Tokenizers (CLIP, T5), text encoders, VAE, flow-matching scheduler and (unless
    ``transformer`` is false) the transformer, as :class:`BaseComponents` (``unet`` = transformer)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    kwargs: dict[str, Any] = {"transformer": None}
    if dtype is not None:
        kwargs["dtype"] = dtype
    pipe = _load("pipeline", ref, FluxPipeline.from_pretrained, pipeline_source(ref, config), **kwargs)
    model = load_transformer(ref, config=config, dtype=dtype, quantize=quantize) if transformer else None
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return BaseComponents("flux", (pipe.tokenizer, pipe.tokenizer_2), (pipe.text_encoder, pipe.text_encoder_2),
                          pipe.vae, model, scheduler, ref)


def prepare(trainer: Any, ref: BaseModelRef, texts: list[str], device: Any, weight_dtype: Any,
            quantize: str) -> tuple[BaseComponents, list[Any]]:
    """Steps 2–3 for Flux: load the text side, cache the embeddings of ``texts``, drop the text
    encoders, load the transformer and add the LoRA. Returns the components and the LoRA params."""
    import gc

    import torch

    s = trainer.settings
    comp = load_flux(ref, config=s.base_model_config, transformer=False,
                     dtype=weight_dtype if device.type == "cuda" else None)
    for encoder in comp.text_encoders:
        encoder.requires_grad_(False)
        encoder.to(device)
    guidance = flux.has_guidance(ref.path) if ref.kind == "folder" else True
    comp.text_cache = flux.encode_texts(comp.tokenizers, comp.text_encoders, texts, device,
                                        flux.max_sequence_length(comp.tokenizers[1], guidance))
    comp.text_encoders = ()  # frozen and cached: not needed any more
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    comp.unet = load_transformer(ref, config=s.base_model_config, dtype=weight_dtype, quantize=quantize)
    torch.manual_seed(trainer.seed)
    params = flux.add_lora(comp.unet, s.network_dim, s.network_alpha)
    if quantize == "none":
        comp.unet.to(device, dtype=weight_dtype)
    for p in params:
        p.data = p.data.float()  # LoRA weights in fp32 (stable updates), the base in bf16
    if s.gradient_checkpointing:
        enable_checkpointing(comp.unet, reentrant=quantize == "int8")
    return comp, params


def enable_checkpointing(transformer: Any, *, reentrant: bool) -> None:
    """Gradient checkpointing of the transformer's blocks.

    diffusers' default is non-reentrant checkpointing, which drops what a block's autograd saves
    through ``save_for_backward``. bitsandbytes' LLM.int8 (``quantize_base: int8``) keeps each
    layer's input on its autograd context instead (``ctx.tensors``, bitsandbytes 0.50), out of that
    mechanism's reach: every layer's input stays alive through the step, as if nothing were
    checkpointed (38.5 GB peak on a full-size transformer at 1024², against NF4's 12.7 GB).
    ``reentrant`` runs each block's forward without autograd and again in the backward, which is
    how peft's QLoRA path (``prepare_model_for_kbit_training``) trains on int8 layers; the
    embedders' outputs (frozen) are then made to require gradients, or the blocks' LoRA would get
    none."""
    if not reentrant:
        transformer.enable_gradient_checkpointing()
        return
    import torch
    from torch.utils.checkpoint import checkpoint

    def reentrant_checkpoint(module: Any, *args: Any) -> Any:
        return checkpoint(module.__call__, *args, use_reentrant=True)

    def needs_grad(_module: Any, _args: Any, out: Any) -> Any:
        return out.requires_grad_(True) if torch.is_grad_enabled() else out  # not while sampling

    transformer.enable_gradient_checkpointing(reentrant_checkpoint)
    for embedder in (transformer.x_embedder, transformer.context_embedder):
        embedder.register_forward_hook(needs_grad)


def texts_to_cache(trainer: Any, captions: list[str], trigger: str) -> list[str]:
    """Every caption, the empty caption (dropout) and the sample prompts."""
    from animlora.training.sampling import load_prompts

    s = trainer.settings
    texts = [*captions, ""]
    if s.sample_every_n_epochs:
        texts += [p.prompt for p in load_prompts(s.sample_prompts or None, trigger).prompts]
    return texts


class FluxLoopContext(_LoopContext):
    """The Flux step (flow matching on packed latents), kohya file (BFL keys) and samples."""

    def text_condition(self, captions: list[str]) -> tuple[Any, Any]:
        import torch

        cache = self.comp.text_cache
        missing = [c for c in captions if c not in cache]
        if missing:
            raise ConfigError(f"caption not in the text cache: {missing[0]!r}")
        embeds = torch.stack([cache[c][0] for c in captions]).to(self.device)
        pooled = torch.stack([cache[c][1] for c in captions]).to(self.device)
        return embeds, pooled

    def compute_loss(self, batch: Any, step: int) -> Any:
        import torch
        import torch.nn.functional as F

        s = self.s
        positions = self.shard(batch)
        latents, masks, _, captions = self.batch_tensors(batch, step, positions)
        # noise and sigmas drawn for the whole global batch (the same draw however many
        # processes share it), as the SD loss does
        generator = torch.Generator("cpu").manual_seed(self.seed * 7_919 + step)
        shape = (len(batch.indices), *latents.shape[1:])
        noise = torch.randn(shape, generator=generator)
        if s.noise_offset:
            noise += s.noise_offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
        sigmas = flux.sample_sigmas(s.timestep_sampling, shape[0], generator,
                                    latent_hw=tuple(latents.shape[2:]), sigmoid_scale=s.sigmoid_scale,
                                    shift=s.discrete_flow_shift)
        noise, sigmas = noise[positions].to(self.device), sigmas[positions].to(self.device)
        sig = sigmas.view(-1, 1, 1, 1)
        noisy = (1.0 - sig) * latents + sig * noise
        embeds, pooled = self.text_condition(captions)
        with self.accelerator.autocast():
            pred = flux.predict(self.unet, noisy, sigmas, embeds, pooled, s.guidance_scale, self.weight_dtype)
        target = noise - latents  # the flow; sd-scripts' model_prediction_type = raw
        loss = F.mse_loss(pred.float(), target.float(), reduction="none")
        if s.alpha_mask:
            loss = loss * F.interpolate(masks.float(), size=loss.shape[2:], mode="area")
        return self.shard_loss(loss.mean(dim=[1, 2, 3]), batch)

    def lora_state(self, dtype: Any) -> dict[str, Any]:
        unet, _ = self._modules()
        return flux.kohya_state_dict(unet, dtype=dtype)

    def sample_maker(self, unet: Any) -> Any:
        """Flux samples from the cached prompt embeddings (the text encoders are gone), with
        ``sample_cfg`` as [dev]'s distilled guidance."""
        import torch

        s = self.s
        pipe = flux_pipeline(self.comp, unet)

        def make(prompt: Any, seed: int) -> Any:
            embeds, pooled = self.text_condition([prompt.prompt])
            generator = torch.Generator("cpu").manual_seed(int(seed))
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.weight_dtype,
                                                 enabled=self.device.type == "cuda"):
                return pipe(prompt_embeds=embeds.to(self.weight_dtype), pooled_prompt_embeds=pooled.to(self.weight_dtype),
                            num_inference_steps=s.sample_steps, guidance_scale=s.sample_cfg, width=s.resolution,
                            height=s.resolution, generator=generator).images[0]

        return make


def flux_pipeline(comp: BaseComponents, transformer: Any) -> Any:
    """A FluxPipeline sharing the given modules; text encoders may be absent (cached embeddings)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    encoders = comp.text_encoders or (None, None)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(comp.noise_scheduler.config),
                        vae=comp.vae, text_encoder=encoders[0], tokenizer=comp.tokenizers[0],
                        text_encoder_2=encoders[1], tokenizer_2=comp.tokenizers[1], transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe
