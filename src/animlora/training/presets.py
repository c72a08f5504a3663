"""Training presets: named blocks of settings shipped in ``config/presets/<name>.yaml``.

A preset is one settings layer, between the profile and the user's files (``project.yaml``,
``--config``, ``--set``), so the user's values win and ``animlora config show`` names the
preset as the source of each value it sets. The loading lives in ``config.loader``.
"""

from __future__ import annotations

from animlora.config.loader import preset_file, preset_names

__all__ = ["preset_file", "preset_names"]
