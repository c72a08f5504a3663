"""Which candidate frames could skip the segmenter without losing a dataset image, simulated
on a finished project (no model run).

    PYTHONPATH=src python benchmarks/skip_frames.py PROJECT [--against EXTRACTED] [--cpu 3.0]

PROJECT is a project that ran to ``dataset`` (read only): every candidate frame was segmented
and every instance's fate is in its catalog (prefilter verdict, dataset image). A rule picks
frames to skip from what extract knows before the model (the frame's pixels, its shot, the
candidates before it); for each rule the script prints the frames skipped, the dataset images
lost, the prefilter-kept instances lost, and the model CPU saved (frames x ``--cpu``, the
1024² ISNet run on a 2-core AVX2 CPU, ~3 CPU-s a frame idle).

An image is **lost** when its frame is skipped and no stand-in remains: an instance of the
same track, in a frame that is not skipped, that the prefilter rejected only as a
``duplicate`` and whose appearance signature is within ``--distance`` (the prefilter's
``duplicate_distance``, 8) of the lost one (each stand-in stands in once). A prefilter-kept
instance that did not reach a dataset (clustering noise, the gate) is counted the same way as
"kept lost": it may reach one once clustering improves.

Rules:

- ``same picture <motion> < T``: a candidate whose still image (the stage's: quarter-size luma,
  ~96 px wide, blurred) is within T of the shot's last kept candidate in every cell once the
  camera's ``shift`` or ``affine`` move is left out (``stages/extract.py``: ``picture_change``,
  the stage's own test). Extract already merges ``shift < 10``; the frames here are decoded from
  the JPEG candidates (limited-range luma rebuilt), so a few ``shift`` pairs fall under 10;
- ``even k%``: every shot keeps k% of its candidates, evenly spread (a lower
  ``candidates_per_minute`` does about this; extract would pick the sharpest of wider slots).

``--against EXTRACTED``: a project of the same video after ``run --to extract`` with other
code or settings: its candidates are compared with PROJECT's (dropped, added) and the dropped
ones are scored as skipped (the added ones were never segmented: their fate is unknown).
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from animlora.backends.segmentation.cutouts import signature_distance
from animlora.stages.extract import picture_change


def still_image(path: Path) -> np.ndarray:
    """The extract stage's still image of a candidate, from its file: limited-range luma
    (as decoded), every 4th pixel, area-averaged to ~96 px wide, blurred 1 px."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    y = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[..., 0].astype(np.float32)
    y = np.clip(16 + y * 219 / 255 + 0.5, 0, 255).astype(np.uint8)
    q = np.ascontiguousarray(y[::4, ::4])
    h, w = q.shape
    k = max(1, round(w / 96))
    if k > 1 and h >= 2 * k:
        q = cv2.resize(q[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(q, (5, 5), 1.0)


class Film:
    """A finished project's candidates and every instance's fate."""

    def __init__(self, root: Path) -> None:
        db = sqlite3.connect(f"file:{root / 'catalog.sqlite'}?mode=ro", uri=True)
        rows = db.execute("SELECT f.id, s.idx, f.frame_index, f.path FROM frames f JOIN shots s "
                          "ON s.id = f.shot_id WHERE f.kept = 1 ORDER BY f.frame_index").fetchall()
        self.root = root
        self.frames = [r[0] for r in rows]
        self.shot = {r[0]: r[1] for r in rows}
        self.index = {r[0]: r[2] for r in rows}
        self.path = {r[0]: root / "frames" / r[3] for r in rows}
        self.by_shot: dict[int, list[str]] = defaultdict(list)
        for f in self.frames:
            self.by_shot[self.shot[f]].append(f)
        dataset = dict(db.execute("SELECT instance_id, image_path FROM dataset_items"))
        self.inst: dict[str, dict[str, Any]] = {}
        self.tracks: dict[str, list[str]] = defaultdict(list)
        for iid, frame, track, measures, reason in db.execute(
                "SELECT i.id, i.frame_id, i.track_id, i.measures, p.reason FROM instances i "
                "LEFT JOIN prefilter_results p ON p.instance_id = i.id"):
            sig = json.loads(measures or "{}").get("signature", "")
            self.inst[iid] = {"frame": frame, "track": track, "sig": sig, "reason": reason,
                              "image": dataset.get(iid)}
            self.tracks[track].append(iid)
        db.close()
        self._stills: dict[str, np.ndarray] = {}

    def still(self, frame: str) -> np.ndarray:
        if frame not in self._stills:
            self._stills[frame] = still_image(self.path[frame])
        return self._stills[frame]

    def lost(self, skip: set[str], distance: float, what: str = "dataset") -> list[str]:
        """Instances (dataset images, or every prefilter-kept one) of skipped frames with no stand-in."""
        used: set[str] = set()
        out = []
        for iid in sorted(self.inst):
            d = self.inst[iid]
            if d["frame"] not in skip or (d["image"] is None if what == "dataset" else d["reason"] is not None):
                continue
            best = None
            for j in self.tracks[d["track"]]:
                e = self.inst[j]
                if j in used or e["frame"] in skip or e["reason"] != "duplicate":
                    continue
                dist = signature_distance(d["sig"], e["sig"])
                if dist < distance and (best is None or dist < best[0]):
                    best = (dist, j)
            if best is None:
                out.append(iid)
            else:
                used.add(best[1])
        return out


def same_picture(film: Film, motion: str, threshold: float) -> set[str]:
    skip = set()
    for frames in film.by_shot.values():
        last = None
        for f in frames:
            if last is not None and picture_change(film.still(last), film.still(f), motion, threshold) < threshold:
                skip.add(f)
            else:
                last = f
    return skip


def even(film: Film, share: float) -> set[str]:
    skip = set()
    for frames in film.by_shot.values():
        n = len(frames)
        k = max(1, math.ceil(n * share))
        keep = {frames[round(i * (n - 1) / (k - 1))] for i in range(k)} if k > 1 else {frames[n // 2]}
        skip |= set(frames) - keep
    return skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--against", type=Path, help="a project of the same video after `run --to extract`")
    ap.add_argument("--cpu", type=float, default=3.0, help="model CPU-s a frame (ISNet 1024², 2-core AVX2, idle)")
    ap.add_argument("--distance", type=float, default=8.0, help="the prefilter's duplicate_distance")
    ap.add_argument("--thresholds", default="10,12,14,16")
    args = ap.parse_args()
    film = Film(args.project)
    images = sum(1 for d in film.inst.values() if d["image"])
    print(f"{args.project}: {len(film.frames)} candidates in {len(film.by_shot)} shots, {images} dataset images "
          f"from {len({d['frame'] for d in film.inst.values() if d['image']})} frames")
    rules: list[tuple[str, Any]] = []
    for motion in ("shift", "affine"):
        for t in (float(x) for x in args.thresholds.split(",")):
            rules.append((f"same picture {motion} < {t:g}", lambda m=motion, t=t: same_picture(film, m, t)))
    for share in (0.9, 0.8, 0.7):
        rules.append((f"even {share:.0%}", lambda s=share: even(film, s)))
    if args.against is not None:
        db = sqlite3.connect(f"file:{args.against / 'catalog.sqlite'}?mode=ro", uri=True)
        theirs = {r[0] for r in db.execute("SELECT frame_index FROM frames WHERE kept = 1")}
        db.close()
        ours = {film.index[f] for f in film.frames}
        print(f"--against {args.against}: {len(theirs)} candidates, {len(ours - theirs)} dropped, "
              f"{len(theirs - ours)} added (never segmented: fate unknown) {sorted(theirs - ours)}")
        rules.append(("dropped by --against", lambda: {f for f in film.frames if film.index[f] not in theirs}))
    print(f"{'rule':28} {'skipped':>7} {'images lost':>11} {'kept lost':>9} {'model CPU-s saved':>17}")
    for name, rule in rules:
        skip = rule()
        lost = film.lost(skip, args.distance)
        kept = film.lost(skip, args.distance, "kept")
        print(f"{name:28} {len(skip):7d} {len(lost):11d} {len(kept):9d} {len(skip) * args.cpu:17.0f}")
        for iid in lost:
            d = film.inst[iid]
            print(f"    lost: {iid} (shot {film.shot[d['frame']]}) {d['image']}")


if __name__ == "__main__":
    main()
