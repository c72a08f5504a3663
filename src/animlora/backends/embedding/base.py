"""The Embedder protocol, the backend table and the helpers every embedder shares.

An embedder turns RGBA cut-outs into L2-normalised float32 vectors. Its ``key`` names the
vectors it makes (backend, weights, descriptor version): the embedding cache is keyed by
(content hash, key), so a different model never reuses another model's vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from animlora.backends import registry
from animlora.backends.registry import BackendEntry
from animlora.errors import ConfigError

if TYPE_CHECKING:
    from animlora.config.schema import EmbedSettings, ModelsSettings

# The family's part of the one backend table (backends/registry.py); the old names stay.
BACKENDS: dict[str, BackendEntry] = registry.BACKENDS["embedding"]


@runtime_checkable
class Embedder(Protocol):
    """One required method: ``embed``. ``key`` identifies the vectors (the cache key)."""

    key: str

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGBA uint8 HxWx4 arrays -> (n, dim) float32, each row L2-normalised."""
        ...


def available_backends() -> dict[str, bool]:
    """Which backends can run here: the table is built from what imports."""
    return registry.available("embedding")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def composite(rgba: np.ndarray, background: Sequence[int]) -> np.ndarray:
    """An RGBA cut-out over a flat background -> RGB uint8 (neural models see no alpha)."""
    if rgba.ndim == 3 and rgba.shape[2] == 3:
        return rgba
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    rgb = rgba[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def parse_backend(spec: str) -> list[str]:
    """"clip+dinov2" -> ["clip", "dinov2"]; names checked, at most two."""
    names = [part.strip() for part in spec.split("+") if part.strip()]
    choices = ", ".join([*BACKENDS, "auto"])
    if not names or len(names) > 2:
        raise ConfigError(f"embed.backend = {spec!r}: give one backend or two joined by '+'; choices: {choices}")
    for name in names:
        if name not in BACKENDS and name != "auto":
            raise ConfigError(f"embed.backend: unknown backend {name!r}; choices: {choices}")
    if "auto" in names and len(names) > 1:
        raise ConfigError("embed.backend: 'auto' cannot be joined with another backend")
    return names


class ConcatEmbedder:
    """Two embedders side by side: each block L2-normalised, then the whole vector."""

    def __init__(self, parts: Sequence[Embedder]) -> None:
        self.parts = list(parts)
        self.key = "+".join(part.key for part in self.parts)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        blocks = [l2_normalise(part.embed(images)) for part in self.parts]
        return l2_normalise(np.concatenate(blocks, axis=1))


def create_backend(name: str, settings: EmbedSettings, models: ModelsSettings) -> Embedder:
    """One backend by name; a missing package names the pip line that installs it."""
    return registry.get_backend("embedding", name, settings, models)
