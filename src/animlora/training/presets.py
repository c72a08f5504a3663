"""Training presets: named blocks of settings shipped in ``config/presets/<name>.yaml``.

A preset is one more settings layer, between the profile and the user's files, so
``animlora config show`` names it as the source of each value it sets.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from animlora.errors import ConfigError


def preset_names() -> list[str]:
    folder = resources.files("animlora.config").joinpath("presets")
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def preset_file(name: str) -> Path:
    """The YAML file of preset ``name``; an unknown name lists the presets."""
    entry = resources.files("animlora.config").joinpath("presets", f"{name}.yaml")
    if not entry.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return Path(str(entry))
