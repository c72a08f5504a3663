"""Clustering speed and quality at film scale: our path vs scikit-learn's HDBSCAN.

Data: ``--n`` (default 100k) synthetic 768-d embeddings of 30 identities plus uniform
noise, shaped like image embeddings of characters: each identity is a centre plus a
low-rank "pose/lighting" spread plus isotropic jitter, all identities sharing a common
"same film" direction (so they are closer to each other than random vectors), cluster
sizes from a long-tailed distribution (a few leads, many side characters).

Runs, in this process on the same data:
1. ours: ``animlora.identity.clustering.cluster_embeddings`` (the turbo path from 20k on);
2. baseline: ``sklearn.cluster.HDBSCAN`` directly on the 768-d vectors, with the same
   min_cluster_size / min_samples, on growing random subsets until one takes longer than
   ``--cap`` seconds; its time at ``--n`` is extrapolated with the O(n^2) growth fitted on
   the subsets, and its ARI is the one measured on the largest subset it finished;
3. ours on that same largest subset too, so both ARIs are compared on equal data.

    PYTHONPATH=src python benchmarks/cluster.py [--n 100000] [--cap 120] [--threads 2] [--tiny 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def make_data(n: int, dim: int = 768, identities: int = 30, noise_fraction: float = 0.05, seed: int = 0,
              tiny: int = 0):
    """``tiny`` extra identities of 20-60 instances each: side characters that a subsample
    of 12k out of 100k barely sees (the residual pass must find them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    common /= np.linalg.norm(common)
    weights = 1.0 / np.arange(1, identities + 1) ** 0.8  # long tail: leads and side characters
    sizes = np.floor(weights / weights.sum() * n * (1 - noise_fraction)).astype(int)
    sizes = np.maximum(sizes, 40)
    if tiny:
        extra = rng.integers(20, 61, tiny)
        sizes[0] -= int(extra.sum())
        sizes = np.concatenate([sizes, extra])
    n_noise = n - int(sizes.sum())
    parts, labels = [], []
    for k, size in enumerate(sizes):
        centre = rng.normal(size=dim)
        centre = 0.75 * common + 0.66 * centre / np.linalg.norm(centre)
        basis = np.linalg.qr(rng.normal(size=(dim, 8)))[0].T  # 8 orthonormal "pose" directions
        pts = centre + rng.normal(scale=0.12, size=(size, 8)) @ basis
        pts += rng.normal(scale=0.35 / np.sqrt(dim), size=(size, dim))  # per-image jitter
        parts.append(pts)
        labels += [k] * size
    noise = rng.normal(size=(n_noise, dim))
    noise = 0.75 * common + 0.66 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    parts.append(noise)
    labels += [-1] * n_noise
    x = np.concatenate(parts).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(len(x))
    return x[order], np.asarray(labels)[order]


def ari(truth, found):
    """sklearn's ARI on the labels as given: noise is one label on both sides, which is what a
    user sees (one noise/ folder)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth, found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--cap", type=float, default=120.0, help="stop growing the baseline's subset past this")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-cluster-size", type=int, default=12)
    parser.add_argument("--min-samples", type=int, default=2)
    parser.add_argument("--tiny", type=int, default=0, help="extra identities of 20-60 instances")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    from sklearn.cluster import HDBSCAN

    from animlora.identity.clustering import ClusterParams, cluster_embeddings

    x, truth = make_data(args.n, tiny=args.tiny)
    print(f"data: {len(x)} x {x.shape[1]}, {len(set(truth)) - 1} identities, {(truth < 0).sum()} noise")
    params = ClusterParams(args.min_cluster_size, args.min_samples)

    t = time.perf_counter()
    ours = cluster_embeddings(x, params)
    ours_s = time.perf_counter() - t
    ours_ari = ari(truth, ours.labels)
    print(f"ours ({ours.method}): {ours_s:.1f} s, {ours.labels.max() + 1} clusters, ARI {ours_ari:.4f}")
    small = [k for k in set(truth.tolist()) if k >= 0 and (truth == k).sum() <= 60]
    found_small = 0
    for k in small:
        members = ours.labels[truth == k]
        best = np.bincount(members[members >= 0]).argmax() if (members >= 0).any() else -1
        if best >= 0 and (members == best).mean() >= 0.8 and (truth[ours.labels == best] == k).mean() >= 0.9:
            found_small += 1
    if small:
        print(f"identities of <= 60 instances recovered: {found_small} of {len(small)}")

    rng = np.random.default_rng(1)
    sizes, times, last = [], [], None
    m = 2000
    while m <= args.n:
        idx = np.sort(rng.choice(len(x), m, replace=False))
        t = time.perf_counter()
        labels = HDBSCAN(
            min_cluster_size=args.min_cluster_size, min_samples=args.min_samples, copy=True
        ).fit_predict(x[idx])
        took = time.perf_counter() - t
        sizes.append(m)
        times.append(took)
        last = (m, idx, labels, took)
        print(f"sklearn HDBSCAN direct on {m}: {took:.1f} s, ARI {ari(truth[idx], labels):.4f}")
        if took * 4 > args.cap or m == args.n:
            break
        m = min(args.n, m * 2)
    assert last is not None
    m, idx, labels, took = last
    exponent = float(np.polyfit(np.log(sizes), np.log(times), 1)[0]) if len(sizes) > 1 else 2.0
    exponent = max(exponent, 1.0)
    baseline_s = took * (args.n / m) ** exponent if m < args.n else took
    base_ari = ari(truth[idx], labels)
    ours_sub = cluster_embeddings(x[idx], params)
    ours_sub_ari = ari(truth[idx], ours_sub.labels)
    result = {
        "n": args.n,
        "ours_seconds": round(ours_s, 2),
        "ours_method": ours.method,
        "ours_ari": round(ours_ari, 4),
        "sklearn_seconds": round(baseline_s, 1),
        "sklearn_seconds_measured_on": m,
        "sklearn_extrapolated": m < args.n,
        "sklearn_growth_exponent": round(exponent, 2),
        "sklearn_ari_on_subset": round(base_ari, 4),
        "ours_ari_on_same_subset": round(ours_sub_ari, 4),
        "speedup": round(baseline_s / ours_s, 1),
        "small_identities_recovered": f"{found_small}/{len(small)}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
