"""Cost of the ppocr text test per frame: what prefilter does now (read only line-shaped boxes,
only their first ``read_aspect`` heights) against reading every detected line whole (the
previous rule), in one process on the same frames, and whether the two give the same text
masks.

    PYTHONPATH=src python benchmarks/text.py PROJECT [--plain 10] [--threads 2]

PROJECT is a project whose prefilter ran with ``text_detector: ppocr`` (its
``filtered/text_cover.json`` says which frames had text). Prints CPU-s per frame for frames
with text and for a sample of frames without, and the ratio. Then the wall time of reading the
same frames with onnxruntime on one thread and on ``--threads`` (what the prefilter uses: up to
4 cores), and whether the text masks are equal.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np


def whole_lines(det, bgr: np.ndarray) -> np.ndarray:
    """The previous rule: every detected line recognised whole."""
    result, _ = det.engine(bgr, use_cls=False)
    out = np.zeros(bgr.shape[:2], np.uint8)
    for box, text, score in result or []:
        box = np.asarray(box, np.float32)
        if det.is_line(box, str(text), float(score)):
            cv2.fillPoly(out, [np.round(box).astype(np.int32)], 1)
    return out > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--plain", type=int, default=10, help="frames without text to time")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads to compare with one")
    args = ap.parse_args()
    from animlora.backends.text.detection import PPOCRTextDetector

    frames = json.loads((args.project / "filtered" / "text_cover.json").read_text())["frames"]
    db = sqlite3.connect(f"file:{args.project / 'catalog.sqlite'}?mode=ro", uri=True)
    paths = dict(db.execute("SELECT id, path FROM frames").fetchall())
    text = sorted(k for k, v in frames.items() if any((c or 0) > 0 for c in v["cover"].values()))
    plain = [k for k in sorted(frames) if k not in text]
    plain = plain[:: max(1, len(plain) // max(args.plain, 1))][: args.plain]
    det = PPOCRTextDetector()
    for label, keys in (("with text", text), ("without text", plain)):
        images = [cv2.imread(str(args.project / "frames" / paths[k])) for k in keys if k in paths]
        if not images:
            continue
        start = time.process_time()
        new = [det.detect(im) for im in images]
        now = time.process_time()
        old = [whole_lines(det, im) for im in images]
        t_new, t_old = now - start, time.process_time() - now
        differ = sum(int((a ^ b).sum()) for a, b in zip(old, new, strict=True))
        n = len(images)
        print(f"{label:13s} {n:3d} frames: whole lines {t_old / n:6.2f} CPU-s/frame, "
              f"line starts {t_new / n:6.2f} CPU-s/frame, ratio {t_old / max(t_new, 1e-9):5.2f}x, "
              f"mask pixels that differ {differ}")
    images = [cv2.imread(str(args.project / "frames" / paths[k])) for k in text + plain if k in paths]
    walls, masks = {}, {}
    for threads in (1, args.threads):
        reader = PPOCRTextDetector(threads=threads)
        reader.detect(images[0])  # warm-up
        start = time.perf_counter()
        masks[threads] = [reader.detect(im) for im in images]
        walls[threads] = time.perf_counter() - start
    same = all(np.array_equal(a, b) for a, b in zip(masks[1], masks[args.threads], strict=True))
    print(f"{len(images)} frames: 1 thread {walls[1]:.2f} s wall, {args.threads} threads "
          f"{walls[args.threads]:.2f} s wall, ratio {walls[1] / max(walls[args.threads], 1e-9):.2f}x, "
          f"masks equal {same}")


if __name__ == "__main__":
    main()
