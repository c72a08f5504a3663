"""CPU throughput of the isnet segmentation backend against rembg on the same ONNX file.

    python benchmarks/segment.py [--frames 6] [--repeats 2] [--streams 0] [--runtime auto] [--precision auto]

Runs, in one process, on the same frames of the bundled clip (Big Buck Bunny, 1280x720):

- ours:  IsnetSegmenter.segment (matte + instances + tracks), the backend the stage uses,
         with its default engine (OpenVINO; ``--runtime onnxruntime`` for the other);
- rembg: ``new_session("dis_custom", model_path=...)`` on the same ONNX file, one
  ``predict`` per frame. (rembg's ``u2net_custom`` session feeds 320x320 images with
  ImageNet statistics; ISNet's graph has a fixed 1024x1024 input, so that session cannot
  run it at all: the script tries it and prints the error. ``dis_custom`` is rembg's
  session for ISNet-class models: 1024², mean 0.5, std 1.)

Timings alternate between the two, ``--repeats`` times, after one warm-up each, and the
best round of each counts (the least disturbed by other processes). Prints images/s and
CPU-seconds per image (all threads; steadier than wall time on a shared machine), the
ratios, and the mean IoU of the masks (ours >= 0.5 vs rembg's >= 128).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def frames(n: int) -> list[np.ndarray]:
    import av

    from animlora.data import sample_clip

    with av.open(str(sample_clip())) as container:
        all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(10, len(all_frames) - 5, n).astype(int)
    return [all_frames[i] for i in picks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--streams", type=int, default=0, help="segment.cpu_streams for ours (0 = auto)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "openvino", "onnxruntime"],
                        help="segment.isnet_runtime for ours")
    parser.add_argument("--precision", default="auto", choices=["auto", "f32"], help="segment.isnet_precision")
    args = parser.parse_args()

    from PIL import Image
    from rembg import new_session

    from animlora.backends.segmentation.base import Frames
    from animlora.backends.segmentation.isnet import IsnetSegmenter, find_onnx
    from animlora.config import load_settings
    from animlora.models import resolve

    settings = load_settings(overrides={"segment": {
        "cpu_streams": args.streams, "batch_size": 4, "isnet_runtime": args.runtime, "isnet_precision": args.precision,
    }}).settings
    onnx_path = find_onnx(resolve("isnet", settings.models))
    images = frames(args.frames)
    # rembg only opens custom models inside its home folder
    os.environ["U2NET_HOME"] = str(onnx_path.parent)
    print(f"model {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB), {len(images)} frames "
          f"{images[0].shape[1]}x{images[0].shape[0]}, {len(os.sched_getaffinity(0))} CPU cores")

    ours = IsnetSegmenter(settings.segment, settings.models, onnx_path=onnx_path)
    print(f"ours: {ours.model.describe}")
    try:
        new_session("u2net_custom", model_path=str(onnx_path)).predict(Image.fromarray(images[0]))
        print("rembg u2net_custom: ran")
    except Exception as exc:  # noqa: BLE001 - reporting why it cannot run ISNet
        print(f"rembg u2net_custom cannot run this model: {str(exc).splitlines()[0][:160]}")
    theirs = new_session("dis_custom", model_path=str(onnx_path))
    pil = [Image.fromarray(im) for im in images]

    def run_ours() -> list[np.ndarray]:
        found = ours.segment(Frames.of_arrays(images))
        masks = [np.zeros(im.shape[:2], bool) for im in images]
        for inst in found:
            masks[inst.frame] |= inst.full_alpha(*images[0].shape[:2]) >= 0.5
        return masks

    def run_rembg() -> list[np.ndarray]:
        return [np.asarray(theirs.predict(p)[0]) >= 128 for p in pil]

    run_ours(), run_rembg()  # warm-up
    best = {"ours": float("inf"), "rembg": float("inf")}
    cpu = {"ours": float("inf"), "rembg": float("inf")}
    results = {}
    for r in range(args.repeats):
        for name, fn in (("ours", run_ours), ("rembg", run_rembg)):
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            best[name] = min(best[name], seconds)
            cpu[name] = min(cpu[name], cpu_seconds)
            print(f"round {r + 1} {name:5s}: {len(images) / seconds:.3f} images/s, "
                  f"{cpu_seconds / len(images):.2f} CPU-s/image")
    ious = []
    for a, b in zip(results["ours"], results["rembg"], strict=True):
        union = (a | b).sum()
        ious.append(float((a & b).sum() / union) if union else 1.0)
    ours_ips, rembg_ips = len(images) / best["ours"], len(images) / best["rembg"]
    print(f"ours {ours_ips:.3f} images/s, rembg {rembg_ips:.3f} images/s, ratio {ours_ips / rembg_ips:.2f}x "
          "(target >= 1.5x)")
    # CPU time (all threads of this process) is less disturbed by other jobs than wall time
    print(f"CPU-s per image: ours {cpu['ours'] / len(images):.2f}, rembg {cpu['rembg'] / len(images):.2f}, "
          f"ratio {cpu['rembg'] / cpu['ours']:.2f}x")
    print(f"mask IoU ours vs rembg: mean {np.mean(ious):.4f}, min {np.min(ious):.4f} (target >= 0.95)")


if __name__ == "__main__":
    main()
