"""Review suggestions: the noise tracks nearest one cluster (animlora.identity.suggest)."""

from __future__ import annotations

import numpy as np

from animlora.identity.suggest import alike_clusters, nearest_noise


def test_nearest_noise_pools_tracks_and_keeps_what_is_nearest_the_cluster():
    e = np.eye(6, dtype=np.float32)
    vectors = {
        "a1": e[0], "a2": e[0] + 0.3 * e[2],  # cluster A: a chain of views
        "b1": e[1], "b2": e[1] + 0.1 * e[3],  # cluster B
        # noise: a track near A's second view (two members), a lone view near B, one between
        "n1": e[0] + 0.35 * e[2], "n2": e[0] + 0.45 * e[2],
        "m1": e[1] + 0.2 * e[4],
        "x1": e[0] + 0.9 * e[1] + 0.05 * e[5],
        "v1": e[0],  # no track, its own unit; but no vector below for "gone"
    }
    track_of = {"n1": "t_n", "n2": "t_n", "m1": "t_m", "x1": "t_x", "a1": "t_a", "a2": "t_a2"}
    noise = ["n1", "n2", "m1", "x1", "v1", "gone"]
    got = nearest_noise(["a1", "a2"], ["b1", "b2"], noise, vectors, track_of)
    # the track t_n is one unit, offered whole; v1 (on a1) is nearest; m1 is B's; "gone" has no vector
    assert [u["instances"] for u in got][:2] == [["v1"], ["n1", "n2"]]
    assert all("m1" not in u["instances"] and "gone" not in u["instances"] for u in got)
    assert got[0]["distance"] < got[1]["distance"] and got[1]["track"] == "t_n" and got[1]["margin"] > 1
    # x1 lies between the two, a little nearer A: offered to A only, with a margin near 1
    for_b = nearest_noise(["b1", "b2"], ["a1", "a2"], noise, vectors, track_of)
    assert [u["instances"] for u in for_b] == [["m1"]]
    x1 = next(u for u in got if u["instances"] == ["x1"])
    assert 1 < x1["margin"] < 1.2 and x1 == got[-1]
    # no other cluster: everything with a vector is offered, margin None
    alone = nearest_noise(["a1", "a2"], [], noise, vectors, track_of)
    assert sum(len(u["instances"]) for u in alone) == 5 and all(u["margin"] is None for u in alone)
    assert nearest_noise([], ["b1"], noise, vectors, track_of) == [] == nearest_noise(["a1"], [], [], vectors, {})


def test_alike_clusters_pairs_the_nearest_tracks_and_leaves_out_pairs_seen_apart():
    e = np.eye(6, dtype=np.float32)
    vectors = {
        # one character in two clusters, a chain of views: A's far end meets A2's near end
        "a1": e[0], "a2": e[0] + 0.6 * e[2], "c1": e[0] + 0.8 * e[2], "c2": e[2],
        "b1": e[1], "b2": e[1] + 0.1 * e[3],  # another character
        "d1": e[4], "d2": e[4] + 0.05 * e[5],  # a third, nearest B
        "x1": e[1] + 0.2 * e[4],  # D's view that looks like B (in D, on no track)
    }
    clusters = {"A": ["a1", "a2"], "A2": ["c1", "c2"], "B": ["b1", "b2"], "D": ["d1", "d2", "x1"],
                "E": ["gone"]}  # E has no vector: not paired
    track_of = {"a1": "t1", "a2": "t1", "c1": "t2", "c2": "t3"}
    pairs, held = alike_clusters(clusters, vectors, track_of)
    assert held == 0 and len(pairs) == 6  # four clusters with vectors
    assert [p["clusters"] for p in pairs[:2]] == [["B", "D"], ["A", "A2"]]  # x1 lies next to b1
    # A's one track is its members' mean: nearer A2's first view than a1 alone would be
    mean_a = (e[0] / 1 + (e[0] + 0.6 * e[2]) / np.linalg.norm(e[0] + 0.6 * e[2])) / 2
    mean_a /= np.linalg.norm(mean_a)
    c1 = vectors["c1"] / np.linalg.norm(vectors["c1"])
    assert abs(pairs[1]["distance"] - np.sqrt(2 - 2 * mean_a @ c1)) < 1e-3
    assert [p["distance"] for p in pairs] == sorted(p["distance"] for p in pairs)
    # B and D seen apart in one frame (b1 and x1: a cannot-link) are two characters: left out, counted
    apart = [("b1", "x1"), ("a1", "a2"), ("b2", "nobody")]  # within one cluster, unknown ids: ignored
    pairs2, held2 = alike_clusters(clusters, vectors, track_of, apart)
    assert held2 == 1 and len(pairs2) == 5 and pairs2[0]["clusters"] == ["A", "A2"]
    assert ["B", "D"] not in [p["clusters"] for p in pairs2]
    assert alike_clusters({}, vectors, track_of) == ([], 0)
