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


class EmbedSettings(Section):
    # color | clip | siglip | dinov2 | auto, or two joined by "+" (e.g. "clip+dinov2")
    backend: str
    clip_model: str = Field(description="registry name of the CLIP weights")
    siglip_model: str
    dinov2_model: str
    batch_size: int = Field(ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"]
    half: bool = Field(description="fp16 on CUDA")
    # what a missing model does: error (default) or fall back to the color backend, recorded in the report
    fallback: Literal["none", "color"]
    background: list[int] = Field(min_length=3, max_length=3, description="RGB the cut-outs are composited on")
    color_size: int = Field(ge=32, le=512, description="color backend: cut-outs are resized to fit this square")


class ClusterSettings(Section):
    min_cluster_size: int = Field(ge=2)
    min_samples: int = Field(ge=1)
    pca_dim: int = Field(ge=0, description="0 = cluster the full-dimensional embeddings")
    selection: Literal["eom", "leaf"]
    merge_similarity: float = Field(ge=-1, le=1, description="merge clusters whose centroids are this similar (1 = never)")
    track_aware: bool
    turbo_threshold: int = Field(ge=1000, description="from this many instances on, the subsample path runs")
    turbo_sample: int = Field(ge=1000)
    turbo_pca_dim: int = Field(ge=2)
    name_similarity: float = Field(ge=-1, le=1, description="cosine bound for naming from references")
    characters_dir: str = Field(description="extra folder of <name>.yaml character specs (standalone)")
    copy_mode: Literal["copy", "hardlink"]
    contact_sheet_max: int = Field(ge=1)
    thumb_size: int = Field(ge=16, le=512)


class ReviewSettings(Section):
    host: str
    port: int = Field(ge=0, le=65535)
    token: str
    page_size: int = Field(ge=1, le=5000)
    thumb_size: int = Field(ge=32, le=512)
    split_k: int = Field(ge=2)


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
    embed: EmbedSettings
    cluster: ClusterSettings
    review: ReviewSettings
