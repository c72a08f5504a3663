"""The embed stage's records: ``identity_instances`` (the instances the identity stages
work on, with their cut-out and content hash), ``embeddings`` (one vector per cut-out
content and embedder, the cache key) and the meta key ``identity.input_root`` (a
standalone run's input folder). Made by migration ``0200_identity``.

Written by :class:`animlora.stages.embed.EmbedStage` (:func:`write_vectors`,
:func:`replace_instances`); read by the cluster stage (:func:`load_vectors`,
:func:`identity_instances`), the review (:mod:`animlora.review.service`) and the dataset stage
(:func:`instance_vectors`). The stage's report file (:data:`REPORT`, in the stage's folder) is
written by the stage; its per-shot light gains are read here (:func:`shot_light_gains`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from animlora.catalog import Catalog

INPUT_ROOT_META = "identity.input_root"
REPORT = "embedding_report.json"


@dataclass(frozen=True)
class IdentityInstance:
    """An instance the last embed run saw."""

    instance_id: str  # the segment stage's id; standalone: the content hash
    content_hash: str  # sha256 of the cut-out: the vector cache key
    path: str  # the cut-out: relative to the workspace, or absolute
    frame_id: str | None = None
    track_id: str | None = None
    shot_id: str | None = None
    video_id: str | None = None


# -- writers (the embed stage) ----------------------------------------------------------------
def write_vectors(catalog: Catalog, rows: Iterable[tuple[str, str, str, bytes, int]]) -> None:
    """(instance id, model, content hash, float32 little-endian bytes, dim) rows, replacing
    the vector a content hash had under that model."""
    catalog.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)


def replace_instances(catalog: Catalog, instances: Iterable[IdentityInstance], input_root: str | None = None) -> None:
    """The instances of this embed run, replacing the last run's; ``input_root``: a standalone
    run's input folder (the review page may show cut-outs from there)."""
    with catalog.transaction():
        catalog.execute("DELETE FROM identity_instances")
        catalog.conn.executemany(
            "INSERT INTO identity_instances VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r.instance_id, r.content_hash, r.path, r.frame_id, r.track_id, r.shot_id, r.video_id)
             for r in instances],
        )
        if input_root is not None:
            catalog.set_meta(INPUT_ROOT_META, input_root)


# -- readers ----------------------------------------------------------------------------------
def identity_instances(catalog: Catalog) -> list[IdentityInstance]:
    """The instances the last embed run saw, in id order."""
    rows = catalog.rows("SELECT instance_id, content_hash, path, frame_id, track_id, shot_id, video_id "
                        "FROM identity_instances ORDER BY instance_id")
    return [IdentityInstance(**dict(row)) for row in rows]


def cached_hashes(catalog: Catalog, model: str) -> set[str]:
    """Content hashes that have a vector under embedder ``model``."""
    return {row[0] for row in catalog.rows("SELECT content_hash FROM embeddings WHERE model = ?", (model,))}


def load_vectors(catalog: Catalog, model: str) -> tuple[list[str], np.ndarray]:
    """(instance ids, vectors) of the current instances that have a vector for ``model``, by id."""
    import numpy as np

    rows = catalog.rows(
        "SELECT i.instance_id, e.vector, e.dim FROM identity_instances i "
        "JOIN embeddings e ON e.content_hash = i.content_hash AND e.model = ? ORDER BY i.instance_id",
        (model,),
    )
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    vectors = np.stack([np.frombuffer(row["vector"], dtype="<f4") for row in rows]).astype(np.float32)
    return [row["instance_id"] for row in rows], vectors


def instance_vectors(catalog: Catalog, instance_ids: Sequence[str]) -> list[tuple[str, str, bytes]]:
    """(instance id, model, vector bytes) of every vector stored for ``instance_ids`` (any model)."""
    rows: list[Any] = []
    for start in range(0, len(instance_ids), 500):
        chunk = list(instance_ids[start : start + 500])
        rows += catalog.rows(f"SELECT instance_id, model, vector FROM embeddings WHERE instance_id IN "
                             f"({', '.join('?' * len(chunk))})", chunk)
    return [(row["instance_id"], row["model"], bytes(row["vector"])) for row in rows]


def input_root(catalog: Catalog) -> str | None:
    """A standalone embed run's input folder (its cut-outs may be read from there)."""
    return catalog.get_meta(INPUT_ROOT_META)


def vectors(catalog: Catalog, model: str | None, instance_ids: Sequence[str]) -> dict[str, Any]:
    """instance id -> its float32 vector under embedder ``model``, for those that have one."""
    import numpy as np

    placeholders = ",".join("?" * len(instance_ids))
    rows = catalog.rows(
        f"SELECT i.instance_id, e.vector FROM identity_instances i JOIN embeddings e "
        f"ON e.content_hash = i.content_hash AND e.model = ? WHERE i.instance_id IN ({placeholders})",
        (model, *instance_ids),
    )
    return {row[0]: np.frombuffer(row[1], dtype="<f4") for row in rows}


def shot_light_gains(root: Path, model: str | None = None) -> dict[str, list[float]]:
    """shot id -> the light gains (linear RGB) the last embed run of project ``root`` applied
    to that shot's cut-outs, when that run made ``model``'s vectors (any model's when None);
    empty when it did not, applied none, or left no readable report."""
    from animlora.records.folders import stage_folder

    try:
        report = json.loads((Path(root) / stage_folder("embed", root) / REPORT).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(report, dict) or (model is not None and report.get("model") != model):
        return {}
    return dict((report.get("shot_light") or {}).get("gains") or {})
