"""Files shipped with the package: the sample clip the demo runs on."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_CLIP = "bigbuckbunny.mp4"


def sample_clip() -> Path:
    """Big Buck Bunny, 5.3 s, 1280x720, one shot (c) Blender Foundation, CC-BY 3.0 (see ATTRIBUTION.md)."""
    return Path(str(resources.files("animlora.data").joinpath(SAMPLE_CLIP)))
