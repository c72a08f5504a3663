"""Typed settings for every stage, from layered YAML.

Layers, each overriding the one before: package defaults (``defaults/*.yaml``, one file a
section) → profile (``profiles/3d.yaml`` or ``2d.yaml``) → training preset
(``presets/<name>.yaml``, from ``--preset`` or ``train.preset``) → the project's ``project.yaml`` →
``characters/<name>.yaml`` (its ``settings:`` block, for that character only) → ``--set
section.key=value``. The merged tree is validated into :class:`Settings`; pydantic fields
carry no defaults of their own, so the YAML is the single source of every default.
"""

from __future__ import annotations

from animlora.config.loader import (
    Layer,
    LoadedSettings,
    load_settings,
    parse_set_options,
    preset_file,
    preset_names,
)
from animlora.config.schema import CharacterSpec, Settings

__all__ = [
    "CharacterSpec",
    "Layer",
    "LoadedSettings",
    "Settings",
    "load_settings",
    "parse_set_options",
    "preset_file",
    "preset_names",
]
