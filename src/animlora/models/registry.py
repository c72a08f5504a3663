"""The model registry: one entry per model any backend of any stage can use.

Later stages add their entries to ``MODELS``; none writes its own loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from animlora.errors import AnimloraError


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry name, used in settings and `animlora models pull NAME`
    kind: str  # segmentation | embedding | captioning | inpainting | enhancement | diffusion
    description: str
    used_by: tuple[str, ...]  # stage.backend that use it
    hf_repo: str | None = None  # hub repository id
    hf_revision: str | None = None
    # files needed from the repository (glob patterns); empty = the whole snapshot
    hf_files: tuple[str, ...] = ()
    # file name (relative to the model folder) -> sha256, checked on pull and import
    sha256: dict[str, str] = field(default_factory=dict)
    size_mb: float | None = None  # approximate download size
    license: str = ""
    # "module:function" taking (spec, destination folder) for a source other than the hub
    # (e.g. an npm package); tried by `models pull` after the hub
    other_source: str | None = None
    other_source_label: str = ""


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        known = ", ".join(sorted(MODELS)) or "none"
        raise AnimloraError(f"unknown model {name!r}; known models: {known}")
    return spec


# -- train / evaluate ---------------------------------------------------------------------
_DIFFUSERS_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                    "text_encoder*/model.safetensors", "tokenizer*/*")
register(ModelSpec(
    name="sd15",
    kind="diffusion",
    description="Stable Diffusion 1.5 base model (diffusers layout), for training and evaluation",
    used_by=("train.builtin", "evaluate"),
    hf_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
    hf_files=_DIFFUSERS_FILES,
    size_mb=5200,
    license="CreativeML Open RAIL-M",
))
register(ModelSpec(
    name="sdxl-base",
    kind="diffusion",
    description="Stable Diffusion XL 1.0 base model (diffusers layout), for training and evaluation",
    used_by=("train.builtin", "evaluate"),
    hf_repo="stabilityai/stable-diffusion-xl-base-1.0",
    hf_files=_DIFFUSERS_FILES,
    size_mb=13000,
    license="CreativeML Open RAIL++-M",
))
if "clip-vit-large-patch14" not in MODELS:
    register(ModelSpec(
        name="clip-vit-large-patch14",
        kind="embedding",
        description="OpenAI CLIP ViT-L/14: text-image score and identity similarity of evaluation images",
        used_by=("evaluate",),
        hf_repo="openai/clip-vit-large-patch14",
        hf_files=("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer*", "vocab.json",
                  "merges.txt", "special_tokens_map.json"),
        size_mb=1710,
        license="MIT",
    ))
