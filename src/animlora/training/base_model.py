"""Load a Stable Diffusion 1.x, SDXL or Flux.1 base model's components for training and sampling.

A base model is a diffusers folder (``model_index.json``), a single ``.safetensors``/``.ckpt``
checkpoint (loaded with diffusers' ``from_single_file``), an animlora registry name
(``sd15``, ``sdxl-base``: resolved through :mod:`animlora.models`), or a hub id found in the
Hugging Face cache (or downloaded, when not offline). The family is read from the weights and
checked against the one the preset asks for, before anything heavy is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.config.schema import ModelsSettings
from animlora.errors import BadInputError, ConfigError, ModelNotFoundError
from animlora.models.registry import MODELS

FAMILY_NAMES = {"sd15": "Stable Diffusion 1.x", "sdxl": "SDXL", "flux": "Flux.1"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")

@dataclass(frozen=True)
class BaseModelRef:
    """Where a base model is and what it is, found without loading weights."""

    given: str
    path: Path | None  # local folder or file; None: a hub id only diffusers can fetch
    kind: str  # "folder" | "single_file" | "hub"
    family: str  # "sd15" | "sdxl" | "flux"


@dataclass
class BaseComponents:
    """The loaded model: tokenizers and text encoders are tuples (one for SD 1.x, two for SDXL and
    Flux: CLIP and T5). For Flux ``unet`` is the transformer and ``noise_scheduler`` the flow-matching
    scheduler; ``text_cache`` holds the cached text embeddings once computed."""

    family: str
    tokenizers: tuple[Any, ...]
    text_encoders: tuple[Any, ...]
    vae: Any
    unet: Any
    noise_scheduler: Any
    ref: BaseModelRef
    text_cache: dict[str, Any] | None = None


def family_of_folder(folder: Path) -> str:
    index = folder / "model_index.json"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(index, f"not a diffusers model folder ({exc})") from exc
    if "Flux" in str(data.get("_class_name", "")) or "transformer" in data:
        return "flux"
    if "text_encoder_2" in data or "XL" in str(data.get("_class_name", "")):
        return "sdxl"
    return "sd15"


def family_of_single_file(path: Path) -> str:
    if path.suffix.lower() != ".safetensors":
        return "sd15"  # .ckpt: keys need unpickling; diffusers finds out when loading
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # noqa: BLE001 - any reader error: not a safetensors file
        raise BadInputError(path, f"not a readable .safetensors checkpoint ({exc})") from exc
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.removeprefix("model.diffusion_model.").startswith("double_blocks.") for k in keys):
        return "flux"
    if any(k.startswith("cond_stage_model.") for k in keys) or any(k.startswith("model.diffusion_model.") for k in keys):
        return "sd15"
    raise BadInputError(path, "not a Stable Diffusion checkpoint (no model.diffusion_model.* weights); "
                        "is it a LoRA or a VAE?")


def locate_base_model(given: str, models: ModelsSettings) -> BaseModelRef:
    """Find the base model and its family; errors name the path and the fix."""
    if not given:
        raise ConfigError("no base model: pass --base-model PATH|ID or set train.base_model")
    path = Path(given).expanduser()
    if path.exists():
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise BadInputError(path, "not a diffusers model folder (no model_index.json); "
                                    "give the folder of a diffusers pipeline or a single .safetensors file")
            return BaseModelRef(given, path.resolve(), "folder", family_of_folder(path))
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise BadInputError(path, "a base model file must be .safetensors or .ckpt")
        return BaseModelRef(given, path.resolve(), "single_file", family_of_single_file(path))
    if given in MODELS and MODELS[given].kind == "diffusion":
        from animlora.models import resolve

        folder = resolve(given, models)
        return BaseModelRef(given, folder, "folder", family_of_folder(folder))
    if given.count("/") == 1 and not given.startswith((".", "/", "~")):
        folder = _hub_snapshot(given, models)
        return BaseModelRef(given, folder, "folder", family_of_folder(folder))
    raise BadInputError(path, "the base model does not exist (a diffusers folder, a .safetensors file, "
                        f"a registry name ({', '.join(n for n, s in MODELS.items() if s.kind == 'diffusion')}) "
                        "or a hub id org/name)")


def _hub_snapshot(repo: str, models: ModelsSettings) -> Path:
    import os

    from huggingface_hub import snapshot_download

    looked = [f"Hugging Face cache ({repo})"]
    patterns = ["model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                "text_encoder*/model.safetensors", "tokenizer*/*"]
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache
        pass
    if models.offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        looked.append("the hub: skipped, offline")
    else:
        looked.append(f"the hub ({repo})")
        try:
            return Path(snapshot_download(repo, allow_patterns=patterns))
        except Exception:  # noqa: BLE001 - any hub failure: not found
            pass
    raise ModelNotFoundError(repo, looked, "download it (huggingface-cli download) or pass a local folder or file")


def check_family(ref: BaseModelRef, wanted: str) -> None:
    """SDXL weights with an SD 1.5 preset (or the reverse) is an error before any loading."""
    if wanted != "auto" and ref.family != wanted:
        raise ConfigError(
            f"{ref.given}: these are {FAMILY_NAMES[ref.family]} weights but the settings ask for "
            f"{FAMILY_NAMES[wanted]} (train.family = {wanted}); use the "
            f"3d-character-{ref.family} preset or the right base model"
        )


def load_components(ref: BaseModelRef, *, config: str = "") -> BaseComponents:
    """Load tokenizers, text encoders, VAE, U-Net and the DDPM noise scheduler (Flux: the
    transformer and the flow-matching scheduler)."""
    if ref.family == "flux":
        from animlora.training.flux_model import load_flux

        return load_flux(ref, config=config)
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if ref.family == "sdxl" else StableDiffusionPipeline
    kwargs: dict[str, Any] = {}
    if ref.family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        if ref.kind == "single_file":
            if config:
                kwargs["config"] = config
            pipe = cls.from_single_file(str(ref.path), **kwargs)
        else:
            pipe = cls.from_pretrained(str(ref.path), **kwargs)
    except (OSError, ValueError) as exc:
        fix = ("pass train.base_model_config (a diffusers folder or hub id with this model's configs), "
               "or convert it to a diffusers folder") if ref.kind == "single_file" else "check the folder is complete"
        raise BadInputError(ref.path or ref.given, f"cannot load the base model: {str(exc).splitlines()[0]}; {fix}") from exc
    if ref.family == "sdxl":
        tokenizers = (pipe.tokenizer, pipe.tokenizer_2)
        encoders = (pipe.text_encoder, pipe.text_encoder_2)
    else:
        tokenizers = (pipe.tokenizer,)
        encoders = (pipe.text_encoder,)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return BaseComponents(ref.family, tokenizers, encoders, pipe.vae, pipe.unet, noise_scheduler, ref)


def is_real_size(unet: Any) -> bool:
    """More than 100M parameters: a real model, not a test one (the CPU guard uses it)."""
    return sum(p.numel() for p in unet.parameters()) > 100_000_000
