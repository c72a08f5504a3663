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
from animlora.identity.constraints import _unit_vectors, _units


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
    ids = [i for i in dict.fromkeys([*cluster, *others, *noise]) if i in vectors]
    if not ids:
        return []
    index = {i: k for k, i in enumerate(ids)}
    x = normalise(np.stack([np.asarray(vectors[i], np.float32) for i in ids]))
    tracks = [track_of.get(i) for i in ids]

    def units(members: Sequence[str]) -> list[list[int]]:  # by track, as the clustering pools them
        return _units(np.asarray([index[i] for i in members if i in index], np.int64), tracks)

    own, candidates, rest = units(cluster), units(noise), units(others)
    if not own or not candidates:
        return []
    pooled = _unit_vectors(x, candidates)
    d_own = _nearest(pooled, _unit_vectors(x, own))
    d_other = _nearest(pooled, _unit_vectors(x, rest) if rest else np.zeros((0, x.shape[1]), np.float32))
    out = []
    for k in np.argsort(d_own, kind="stable"):
        if d_own[k] >= d_other[k]:
            continue
        unit = sorted(ids[i] for i in candidates[k])
        margin = None if not np.isfinite(d_other[k]) else round(float(d_other[k] / max(d_own[k], 1e-9)), 3)
        out.append({"instances": unit, "track": track_of.get(unit[0]), "distance": round(float(d_own[k]), 4),
                    "margin": margin})
    return out
