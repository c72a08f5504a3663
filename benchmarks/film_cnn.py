"""Issue 11, item 3: an embedder that learns from the film itself, measured against the colour one.

A small CNN (torchvision's ResNet-18, random init, 64 px) is trained on a finished project's own
cut-outs: two members of one track are a positive pair, the other tracks of the batch are the
negatives (NT-Xent, SimCLR's loss), with random crops, flips and a random light (a per-channel
gain in linear RGB, an exposure change, sometimes grey) so that it cannot tell tracks apart by
their light. Its pooled features are then compared with the project's colour vectors by the
share of labelled instances whose nearest neighbour from another shot has their label
(``nn_other_shot``), for the CNN alone and for both concatenated. ``--same`` names dataset
folders that are one character (the film's Buck under four lights) and adds, for them, the
share whose nearest instance *in another folder* (and shot) is that character: the light split.

    python benchmarks/film_cnn.py PROJECT --truth quality.json            # a cgi-bench seed
    python benchmarks/film_cnn.py FILM --same character_1+character_4+character_5+character_7

Labels: ``--truth`` is ``benchmarks/quality.py --json`` output (its instance truth); without it
every image of the project's datasets is labelled by its folder (folders joined by ``--same``
share a label), which is only as right as the folders (the film's: >= 94% by eye).
``--save PREFIX`` writes the CNN features (``PREFIX.npy``) and their instance ids (``.json``).
Measured and not kept: docs/identity.md, "A CNN trained on the film's own tracks".
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity import nearest_other_shot  # noqa: E402


def _cutout(path: Path, size: int) -> np.ndarray:
    """RGBA cut-out, centred on a square, at ``size * 1.25`` px, float 0..1 (H x W x 4)."""
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise SystemExit(f"{path}: cannot read the cut-out")
    if im.ndim == 2:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGRA)
    if im.shape[2] == 3:
        im = np.dstack([im, np.full(im.shape[:2], 255, np.uint8)])
    h, w = im.shape[:2]
    s = max(h, w)
    square = np.zeros((s, s, 4), np.uint8)
    square[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = im
    big = size + size // 4
    square = cv2.resize(square, (big, big), interpolation=cv2.INTER_AREA)
    rgb = square[..., 2::-1].astype(np.float32) / 255
    return np.concatenate([rgb, square[..., 3:].astype(np.float32) / 255], 2)


def _on_grey(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3] * rgba[..., 3:] + 0.5 * (1 - rgba[..., 3:])


def _augment(batch: np.ndarray, size: int, gain: float, rng: random.Random) -> np.ndarray:
    import cv2

    out = np.empty((len(batch), size, size, 3), np.float32)
    big = batch.shape[1]
    for b, im in enumerate(batch):
        c = int(big * rng.uniform(0.7, 1.0))
        x, y = rng.randint(0, big - c), rng.randint(0, big - c)
        im = cv2.resize(im[y:y + c, x:x + c], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            im = im[:, ::-1]
        light = np.exp([rng.uniform(-gain, gain) for _ in range(3)]) * np.exp(rng.uniform(-0.5, 0.5))
        rgb = np.clip(im[..., :3] ** 2.2 * light.astype(np.float32), 0, 1) ** (1 / 2.2)
        if rng.random() < 0.2:
            rgb = np.repeat(rgb.mean(2, keepdims=True), 3, 2)
        out[b] = _on_grey(np.concatenate([rgb, im[..., 3:]], 2))
    return out


def train_features(cutouts: np.ndarray, tracks: list[str], epochs: int, size: int, gain: float,
                   temperature: float, seed: int) -> np.ndarray:
    """The CNN trained on the tracks; L2-normalised pooled features of every cut-out."""
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.manual_seed(seed)
    rng = random.Random(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tracks):
        members[t].append(i)
    names = list(members)
    net = torchvision.models.resnet18(weights=None, num_classes=128)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    n = min(64, len(names))
    steps = max(1, len(tracks) // (2 * n)) * 2
    start = time.time()
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for _ in range(steps):
            pick = rng.sample(names, n)
            first = [rng.choice(members[t]) for t in pick]
            second = [rng.choice(members[t]) for t in pick]
            views = np.concatenate([_augment(cutouts[first], size, gain, rng), _augment(cutouts[second], size, gain, rng)])
            z = F.normalize(net(torch.from_numpy(views).permute(0, 3, 1, 2)), dim=1)
            sim = z @ z.T / temperature
            sim.fill_diagonal_(-1e9)
            loss = F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            print(f"  epoch {epoch + 1}: loss {total / steps:.3f} ({time.time() - start:.0f} s)")
    net.eval()
    backbone = torch.nn.Sequential(*list(net.children())[:-1])
    o = (cutouts.shape[1] - size) // 2
    plain = np.stack([_on_grey(im[o:o + size, o:o + size]) for im in cutouts])
    with torch.no_grad():
        feats = torch.cat([torch.flatten(backbone(torch.from_numpy(plain[s:s + 128]).permute(0, 3, 1, 2)), 1)
                           for s in range(0, len(plain), 128)])
    return F.normalize(feats, dim=1).numpy()


def nn_counts(x: np.ndarray, labels: list[str | None], shots: list[str], folders: list[str | None] | None = None,
              label: str | None = None) -> tuple[int, int, Counter]:
    """(right, counted, right per label): the nearest labelled instance from another shot (and,
    with ``folders``, another folder; only instances of ``label``) has the same label."""
    known = [i for i, lab in enumerate(labels) if lab is not None]
    if not known:
        return 0, 0, Counter()
    lab = np.array([labels[i] for i in known], dtype=object)
    hit, ok = nearest_other_shot(x[known], list(lab), [shots[i] for i in known],
                                 None if folders is None else [folders[i] for i in known])
    counted = ok if label is None else ok & (lab == label)
    right = counted & hit
    return int(right.sum()), int(counted.sum()), Counter(lab[right].tolist())


def label_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """PROJECT, and where its labels come from (see :func:`labelled_cutouts`)."""
    ap.add_argument("project", type=Path)
    ap.add_argument("--truth", type=Path, help="benchmarks/quality.py --json output (a cgi-bench seed)")
    ap.add_argument("--same", action="append", default=[], help="dataset folders that are one character: a+b+c")
    return ap


def labelled_cutouts(project: Path, truth: Path | None, same: list[str]) -> tuple[
        list[str], list[tuple], np.ndarray, list[str | None], list[str | None]]:
    """A finished project's embedded cut-outs: (ids, catalog rows (id, path, track, shot), unit
    colour vectors, labels, dataset folders). Labels come from ``truth`` (benchmarks/quality.py
    --json) or else from the dataset folders, those joined in a ``same`` group ("a+b") sharing one."""
    db = sqlite3.connect(project / "catalog.sqlite")
    colour = {iid: np.frombuffer(v, np.float32) for iid, v in db.execute("SELECT instance_id, vector FROM embeddings")}
    rows = [r for r in db.execute("SELECT instance_id, path, track_id, shot_id FROM identity_instances ORDER BY instance_id")
            if r[0] in colour]
    ids = [r[0] for r in rows]
    folder_of: dict[str, str] = {}
    if truth:
        label_of = {k: v for k, v in json.loads(truth.read_text())["instance_truth"].items() if v != "not_character"}
    else:
        joined = {f: group for group in same for f in group.split("+")}
        for meta in sorted((project / "training_data").glob("*/metadata.jsonl")):
            folder = meta.parent.name
            for line in meta.read_text().splitlines():
                folder_of[json.loads(line)["image_path"].rsplit(".", 1)[0]] = folder
        label_of = {iid: joined.get(f, f) for iid, f in folder_of.items()}
    col = np.stack([colour[i] / np.linalg.norm(colour[i]) for i in ids])
    return ids, rows, col, [label_of.get(i) for i in ids], [folder_of.get(i) for i in ids]


def report(spaces: dict[str, np.ndarray], labels: list[str | None], shots: list[str], folders: list[str | None],
           same: list[str]) -> None:
    """Print nn_other_shot per space (and per label), and for each ``same`` group the share whose
    nearest instance in another folder (and shot) is that character."""
    n = Counter(lab for lab in labels if lab is not None)
    for name, x in spaces.items():
        right, counted, per = nn_counts(x, labels, shots)
        print(f"{name:14s} nn_other_shot {right / counted:.3f} ({right}/{counted}); "
              + ", ".join(f"{k} {per[k]}/{n[k]}" for k in sorted(n)))
    for group in same:
        for name, x in spaces.items():
            right, counted, _ = nn_counts(x, labels, shots, folders, group)
            print(f"{name:14s} {group}: nearest in another folder is the same character {right}/{counted} "
                  f"= {right / max(counted, 1):.3f}")


def main() -> None:
    ap = label_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--gain", type=float, default=0.35, help="random light: per-channel log gain, +-")
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write PREFIX.npy (features) and PREFIX.json (instance ids)")
    a = ap.parse_args()

    ids, rows, col, labels, folders = labelled_cutouts(a.project, a.truth, a.same)
    shots = [r[3] for r in rows]
    tracks = [r[2] or f"#{i}" for i, r in enumerate(rows)]
    print(f"{len(ids)} cut-outs in {len(set(tracks))} tracks, {sum(lab is not None for lab in labels)} labelled")
    cutouts = np.stack([_cutout(a.project / r[1], a.size) for r in rows])
    cnn = train_features(cutouts, tracks, a.epochs, a.size, a.gain, a.temperature, a.seed)
    report({"colour": col, "cnn": cnn, "colour+cnn": np.concatenate([col, cnn], 1)}, labels, shots, folders, a.same)
    if a.save:
        np.save(f"{a.save}.npy", cnn)
        Path(f"{a.save}.json").write_text(json.dumps(ids))


if __name__ == "__main__":
    main()
