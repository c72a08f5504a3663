"""HDBSCAN on L2-normalised embeddings, with a turbo path for 100k+ instances.

Direct path: optional PCA, then ``sklearn.cluster.HDBSCAN`` on every vector (brute force up
to 8000 vectors: trees do not prune in 768 dimensions). Its minimum spanning tree costs
O(n²) distance evaluations in the full dimension, which is minutes at 10k vectors and hours
at 100k, so from ``turbo_threshold`` on:

1. PCA to ``turbo_pca_dim`` (randomised SVD), which keeps the identity structure of
   768-d image embeddings and makes every distance 20x cheaper;
2. HDBSCAN on a random subsample of ``turbo_sample`` vectors (all of them when there are
   fewer) with the *same*
   min_cluster_size (so a cluster found there has >= min_cluster_size * n / sample members
   in the full data);
3. every vector joins the cluster of its nearest clustered sample vector when it is as
   close to it as the cluster's own members are to each other (a per-cluster radius);
4. a cluster much more spread out than the others (radius > 1.3 x the median) is clustered
   again on its full membership: it can hide characters too rare to show in the sample;
5. what joined nothing (noise, and characters too rare to show up in the sample) is
   clustered again by the same procedure, so small characters are not lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NOISE = -1
BRUTE_LIMIT = 8000  # 8000^2 float64 distances = 512 MB
DIFFUSE = 1.3  # a cluster whose radius exceeds this times the median radius is looked at again


@dataclass(frozen=True)
class ClusterParams:
    min_cluster_size: int = 12
    min_samples: int = 2
    pca_dim: int = 0
    selection: str = "eom"
    turbo_threshold: int = 20000
    turbo_sample: int = 12000
    turbo_pca_dim: int = 32
    seed: int = 0


@dataclass
class ClusterResult:
    labels: np.ndarray  # NOISE or 0..k-1, relabelled by size (largest first)
    method: str  # "direct" | "turbo"
    details: dict[str, Any] = field(default_factory=dict)


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pca(x: np.ndarray, dim: int, seed: int, fit_rows: int = 20000) -> np.ndarray:
    """Project on the top ``dim`` principal axes (no-op when dim is 0 or >= the data's rank).
    The axes are fitted on at most ``fit_rows`` random rows: 20k rows pin down 32 axes of
    768-d data as well as 100k do, at a fifth of the cost."""
    if dim <= 0 or dim >= min(x.shape):
        return x
    from sklearn.decomposition import PCA

    model = PCA(n_components=dim, svd_solver="randomized", random_state=seed)
    if len(x) > fit_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), fit_rows, replace=False))
        model.fit(x[rows])
        return model.transform(x).astype(np.float32)
    return model.fit_transform(x).astype(np.float32)


def hdbscan(x: np.ndarray, min_cluster_size: int, min_samples: int, selection: str,
            allow_single: bool = False) -> np.ndarray:
    if len(x) < max(min_cluster_size, 2):
        return np.full(len(x), NOISE, dtype=np.int64)
    from sklearn.cluster import HDBSCAN

    # sklearn's default (a k-d tree) is 20x slower than brute force on 768-d vectors, where
    # trees do not prune; brute force holds the n x n distance matrix, so only up to BRUTE_LIMIT
    algorithm = "brute" if len(x) <= BRUTE_LIMIT and x.shape[1] > 16 else "auto"
    model = HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min(min_samples, len(x) - 1),
        cluster_selection_method=selection,
        algorithm=algorithm,
        allow_single_cluster=allow_single,
        copy=True,
    )
    return model.fit_predict(x).astype(np.int64)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered 0..k-1 from the largest down (ties: by first member)."""
    out = np.full(len(labels), NOISE, dtype=np.int64)
    ids = [lab for lab in np.unique(labels) if lab != NOISE]
    order = sorted(ids, key=lambda lab: (-int((labels == lab).sum()), int(np.argmax(labels == lab))))
    for new, old in enumerate(order):
        out[labels == old] = new
    return out


def nearest(queries: np.ndarray, points: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Index of and euclidean distance to the nearest of ``points`` for each query (brute force,
    chunked float32 matrix products: faster than a tree in 16+ dimensions)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    points = np.ascontiguousarray(points, dtype=np.float32)
    half_sq = 0.5 * (points**2).sum(1)
    index = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk):
        score = queries[start : start + chunk] @ points.T  # argmin |q-p|^2 = argmax q.p - |p|^2/2
        score -= half_sq
        index[start : start + chunk] = np.argmax(score, axis=1)
    dist = np.linalg.norm(queries - points[index], axis=1).astype(np.float32)
    return index, dist


def _cluster_radius(x: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Per cluster: how close its members are to each other (95th percentile of the distance
    from a member to its nearest fellow member), with slack for the denser full data."""
    radius = {}
    for lab in np.unique(labels):
        if lab == NOISE:
            continue
        members = x[labels == lab]
        if len(members) < 2:
            continue
        d2 = (members**2).sum(1)[:, None] - 2 * members @ members.T + (members**2).sum(1)[None, :]
        np.fill_diagonal(d2, np.inf)
        nn = np.sqrt(np.maximum(d2.min(1), 0))
        radius[int(lab)] = float(np.quantile(nn, 0.95)) * 1.5
    return radius


def _cluster(x: np.ndarray, params: ClusterParams, rng: np.random.Generator, depth: int,
             ref_radius: float | None = None) -> tuple[np.ndarray, dict]:
    """Labels of ``x`` (L2-normalised, full dimension): direct up to the turbo threshold,
    else the turbo path, whose second looks (diffuse clusters, the residual) come back here
    with the *full-dimensional* vectors: a PCA fitted on everything keeps the axes of the
    frequent characters, and rare ones can collapse in it.

    ``ref_radius`` (second looks only): the typical radius of the clusters found so far. HDBSCAN
    never returns its root as a cluster, so a residual holding one rare character and a few
    odd crops would be all noise; then the single cluster is taken when it is as tight as a
    typical character. At the top level (no reference yet) an all-noise result is taken as
    one cluster: the input is a single character."""
    n = len(x)
    if n <= params.turbo_threshold:
        reduced = pca(x, params.pca_dim, params.seed)
        labels = hdbscan(reduced, params.min_cluster_size, params.min_samples, params.selection)
        # At the top (depth 0) an all-noise result means "one character only" (a single-shot
        # clip, a film about one character): HDBSCAN cannot say that without allow_single.
        if (depth == 0 or ref_radius is not None) and (labels == NOISE).all() and n >= params.min_cluster_size:
            single = hdbscan(reduced, params.min_cluster_size, params.min_samples, params.selection, True)
            radius = _cluster_radius(x, single).get(0)
            if radius is not None and (ref_radius is None or radius <= DIFFUSE * ref_radius):
                # HDBSCAN keeps only the core of a lone cluster; the rest joins it within its radius
                outside = np.nonzero(single == NOISE)[0]
                if len(outside):
                    _, dist = nearest(x[outside], x[single == 0])
                    single[outside[dist <= radius]] = 0
                labels = single
        return labels, {"direct": n}
    started = time.perf_counter()
    reduced = pca(x, params.turbo_pca_dim, params.seed)
    info: dict[str, Any] = {"n": n, "pca_dim": reduced.shape[1], "pca_s": round(time.perf_counter() - started, 2)}
    if depth >= 2:  # deep enough: PCA + HDBSCAN on all of it
        labels = hdbscan(reduced, params.min_cluster_size, params.min_samples, params.selection)
        return labels, {**info, "direct_pca": n}

    # 2. HDBSCAN on a subsample
    started = time.perf_counter()
    sample = np.sort(rng.choice(n, size=min(params.turbo_sample, n), replace=False))
    sample_labels = hdbscan(reduced[sample], params.min_cluster_size, params.min_samples, params.selection)
    info.update(sample=len(sample), sample_clusters=int(sample_labels.max() + 1),
                sample_hdbscan_s=round(time.perf_counter() - started, 2))

    # 3. everything joins the cluster of its nearest clustered sample vector, within its radius
    started = time.perf_counter()
    labels = np.full(n, NOISE, dtype=np.int64)
    clustered = sample[sample_labels != NOISE]
    radius: dict[int, float] = {}
    if len(clustered):
        radius = _cluster_radius(reduced[sample], sample_labels)
        idx, dist = nearest(reduced, reduced[clustered])
        candidate = sample_labels[sample_labels != NOISE][idx]
        limit = np.array([radius.get(int(c), 0.0) for c in range(int(candidate.max()) + 1)])
        accept = dist <= limit[candidate]
        labels[accept] = candidate[accept]
    info["assign_s"] = round(time.perf_counter() - started, 2)

    # 4. a diffuse cluster can hide characters too rare to show in the sample (a side
    # character of 30 instances is ~4 sample points inside a cloud of odd crops)
    median = float(np.median(list(radius.values()))) if radius else 0.0
    diffuse = [c for c, r in radius.items() if r > DIFFUSE * median]
    # the same radius in the full dimension, for the second looks
    full_radius = _cluster_radius(x[sample], sample_labels)
    ref = float(np.median([r for c, r in full_radius.items() if c not in diffuse])) if full_radius else None
    settled = np.zeros(n, bool)  # noise of a second look stays noise (no third look)
    for c in diffuse:
        members = np.nonzero(labels == c)[0]
        sub, _ = _cluster(x[members], params, rng, depth + 1, ref)
        labels[members] = NOISE
        offset = int(labels.max()) + 1
        labels[members[sub != NOISE]] = sub[sub != NOISE] + offset
        settled[members[sub == NOISE]] = True
    info["diffuse_reclustered"] = len(diffuse)

    # 5. what joined nothing is clustered again
    rest = np.nonzero((labels == NOISE) & ~settled)[0]
    info["unassigned"] = len(rest)
    if len(rest) >= params.min_cluster_size:
        sub, rest_info = _cluster(x[rest], params, rng, depth + 1, ref)
        offset = int(labels.max()) + 1
        labels[rest[sub != NOISE]] = sub[sub != NOISE] + offset
        info["rest"] = rest_info
    return labels, info


def cluster_embeddings(x: np.ndarray, params: ClusterParams) -> ClusterResult:
    """Cluster L2-normalised vectors; the turbo path above ``params.turbo_threshold``."""
    x = normalise(x)
    labels, info = _cluster(x, params, np.random.default_rng(params.seed), 0)
    method = "turbo" if len(x) > params.turbo_threshold else "direct"
    return ClusterResult(relabel_by_size(labels), method, info)
