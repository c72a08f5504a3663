"""Suggestions for the review: the noise tracks nearest one cluster.

The clustering leaves in noise what it could not place with confidence; on the Big Buck Bunny
film that is a third of the instances the prefilter keeps, many of them views of the main
characters under an odd light. A reviewer who has merged a character's clusters can take them back a
track at a time: each noise track (its members' normalised mean, as the clustering pools a
track) is measured against the cluster's tracks — the distance to the nearest of them, as
``attach_by_margin`` measures it, since a character's views form a chain across lights rather
than a ball — and against every other cluster's. Tracks nearer this cluster than any other are
offered, nearest first, with that margin, so the page shows what the clustering found most
likely and the reviewer decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from animlora.identity.clustering import normalise


def _units(ids: Sequence[str], vectors: Mapping[str, Any], track_of: Mapping[str, str | None]) -> list[list[str]]:
    """Instances with a vector, grouped by track (an instance without a track is its own unit)."""
    units: dict[str, list[str]] = {}
    for i in ids:
        if i in vectors:
            units.setdefault(track_of.get(i) or f"#{i}", []).append(i)
    return list(units.values())


def _pooled(units: list[list[str]], vectors: Mapping[str, Any]) -> np.ndarray:
    """One row per unit: the normalised mean of its members' normalised vectors."""
    rows = normalise(np.stack([np.asarray(vectors[i], np.float32) for u in units for i in u]))
    owner = np.repeat(np.arange(len(units)), [len(u) for u in units])
    sums = np.zeros((len(units), rows.shape[1]), np.float32)
    np.add.at(sums, owner, rows)
    return normalise(sums)


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per row of ``a``, the euclidean distance (unit sphere) to the nearest row of ``b``
    (``chunk`` rows of ``a`` at a time: a 30k-instance project stays within a few MB)."""
    if not len(b):
        return np.full(len(a), np.inf)
    best = np.concatenate([(a[k : k + chunk] @ b.T).max(1) for k in range(0, len(a), chunk)])
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * best))


def nearest_noise(cluster: Sequence[str], others: Sequence[str], noise: Sequence[str],
                  vectors: Mapping[str, Any], track_of: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """The noise units (tracks) nearer a track of ``cluster`` than a track of any cluster in
    ``others`` (their members, pooled), nearest first: per unit its instances, track, distance
    to the cluster's nearest track and ``margin`` (the nearest other cluster's distance over
    it; None when there is no other cluster). Instances without a vector are left out."""
    own = _units(cluster, vectors, track_of)
    candidates = _units(noise, vectors, track_of)
    if not own or not candidates:
        return []
    x = _pooled(candidates, vectors)
    d_own = _nearest(x, _pooled(own, vectors))
    rest = _units(others, vectors, track_of)
    d_other = _nearest(x, _pooled(rest, vectors) if rest else np.zeros((0, x.shape[1]), np.float32))
    out = []
    for k in np.argsort(d_own, kind="stable"):
        if d_own[k] >= d_other[k]:
            continue
        unit = sorted(candidates[k])
        margin = None if not np.isfinite(d_other[k]) else round(float(d_other[k] / max(d_own[k], 1e-9)), 3)
        out.append({"instances": unit, "track": track_of.get(unit[0]), "distance": round(float(d_own[k]), 4),
                    "margin": margin})
    return out
