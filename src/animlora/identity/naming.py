"""Naming clusters from reference images: ``characters/<name>.yaml``.

A spec's ``references`` are image files or folders (relative to the yaml's folder, then to
the project). Each cluster takes the name of the spec whose nearest reference is most similar
to the cluster's centroid, when that cosine similarity reaches ``cluster.name_similarity``;
a spec with ``negative: true`` (background props, crowd, mascots) sends such clusters to noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animlora.config.loader import load_character
from animlora.config.schema import CharacterSpec
from animlora.errors import BadInputError
from animlora.identity.clustering import normalise
from animlora.io.images import IMAGE_SUFFIXES, list_images, read_image


@dataclass(frozen=True)
class Reference:
    name: str
    negative: bool
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class NameMatch:
    name: str
    negative: bool
    similarity: float


def load_specs(folders: list[Path]) -> list[tuple[CharacterSpec, Path]]:
    specs = []
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                specs.append((load_character(path), path))
    return specs


def references(folders: list[Path], project_root: Path | None) -> list[Reference]:
    """Reference images of every character spec that has some."""
    out = []
    for spec, path in load_specs(folders):
        files: list[Path] = []
        for entry in spec.references:
            candidates = [path.parent / entry] + ([project_root / entry] if project_root else [])
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise BadInputError(path, f"reference {entry!r} of {spec.name} does not exist")
            if found.is_dir():
                files.extend(list_images(found))
            elif found.suffix.lower() in IMAGE_SUFFIXES:
                files.append(found)
        if files:
            out.append(Reference(spec.name, spec.negative, tuple(files)))
    return out


def embed_references(refs: list[Reference], embedder) -> list[tuple[Reference, np.ndarray]]:
    return [(ref, normalise(embedder.embed([read_image(p, "RGBA") for p in ref.paths]))) for ref in refs]


def match_clusters(
    centroids: dict[int, np.ndarray], refs: list[tuple[Reference, np.ndarray]], bound: float
) -> dict[int, NameMatch]:
    """cluster label -> the best reference match at or above ``bound``."""
    out: dict[int, NameMatch] = {}
    for label, centroid in centroids.items():
        c = normalise(centroid[None, :])[0]
        best: NameMatch | None = None
        for ref, vectors in refs:
            sim = float((vectors @ c).max())
            if sim >= bound and (best is None or sim > best.similarity):
                best = NameMatch(ref.name, ref.negative, sim)
        if best is not None:
            out[label] = best
    return out
