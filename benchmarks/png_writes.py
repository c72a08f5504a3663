"""CPU and size of the PNG writes of a finished project: the default encoding (zlib level 3,
libpng's per-row filter search) against ``png_fast`` (zlib 1, the "up" filter on every row),
in one process, on the same decoded images; and whether the pixels read back are equal.

    PYTHONPATH=src python benchmarks/png_writes.py PROJECT [--folder enhancement] [--images 40] [--repeats 3]

``--folder`` is a folder of the project (searched recursively for .png), e.g. ``enhancement``
(the enhance stage's crops, read back by the dataset stage), ``training_data`` (the dataset
images), ``segmentation/background``. The first ``--images`` files (name order) are decoded
once; then each encoding runs over all of them, alternating, ``--repeats`` rounds, best
round counts (CPU-s of this process). Prints CPU-ms per image, MB written, the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", type=Path)
    ap.add_argument("--folder", default="enhancement")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import cv2

    from animlora.io.images import encode_image, read_image

    files = sorted((args.project / args.folder).rglob("*.png"))[: args.images]
    if not files:
        raise SystemExit(f"no .png under {args.project / args.folder}")
    images = [read_image(f, "RGBA") for f in files]
    variants = {"level 3": {}, "png_fast": {"png_fast": True}}
    best: dict[str, float] = {}
    size: dict[str, int] = {}
    equal = True
    for _ in range(args.repeats):
        for name, kw in variants.items():
            t = time.process_time()
            blobs = [encode_image(im, ".png", **kw) for im in images]
            spent = time.process_time() - t
            best[name] = min(best.get(name, spent), spent)
            size[name] = sum(len(b) for b in blobs)
            for im, blob in zip(images, blobs, strict=True):
                back = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
                equal = equal and np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGRA2RGBA), im)
    n = len(images)
    pixels = sum(im.shape[0] * im.shape[1] for im in images) / n
    print(f"{n} images from {args.folder}/, mean {pixels / 1e6:.2f} Mpixel (RGBA)")
    for name in variants:
        print(f"{name:>9}: {1000 * best[name] / n:7.1f} CPU-ms per image, {size[name] / 1e6:7.2f} MB")
    print(f"png_fast: {best['level 3'] / best['png_fast']:.2f}x less CPU, size x{size['png_fast'] / size['level 3']:.3f}; "
          f"pixels equal: {equal}")


if __name__ == "__main__":
    main()
