"""Prompt files, sampler schedulers, and pipelines built from (trained) components."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from animlora.errors import BadInputError, ConfigError

SAMPLE_SAMPLER = "euler"  # the training samples' sampler (both engines)
SCHEDULERS = {
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
}


@dataclass(frozen=True)
class TestPrompt:
    name: str
    prompt: str
    negative: str = ""


@dataclass(frozen=True)
class PromptSet:
    prompts: tuple[TestPrompt, ...]
    seeds: tuple[int, ...]  # empty: the settings' seeds
    source: str


def default_prompts_path() -> Path:
    return Path(str(resources.files("animlora.prompts").joinpath("3d_character_test.json")))


def load_prompts(path: str | Path | None, trigger: str) -> PromptSet:
    """Read a prompt file and substitute ``{trigger}``.

    JSON: ``{"prompts": [{"name", "prompt", "negative"} | "text", ...], "seeds": [...],
    "negative": "default negative"}`` or a plain list; any other file: one prompt a line."""
    path = Path(path) if path else default_prompts_path()
    if not path.is_file():
        raise BadInputError(path, "prompt file not found")
    text = path.read_text(encoding="utf-8")
    seeds: tuple[int, ...] = ()
    negative_default = ""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInputError(path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        if isinstance(data, dict):
            entries = data.get("prompts")
            seeds = tuple(int(s) for s in data.get("seeds", []))
            negative_default = str(data.get("negative", ""))
        else:
            entries = data
        if not isinstance(entries, list) or not entries:
            raise BadInputError(path, 'expected {"prompts": [...]} or a list of prompts')
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not entries:
            raise BadInputError(path, "no prompts (one a line)")
    prompts = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"prompt": entry}
        if not isinstance(entry, dict) or "prompt" not in entry:
            raise BadInputError(path, f"prompt {i + 1}: expected a string or an object with 'prompt'")
        fill = {"trigger": trigger}
        try:
            prompt = str(entry["prompt"]).format(**fill)
            negative = str(entry.get("negative", negative_default)).format(**fill)
        except (KeyError, IndexError, ValueError) as exc:
            raise BadInputError(path, f"prompt {i + 1}: bad placeholder ({exc}); only {{trigger}} is known") from exc
        prompts.append(TestPrompt(str(entry.get("name", f"p{i:02d}")), prompt, negative))
    return PromptSet(tuple(prompts), seeds, str(path))


def make_scheduler(name: str, config: Any) -> Any:
    import diffusers

    cls_name = SCHEDULERS.get(name)
    if cls_name is None:
        raise ConfigError(f"unknown scheduler {name!r}; choices: {', '.join(SCHEDULERS)}")
    return getattr(diffusers, cls_name).from_config(config)


def build_pipeline(family: str, tokenizers: tuple, text_encoders: tuple, vae: Any, unet: Any, scheduler: Any) -> Any:
    """A text-to-image pipeline sharing the given modules (no copies)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family == "sdxl":
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoders[0], text_encoder_2=text_encoders[1],
            tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], unet=unet, scheduler=scheduler,
        )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoders[0], tokenizer=tokenizers[0], unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def generate(pipe: Any, prompt: TestPrompt, seed: int, *, steps: int, cfg: float, width: int, height: int,
             scale: float | None = None) -> Any:
    """One image (PIL) for (prompt, seed): the generator lives on the CPU so every device
    draws the same starting noise. Flux: ``cfg`` is [dev]'s distilled guidance and the negative
    prompt is not used (Flux has no classifier-free guidance)."""
    import torch

    kwargs: dict[str, Any] = {}
    generator = torch.Generator("cpu").manual_seed(int(seed))
    if type(pipe).__name__.startswith("Flux"):
        from animlora.training.flux import max_sequence_length

        if scale is not None:
            kwargs["joint_attention_kwargs"] = {"scale": scale}
        with torch.no_grad():
            out = pipe(prompt.prompt, num_inference_steps=steps, guidance_scale=cfg, width=width, height=height,
                       generator=generator, max_sequence_length=max_sequence_length(
                           pipe.tokenizer_2, bool(pipe.transformer.config.guidance_embeds)), **kwargs)
        return out.images[0]
    if scale is not None:
        kwargs["cross_attention_kwargs"] = {"scale": scale}
    with torch.no_grad():
        out = pipe(prompt.prompt, negative_prompt=prompt.negative or None, num_inference_steps=steps,
                   guidance_scale=cfg, width=width, height=height, generator=generator, **kwargs)
    return out.images[0]
