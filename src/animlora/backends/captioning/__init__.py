"""Captioning backends: the family's part of the one backend table
(:mod:`animlora.backends.registry`), one factory, and the per-process loaded model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from animlora.backends import registry
from animlora.backends.registry import BackendEntry

if TYPE_CHECKING:
    from animlora.backends.captioning.base import Captioner
    from animlora.config.schema import CaptionSettings, ModelsSettings

BACKENDS: dict[str, BackendEntry] = registry.BACKENDS["captioning"]


def get_captioner(name: str, settings: CaptionSettings, models: ModelsSettings) -> Captioner:
    """A backend instance; unknown or unavailable names are one clear error."""
    return registry.get_backend("captioning", name, settings, models)


def cached_captioner(name: str, settings: CaptionSettings, models: ModelsSettings) -> Captioner:
    """One loaded model per worker process, reused across work items (a model load per item
    would dominate the time); a different backend or settings replaces it."""
    key = (name, settings.fingerprint(), models.fingerprint())
    return registry.held("captioning", key, lambda: get_captioner(name, settings, models))
