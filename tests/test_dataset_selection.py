"""Selection: farthest-point sampling covers the set better than random, spreads over shots,
prefers quality, drops near-duplicates."""

from __future__ import annotations

import numpy as np

from animlora.curation.selection import (
    coverage_radius,
    farthest_point,
    near_duplicates,
    quality_scores,
)


def clustered_set(seed=0):
    """12 appearance clusters of very unequal size (a film: a few poses dominate), in 16-d."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 16)) * 3
    sizes = [300, 150, 80, 40, 20, 10, 8, 6, 5, 4, 3, 2]
    x = np.concatenate([c + rng.normal(scale=0.3, size=(n, 16)) for c, n in zip(centres, sizes, strict=True)])
    labels = np.concatenate([[i] * n for i, n in enumerate(sizes)])
    return x, labels


def test_diversity_beats_random():
    x, labels = clustered_set()
    k = 24
    picks = [p.index for p in farthest_point(x, k, quality_weight=0.0, spread_penalty=0.0)]
    fps_radius = coverage_radius(x, picks)
    fps_clusters = len(set(labels[picks]))
    rng = np.random.default_rng(1)
    random_radii, random_clusters = [], []
    for _ in range(20):
        sample = rng.choice(len(x), k, replace=False)
        random_radii.append(coverage_radius(x, sample))
        random_clusters.append(len(set(labels[sample])))
    assert fps_clusters == 12  # every cluster, even the 2-image one
    assert max(random_clusters) < 12
    assert fps_radius < 0.6 * float(np.mean(random_radii))
    assert len(set(picks)) == k


def test_shot_spread():
    # two shots of the same scene: shot A has 5x more frames; the penalty balances the picks
    rng = np.random.default_rng(0)
    x = rng.normal(size=(72, 8))
    shots = ["A"] * 60 + ["B"] * 12
    groups = [[("shot", s)] for s in shots]

    def from_b(penalty):
        picks = farthest_point(x, 12, groups=groups, quality_weight=0.0, spread_penalty=penalty)
        return sum(1 for p in picks if shots[p.index] == "B")

    assert from_b(1.0) >= 5
    assert from_b(1.0) > from_b(0.0)


def test_quality_prefers_sharp_large_untruncated():
    q = quality_scores([10, 300, 300, None], [100, 5000, 5000, 2000], [False, False, True, False], 0.5)
    assert q[1] > q[0] and q[1] > q[2] and q[1] == max(q)
    # the first pick is the best image
    x = np.array([[1.0, 0], [1.0, 0.001], [0, 1.0]])
    picks = farthest_point(x, 1, quality=np.array([0.2, 0.9, 0.5]))
    assert picks[0].index == 1


def test_near_duplicates_are_the_same_picture_not_only_the_same_identity():
    """Two poses of one character have near-equal identity embeddings but different pictures:
    both stay; the same pose twice (a few grey levels apart) keeps only the better one."""
    import cv2

    from animlora.backends.segmentation.cutouts import cutout_signature, signature_vector

    def figure(arm_up: bool, shade: int = 0) -> np.ndarray:
        rgba = np.zeros((120, 80, 4), np.uint8)
        cv2.ellipse(rgba, (40, 70), (25, 40), 0, 0, 360, (200 - shade, 180, 170, 255), -1)
        cv2.circle(rgba, (40, 25), 16, (220 - shade, 200, 190, 255), -1)
        arm = ((60, 60), (75, 10)) if arm_up else ((60, 60), (75, 110))
        cv2.line(rgba, *arm, (90, 60, 50, 255), 8)
        return rgba

    identity = np.array([[1.0, 0.0], [1.0, 0.01], [1.0, 0.005]])  # one character, three times
    pictures = np.stack([signature_vector(cutout_signature(im, 0.5))
                         for im in (figure(False), figure(True), figure(False, shade=3))])
    quality = np.array([0.5, 0.4, 0.9])
    # same pose: the sharper one stays; the raised arm is another picture (the identity alone dropped it)
    assert near_duplicates(identity, pictures, quality, 0.985, 8.0) == {0: 2}
    assert near_duplicates(identity, pictures, quality, 0.985, 255.0) == {0: 2, 1: 2}
    # another character in the same pose is no duplicate
    assert near_duplicates(np.array([[1.0, 0], [0, 1.0], [0.7, 0.7]]), pictures, quality, 0.985, 8.0) == {}


def test_deterministic():
    x, _ = clustered_set(3)
    a = [p.index for p in farthest_point(x, 30)]
    b = [p.index for p in farthest_point(x, 30)]
    assert a == b
