"""Captioning backends: an availability table built from what imports, one factory."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import TYPE_CHECKING

from animlora.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from animlora.backends.captioning.base import Captioner
    from animlora.config.schema import CaptionSettings, ModelsSettings

# name -> ("module:Class", packages it needs, description)
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "template": ("animlora.backends.captioning.template:TemplateCaptioner", ("cv2",),
                 "CPU, no weights: framing, view, palette, lighting, background measured"),
    "blip": ("animlora.backends.captioning.blip:BlipCaptioner", ("torch", "transformers"),
             "BLIP image captioning (plain sentence)"),
    "florence2": ("animlora.backends.captioning.florence2:Florence2Captioner", ("torch", "transformers"),
                  "Florence-2 detailed caption"),
    "qwen2_5_vl": ("animlora.backends.captioning.qwen2_5_vl:QwenVLCaptioner", ("torch", "transformers"),
                   "Qwen2.5-VL-Instruct, schema-guided JSON fields"),
}


def available() -> dict[str, bool]:
    """Which backends can be imported here."""
    return {name: all(find_spec(pkg) is not None for pkg in pkgs) for name, (_, pkgs, _) in BACKENDS.items()}


def get_captioner(name: str, settings: CaptionSettings, models: ModelsSettings) -> Captioner:
    """A backend instance; unknown or unavailable names are one clear error."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise ConfigError(f"caption.backend = {name!r} is not a captioning backend; choices: {', '.join(BACKENDS)}")
    target, packages, _ = entry
    for pkg in packages:
        if find_spec(pkg) is None:
            raise MissingDependencyError(pkg, "models", f"the {name} captioning backend")
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)(settings, models)


_LOADED: dict[tuple[str, str, str], Captioner] = {}


def cached_captioner(name: str, settings: CaptionSettings, models: ModelsSettings) -> Captioner:
    """One loaded model per worker process, reused across work items (a model load per item
    would dominate the time); a different backend or settings replaces it."""
    key = (name, settings.fingerprint(), models.fingerprint())
    if key not in _LOADED:
        for old in _LOADED.values():
            old.close()
        _LOADED.clear()
        _LOADED[key] = get_captioner(name, settings, models)
    return _LOADED[key]
