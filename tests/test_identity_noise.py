"""Noise tracks within a cluster's own spread join it (identity/constraints.py attach_noise)."""

from __future__ import annotations

import numpy as np

from animlora.identity.clustering import NOISE
from animlora.identity.constraints import attach_noise
from animlora.identity.geometry import build_constraints

D = 12


def _around(centre: np.ndarray, radius: float, axes: list[int]) -> list[np.ndarray]:
    """One vector per axis, ``radius`` from ``centre`` along it (a cluster's tracks)."""
    return [centre + radius * np.eye(D)[k] for k in axes]


def _scene():
    """Cluster 0 around e0 and cluster 1 around e1 (four tracks of two instances each, spread 0.3);
    then noise units: 'near' (one track of 3) 0.1 from cluster 0's centre; 'between' halfway
    between two clusters 2 and 3 whose centres are 0.4 apart (inside both spreads); 'far' (away
    from everything)."""
    e = np.eye(D)
    rows, labels, tracks = [], [], []

    def add(vectors, label, track, copies=2):
        for v in vectors:
            for _ in range(copies):
                rows.append(v)
                labels.append(label)
                tracks.append(track if isinstance(track, str) else next(track))

    counter = iter(f"t{i}" for i in range(1000))
    for lab, centre, axes in ((0, e[0], [4, 5, 6, 7]), (1, e[1], [4, 5, 6, 7]),
                              (2, e[2], [8, 9, 10, 11]), (3, e[2] + 0.4 * e[3], [8, 9, 10, 11])):
        for v in _around(centre, 0.3, axes):
            add([v], lab, next(counter))
    add([e[0] + 0.1 * e[5]], NOISE, "near", copies=3)
    add([e[2] + 0.2 * e[3]], NOISE, "between", copies=2)
    add([e[3] - e[2]], NOISE, "far", copies=2)
    return np.stack(rows), np.asarray(labels), tracks


def test_a_noise_track_near_a_cluster_joins_it_one_between_two_stays_noise():
    x, labels, tracks = _scene()
    frames = [f"f{i}" for i in range(len(x))]  # one instance a frame: no cannot-link
    out, info = attach_noise(x, labels, tracks, build_constraints(frames, tracks), 1.0)
    t = np.asarray(tracks)
    assert (out[t == "near"] == 0).all()  # the whole track joins cluster 0
    assert (out[t == "between"] == NOISE).all()  # within two clusters' spread: ambiguous
    assert (out[t == "far"] == NOISE).all()  # outside every spread
    assert (out[labels != NOISE] == labels[labels != NOISE]).all()  # clusters keep their members
    assert info["attached_instances"] == 3 and info["attached_units"] == 1 and info["ambiguous_units"] == 1
    # off, and a still track (skip) stays noise
    assert (attach_noise(x, labels, tracks, build_constraints(frames, tracks), 0.0)[0] == labels).all()
    skip = t == "near"
    assert (attach_noise(x, labels, tracks, build_constraints(frames, tracks), 1.0, skip=skip)[0][skip] == NOISE).all()


def test_a_noise_track_cannot_join_a_cluster_it_is_cannot_linked_to():
    x, labels, tracks = _scene()
    frames = [f"f{i}" for i in range(len(x))]
    near = [i for i, t in enumerate(tracks) if t == "near"]
    frames[near[0]] = frames[0]  # one of its instances shares a frame with a member of cluster 0
    links = build_constraints(frames, tracks)  # no geometry: two instances of one frame differ
    assert (min(near[0], 0), max(near[0], 0)) in links.cannot
    out, info = attach_noise(x, labels, tracks, links, 1.0)
    assert (out[near] == NOISE).all() and info["cannot_link_units"] == 1


def test_a_lone_cluster_track_has_no_spread_to_attach_to():
    e = np.eye(D)
    x = np.stack([e[0], e[0], e[0] + 0.01 * e[1]])
    labels = np.array([0, 0, NOISE])
    tracks = ["a", "a", "b"]  # cluster 0 is one track: no measured spread
    out, _ = attach_noise(x, labels, tracks, build_constraints(["f0", "f1", "f2"], tracks), 1.0)
    assert out[2] == NOISE


def test_join_by_tracks_needs_one_close_pair_of_tracks_and_no_cannot_link():
    from animlora.identity.constraints import join_by_tracks

    e = np.eye(D)
    # cluster 0: tracks at e0 and e0+e4; cluster 1: tracks at e0+0.1e1 (close to cluster 0's first) and e1;
    # cluster 2: far (e2, e3)
    vecs = [e[0], e[0] + e[4], e[0] + 0.1 * e[1], e[1], e[2], e[3]]
    x = np.repeat(np.stack(vecs), 2, axis=0)
    labels = np.repeat([0, 0, 1, 1, 2, 2], 2)
    tracks = [f"t{i // 2}" for i in range(len(x))]
    frames = [f"f{i}" for i in range(len(x))]
    out, joins = join_by_tracks(x, labels, tracks, build_constraints(frames, tracks), 0.99)
    assert [(a, b) for a, b, _ in joins] == [(0, 1)] and joins[0][2] > 0.99
    assert (out[:8] == 0).all() and (out[8:] == 2).all()
    assert (join_by_tracks(x, labels, tracks, build_constraints(frames, tracks), 1.0)[0] == labels).all()
    frames[7] = frames[0]  # a member of cluster 1 shares a frame with one of cluster 0: two characters
    out, joins = join_by_tracks(x, labels, tracks, build_constraints(frames, tracks), 0.99)
    assert joins == [] and (out == labels).all()
