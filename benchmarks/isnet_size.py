"""ISNet's input size (``segment.isnet_size``): CPU per frame at the model's own 1024² against
smaller sizes, in one process on the same decoded frames, and how far the mattes move.

    PYTHONPATH=src python benchmarks/isnet_size.py FRAMES_DIR [--frames 4] [--sizes 768,640] [--repeats 2]

FRAMES_DIR: a folder of frames (e.g. a project's ``frames/<video>/``; every ``--frames``-th
of them is spread over the folder). The weights are animlora's ``isnet`` (``animlora models
pull isnet``). For each size, one ``IsnetMatte`` with the default engine (OpenVINO); timings
alternate between sizes, ``--repeats`` rounds after a warm-up, best round counts (CPU-s of
this process, all threads). Agreement with 1024²: IoU of the mattes binarised at
``segment.alpha_threshold`` 0.15 (mean and min over the frames). Mask quality against truth
is benchmarks/quality.py's job (run a seed with ``--set segment.isnet_size=N``).
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
    ap.add_argument("frames_dir", type=Path)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--sizes", default="768,640")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from animlora.backends.segmentation.isnet import IsnetMatte, find_onnx
    from animlora.config.loader import load_settings
    from animlora.io.images import list_images, read_image
    from animlora.models import resolve

    paths = list_images(args.frames_dir)
    step = max(1, len(paths) // args.frames)
    images = [read_image(p, "RGB") for p in paths[::step][: args.frames]]
    onnx = find_onnx(resolve("isnet", load_settings().settings.models))
    sizes = [0] + [int(s) for s in args.sizes.split(",") if s]
    models = {size: IsnetMatte(onnx, size=size) for size in sizes}
    mattes = {size: m.predict(images[:1]) for size, m in models.items()}  # warm-up
    best: dict[int, float] = {}
    for _ in range(args.repeats):
        for size, model in models.items():
            t = time.process_time()
            mattes[size] = model.predict(images)
            spent = time.process_time() - t
            best[size] = min(best.get(size, spent), spent)
    n = len(images)
    print(f"{n} frames of {images[0].shape[1]}x{images[0].shape[0]} from {args.frames_dir}; {models[0].describe}")
    for size in sizes:
        ious = []
        for a, b in zip(mattes[0], mattes[size], strict=True):
            ma, mb = a >= 0.15, b >= 0.15
            union = np.logical_or(ma, mb).sum()
            ious.append(np.logical_and(ma, mb).sum() / union if union else 1.0)
        label = f"{size or 1024}²"
        print(f"{label:>6}: {best[size] / n:5.2f} CPU-s per frame, {best[0] / best[size]:.2f}x less than 1024²; "
              f"matte IoU vs 1024² mean {np.mean(ious):.3f} min {np.min(ious):.3f}")


if __name__ == "__main__":
    main()
