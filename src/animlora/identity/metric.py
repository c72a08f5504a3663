"""A metric learned from the film itself, on top of an embedder's vectors.

The film labels some pairs for free: two instances of one track are one character (seen in
another pose), two instances of one frame that do not touch are two characters
(identity/geometry.py). Two learners use them:

- ``linear`` — discriminative component analysis: the directions along which frame-mates
  differ most relative to how much a track's members vary (generalised eigenvectors of the
  cannot-link difference scatter against the within-track scatter, ridge-regularised); the
  vectors are projected on all of them, each scaled by sqrt(eigenvalue + ``FLOOR`` x the
  largest), so a direction the constraints say nothing about is damped, not dropped;
- ``mlp`` — a torch projection head (Linear -> ReLU -> Linear, 2x wider hidden layer) trained
  with a contrastive loss: same-track pairs pulled within ``POS_MARGIN``, cannot-link pairs
  pushed past ``NEG_MARGIN``, plus a term keeping the cosine of random pairs what it was in
  the original space (the constraints cover few pairs: without it the head forgets the
  rest).

Both need cannot-link pairs; with fewer than ``MIN_PAIRS`` the vectors pass unchanged (the
report says so).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from animlora.identity.clustering import normalise

FLOOR = 0.02
RIDGE = 0.01  # x the mean within-track variance, added to its diagonal
MLP_DIM = 32
MIN_PAIRS = 8
POS_MARGIN = 0.1
NEG_MARGIN = 0.8


def _positive_pairs(track_ids: Sequence[str | None], rng: np.random.Generator, limit: int) -> np.ndarray:
    members: dict[str, list[int]] = defaultdict(list)
    for i, track in enumerate(track_ids):
        if track:
            members[track].append(i)
    pairs = [(a, b) for idx in members.values() for n, a in enumerate(idx) for b in idx[n + 1 :]]
    if len(pairs) > limit:
        pairs = [pairs[k] for k in rng.choice(len(pairs), limit, replace=False)]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def learn_metric(
    x: np.ndarray,
    track_ids: Sequence[str | None],
    cannot: Sequence[tuple[int, int]],
    kind: str,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """The vectors in the learned metric (L2-normalised) and a note for the report."""
    x = normalise(x)
    if kind == "none":
        return x, {"metric": "none"}
    rng = np.random.default_rng(seed)
    neg = np.asarray(sorted(cannot), np.int64).reshape(-1, 2)
    pos = _positive_pairs(track_ids, rng, 50_000)
    info = {"metric": kind, "positive_pairs": int(len(pos)), "cannot_link_pairs": int(len(neg))}
    if len(neg) < MIN_PAIRS or len(pos) < MIN_PAIRS:
        return x, info | {"skipped": f"fewer than {MIN_PAIRS} pairs of a kind: vectors unchanged"}
    if kind == "linear":
        learned = _linear(x, pos, neg)
    elif kind == "mlp":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return x, info | {"skipped": "torch is not installed (pip install 'animlora[models]'): vectors unchanged"}
        learned = _mlp(x, pos, neg, seed)
    else:
        raise ValueError(f"unknown metric {kind!r}")
    return normalise(learned), info


def _linear(x: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    from scipy.linalg import eigh

    dw = (x[pos[:, 0]] - x[pos[:, 1]]).astype(np.float64)
    db = (x[neg[:, 0]] - x[neg[:, 1]]).astype(np.float64)
    sw = dw.T @ dw / len(dw)
    sb = db.T @ db / len(db)
    ridge = RIDGE * np.trace(sw) / len(sw) + 1e-9
    values, vectors = eigh(sb, sw + ridge * np.eye(len(sw)))
    values = np.maximum(values, 0)
    w = vectors * np.sqrt(values + FLOOR * values.max())[None, :]
    return (x.astype(np.float64) @ w).astype(np.float32)


def _mlp(x: np.ndarray, pos: np.ndarray, neg: np.ndarray, seed: int, steps: int = 200) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend
    try:
        return _train_mlp(x, pos, neg, seed, steps)
    finally:
        torch.set_num_threads(threads)


def _train_mlp(x: np.ndarray, pos: np.ndarray, neg: np.ndarray, seed: int, steps: int) -> np.ndarray:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    d = x.shape[1]
    head = nn.Sequential(nn.Linear(d, 2 * MLP_DIM), nn.ReLU(), nn.Linear(2 * MLP_DIM, MLP_DIM))
    opt = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    post, negt = torch.from_numpy(pos), torch.from_numpy(neg)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    for _ in range(steps):
        p = post[torch.randint(len(post), (min(256, len(post)),), generator=gen)]
        q = negt[torch.randint(len(negt), (min(256, len(negt)),), generator=gen)]
        r = torch.randint(n, (256, 2), generator=gen)
        rows = torch.cat([p.reshape(-1), q.reshape(-1), r.reshape(-1)])
        z = nn.functional.normalize(head(xt[rows]), dim=1)  # only the rows this step needs
        zp, zq, zr = torch.split(z, [p.numel(), q.numel(), r.numel()])
        zp, zq, zr = zp.reshape(-1, 2, MLP_DIM), zq.reshape(-1, 2, MLP_DIM), zr.reshape(-1, 2, MLP_DIM)
        dp = 1 - (zp[:, 0] * zp[:, 1]).sum(1)
        dn = 1 - (zq[:, 0] * zq[:, 1]).sum(1)
        keep = (zr[:, 0] * zr[:, 1]).sum(1) - (xt[r[:, 0]] * xt[r[:, 1]]).sum(1)
        loss = (torch.relu(dp - POS_MARGIN) ** 2).mean() + (torch.relu(NEG_MARGIN - dn) ** 2).mean() + (keep**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return head(xt).numpy()
