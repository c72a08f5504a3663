"""Suggestions for the review: the noise tracks nearest one cluster, and the clusters most alike.

The clustering leaves in noise what it could not place with confidence; on the Big Buck Bunny
film that is a third of the instances the prefilter keeps, many of them views of the main
characters under an odd light. A reviewer who has merged a character's clusters can take them back a
track at a time: each noise track (its members' normalised mean, as the clustering pools a
track) is measured against the cluster's tracks — the distance to the nearest of them, as
``attach_by_margin`` measures it, since a character's views form a chain across lights rather
than a ball — and against every other cluster's. Tracks nearer this cluster than any other are
offered, nearest first, with that margin, so the page shows what the clustering found most
likely and the reviewer decides.

The second suggestion is for a character the clustering left in several clusters (on the film,
Buck under day, dusk, night and shade light: six folders of 8-44 images): the pairs of clusters
whose nearest tracks are nearest each other — the same chain-across-lights measure — that were
never seen apart in one frame (a cannot-link: one character is not seen twice, apart, in one
frame, and the cluster stage never merges such a pair either). The reviewer merges a pair with
a click or passes; nothing is merged without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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


def _track_space(ids: Sequence[str], vectors: Mapping[str, Any], track_of: Mapping[str, str | None]
                 ) -> tuple[np.ndarray, Callable[[Sequence[str]], list[list[int]]]]:
    """The unit vectors of ``ids`` (rows in that order) and a function giving a set of members'
    units: their rows grouped by track, as the clustering pools them (members not in ``ids``
    left out)."""
    index = {i: k for k, i in enumerate(ids)}
    x = normalise(np.stack([np.asarray(vectors[i], np.float32) for i in ids]))
    tracks = [track_of.get(i) for i in ids]

    def units(members: Sequence[str]) -> list[list[int]]:
        return _units(np.asarray([index[i] for i in members if i in index], np.int64), tracks)

    return x, units


def nearest_noise(cluster: Sequence[str], others: Sequence[str], noise: Sequence[str],
                  vectors: Mapping[str, Any], track_of: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """The noise units (tracks) nearer a track of ``cluster`` than a track of any cluster in
    ``others`` (their members, pooled), nearest first: per unit its instances, track, distance
    to the cluster's nearest track and ``margin`` (the nearest other cluster's distance over
    it; None when there is no other cluster). Instances without a vector are left out."""
    ids = [i for i in dict.fromkeys([*cluster, *others, *noise]) if i in vectors]
    if not ids:
        return []
    x, units = _track_space(ids, vectors, track_of)
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


def alike_clusters(clusters: Mapping[str, Sequence[str]], vectors: Mapping[str, Any],
                   track_of: Mapping[str, str | None],
                   apart: Iterable[tuple[str, str]] = ()) -> tuple[list[dict[str, Any]], int]:
    """Pairs of ``clusters`` (id -> member ids), most alike first: per pair the distance between
    their nearest tracks (each track its members' normalised mean, as the clustering pools them;
    unit sphere, 0..2). Pairs with an instance of each among the ``apart`` pairs (instance ids
    seen apart in one frame: the cluster stage's cannot-links) are left out; returns (pairs as
    ``{"clusters": [a, b], "distance": d}``, how many pairs were left out so). Clusters without
    a vector are not paired."""
    group_of = {i: g for g, members in clusters.items() for i in members}
    held = {tuple(sorted((group_of[i], group_of[j]))) for i, j in apart
            if i in group_of and j in group_of and group_of[i] != group_of[j]}
    ids = [i for i in group_of if i in vectors]
    if not ids:
        return [], 0
    x, units = _track_space(ids, vectors, track_of)
    pooled = {g: _unit_vectors(x, u) for g, members in clusters.items() if (u := units(members))}
    names = sorted(pooled)
    pairs, left_out = [], 0
    for n, a in enumerate(names):
        for b in names[n + 1 :]:
            if (a, b) in held:
                left_out += 1
                continue
            distance = float(_nearest(pooled[a], pooled[b]).min())
            pairs.append({"clusters": [a, b], "distance": round(distance, 4)})
    pairs.sort(key=lambda p: (p["distance"], p["clusters"]))
    return pairs, left_out
