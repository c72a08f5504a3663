"""animlora: 3D-animated film footage in, one LoRA per character out."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
