"""Pydantic models of every settings section.

No field has a default here: defaults live in ``defaults/<section>.yaml`` so that the
YAML, the CLI and the code can never disagree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of a settings section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """A stable hash of the section's values (part of a stage's settings hash)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ProjectSettings(Section):
    name: str
    profile: Literal["3d", "2d"]
    seed: int
    videos: list[str] = Field(description="video files of the project, relative to project.yaml")


class RunnerSettings(Section):
    executor: Literal["serial", "process"]
    workers: int = Field(ge=1, le=256)


class ModelsSettings(Section):
    # name -> local file or folder holding that model's weights (wins over every cache)
    paths: dict[str, str]
    # where `animlora models pull/import` keep weights; empty = ~/.cache/animlora/models
    store: str
    offline: bool


class ExtractSettings(Section):
    mode: Literal["scene", "interval", "all"]
    detector: Literal["adaptive", "content", "hash"]
    scene_threshold: float = Field(gt=0, description="content-change threshold of the detector")
    min_shot_seconds: float = Field(ge=0)
    analysis_width: int = Field(ge=32, le=1920)
    frames_per_shot: int = Field(ge=1)
    shot_margin: float = Field(ge=0, lt=0.5, description="fraction of a shot skipped at each end")
    interval_seconds: float = Field(gt=0)
    blur_threshold: float = Field(ge=0, description="minimum variance of the Laplacian")
    dedupe: bool
    dedupe_distance: int = Field(ge=0, le=64, description="max perceptual-hash Hamming distance")
    crop_bars: bool
    quality: Literal["high", "medium"]


class TrainSettings(Section):
    """LoRA training (the built-in diffusers+peft trainer, or kohya sd-scripts)."""

    engine: Literal["builtin", "kohya"]
    sd_scripts: str = Field(description="kohya engine: the sd-scripts checkout")
    base_model: str = Field(description="diffusers folder, single .safetensors file, registry name or hub id; empty = not configured")
    base_model_config: str = Field(description="single-file base model: diffusers folder or hub id holding its configs; empty = auto")
    family: Literal["auto", "sd15", "sdxl"]
    output_name: str = Field(description="file name stem of the LoRA; empty = the dataset folder's name")
    trigger: str = Field(description="trigger word; empty = from the dataset's metadata.json")
    # network
    network_dim: int = Field(ge=1, le=1024)
    network_alpha: float = Field(gt=0)
    train_text_encoder: bool
    # optimisation
    optimizer: Literal["adamw", "adamw8bit", "prodigy"]
    unet_lr: float = Field(gt=0)
    text_encoder_lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    lr_scheduler: Literal["constant", "cosine", "cosine_with_restarts"]
    lr_warmup_steps: int = Field(ge=0)
    lr_restarts: int = Field(ge=1, description="cosine_with_restarts: number of cycles")
    max_grad_norm: float = Field(ge=0, description="0 = no clipping")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    repeats: int = Field(ge=1, description="times each image is seen per epoch")
    min_snr_gamma: float = Field(ge=0, description="0 = off")
    noise_offset: float = Field(ge=0)
    # data
    resolution: int = Field(ge=8, le=4096)
    enable_buckets: bool
    bucket_min: int = Field(ge=8)
    bucket_max: int = Field(ge=8)
    bucket_step: int = Field(ge=8)
    shuffle_caption: bool
    keep_tokens: int = Field(ge=0, description="caption tokens (comma-separated) kept in front when shuffling")
    caption_dropout: float = Field(ge=0, le=1, description="probability of training a step with an empty caption")
    flip_aug: bool
    color_aug: bool
    alpha_mask: bool = Field(description="weight the loss by the image's alpha channel")
    cache_latents: bool
    # memory / precision
    gradient_checkpointing: bool
    mixed_precision: Literal["no", "fp16", "bf16"]
    allow_cpu: bool = Field(description="allow a real-size model on the CPU (very slow)")
    # outputs
    save_every_n_epochs: int = Field(ge=1)
    save_state_every_n_steps: int = Field(ge=0, description="resume state between epochs; 0 = at saves only")
    sample_every_n_epochs: int = Field(ge=0, description="0 = no samples")
    sample_prompts: str = Field(description="prompt file (JSON or one prompt a line); empty = the package's test prompts")
    sample_steps: int = Field(ge=1)
    sample_cfg: float = Field(ge=0)
    sample_seeds: list[int]
    tensorboard: bool


class EvaluateSettings(Section):
    """Checkpoint evaluation: images per checkpoint, metrics, the pick."""

    prompts: str = Field(description="prompt JSON; empty = the package's prompts/3d_character_test.json")
    base_model: str = Field(description="empty = train.base_model")
    scheduler: Literal["dpm++", "euler", "euler_a", "ddim", "pndm"]
    steps: int = Field(ge=1)
    cfg: float = Field(ge=0)
    seeds: list[int]
    width: int = Field(ge=0, description="0 = the base model's native size")
    height: int = Field(ge=0)
    strengths: list[float] = Field(description="LoRA strengths to sweep")
    clip_model: str = Field(description="registry name or folder of the CLIP model used for scores")
    reference_images: int = Field(ge=1, description="dataset images used as the identity reference")
    weights: dict[str, float] = Field(description="best-checkpoint score: weight per metric")


class CharacterSpec(BaseModel):
    """``characters/<name>.yaml``: who a character is, and settings only for them.

    A user-written document rather than a settings section, so its fields have defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    trigger: str = Field("", description="trigger word; empty = the name")
    description: str = ""
    references: list[str] = Field(default_factory=list, description="images or folders of this character")
    negative: bool = Field(False, description="references of what is NOT a character (noise)")
    settings: dict = Field(default_factory=dict, description="section overrides for this character")

    @property
    def trigger_word(self) -> str:
        return self.trigger or self.name


class Settings(Section):
    """Every section, validated."""

    project: ProjectSettings
    runner: RunnerSettings
    models: ModelsSettings
    extract: ExtractSettings
    train: TrainSettings
    evaluate: EvaluateSettings
