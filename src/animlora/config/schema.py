"""Pydantic models of every settings section.

No field has a default here: defaults live in ``defaults/<section>.yaml`` so that the
YAML, the CLI and the code can never disagree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat


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
    scene_threshold: float | None = Field(
        gt=0, description="threshold of the chosen detector; null = its entry in detector_thresholds"
    )
    detector_thresholds: dict[Literal["adaptive", "content", "hash"], PositiveFloat] = Field(
        description="tuned threshold per detector, used when scene_threshold is null"
    )
    dissolve_threshold: float = Field(ge=0, description="mean luma change (0-255) that makes a dissolve")
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

    @property
    def threshold(self) -> float:
        """The threshold the chosen detector runs with."""
        if self.scene_threshold is not None:
            return self.scene_threshold
        return self.detector_thresholds[self.detector]


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
