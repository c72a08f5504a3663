"""The cluster stage's records: ``clusters`` (the base clustering, before review),
``cluster_assignments`` (instance -> cluster, with its distance to the centroid),
``identity_distances`` (per instance, the distances the clustering decided on, so bounds can
be re-tuned from the catalog) and the meta key ``identity.model`` (the embedder clustered on).

``clusters`` and ``cluster_assignments`` are made by migration ``0200_identity``;
``identity_distances`` by :data:`MIGRATION` (catalogs of earlier releases got it from the
cluster stage itself, with the same columns: the migration leaves theirs as it is).
Written by :class:`animlora.stages.cluster.ClusterStage` (:func:`write_clustering`,
:func:`clear`); read by the review (:mod:`animlora.identity.decisions`, :mod:`animlora.review.service`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

MODEL_META = "identity.model"

# A named catalog migration (listed in catalog.MIGRATIONS). IF NOT EXISTS: a catalog whose
# cluster stage already made the table keeps it and its rows.
MIGRATION = (
    "0210_identity_distances",
    """
    CREATE TABLE IF NOT EXISTS identity_distances (
        instance_id TEXT PRIMARY KEY,
        track_id TEXT,
        track_outlier INTEGER NOT NULL,   -- left out of its track's pooled vector (keeps its own)
        to_track REAL,                    -- 1 - cosine to its track's pooled vector
        cluster_id TEXT NOT NULL,         -- as in cluster_assignments ('noise' for noise)
        to_cluster REAL,                  -- 1 - cosine to its cluster's centroid (NULL for noise)
        nearest_other TEXT,               -- the nearest other cluster's id
        to_other REAL                     -- 1 - cosine to that centroid
    )
    """,
)


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    size: int
    medoid_instance_id: str | None
    cohesion: float | None
    is_noise: bool


# -- writers (the cluster stage) --------------------------------------------------------------
def write_clustering(catalog: Catalog, clusters: Iterable[dict[str, Any]],
                     assignments: Iterable[tuple[str, str, float | None]], distances: Iterable[Sequence[Any]],
                     model: str) -> None:
    """A clustering, replacing the last: ``clusters`` rows (column -> value), assignments
    (instance id, cluster id, distance to its centroid), ``identity_distances`` rows (in
    column order) and the embedder key it clustered on."""
    catalog.execute("DELETE FROM clusters")
    catalog.execute("DELETE FROM cluster_assignments")
    catalog.upsert("clusters", clusters)
    catalog.conn.executemany("INSERT INTO cluster_assignments VALUES (?, ?, ?)", assignments)
    catalog.execute("DELETE FROM identity_distances")
    catalog.conn.executemany("INSERT INTO identity_distances VALUES (?, ?, ?, ?, ?, ?, ?, ?)", distances)
    catalog.set_meta(MODEL_META, model)


def clear(catalog: Catalog, distances: bool = True) -> None:
    """Drop the clustering (and, with ``distances``, the distances it decided on)."""
    catalog.execute("DELETE FROM clusters")
    catalog.execute("DELETE FROM cluster_assignments")
    if distances:
        catalog.execute("DELETE FROM identity_distances")


# -- readers ----------------------------------------------------------------------------------
def clusters(catalog: Catalog) -> list[Cluster]:
    """The base clustering's clusters (noise included), in the order the stage wrote them."""
    rows = catalog.rows("SELECT id, name, size, medoid_instance_id, cohesion, is_noise FROM clusters")
    return [Cluster(id=r["id"], name=r["name"], size=r["size"], medoid_instance_id=r["medoid_instance_id"],
                    cohesion=r["cohesion"], is_noise=bool(r["is_noise"])) for r in rows]


def count_clusters(catalog: Catalog) -> int:
    row = catalog.one("SELECT COUNT(*) FROM clusters")
    return int(row[0]) if row else 0


def assignments(catalog: Catalog) -> dict[str, str]:
    """instance id -> cluster id of the base clustering."""
    return {row[0]: row[1] for row in catalog.rows("SELECT instance_id, cluster_id FROM cluster_assignments")}


def nearest_others(catalog: Catalog, cluster_id: str) -> dict[str, str]:
    """instance id -> the id of the nearest other cluster, for the instances the base clustering
    put in ``cluster_id`` (``identity_distances.nearest_other``; instances without one left out)."""
    return {row[0]: row[1] for row in catalog.rows(
        "SELECT instance_id, nearest_other FROM identity_distances WHERE cluster_id = ? AND nearest_other IS NOT NULL",
        (cluster_id,))}


def assignment_distances(catalog: Catalog) -> dict[str, float | None]:
    """instance id -> cosine distance to its cluster's centroid (None where none was measured)."""
    return {row[0]: row[1] for row in catalog.rows("SELECT instance_id, distance FROM cluster_assignments")}


def clustered_model(catalog: Catalog) -> str | None:
    """The embedder key the clustering used (None before the first clustering)."""
    return catalog.get_meta(MODEL_META)
