"""The embed stage's records: ``identity_instances`` (the instances the identity stages
work on, with their cut-out and content hash), ``embeddings`` (one vector per cut-out
content and embedder, the cache key) and the meta key ``identity.input_root`` (a
standalone run's input folder). Made by migration ``0200_identity``.

Written by :class:`animlora.stages.embed.EmbedStage` (its writers and the cluster stage's
reader move here in a later pass); read by the review (:mod:`animlora.review.service`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

INPUT_ROOT_META = "identity.input_root"


def instance_paths(catalog: Catalog) -> dict[str, str]:
    """instance id -> its cut-out (relative to the workspace, or absolute standalone)."""
    return {row[0]: row[1] for row in catalog.rows("SELECT instance_id, path FROM identity_instances")}


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
