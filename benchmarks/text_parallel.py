"""The prefilter's text reading: frames read side by side by single-threaded engines (one per
core, what the stage does) against one engine with one thread per core reading one frame at
a time (what it did before), in one process, alternating, on the same frames of a project;
and whether both read the same lines.

    PYTHONPATH=src python benchmarks/text_parallel.py PROJECT [--frames 30] [--repeats 2]

PROJECT: a project whose prefilter ran with ``text_detector: ppocr`` (``filtered/text_cover.json``
lists the frames it read). The frames: ``--frames`` of the text-free ones read, evenly
spread, plus every frame with text over a mask (the slow ones: credits, titles).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from animlora.backends.text.detection import PPOCRTextDetector, text_readers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--frames", type=int, default=30, help="text-free frames sampled (plus every frame with text)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cache = json.loads((args.project / "filtered" / "text_cover.json").read_text())["frames"]
    db = sqlite3.connect(f"file:{args.project / 'catalog.sqlite'}?mode=ro", uri=True)
    paths = dict(db.execute("SELECT id, path FROM frames"))
    db.close()
    with_text = sorted(f for f, e in cache.items() if any(v for v in e.get("cover", {}).values()))
    plain = sorted(f for f in cache if f not in with_text)
    plain = plain[:: max(1, len(plain) // max(1, args.frames))][: args.frames]
    images = [cv2.imread(str(args.project / "frames" / paths[f])) for f in plain + with_text]
    cores = max(1, min(4, os.cpu_count() or 1))
    before = PPOCRTextDetector(threads=cores)
    readers = text_readers("ppocr")
    for det in [before, *readers]:
        det.lines(images[0])  # load and warm every engine

    def one_at_a_time() -> list[Any]:
        return [before.lines(im) for im in images]

    def side_by_side() -> list[Any]:
        out: list[Any] = [None] * len(images)
        order = itertools.count()

        def work(det: Any) -> None:
            while (i := next(order)) < len(images):
                out[i] = det.lines(images[i])

        with ThreadPoolExecutor(len(readers)) as pool:
            for f in [pool.submit(work, det) for det in readers]:
                f.result()
        return out

    print(f"{len(plain)} text-free frames + {len(with_text)} with text over a mask; {cores} cores; "
          f"load {os.getloadavg()[0]:.1f}")
    runs = ((f"1 engine x {cores} threads, one frame at a time", one_at_a_time),
            (f"{len(readers)} engines x 1 thread, side by side", side_by_side))
    best: dict[str, tuple[float, float]] = {}
    lines: dict[str, list[Any]] = {}
    for _ in range(args.repeats):
        for name, fn in runs:
            wall, cpu = time.perf_counter(), time.process_time()
            lines[name] = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} CPU-s")
            old = best.get(name)
            best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    (a, (wa, ca)), (b, (wb, cb)) = best.items()
    same = all(len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
               for x, y in zip(lines[a], lines[b], strict=True))
    print(f"best: {wa:.1f} -> {wb:.1f} s wall ({wa / wb:.2f}x), {ca:.1f} -> {cb:.1f} CPU-s ({ca / cb:.2f}x); "
          f"lines {sum(len(x) for x in lines[a])}, identical: {same}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
