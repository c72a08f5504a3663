"""Track and frame constraints on a clustering, and merging over-split clusters.

- must-link: the instances of one track are one character, so a track takes the cluster most
  of its members got (noise only when most of them are noise);
- cannot-link: two instances of one frame are two characters, so a cluster holding both is
  split (constrained 2-means seeded by the conflicting pairs, by track);
- merge: HDBSCAN splits one character shown under two lights into two dense clusters; two
  clusters whose centroids are more similar than a bound, and that never share a frame, are
  one character.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from animlora.identity.clustering import NOISE, normalise


def apply_must_link(labels: np.ndarray, track_ids: Sequence[str | None]) -> tuple[np.ndarray, int]:
    """Give every member of a track the track's majority label; return (labels, instances moved)."""
    out = labels.copy()
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        if track:
            members[track].append(i)
    moved = 0
    for idx in members.values():
        if len(idx) < 2:
            continue
        votes = Counter(int(labels[i]) for i in idx)
        # ties: prefer a real cluster over noise, then the smaller label (the larger cluster)
        best = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0] == NOISE, kv[0]))[0][0]
        for i in idx:
            if out[i] != best:
                out[i] = best
                moved += 1
    return out, moved


def _units(idx: np.ndarray, track_ids: Sequence[str | None]) -> list[list[int]]:
    """Instances grouped by track (an instance without a track is its own unit)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        groups[track_ids[i] or f"#{i}"].append(int(i))
    return list(groups.values())


def _conflicts(idx: Sequence[int], frame_ids: Sequence[str | None]) -> dict[str, list[int]]:
    by_frame: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        if frame_ids[i]:
            by_frame[frame_ids[i]].append(int(i))
    return {f: m for f, m in by_frame.items() if len(m) > 1}


def split_cannot_link(
    x: np.ndarray,
    labels: np.ndarray,
    frame_ids: Sequence[str | None],
    track_ids: Sequence[str | None],
    min_cluster_size: int,
) -> tuple[np.ndarray, int]:
    """Split every cluster that holds two instances of one frame; return (labels, clusters split)."""
    x = normalise(x)
    out = labels.copy()
    next_label = int(out.max()) + 1 if len(out) else 0
    split = 0
    for lab in sorted(int(v) for v in np.unique(labels) if v != NOISE):
        idx = np.nonzero(out == lab)[0]
        conflicts = _conflicts(idx, frame_ids)
        if not conflicts:
            continue
        split += 1
        k = max(len(m) for m in conflicts.values())
        units = _units(idx, track_ids)
        unit_vec = normalise(np.stack([x[u].mean(0) for u in units]))
        unit_of = {i: n for n, u in enumerate(units) for i in u}
        # seeds: the members of the most crowded frame, one per part
        seed_frame = max(conflicts.items(), key=lambda kv: (len(kv[1]), kv[0]))[1][:k]
        centroids = np.stack([unit_vec[unit_of[i]] for i in seed_frame])
        assign = np.zeros(len(units), np.int64)
        for _ in range(20):
            new = np.argmax(unit_vec @ centroids.T, axis=1)
            for part, i in enumerate(seed_frame):  # seeds stay in their own part
                new[unit_of[i]] = part
            if np.array_equal(new, assign) and _ > 0:
                break
            assign = new
            for part in range(k):
                if (assign == part).any():
                    centroids[part] = normalise(unit_vec[assign == part].mean(0, keepdims=True))[0]
        # repair what 2-means left in conflict: the unit farther from the centroid moves to the
        # most similar part without that frame, or to noise
        part_of = {i: int(assign[unit_of[i]]) for i in idx}
        final = dict(part_of)
        for members in conflicts.values():
            by_part: dict[int, list[int]] = defaultdict(list)
            for i in members:
                by_part[final[i]].append(i)
            for part, clash in by_part.items():
                if len(clash) < 2:
                    continue
                clash.sort(key=lambda i: -float(x[i] @ centroids[part]))
                for i in clash[1:]:
                    used = {final[j] for j in members if j != i}
                    options = [p for p in np.argsort(-(centroids @ x[i])) if int(p) not in used]
                    final[i] = int(options[0]) if options else -2  # -2: to noise
        for part in range(k):
            members = [i for i in idx if final[i] == part]
            target = lab if part == 0 else next_label
            if part > 0:
                next_label += 1
            for i in members:
                out[i] = target if len(members) >= min_cluster_size else NOISE
        for i in idx:
            if final[i] == -2:
                out[i] = NOISE
    return out, split


def merge_similar(
    x: np.ndarray, labels: np.ndarray, frame_ids: Sequence[str | None], bound: float
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Merge clusters whose centroids' cosine similarity exceeds ``bound`` (most similar pair
    first) unless they share a frame; return (labels, merges as (kept, absorbed, similarity))."""
    out = labels.copy()
    if bound >= 1.0:
        return out, []
    x = normalise(x)
    ids = [int(v) for v in np.unique(out) if v != NOISE]
    sums = {lab: x[out == lab].sum(0) for lab in ids}
    frames = {lab: {frame_ids[i] for i in np.nonzero(out == lab)[0] if frame_ids[i]} for lab in ids}
    merges = []
    while len(ids) > 1:
        cent = normalise(np.stack([sums[lab] for lab in ids]))
        sim = cent @ cent.T
        np.fill_diagonal(sim, -np.inf)
        best = None
        for flat in np.argsort(-sim, axis=None):
            a, b = divmod(int(flat), len(ids))
            if sim[a, b] <= bound:
                break
            if a < b and not (frames[ids[a]] & frames[ids[b]]):
                best = (a, b)
                break
        if best is None:
            break
        keep, gone = sorted((ids[best[0]], ids[best[1]]), key=lambda lab: (-(out == lab).sum(), lab))
        merges.append((keep, gone, float(sim[best])))
        out[out == gone] = keep
        sums[keep] = sums[keep] + sums.pop(gone)
        frames[keep] |= frames.pop(gone)
        ids.remove(gone)
    return out, merges
