"""Tracks as the unit of identity: one robust vector per track, instances drawn towards it.

A track is many views of one character in one shot. Its members' embeddings scatter with
pose and framing; their robust mean is a steadier description of the character than any
one view. Pooling:

1. the mean of the track's L2-normalised vectors, then the members' cosine to it;
2. a member whose cosine is below ``median - OUTLIER_MADS * MAD`` (and below
   ``OUTLIER_FLOOR``-close to the median) is an *outlier*: most often a tracking slip (a
   neighbour's instance joined the track) or a partial view; it is left out of the mean and
   keeps its own vector and its own cluster (must-link skips it);
3. the mean of the rest is the track's vector.

Clustering runs on the instances with each inlier pulled onto its track's vector
(``x' = normalise(m + shrink * (x - m))``, shrink 0.2): HDBSCAN then sees one tight clump
per track, so tracks are what get linked, while ``min_cluster_size`` still counts instances,
as users of the original pipeline know it (it works as a weight: a long track counts more).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from animlora.identity.clustering import normalise

SPLIT_DISTANCE = 0.2  # cosine distance (average linkage) at which a track's members are two characters
OUTLIER_MADS = 3.0
OUTLIER_FLOOR = 0.05  # a member this close (in cosine) to the track's median is never an outlier
SHRINK = 0.2


@dataclass(frozen=True)
class TrackPool:
    unit: np.ndarray  # per instance: index of its unit (a track's inliers share one; others alone)
    unit_vectors: np.ndarray  # (units, d) L2-normalised
    outlier: np.ndarray  # per instance: left out of its track's mean
    to_unit: np.ndarray  # per instance: 1 - cosine to its track's pooled vector (0 for lone instances)
    unit_size: np.ndarray  # per instance: inliers in its unit

    @property
    def tracks(self) -> int:
        return int(len(self.unit_vectors))


def pool_tracks(x: np.ndarray, track_ids: Sequence[str | None]) -> TrackPool:
    """Robust per-track vectors (see module doc)."""
    x = normalise(x)
    n = len(x)
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        members[track or f"#{i}"].append(i)
    unit = np.zeros(n, np.int64)
    outlier = np.zeros(n, bool)
    to_unit = np.zeros(n, np.float32)
    unit_size = np.ones(n, np.int64)
    vectors: list[np.ndarray] = []
    for key in sorted(members):
        idx = np.asarray(members[key])
        mean = normalise(x[idx].mean(0, keepdims=True))[0]
        keep = np.ones(len(idx), bool)
        if len(idx) >= 3:
            sims = x[idx] @ mean
            med = float(np.median(sims))
            mad = float(np.median(np.abs(sims - med)))
            keep = sims >= min(med - OUTLIER_MADS * 1.4826 * mad, med - OUTLIER_FLOOR)
            if keep.sum() < 2:
                keep[:] = True
            mean = normalise(x[idx[keep]].mean(0, keepdims=True))[0]
        inliers, strays = idx[keep], idx[~keep]
        unit[inliers] = len(vectors)
        unit_size[inliers] = len(inliers)
        vectors.append(mean)
        to_unit[idx] = 1.0 - x[idx] @ mean
        for i in strays:  # a lone unit of its own
            outlier[i] = True
            unit[i] = len(vectors)
            vectors.append(x[i])
    return TrackPool(unit, np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, x.shape[1]), np.float32),
                     outlier, to_unit, unit_size)


def split_tracks(x: np.ndarray, track_ids: Sequence[str | None], bound: float = SPLIT_DISTANCE) -> list[str | None]:
    """Track ids with every track whose members form groups further apart than ``bound``
    (average-linkage cosine distance) split into one sub-track per group (``<track>#<k>``).

    A tracker that follows a character's head into another character's body (cgi-bench seed
    3: a track of 2 green_boy and 5 fox instances, 0.24-0.49 apart, while one character's
    members of one track are within 0.15 of each other, 0.28 at most) would otherwise make
    must-link glue two characters. Groups are kept in order of their first member."""
    x = normalise(x)
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        if track:
            members[track].append(i)
    out = list(track_ids)
    if bound <= 0:
        return out
    for track, idx in members.items():
        if len(idx) < 2:
            continue
        from scipy.cluster.hierarchy import fcluster, linkage

        d = np.clip(1 - x[idx] @ x[idx].T, 0, 2)
        condensed = d[np.triu_indices(len(idx), 1)]
        if condensed.max() <= bound:
            continue
        groups = fcluster(linkage(condensed, "average"), bound, criterion="distance")
        if len(set(groups)) == 1:
            continue
        order = {g: k for k, g in enumerate(dict.fromkeys(groups.tolist()))}
        for i, g in zip(idx, groups.tolist(), strict=True):
            out[i] = f"{track}#{order[g]}"
    return out


def pulled(x: np.ndarray, pool: TrackPool, shrink: float = SHRINK) -> np.ndarray:
    """Each instance pulled onto its unit's vector: ``normalise(m + shrink * (x - m))``."""
    x = normalise(x)
    m = pool.unit_vectors[pool.unit]
    return normalise(m + shrink * (x - m))
