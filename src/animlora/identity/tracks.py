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

After clustering, :func:`settle_jumps` moves the part of a track that the tracker carried
onto another character (a jump in the boxes) to that character's cluster, when the part is
clearly nearer that cluster's centre than its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from animlora.boxes import box_iou
from animlora.identity.clustering import NOISE, normalise
from animlora.identity.geometry import partners_of

SPLIT_DISTANCE = 0.2  # cosine distance (average linkage) at which a track's members are two characters
OUTLIER_MADS = 3.0
OUTLIER_FLOOR = 0.05  # a member this close (in cosine) to the track's median is never an outlier
SHRINK = 0.2
# a tracker's jump onto another character, judged after clustering (settle_jumps): consecutive
# members whose boxes overlap less than JUMP_IOU with JUMP_AREA x the area cut a track into parts;
# a part whose own cluster's centre is MOVE_RATIO x farther than another cluster's moves there
JUMP_IOU = 0.3
JUMP_AREA = 2.0
MOVE_RATIO = 1.5


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


def frame_number(frame_id: str | None) -> int | None:
    """The frame's index in its video (frame ids are ``<video>_f<index>``), or None."""
    if not frame_id:
        return None
    _, sep, tail = frame_id.rpartition("_f")
    return int(tail) if sep and tail.isdigit() else None


def box_jump(a: Sequence[float] | None, b: Sequence[float] | None, iou: float = JUMP_IOU) -> bool:
    """Two boxes ``[x, y, w, h]`` of one track that are not one thing moving: they overlap
    less than ``iou`` and one has ``JUMP_AREA`` times the other's area or more (``iou`` inf:
    the change of size alone)."""
    if a is None or b is None:
        return False
    area_a, area_b = float(a[2]) * float(a[3]), float(b[2]) * float(b[3])
    if min(area_a, area_b) <= 0:
        return False
    return box_iou(a, b) < iou and max(area_a, area_b) >= JUMP_AREA * min(area_a, area_b)


def jump_cuts(idx: Sequence[int], frames: Sequence[str | None],
              boxes: Sequence[Sequence[float] | None], iou: float = JUMP_IOU) -> list[list[int]]:
    """One track's members in frame order, cut between two consecutive members of different
    frames whose boxes jump (:func:`box_jump` with ``iou``). One part when the track never jumps."""
    order = sorted(idx, key=lambda i: (frame_number(frames[i]) is None, frame_number(frames[i]) or 0,
                                       frames[i] or "", i))
    parts: list[list[int]] = []
    for k, i in enumerate(order):
        prev = order[k - 1] if k else None
        if prev is None or (frames[prev] != frames[i] and box_jump(boxes[prev], boxes[i], iou)):
            parts.append([])
        parts[-1].append(i)
    return parts


def part_distances(x: np.ndarray, sums: dict[int, np.ndarray], centres: dict[int, np.ndarray], lab: int,
                   part: Sequence[int]) -> tuple[float, float, int] | None:
    """Cosine distances of a part's mean (rows of the normalised ``x``) to its cluster ``lab``'s
    centre taken without the part, and to the nearest other cluster's centre, with that cluster
    (``sums``: each cluster's sum of rows, ``centres``: their normalised means). None when
    nothing of the cluster is left without the part."""
    rest = sums[lab] - x[part].sum(0)
    if np.linalg.norm(rest) == 0:
        return None
    mean = normalise(x[part].mean(0, keepdims=True))[0]
    d_other, other = min((1.0 - float(mean @ centres[b]), b) for b in centres if b != lab)
    return 1.0 - float(mean @ normalise(rest[None])[0]), d_other, other


def settle_jumps(
    x: np.ndarray,
    labels: np.ndarray,
    track_ids: Sequence[str | None],
    frames: Sequence[str | None],
    boxes: Sequence[Sequence[float] | None],
    cannot: frozenset[tuple[int, int]] = frozenset(),
    ratio: float = MOVE_RATIO,
) -> tuple[np.ndarray, list[dict]]:
    """After clustering: the part of a track that the tracker carried onto another character
    moves to that character's cluster. Two cues together, so that a zoom-in (the boxes jump,
    the look does not) or a change of light (the look changes, the boxes do not) moves nothing:

    1. the track is cut into parts at every jump of its boxes (:func:`jump_cuts`);
    2. a part whose members share one cluster moves to another cluster when the cosine distance
       of its mean to its own cluster's centre (its own members left out) is at least ``ratio``
       times the distance to that other cluster's centre, the nearest, and no cannot-link joins
       the part to it.

    Must-link glued such a part to the rest of its track before (a track is clustered as one
    unit), which (:func:`split_tracks`) does not undo when in-between views bridge the two
    characters. Judged once, on the clusters as they are (centres are not updated between
    moves). Returns (labels, moves: track, frames, from, to, the two distances)."""
    out = labels.copy()
    x = normalise(x)
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        if track:
            members[track].append(i)
    ids = [int(v) for v in np.unique(labels) if v != NOISE]
    if len(ids) < 2:
        return out, []
    sums = {lab: x[labels == lab].sum(0) for lab in ids}
    centres = {lab: normalise(v[None])[0] for lab, v in sums.items()}
    partners = partners_of(cannot)
    moves: list[dict] = []
    for track in sorted(members):
        parts = jump_cuts(members[track], frames, boxes)
        if len(parts) < 2:
            continue
        for part in parts:
            own = {int(labels[i]) for i in part}
            if len(own) != 1 or NOISE in own:
                continue
            lab = own.pop()
            if len(part) >= int((labels == lab).sum()) or (found := part_distances(x, sums, centres, lab, part)) is None:
                continue
            d_own, d_other, other = found
            if d_own < ratio * max(d_other, 1e-6):
                continue
            if any(int(labels[j]) == other for i in part for j in partners[i]):
                continue
            out[part] = other
            moves.append({"track": track, "frames": [frames[part[0]], frames[part[-1]]], "instances": len(part),
                          "from": lab, "to": other, "own": round(d_own, 4), "other": round(d_other, 4)})
    return out, moves
