"""Naming clusters from reference images: ``characters/<name>.yaml``.

A spec's ``references`` are image files or folders (relative to the yaml's folder, then to
the project). Each cluster takes the name of the spec whose nearest reference is most similar
to the cluster's centroid, when that cosine similarity reaches ``cluster.name_similarity``;
a spec with ``negative: true`` (background props, crowd, mascots) sends such clusters to noise.

Clusters hold cut-outs, so a reference is compared as one: a picture (no transparent pixel, or a
solid rectangle in transparent margins: a screenshot, a photo) is cut out first, the largest
thing the project's segmenter finds in it (``cut_out``). On the whole Big Buck Bunny film,
screenshots embedded as they were named 4 of 11 clusters wrongly with the ``color`` embedder (its
colours are the set's as much as the character's); cut out, 1, as cut-outs of the same instances
do (docs/identity.md, "Naming from screenshots")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# a picture whose solid pixels fill this share of their own box, a box of at least PICTURE_SHARE of
# the image, is a rectangle: a screenshot with transparent margins or corners (a window's shadow),
# not a cut-out. None of the 2,826 cut-outs of the film, the trailer and seeds 2, 3, 4 and 6 is taken
# for one (a soft matte with a solid pixel or two fills its 1-pixel box: hence the share)
PICTURE_FILL = 0.98
PICTURE_SHARE = 0.5


def picture_box(rgba: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box ``(x, y, w, h)`` of the picture in ``rgba`` when it is a screenshot or a photo (no
    transparency, or a solid rectangle in transparent margins), else None (a cut-out)."""
    solid = rgba[..., 3] == 255
    if solid.all():
        return 0, 0, solid.shape[1], solid.shape[0]
    rows, cols = np.nonzero(solid.any(axis=1))[0], np.nonzero(solid.any(axis=0))[0]
    if not len(rows):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (y1 - y0) * (x1 - x0) < PICTURE_SHARE * solid.size or solid[y0:y1, x0:x1].mean() < PICTURE_FILL:
        return None
    return x0, y0, x1 - x0, y1 - y0


def embed_references(refs: list[Reference], embedder: Any,
                     cut_out: Callable[[np.ndarray], np.ndarray | None] | None = None
                     ) -> tuple[list[tuple[Reference, np.ndarray]], list[dict[str, Any]]]:
    """Each reference's images embedded (unit vectors), and per reference what was done to its
    pictures (:func:`picture_box`, the margins dropped): ``cut_out`` (RGB in, the RGBA cut-out or
    None) cut them out; one it finds nothing in, or every one when ``cut_out`` is None, is
    embedded whole. Returns (references with their vectors, per reference ``{"name", "negative",
    "images", "cut_out", "whole"}``)."""
    out, report = [], []
    for ref in refs:
        images, cut, whole = [], 0, 0
        for path in ref.paths:
            rgba = read_image(path, "RGBA")
            box = picture_box(rgba)
            if box is not None:
                x, y, w, h = box
                rgba = np.ascontiguousarray(rgba[y : y + h, x : x + w])
                piece = cut_out(np.ascontiguousarray(rgba[..., :3])) if cut_out is not None else None
                if piece is None:
                    whole += 1
                else:
                    rgba, cut = piece, cut + 1
            images.append(rgba)
        out.append((ref, normalise(embedder.embed(images))))
        report.append({"name": ref.name, "negative": ref.negative, "images": len(images), "cut_out": cut,
                       "whole": whole})
    return out, report


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
