"""Still tracks: a track unchanged relative to the set in every frame joins only a character
that moves somewhere in the film.

Segment measures, per instance, the share of its pixels unchanged relative to the set in the
registered neighbouring frames (``static``). Rigid scenery — a tree, a house, a rock — is
unchanged in every frame; so is a character standing idle (on cgi-bench idle characters
measure 0.99-1.0, like the props), so stillness cannot reject an instance on its own. What
the video does tell: a character *animates somewhere*. So:

1. the clustering runs on the tracks that are not still (moving, or unknown) only: still
   tracks never found a cluster of their own — a group of trees is not a character;
2. each still track (its pooled vector) then joins the nearest cluster when it is as close
   to that cluster's tracks as they are to each other (``slack`` (1) x the cluster's linkage
   scale: the largest distance from one of its tracks to its nearest fellow track; the
   median over clusters for a one-track cluster); else it is left out as scenery (noise).

A track is still when every member whose ``static`` is known is still (and one is known);
an instance with no track is a unit of its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

import numpy as np

from animlora.identity.clustering import NOISE, normalise

SLACK = 1.0  # seed 2: 1.0 -> ARI 0.87, min purity 0.78; 1.5 -> 0.66 / 0.57; 2.0 -> 0.66 / 0.57
FALLBACK_SCALE = 0.0  # no cluster has two tracks to measure a scale on: no evidence, still tracks stay scenery


def still_units(track_ids: Sequence[str | None], still: Sequence[bool | None]) -> np.ndarray:
    """Per instance: whether its track (or the instance alone) is still."""
    known: dict[str, list[bool]] = defaultdict(list)
    for i, (track, flag) in enumerate(zip(track_ids, still, strict=True)):
        if flag is not None:
            known[track or f"#{i}"].append(bool(flag))
    return np.array([bool(known.get(track or f"#{i}")) and all(known[track or f"#{i}"])
                     for i, track in enumerate(track_ids)], bool)


def _units(track_ids: Sequence[str | None], rows: np.ndarray) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i in rows:
        out[track_ids[i] or f"#{i}"].append(int(i))
    return out


def join_still(x: np.ndarray, labels: np.ndarray, is_still: np.ndarray, track_ids: Sequence[str | None],
               slack: float = SLACK, only: Collection[int] | None = None) -> tuple[np.ndarray, dict]:
    """``labels`` (from clustering the moving instances; still ones NOISE) with each still
    track joined to the nearest cluster within its scale, or left NOISE. ``only``: the clusters
    a still track may join when nearest (every cluster when None); then only still tracks in
    noise are judged, the others keep their cluster. Returns (labels, info)."""
    labels = labels.copy()
    x = normalise(x)
    judged = is_still & (labels == NOISE) if only is not None else is_still
    moving = np.nonzero(~is_still & (labels != NOISE))[0]
    # per cluster: its tracks' vectors and its linkage scale
    tracks_of: dict[int, list[np.ndarray]] = defaultdict(list)
    for members in _units(track_ids, moving).values():
        lab = Counter(labels[members].tolist()).most_common(1)[0][0]
        tracks_of[lab].append(normalise(x[members].mean(0, keepdims=True))[0])
    scale: dict[int, float] = {}
    for lab, vecs in tracks_of.items():
        if len(vecs) >= 2:
            v = np.stack(vecs)
            d = 1 - v @ v.T
            np.fill_diagonal(d, np.inf)
            scale[lab] = float(d.min(1).max())
    typical = float(np.median(list(scale.values()))) if scale else FALLBACK_SCALE
    joined = left = 0
    for members in _units(track_ids, np.nonzero(judged)[0]).values():
        labels[members] = NOISE
        if not tracks_of:
            left += len(members)
            continue
        v = normalise(x[members].mean(0, keepdims=True))[0]
        best, dist = NOISE, np.inf
        for lab, vecs in tracks_of.items():
            d = float((1 - np.stack(vecs) @ v).min())
            if d < dist:
                best, dist = lab, d
        if dist <= slack * scale.get(best, typical) and (only is None or best in only):
            labels[members] = best
            joined += len(members)
        else:
            left += len(members)
    return labels, {"still_instances": int(judged.sum()), "still_joined": joined, "still_left_out": left,
                    "scale": {str(k): round(v, 4) for k, v in sorted(scale.items())}, "typical_scale": round(typical, 4)}
