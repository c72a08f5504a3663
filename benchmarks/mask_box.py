"""``curation.images.mask_box`` (OpenCV's bounding rectangle) against the previous
``np.nonzero`` + min/max, in one process: the same boxes, and the CPU per full-frame mask.

    PYTHONPATH=src python benchmarks/mask_box.py [--masks 300] [--repeats 50]

Random 1280x720 uint8 masks with 0-3 rectangles of random values (some empty, some under
the threshold); every box compared; then one 400x400 figure timed ``--repeats`` times each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def old_mask_box(mask: np.ndarray, alpha_threshold: float) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask > int(alpha_threshold * 255))
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()

    from animlora.curation.images import mask_box

    rng = np.random.default_rng(0)
    same = 0
    for _ in range(args.masks):
        m = np.zeros((720, 1280), np.uint8)
        for _ in range(int(rng.integers(0, 4))):
            x, y = int(rng.integers(0, 1280)), int(rng.integers(0, 720))
            m[y : y + int(rng.integers(1, 300)), x : x + int(rng.integers(1, 300))] = int(rng.integers(0, 256))
        same += old_mask_box(m, 0.15) == mask_box(m, 0.15)
    print(f"same box on {same} of {args.masks} masks")
    m = np.zeros((720, 1280), np.uint8)
    m[100:500, 300:700] = 200
    spent = {}
    for name, fn in (("np.nonzero", old_mask_box), ("this tree", mask_box)):
        t = time.process_time()
        for _ in range(args.repeats):
            fn(m, 0.15)
        spent[name] = (time.process_time() - t) / args.repeats
        print(f"{name:>10}: {1000 * spent[name]:.2f} CPU-ms per 1280x720 mask")
    print(f"ratio: {spent['np.nonzero'] / spent['this tree']:.1f}x less CPU")


if __name__ == "__main__":
    main()
