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


class SegmentSettings(Section):
    backend: Literal["isnet", "classic", "sam2", "yolo"]
    fallback: bool = Field(description="switch to 'classic' when the backend's weights/packages are missing")
    alpha_threshold: float = Field(ge=0, le=1, description="matte value that counts as character; profile sets it")
    min_area_fraction: float = Field(ge=0, lt=1, description="smaller blobs are not instances")
    split_overlaps: bool
    track_similarity: float = Field(ge=0, le=1, description="min shape/colour/position similarity to continue a track")
    batch_size: int = Field(ge=1)
    device: Literal["auto", "cpu", "cuda"]
    isnet_size: int = Field(ge=0, multiple_of=32, description="isnet input side in px; 0 = the model's own (1024)")
    cpu_streams: int = Field(ge=0, description="isnet: frames run concurrently on the CPU; 0 = min(4, cores)")
    padding: float = Field(ge=0, le=1, description="box padding, fraction of the box's larger side")
    context_variants: list[Literal["original", "blurred"]]
    context_blur: float = Field(gt=0, description="Gaussian sigma (px) of the blurred-background variant")
    sam2_model: str = Field(description="models registry name of the SAM 2 checkpoint")
    sam2_prompter: Literal["isnet", "classic"]


class PrefilterMode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_area_fraction: float = Field(ge=0, lt=1)
    min_side: int = Field(ge=0, description="shorter side of the box, px")
    max_truncated_edges: int = Field(ge=0, le=4, description="frame edges an instance may touch")
    blur_factor: float = Field(ge=0, description="multiplies blur_threshold")
    min_score: float = Field(ge=0, le=1, description="backend's character confidence")
    max_area_fraction: float = Field(gt=0, le=1, description="larger = background taken for a character")
    max_aspect: float = Field(ge=1, description="longer/shorter box side; larger = strips, poles, horizons")


class PrefilterSettings(Section):
    mode: Literal["strict", "balanced", "lenient"]
    blur_threshold: float = Field(ge=0, description="variance of the Laplacian inside the mask; profile sets it")
    modes: dict[Literal["strict", "balanced", "lenient"], PrefilterMode]


class InpaintSettings(Section):
    backend: Literal["lama", "opencv"]
    fallback: bool = Field(description="use opencv when LaMa's weights or torch are missing")
    opencv_method: Literal["telea", "ns"]
    dilation: int = Field(ge=0, description="mask dilation in px before filling")
    radius: int = Field(ge=1, description="OpenCV inpainting radius")
    static_threshold: float = Field(ge=0, description="mean abs difference (0-255) of a shot's frames below which the camera is static")
    device: Literal["auto", "cpu", "cuda"]


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
    segment: SegmentSettings
    prefilter: PrefilterSettings
    inpaint: InpaintSettings
