"""Every model a stage can use, and the one way weights are found.

Backends never load weights by themselves: they call :func:`resolve` with a registry name
and get a local path, or a :class:`~animlora.errors.ModelNotFoundError` that names the
model, the places looked and the command that fixes it.
"""

from __future__ import annotations

from animlora.models.registry import MODELS, ModelSpec, get_spec
from animlora.models.resolver import ModelLocation, import_model, locate, pull, resolve

__all__ = ["MODELS", "ModelLocation", "ModelSpec", "get_spec", "import_model", "locate", "pull", "resolve"]
