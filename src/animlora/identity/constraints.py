"""Track and frame constraints on a clustering, and merging over-split clusters.

- must-link: the instances of one track are one character, so a track takes the cluster most
  of its members got (noise only when most of them are noise); a member that does not look
  like the rest of its track (a tracking slip, see identity/tracks.py) keeps its own label;
- cannot-link: two instances of one frame that do not touch, of different tracks that are not
  attached, are two characters (identity/geometry.py), so a cluster holding both is split
  (constrained k-means over tracks seeded by the conflicting instances);
- merge: HDBSCAN splits one character shown under two lights into two dense clusters; two
  clusters whose centroids are more similar than a bound, and that hold no cannot-link pair,
  are one character;
- parts: a cluster most of whose instances touch an instance of another cluster in their frame
  is a part of that character (a head cut from its body) and joins it;
- noise: a noise track within one cluster's own spread (and no other's), with no cannot-link
  to it, joins it (``attach_noise``); ``join_by_tracks`` (off by default) joins two clusters
  whose most similar tracks are nearly one;
- last, a part of a track nearer another cluster's centre than its own
  (``drop_nearer_elsewhere``) goes to noise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from animlora.identity.clustering import NOISE, normalise
from animlora.identity.geometry import Constraints, build_constraints, partners_of
from animlora.identity.still import join_still
from animlora.identity.tracks import jump_cuts, part_distances


def apply_must_link(
    labels: np.ndarray, track_ids: Sequence[str | None], outliers: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Give every member of a track the track's majority label; return (labels, instances moved).
    Members flagged in ``outliers`` do not vote, and follow only when they fell in noise (a
    tracking slip that landed in another character's cluster stays there; a frame under an odd
    light that fits nothing follows its track)."""
    out = labels.copy()
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        if track:
            members[track].append(i)
    moved = 0
    for idx in members.values():
        if len(idx) < 2:
            continue
        voters = [i for i in idx if outliers is None or not outliers[i]] or idx
        votes = Counter(int(labels[i]) for i in voters)
        # ties: prefer a real cluster over noise, then the smaller label (the larger cluster)
        best = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0] == NOISE, kv[0]))[0][0]
        for i in idx:
            if outliers is not None and outliers[i] and labels[i] != NOISE:
                continue
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


def _unit_vectors(x: np.ndarray, units: list[list[int]]) -> np.ndarray:
    """One vector per unit: the normalised mean of its members' rows of ``x``."""
    return normalise(np.stack([x[u].mean(0) for u in units]))


def _seed_clique(units: list[list[int]], unit_conflicts: dict[int, set[int]]) -> list[int]:
    """A greedy clique of mutually conflicting units: the most-conflicted first."""
    order = sorted(unit_conflicts, key=lambda u: (-len(unit_conflicts[u]), u))
    best: list[int] = []
    for start in order:
        clique = [start]
        for other in sorted(unit_conflicts[start], key=lambda u: (-len(unit_conflicts[u]), u)):
            if all(other in unit_conflicts[c] for c in clique):
                clique.append(other)
        if len(clique) > len(best):
            best = clique
    return best


def split_cannot_link(
    x: np.ndarray,
    labels: np.ndarray,
    frame_ids: Sequence[str | None],
    track_ids: Sequence[str | None],
    min_cluster_size: int,
    constraints: Constraints | None = None,
) -> tuple[np.ndarray, int]:
    """Split every cluster that holds a cannot-link pair; return (labels, clusters split).
    Without ``constraints``, any two instances of one frame are a cannot-link (no geometry)."""
    x = normalise(x)
    constraints = constraints or build_constraints(frame_ids, track_ids)
    cannot_of = partners_of(constraints.cannot)
    out = labels.copy()
    next_label = int(out.max()) + 1 if len(out) else 0
    split = 0
    for lab in sorted(int(v) for v in np.unique(labels) if v != NOISE):
        idx = np.nonzero(out == lab)[0]
        inside = set(int(i) for i in idx)
        pairs = [(i, j) for i in idx for j in cannot_of.get(int(i), ()) if j in inside and i < j]
        if not pairs:
            continue
        split += 1
        units = _units(idx, track_ids)
        unit_of = {i: n for n, u in enumerate(units) for i in u}
        unit_conflicts: dict[int, set[int]] = defaultdict(set)
        for i, j in pairs:
            if unit_of[i] != unit_of[j]:
                unit_conflicts[unit_of[i]].add(unit_of[j])
                unit_conflicts[unit_of[j]].add(unit_of[i])
        unit_vec = _unit_vectors(x, units)
        seeds = _seed_clique(units, unit_conflicts) if unit_conflicts else []
        if len(seeds) < 2:  # the conflict is inside one track: its farther member goes to noise
            for i, j in pairs:
                far = i if float(x[i] @ unit_vec[unit_of[i]]) < float(x[j] @ unit_vec[unit_of[j]]) else j
                out[far] = NOISE
            continue
        k = len(seeds)
        centroids = unit_vec[seeds].copy()
        assign = np.zeros(len(units), np.int64)
        for step in range(20):
            new = np.argmax(unit_vec @ centroids.T, axis=1)
            new[seeds] = np.arange(k)  # seeds stay in their own part
            if step > 0 and np.array_equal(new, assign):
                break
            assign = new
            for part in range(k):
                if (assign == part).any():
                    centroids[part] = normalise(unit_vec[assign == part].mean(0, keepdims=True))[0]
        # repair what k-means left in conflict: the unit farther from its part's centroid moves
        # to the most similar part holding nothing it conflicts with, or to noise
        final = {u: int(assign[u]) for u in range(len(units))}
        for u in sorted(unit_conflicts, key=lambda u: -float(unit_vec[u] @ centroids[final[u]])):
            if final[u] < 0:
                continue
            clash = [v for v in unit_conflicts[u] if final[v] == final[u]]
            if not clash:
                continue
            rivals = [u, *clash]
            rivals.sort(key=lambda v: -float(unit_vec[v] @ centroids[final[v]]))
            for v in rivals[1:]:
                used = {final[w] for w in unit_conflicts[v]}
                options = [int(p) for p in np.argsort(-(centroids @ unit_vec[v])) if int(p) not in used]
                final[v] = options[0] if options else -2  # -2: noise
        for part in range(k):
            members = [i for u, p in final.items() if p == part for i in units[u]]
            target = lab if part == 0 else next_label
            if part > 0:
                next_label += 1
            for i in members:
                out[i] = target if len(members) >= min_cluster_size else NOISE
        for u, p in final.items():
            if p == -2:
                out[units[u]] = NOISE
    return out, split


def _pairs_between(labels: np.ndarray, pairs: frozenset[tuple[int, int]]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for i, j in pairs:
        a, b = int(labels[i]), int(labels[j])
        if a != NOISE and b != NOISE and a != b:
            counts[(min(a, b), max(a, b))] += 1
    return counts


def merge_similar(
    x: np.ndarray,
    labels: np.ndarray,
    frame_ids: Sequence[str | None],
    bound: float,
    constraints: Constraints | None = None,
    light: np.ndarray | None = None,
    light_bound: float = 0.0,
    close: np.ndarray | None = None,
    track_ids: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Merge clusters whose centroids' cosine similarity exceeds ``bound`` (most similar pair
    first) unless a cannot-link pair joins them (without ``constraints``: unless they share a
    frame); return (labels, merges as (kept, absorbed, similarity)).

    With ``light`` (per instance, the log of its shot's light-correction gains), two clusters
    both seen in plain light (the mean over their members of the strongest log gain applied,
    within ``light_bound``: no strong cast found in most of their shots) do not merge: the
    merge exists for one character that HDBSCAN split by light, and two clusters under the
    same plain light that HDBSCAN kept apart are most often two characters (on Big Buck
    Bunny, centroids of two characters reached 0.966 while two clusters of Buck were at
    0.945). The mean is of each member's cast *strength*, not of the signed gains: a
    cluster from a sunset shot and a night shot has signed gains that cancel out (warm
    against cool) and was taken for a plain-light one (cgi-bench seed 3: the green boy's
    sunset+night cluster was kept from his day-lit one so, at 0.928).

    With ``close`` (per instance: framed as a close-up, prefilter's ``close_up``), a pair of
    plain-lit clusters that framing alone parts — most members of one close-ups, none of the
    other's — is not held by the plain-light rule: there HDBSCAN may have kept a character's
    close-ups (a back filling the frame) apart from its full figure by framing, so "kept apart
    under one light" says nothing of identity (cgi-bench seed 2: the green boy's close-ups at
    0.912 from his other views, a cluster of their own). Clusters that mix framings are held as
    before: on the film, whose characters are in close-up half the time, exempting every
    cluster mostly of close-ups glued Frank to Buck (0.923; both clusters held close-ups).

    With ``track_ids``, a plain-lit cluster whose members are all one track is not held by the
    rule either: on a short film min_cluster_size is 3, and every track of 3+ instances pulled
    onto its own vector is a dense clump that HDBSCAN may keep as a cluster of its own, so "kept
    apart under one light" says nothing of identity (cgi-bench seed 3: the fox's one track of
    shot 11, 0.929 from his other cluster; seed 3's ARI 0.847 -> 1.0, seed 2 and the film
    unchanged). The bound and the cannot-links still hold; a merged cluster keeps its parts' blocks."""
    out = labels.copy()
    if bound >= 1.0:
        return out, []
    x = normalise(x)
    constraints = constraints or build_constraints(frame_ids, [None] * len(frame_ids))
    ids = [int(v) for v in np.unique(out) if v != NOISE]
    sums = {lab: x[out == lab].sum(0) for lab in ids}
    blocked = set(_pairs_between(out, constraints.cannot))
    if light is not None:
        cast = np.abs(np.asarray(light)).max(axis=1)  # per instance: the strongest gain applied to its shot
        mild = sorted(lab for lab in ids if float(cast[out == lab].mean()) <= light_bound)
        framing = {}  # +1 mostly close-ups, -1 none: such a pair is parted by framing alone (docstring)
        if close is not None:
            framed = np.asarray(close, bool)
            framing = {lab: int(2 * framed[out == lab].sum() > (out == lab).sum()) - int(not framed[out == lab].any())
                       for lab in mild}
        single = set()  # clusters of one track (see the docstring)
        if track_ids is not None:
            for lab in mild:
                members = {track_ids[i] for i in np.nonzero(out == lab)[0]}
                if len(members) == 1 and None not in members:
                    single.add(lab)
        blocked |= {(a, b) for a in mild for b in mild if a < b and framing.get(a, 0) * framing.get(b, 0) != -1
                    and a not in single and b not in single}
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
            pair = (min(ids[a], ids[b]), max(ids[a], ids[b]))
            if a < b and pair not in blocked:
                best = (a, b)
                break
        if best is None:
            break
        keep, gone = sorted((ids[best[0]], ids[best[1]]), key=lambda lab: (-(out == lab).sum(), lab))
        merges.append((keep, gone, float(sim[best])))
        out[out == gone] = keep
        sums[keep] = sums[keep] + sums.pop(gone)
        ids.remove(gone)
        blocked = {(keep if a == gone else a, keep if b == gone else b) for a, b in blocked}
        blocked = {(min(a, b), max(a, b)) for a, b in blocked}
    return out, merges


def merge_parts(
    labels: np.ndarray, constraints: Constraints, share: float
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """A cluster at least ``share`` of whose instances touch an instance of one other cluster
    in their frame — and that holds no cannot-link pair with it — is a part of that character
    (a head cut from its body) and joins it, smaller into larger. Returns (labels, merges as
    (kept, absorbed, share))."""
    out = labels.copy()
    if share <= 0:
        return out, []
    merges = []
    while True:
        touched: dict[tuple[int, int], set[int]] = defaultdict(set)  # (cluster, other) -> its instances touching
        for i, j in constraints.touching:
            a, b = int(out[i]), int(out[j])
            if a != NOISE and b != NOISE and a != b:
                touched[(a, b)].add(i)
                touched[(b, a)].add(j)
        blocked = set(_pairs_between(out, constraints.cannot))
        best = None
        for (a, b), members in touched.items():
            size_a, size_b = int((out == a).sum()), int((out == b).sum())
            if size_a > size_b or (size_a == size_b and a < b) or (min(a, b), max(a, b)) in blocked:
                continue
            frac = len(members) / size_a
            if frac >= share and (best is None or frac > best[2]):
                best = (b, a, frac)
        if best is None:
            return out, merges
        keep, gone, frac = best
        out[out == gone] = keep
        merges.append((keep, gone, float(frac)))


def attach_noise(
    x: np.ndarray,
    labels: np.ndarray,
    track_ids: Sequence[str | None],
    constraints: Constraints,
    slack: float,
    quantile: float = 1.0,
    skip: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Give a noise track (all its members, or a lone noise instance) to the nearest cluster
    when it lies within that cluster's own spread, so a character's views that HDBSCAN left
    out of a dense core come back to it.

    Per cluster: its tracks' vectors (the normalised mean of each track's members in the
    cluster), its centre (their normalised mean) and its *reach*: ``slack`` x the
    ``quantile`` of its tracks' distances to the centre (a one-track cluster has no measured
    spread and takes nothing). A noise unit (its members' normalised mean) joins the cluster
    whose centre is nearest when it is within that cluster's reach, within no other
    cluster's reach (between two characters it stays noise), and no cannot-link joins one
    of its members to a member of that cluster. One pass: the reaches are those of the
    clusters before anything joined, so a cluster cannot grow by chaining. ``skip`` (per
    instance) marks noise that must stay noise (still tracks already judged as scenery).
    ``slack`` 0 = off. Returns (labels, info)."""
    out = labels.copy()
    info = {"attached_instances": 0, "attached_units": 0, "ambiguous_units": 0, "cannot_link_units": 0}
    ids = [int(v) for v in np.unique(out) if v != NOISE]
    if slack <= 0 or not ids or not (out == NOISE).any():
        return out, info
    x = normalise(x)
    centre, reach = [], []
    for lab in ids:
        units = _units(np.nonzero(out == lab)[0], track_ids)
        vecs = _unit_vectors(x, units)
        c = normalise(vecs.mean(0, keepdims=True))[0]
        centre.append(c)
        spread = np.linalg.norm(vecs - c, axis=1)
        reach.append(slack * float(np.quantile(spread, quantile)) if len(units) >= 2 else 0.0)
    cent, reach_arr = np.stack(centre), np.asarray(reach)
    partners = partners_of(constraints.cannot)
    candidates = np.nonzero((labels == NOISE) & (np.ones(len(labels), bool) if skip is None else ~skip))[0]
    for unit in _units(candidates, track_ids):
        v = normalise(x[unit].mean(0, keepdims=True))[0]
        dist = np.linalg.norm(cent - v, axis=1)
        inside = np.nonzero(dist <= reach_arr)[0]
        if len(inside) == 0:
            continue
        if len(inside) > 1:
            info["ambiguous_units"] += 1
            continue
        lab = ids[int(inside[0])]
        if any(labels[j] == lab for i in unit for j in partners[i]):
            info["cannot_link_units"] += 1
            continue
        out[unit] = lab
        info["attached_units"] += 1
        info["attached_instances"] += len(unit)
    return out, info


def join_by_tracks(
    x: np.ndarray, labels: np.ndarray, track_ids: Sequence[str | None], constraints: Constraints, bound: float
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Join two clusters when their two most similar tracks (each track: the normalised mean of
    its members) have a cosine of at least ``bound`` and no cannot-link pair joins the clusters;
    the most similar pair first, again after each join (so joins can chain). ``bound`` >= 1 = off.

    On the Big Buck Bunny film the right joins (two Buck clusters, two Frank clusters) came at
    0.967-0.968 and the wrong ones (Buck with bird+Gimera) from 0.959: a thin margin; the
    default (0.96) is on since :func:`attach_by_margin` needs a character's pieces joined
    first, or the views it brings back deepen the split (docs/identity.md). Returns (labels, joins as (kept, absorbed, cosine))."""
    out = labels.copy()
    if bound >= 1.0:
        return out, []
    x = normalise(x)
    joins = []
    while True:
        ids = [int(v) for v in np.unique(out) if v != NOISE]
        blocked = set(_pairs_between(out, constraints.cannot))
        vecs = {lab: _unit_vectors(x, _units(np.nonzero(out == lab)[0], track_ids)) for lab in ids}
        best = None
        for k, a in enumerate(ids):
            for b in ids[k + 1:]:
                if (a, b) in blocked:
                    continue
                sim = float((vecs[a] @ vecs[b].T).max())
                if sim >= bound and (best is None or sim > best[2]):
                    best = (a, b, sim)
        if best is None:
            return out, joins
        a, b, sim = best
        keep, gone = sorted((a, b), key=lambda lab: (-(out == lab).sum(), lab))
        out[out == gone] = keep
        joins.append((keep, gone, sim))


def attach_by_margin(
    x: np.ndarray,
    labels: np.ndarray,
    track_ids: Sequence[str | None],
    constraints: Constraints,
    margin: float,
    rounds: int = 1,
    skip: np.ndarray | None = None,
    thin: int = 0,
) -> tuple[np.ndarray, dict]:
    """Give a noise track to the cluster one of whose tracks is clearly its nearest: a second
    pass after :func:`attach_noise`, for views of a character that lie outside every cluster's
    spread (another light, another framing) but next to one of its tracks.

    Every track is the normalised mean of its members (a lone instance its own unit). Per noise
    unit and per cluster, the distance to that cluster's *nearest* track (a character's views
    form a chain, not a ball: its nearest view says more than its centre). The unit joins the
    nearest cluster when the second nearest cluster is at least ``margin`` x as far, and no
    cannot-link joins one of its members to that cluster; when two clusters are about as near
    it stays noise. ``rounds``: after a round, the units that joined count as tracks of their
    cluster in the next one (a chain of views comes back step by step; each step keeps the
    margin). ``skip`` (per instance) marks noise that must stay noise (still tracks judged as
    scenery). Needs two clusters (one cluster gives no margin to measure). ``margin`` <= 1 = off.

    ``thin``: a cluster with fewer than ``thin`` instances besides its largest track (the cluster
    stage passes ``min_cluster_size``) is judged as such a unit too, all its members at once,
    against the other clusters (``clusters_joined`` counts those that joined one). HDBSCAN runs on
    instances pulled onto their track's vector, so every track of ``min_cluster_size`` instances is
    a dense clump it may keep as a cluster, with a few views beside it or alone: that such a cluster
    stands apart says little of identity (cgi-bench seed 6: the fox's one track of shot 1, 7
    instances, a cluster apart from his, his other cluster's nearest track 0.45 away and the nearest
    rival's 1.50x as far; seed 2: the robot's two tracks of 2 and 2, 0.52 from his cluster of 16 and
    1.59x as far from the nearest rival). One not clearly nearer one cluster stays a cluster (a
    character seen once).
    Returns (labels, info)."""
    out = labels.copy()
    info = {"attached_instances": 0, "attached_units": 0, "ambiguous_units": 0, "cannot_link_units": 0,
            "rounds": 0}
    if thin:
        info["clusters_joined"] = 0
    if margin <= 1.0 or len([v for v in np.unique(out) if v != NOISE]) < 2:
        return out, info
    x = normalise(x)
    partners = partners_of(constraints.cannot)
    allowed = np.ones(len(out), bool) if skip is None else ~np.asarray(skip, bool)
    for _ in range(max(1, rounds)):
        ids = [int(v) for v in np.unique(out) if v != NOISE]
        tracks_of = {lab: _units(np.nonzero(out == lab)[0], track_ids) for lab in ids}
        vecs = [x[unit].mean(0) for lab in ids for unit in tracks_of[lab]]
        owner = [lab for lab in ids for _ in tracks_of[lab]]
        track_vecs, owner_arr = normalise(np.stack(vecs)), np.asarray(owner)
        joined = 0
        ambiguous = cannot = 0
        units = []  # (unit, its cluster): thin clusters first, so no noise unit joins one that then goes
        if thin:
            for lab in ids:
                tracked = [len(u) for u in tracks_of[lab] if track_ids[u[0]] is not None]
                if tracked and sum(len(u) for u in tracks_of[lab]) - max(tracked) < thin:
                    units.append(([i for u in tracks_of[lab] for i in u], lab))
        units += [(unit, NOISE) for unit in _units(np.nonzero((out == NOISE) & allowed)[0], track_ids)]
        gone: set[int] = set()  # thin clusters that joined another this round
        for unit, own in units:
            v = normalise(x[unit].mean(0, keepdims=True))[0]
            dist = np.linalg.norm(track_vecs - v, axis=1)
            barred = {int(out[j]) for i in unit for j in partners[i]}
            nearest = sorted((float(dist[owner_arr == lab].min()), lab) for lab in ids
                             if lab != own and lab not in gone)  # (a thin cluster: not itself)
            if not nearest:
                continue
            if nearest[0][1] in barred:
                cannot += own == NOISE
                continue
            # A cluster the unit is cannot-linked to (seen in one of its frames, apart) is no
            # rival: the unit is not that character (Rinky of shots 46/48 beside Frank).
            rivals = [d for d, other in nearest[1:] if other not in barred]
            d1, lab = nearest[0]
            if (rivals and rivals[0] < margin * d1) or (own != NOISE and not rivals):
                ambiguous += own == NOISE  # a thin cluster stays one unless clearly another's
                continue
            out[unit] = lab
            joined += 1
            if own != NOISE:
                gone.add(own)
                info["clusters_joined"] += 1
                continue
            info["attached_units"] += 1
            info["attached_instances"] += len(unit)
        info["ambiguous_units"], info["cannot_link_units"] = ambiguous, cannot
        info["rounds"] += 1
        if not joined:
            break
    return out, info


def attach_by_name(
    x: np.ndarray,
    labels: np.ndarray,
    names: Mapping[int, str],
    track_ids: Sequence[str | None],
    constraints: Constraints,
    margin: float,
    rounds: int = 1,
    skip: np.ndarray | None = None,
) -> tuple[np.ndarray, dict | None]:
    """:func:`attach_by_margin` once more, with the clusters that took one name (``names``: cluster
    label -> name) as one cluster: a noise track about as near two clusters of one name is that
    character's, not a view between two characters. The film's Buck, split by light into several
    clusters, leaves his views under a light between two of them in the noise, ambiguous to the
    margin rule. The tracks that join take the name's first cluster (they share its folder);
    the rest of the labels are as given. Only where a name holds two or more clusters (else
    ``labels`` and None). Returns (labels, the margin rule's report)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for label, name in names.items():
        groups[name].append(int(label))
    first = {label: min(group) for group in groups.values() if len(group) > 1 for label in group}
    if not first:
        return labels, None
    as_one = np.array([first.get(int(v), int(v)) for v in labels], labels.dtype)
    as_one, info = attach_by_margin(x, as_one, track_ids, constraints, margin, rounds, skip)
    return np.where(labels == NOISE, as_one, labels), info


def drop_nearer_elsewhere(
    x: np.ndarray, labels: np.ndarray, track_ids: Sequence[str | None], share: float,
    frames: Sequence[str | None] | None = None, boxes: Sequence[Any] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Send to noise a part of a track that its own cluster does not explain: its vector (the
    normalised mean of its members) is nearer another cluster's centre than its own cluster's
    centre taken without it. The merges and attachments before this place a track by its nearest
    *track* or by density, which a close-up can satisfy through one look-alike view (a boy's
    head close-up joined the fox through its brown hair); and a track the tracker carried from one
    character onto another goes where most of it belongs. So each track is judged in parts, cut
    where its box changes size twofold or more between two sampled frames (``frames`` and
    ``boxes`` per instance, :func:`animlora.identity.tracks.jump_cuts` on size alone; whole tracks
    without them). Judged once, against the clusters as they are, and only for the parts of a
    track that is at most ``share`` of its cluster's instances (a track that is most of a small
    cluster is its centre, and so are its parts). Centres are the normalised mean of the
    members' rows of ``x``. ``share`` 0 = off. Returns (labels, one entry per part sent)."""
    out = labels.copy()
    moved: list[dict[str, Any]] = []
    ids = [int(v) for v in np.unique(labels) if v != NOISE]
    if share <= 0 or len(ids) < 2:
        return out, moved
    x = normalise(x)
    sums = {lab: x[labels == lab].sum(0) for lab in ids}
    sizes = {lab: int((labels == lab).sum()) for lab in ids}
    centres = {lab: normalise(v[None])[0] for lab, v in sums.items()}
    for lab in ids:
        for track in _units(np.nonzero(labels == lab)[0], track_ids):
            if len(track) > share * sizes[lab]:
                continue  # most of its cluster: the track (and so each part of it) is its centre
            parts = [track] if frames is None or boxes is None else jump_cuts(track, frames, boxes, iou=float("inf"))
            for unit in parts:
                found = part_distances(x, sums, centres, lab, unit)
                if found is None or found[1] >= found[0]:
                    continue
                d_own, d_other, near = found
                out[unit] = NOISE
                moved.append({"track": track_ids[unit[0]] or f"#{unit[0]}",
                              "first_frame": frames[unit[0]] if frames is not None else None,
                              "instances": len(unit), "cluster": lab, "nearer": near,
                              "own": round(1.0 - d_own, 4), "other": round(1.0 - d_other, 4)})
    return out, moved


def _centre_distances(vecs: np.ndarray) -> np.ndarray:
    """Distance of each track vector (``_unit_vectors``) to their normalised mean."""
    centre = normalise(vecs.mean(0, keepdims=True))[0]
    return np.linalg.norm(vecs - centre, axis=1)


def _radius(x: np.ndarray, units: list[list[int]]) -> float:
    """Largest distance of a group's tracks to their centre (``_centre_distances``)."""
    return float(_centre_distances(_unit_vectors(x, units)).max())


def _centre_options(x: np.ndarray, labels: np.ndarray, idx: np.ndarray, ids: list[int],
                    barred: set[int]) -> list[tuple[float, float, int]]:
    """(distance, cosine, cluster) from the centre of ``idx`` to the centre of every cluster not
    in ``barred``, nearest first (euclidean on the unit sphere)."""
    centre = normalise(x[idx].mean(0, keepdims=True))[0]
    options = []
    for lab in ids:
        if lab in barred:
            continue
        c = normalise(x[labels == lab].mean(0, keepdims=True))[0]
        options.append((float(np.linalg.norm(c - centre)), float(c @ centre), lab))
    return sorted(options)


def _nearest_centre(x: np.ndarray, labels: np.ndarray, idx: np.ndarray, ids: list[int], barred: set[int]) -> int | None:
    options = _centre_options(x, labels, idx, ids, barred)
    return options[0][2] if options else None


def _clear_nearest(x: np.ndarray, labels: np.ndarray, idx: np.ndarray, ids: list[int], barred: set[int],
                   similarity: float, margin: float) -> int | None:
    """The cluster (of ``labels``) whose centre is clearly nearest the centre of ``idx``: cosine
    >= ``similarity`` and every other cluster not in ``barred`` at least ``margin`` x as far
    (euclidean on the unit sphere). None when there is no such cluster."""
    if similarity >= 1.0 or margin <= 1.0:
        return None
    options = _centre_options(x, labels, idx, ids, barred)
    if not options:
        return None
    (d1, cos1, lab), rest = options[0], options[1:]
    if cos1 < similarity or (rest and rest[0][0] < margin * d1):
        return None
    return lab


def recluster_noise(
    x: np.ndarray,
    labels: np.ndarray,
    track_ids: Sequence[str | None],
    shot_ids: Sequence[str | None],
    constraints: Constraints,
    min_size: int,
    min_samples: int,
    skip: np.ndarray | None = None,
    join_similarity: float = 1.0,
    join_margin: float = 0.0,
    margin_after: float = 0.0,
    margin_rounds: int = 1,
    still: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """A second look at what is left in noise: HDBSCAN on the moving noise alone, with a smaller
    ``min_size``, keeping only the groups that look like a character the first pass's size
    bound missed — seen in two or more shots (a character comes back; a prop or one odd view
    stays in one shot), at least ``min_size`` instances, no cannot-link pair inside, as tight
    as a typical cluster (its tracks' largest distance to their centre within what the largest of
    as many tracks of a cluster would be: the n/(n+1) quantile of every cluster track's distance
    to its cluster's centre, for a group of n tracks — pooled over all tracks, so the bound does
    not move when one cluster more or less exists, and fair to a group of 4 tracks against
    clusters of 30; a group wider than that is judged once more without its one-instance tracks,
    which then stay noise), and apart from every cluster at its own scale: the
    distance from its tracks to the nearest track of a cluster is at least its *linkage* (the
    largest distance from one of its tracks to its nearest fellow track) — a group that chains
    into a cluster is views between characters (on the labelled film: Buck with Frank, Gimera
    with Buck), not a character of its own — unless it touches one cluster alone (every one of
    its tracks nearest a track of that cluster, whose centre is also the nearest): then it is
    that character under another light and joins it (the film's Buck at dusk). A cluster the
    group is cannot-linked to does not count for that: it is another character, however near.
    Each kept group becomes a new cluster, or joins the cluster whose centre is clearly nearest
    its own — cosine >= ``join_similarity`` and every other cluster it could join
    ``join_margin`` x as far (cannot-linked ones are no rivals and cannot be joined): the film's
    Rinky of shots 44-48 with her own cluster.
    When a group was kept and ``margin_after`` > 1, :func:`attach_by_margin` runs once more with
    that margin (``margin_rounds`` rounds, ``skip`` left out): the views a kept group brings make
    a character's chain longer, so noise that was about as near two clusters can now be clearly
    nearest one (info ``margin_attached_after``; the film's Buck in his burrow).
    ``still``: per instance, whether its track is still (:func:`animlora.identity.still.still_units`).
    A character can stand idle in every shot but one: the still tracks in noise that would join a
    group by :func:`animlora.identity.still.join_still`'s rule count for its shots (seed 4's robot: it
    moves in one shot and idles in three, and no cluster formed for its idle tracks to join). When
    HDBSCAN names no group, it is asked once more allowing one: it never calls its whole input one
    group unless asked, and a small pool can be one character's views and a few strays.
    Needs a cluster to measure tightness against. ``min_size`` 0 = off. Returns (labels, info)."""
    from animlora.identity.clustering import hdbscan

    out = labels.copy()
    info: dict[str, Any] = {"groups_found": 0, "groups_kept": 0, "groups_joined": 0, "joined_touching": 0,
                            "instances": 0, "kept": [], "rejected": []}
    ids = [int(v) for v in np.unique(out) if v != NOISE]
    allowed = np.ones(len(out), bool) if skip is None else ~np.asarray(skip, bool)
    pool = np.nonzero((out == NOISE) & allowed)[0]
    if min_size <= 0 or not ids or len(pool) < min_size:
        return out, info
    x = normalise(x)
    spreads = np.concatenate([_centre_distances(_unit_vectors(x, _units(np.nonzero(out == lab)[0], track_ids)))
                              for lab in ids])

    def typical(tracks: int) -> float:  # the largest of ``tracks`` draws from the clusters' spreads
        return float(np.quantile(spreads, tracks / (tracks + 1)))

    cluster_units = [(lab, u) for lab in ids for u in _units(np.nonzero(out == lab)[0], track_ids)]
    cluster_tracks = _unit_vectors(x, [u for _, u in cluster_units])
    track_owner = np.asarray([lab for lab, _ in cluster_units])
    found = hdbscan(x[pool], max(2, min_size - min_size // 4), min_samples, "eom")
    if (found == NOISE).all():  # HDBSCAN names no group in a pool that is one group and strays, unless asked
        found = hdbscan(x[pool], max(2, min_size - min_size // 4), min_samples, "eom", allow_single=True)
    partners = partners_of(constraints.cannot)
    next_label = max(ids) + 1
    for g in sorted(int(v) for v in np.unique(found) if v != NOISE):
        info["groups_found"] += 1
        idx = pool[found == g]
        units = _units(idx, track_ids)
        radius = _radius(x, units)
        # a lone sampled view that HDBSCAN hung on the group's edge makes the radius, not the
        # group (the film's Frank of shot 135 on Rinky's shots 44-48): judged without it
        lone = [u for u in units if len(u) == 1]
        core = [u for u in units if len(u) > 1]
        bound = typical(len(units))
        if radius > bound and lone and core and sum(map(len, core)) >= min_size:
            core_radius = _radius(x, core)
            if core_radius <= typical(len(core)):
                idx = np.asarray(sorted(i for u in core for i in u))
                units, radius, bound = core, core_radius, typical(len(core))
        trimmed = int((found == g).sum()) - len(idx)
        shots = {shot_ids[i] for i in idx if shot_ids[i]}
        idle: set[str | None] = set()
        if len(shots) == 1 and still is not None and still.any():
            trial = out.copy()
            trial[idx] = next_label
            trial, _ = join_still(x, trial, still, track_ids, only={next_label})
            idle = {shot_ids[i] for i in np.nonzero((trial == next_label) & (out == NOISE))[0] if shot_ids[i]} - shots
            shots |= idle
        vecs = _unit_vectors(x, units)
        own = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (vecs @ vecs.T)))
        np.fill_diagonal(own, np.inf)
        d_in = own.min(1) if len(units) > 1 else np.zeros(len(units))  # to the nearest fellow track
        linkage = float(d_in.max())
        # A cluster one of the group's members is cannot-linked to (seen apart in one of its
        # frames) is another character: touching it says nothing (the film's Rinky of shots
        # 46/48 beside Frank, whose lit orange is near hers).
        barred = {int(out[j]) for i in idx for j in partners[int(i)]}
        open_tracks = ~np.isin(track_owner, sorted(barred))
        sims = vecs @ cluster_tracks[open_tracks].T if open_tracks.any() else np.full((len(units), 1), -1.0)
        d_out = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims.max(1)))  # to the nearest open cluster track
        gap = float(d_out.min())
        # the cluster owning each track's nearest open cluster track: one for all of them = the
        # group touches that cluster alone (a character's views under another light)
        owners = {int(v) for v in track_owner[open_tracks][sims.argmax(1)]} if open_tracks.any() else set()
        members = set(int(i) for i in idx)
        detail = [{"track": track_ids[u[0]] or f"#{u[0]}", "n": len(u), "shot": shot_ids[u[0]],
                   "in": round(float(a), 4), "out": round(float(b), 4), "centre": round(float(c), 4)}
                  for u, a, b, c in zip(units, d_in, d_out, _centre_distances(vecs), strict=True)]
        why = None
        if len(idx) < min_size:
            why = "small"
        elif len(shots) < 2:
            why = "one shot"
        elif radius > bound:
            why = "spread"
        elif gap < linkage:
            why = "touches a cluster"
        elif any(j in members for i in idx for j in partners[int(i)]):
            why = "cannot-link"
        entry = {"instances": len(idx), "shots": len(shots), "radius": round(radius, 4), "bound": round(bound, 4),
                 "linkage": round(linkage, 4),
                 "gap": round(gap, 4), "lone_left_out": trimmed, "idle_shots": len(idle), "tracks": detail}
        target = None
        if why == "touches a cluster" and len(owners) == 1 and _nearest_centre(x, labels, idx, ids, barred) in owners:
            why, target = None, owners.pop()
            info["joined_touching"] += 1
        if why:
            info["rejected"].append({**entry, "why": why})
            continue
        if target is None:
            target = _clear_nearest(x, labels, idx, ids, barred, join_similarity, join_margin)
        info["kept"].append({**entry, "joined": target is not None})
        if target is None:
            out[idx] = next_label
            next_label += 1
        else:
            out[idx] = target
            info["groups_joined"] += 1
        info["groups_kept"] += 1
        info["instances"] += len(idx)
    info["cluster_tracks"] = len(spreads)
    info["median_spread"] = round(float(np.median(spreads)), 4)
    if info["groups_kept"] and margin_after > 1.0:
        out, info["margin_attached_after"] = attach_by_margin(x, out, track_ids, constraints, margin_after,
                                                              margin_rounds, skip=skip)
    return out, info

