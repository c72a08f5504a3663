"""Image embedders for identity clustering: one protocol (base.Embedder), one module per
backend, and :func:`create_embedder` which reads ``embed.backend`` ("auto", one name, or two
joined by "+")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from animlora.backends.embedding.base import (
    BACKENDS,
    ConcatEmbedder,
    Embedder,
    available_backends,
    composite,
    create_backend,
    l2_normalise,
    parse_backend,
)
from animlora.errors import MissingDependencyError, ModelNotFoundError

if TYPE_CHECKING:
    from animlora.config.schema import EmbedSettings, ModelsSettings

__all__ = [
    "BACKENDS",
    "ConcatEmbedder",
    "Embedder",
    "available_backends",
    "composite",
    "create_embedder",
    "l2_normalise",
    "resolve_auto",
]


def resolve_auto(settings: EmbedSettings, models: ModelsSettings) -> tuple[str, str]:
    """``auto``: clip when a CUDA GPU and the CLIP weights are both here (no download), else
    color — CLIP-L on a CPU takes hours for a film's instances. Returns (backend, why)."""
    if not available_backends()["clip"]:
        return "color", "auto: torch/transformers not installed"
    import torch

    from animlora.models import locate

    if not torch.cuda.is_available():
        return "color", "auto: no CUDA GPU"
    if locate(settings.clip_model, models).path is None:
        return "color", f"auto: {settings.clip_model} weights not found locally"
    return "clip", "auto: CUDA GPU and CLIP weights present"


def create_embedder(settings: EmbedSettings, models: ModelsSettings) -> tuple[Embedder, list[str]]:
    """The configured embedder and notes for the stage report (auto choice, fallbacks)."""
    names = parse_backend(settings.backend)
    notes: list[str] = []
    if names == ["auto"]:
        chosen, why = resolve_auto(settings, models)
        names = [chosen]
        notes.append(why)
    parts: list[Embedder] = []
    for name in names:
        try:
            parts.append(create_backend(name, settings, models))
        except (ModelNotFoundError, MissingDependencyError) as exc:
            from animlora.backends.registry import fallback_for

            other = fallback_for("embedding", name, settings.fallback)
            if other is None:
                raise
            notes.append(f"fallback: {name} unavailable ({exc}); using the {other} backend instead")
            parts.append(create_backend(other, settings, models))
    if len(parts) == 1:
        return parts[0], notes
    return ConcatEmbedder(parts), notes
