"""CPU throughput of the isnet segmentation backend against rembg on the same ONNX file;
with ``--stage PROJECT``, the whole segment stage of this tree against an older commit.

    python benchmarks/segment.py [--frames 6] [--repeats 2] [--streams 0] [--runtime auto] [--precision auto]
    python benchmarks/segment.py --stage PROJECT [--shots 0,3,5] [--baseline f5f41a1] [--repeats 2] [--model]

``--stage``: PROJECT is an animlora project that has run ``extract`` (its kept frames, by
shot). Both versions of ``animlora`` are loaded in this one process (the baseline from
``git archive BASELINE``; ``sys.modules`` is swapped around each call, so every lazy import
resolves to the version that runs). The model runs once per shot and its instances are
replayed to both versions (same input, and the model, which neither version changes, is
timed on its own): the script prints, per version, the stage's own work (reading frames, the
shot pass, tracks, measures, writing every file) in frames/s and CPU-s/frame, the ratio,
the model's s/frame, and whether both wrote the same instances, measures and pixels.
``--model`` first times each version's own model (matte, instances, tracks) on the same
decoded frames, alternating, and compares their instances (count per frame, mask IoU).

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
from collections import Counter
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


# -- --stage: this tree against an older commit, in one process ------------------------------
def _load_version(ref: str | None) -> dict[str, object]:
    """The ``animlora`` modules of ``ref`` (None = this tree), imported and then taken out of
    ``sys.modules`` (put back by :func:`_active`)."""
    import importlib
    import subprocess
    import tarfile
    import tempfile

    for name in [m for m in sys.modules if m == "animlora" or m.startswith("animlora.")]:
        del sys.modules[name]
    root = Path(__file__).resolve().parents[1]
    if ref is None:
        path = str(root / "src")
    else:
        folder = Path(tempfile.mkdtemp(prefix="animlora-baseline-"))
        data = subprocess.run(["git", "-C", str(root), "archive", ref, "src/animlora"], check=True,
                              capture_output=True).stdout
        import io

        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(folder, filter="data")
        path = str(folder / "src")
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    for name in ("animlora.stages.segment", "animlora.backends.segmentation.refine",
                 "animlora.backends.segmentation.isnet", "animlora.config", "animlora.pipeline.stage"):
        importlib.import_module(name)
    modules = {m: sys.modules.pop(m) for m in list(sys.modules) if m == "animlora" or m.startswith("animlora.")}
    sys.path.remove(path)
    modules["__path__"] = path  # type: ignore[assignment]
    return modules


class _active:
    """Within the block, ``import animlora...`` (lazy imports too) finds ``modules``."""

    def __init__(self, modules: dict[str, object]) -> None:
        self.modules = modules

    def __enter__(self) -> dict[str, object]:
        for name in [m for m in sys.modules if m == "animlora" or m.startswith("animlora.")]:
            del sys.modules[name]
        sys.modules.update({k: v for k, v in self.modules.items() if k != "__path__"})  # type: ignore[misc]
        sys.path.insert(0, str(self.modules["__path__"]))
        return self.modules

    def __exit__(self, *exc: object) -> None:
        for name in [m for m in sys.modules if m == "animlora" or m.startswith("animlora.")]:
            self.modules.setdefault(name, sys.modules[name])  # imported inside the block
            del sys.modules[name]
        sys.path.remove(str(self.modules["__path__"]))


def _shots(project: Path) -> list[tuple[str, list[dict[str, object]]]]:
    import sqlite3

    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT id, video_id, shot_id, path FROM frames WHERE kept = 1 AND path IS NOT NULL "
                       "ORDER BY video_id, frame_index").fetchall()
    con.close()
    shots: dict[str, list[dict[str, object]]] = {}
    for frame_id, video_id, shot_id, path in rows:
        shot = shot_id or f"{video_id}_frame_{frame_id}"
        shots.setdefault(shot, []).append({"frame_id": frame_id, "video_id": video_id, "shot_id": shot,
                                           "source": str(project / "frames" / path), "name": Path(path).stem})
    return list(shots.items())


def stage_main(args: argparse.Namespace) -> None:
    import hashlib
    import shutil
    import tempfile

    project = Path(args.stage).resolve()
    shots = _shots(project)
    picks = [shots[int(i)] for i in args.shots.split(",")] if args.shots else shots
    n_frames = sum(len(frames) for _, frames in picks)
    versions = {"baseline": _load_version(args.baseline), "this tree": _load_version(None)}
    replay: dict[str, list[object]] = {}  # shot -> the model's instances (computed once)
    model_seconds = [0.0]

    def prepare(modules: dict[str, object]) -> tuple[object, object, object]:
        with _active(modules):
            from animlora.backends import registry
            from animlora.config import load_settings
            from animlora.pipeline.stage import StageJob
            from animlora.stages.segment import SegmentStage, held_segmenter

            settings = load_settings(project).settings
            segmenter, note = held_segmenter(settings)

            class Replay:  # the real segmenter, run once per shot, its output replayed
                name = segmenter.name

                def describe(self) -> str:
                    return segmenter.describe()

                def segment(self, frames: object) -> list[object]:
                    key = current[0]
                    if key not in replay:
                        start = time.perf_counter()
                        replay[key] = segmenter.segment(frames)
                        model_seconds[0] += time.perf_counter() - start
                    return list(replay[key])

            held_key = registry._HELD["segmentation"][0]
            registry._HELD["segmentation"] = (held_key, (Replay(), note))
            out = Path(tempfile.mkdtemp(prefix="segbench-"))
            job = StageJob(settings=settings, output_dir=out, input_path=None, workspace_root=project,
                           standalone=False)
            return SegmentStage(), job, out

    current = [""]
    if args.model:  # before prepare(), which replaces each version's held segmenter by a replay
        compare_models(project, versions, picks, args.repeats)
    prepared = {name: prepare(modules) for name, modules in versions.items()}
    # the model once per shot, outside the timings
    with _active(versions["this tree"]):
        stage, job, _ = prepared["this tree"]
        from animlora.pipeline.stage import WorkItem

        for key, frames in picks:
            current[0] = key
            stage.process(job, WorkItem(key, "x", frames), lambda done, total: None)  # type: ignore[attr-defined]
    print(f"{project.name}: {len(picks)} shots, {n_frames} frames; model {model_seconds[0] / n_frames:.2f} s/frame "
          f"(run once, replayed to both versions)")
    best = {name: float("inf") for name in versions}
    cpu = {name: float("inf") for name in versions}
    outputs: dict[str, list[object]] = {}
    for r in range(args.repeats):
        for name, modules in versions.items():
            stage, job, out = prepared[name]
            shutil.rmtree(out, ignore_errors=True)
            with _active(modules):
                from animlora.pipeline.stage import WorkItem

                start, start_cpu = time.perf_counter(), time.process_time()
                results = []
                for key, frames in picks:
                    current[0] = key
                    results.append(stage.process(job, WorkItem(key, "x", frames), lambda done, total: None))  # type: ignore[attr-defined]
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            outputs[name] = results
            best[name], cpu[name] = min(best[name], seconds), min(cpu[name], cpu_seconds)
            print(f"round {r + 1} {name:9s}: {n_frames / seconds:.2f} frames/s, {cpu_seconds / n_frames:.3f} CPU-s/frame",
                  flush=True)
    old, new = "baseline", "this tree"
    print(f"stage work without the model: baseline {n_frames / best[old]:.2f} frames/s, this tree "
          f"{n_frames / best[new]:.2f} frames/s, ratio {best[old] / best[new]:.2f}x wall, {cpu[old] / cpu[new]:.2f}x CPU")
    model = model_seconds[0] / n_frames
    whole_old, whole_new = best[old] / n_frames + model, best[new] / n_frames + model
    print(f"with the model ({model:.2f} s/frame): baseline {1 / whole_old:.3f} frames/s, this tree "
          f"{1 / whole_new:.3f} frames/s, ratio {whole_old / whole_new:.2f}x")

    def rows(results: list[object]) -> list[object]:
        return [(r.data["instances"], r.data["tracks"]) for r in results]  # type: ignore[attr-defined]

    def pixels(out: Path, names: list[str]) -> dict[str, str]:
        from PIL import Image

        found = {}
        for name in names:
            with Image.open(out / name) as im:
                found[name] = hashlib.sha256(np.asarray(im).tobytes()).hexdigest()
        return found

    files = {name: sorted(f for r in outputs[name] for f in r.files) for name in versions}  # type: ignore[attr-defined]
    same_rows = rows(outputs[old]) == rows(outputs[new])
    same_files = files[old] == files[new]
    differ: Counter[str] = Counter()
    if same_files:
        a, b = pixels(prepared[old][2], files[old]), pixels(prepared[new][2], files[new])
        differ.update(str(Path(name).parent) for name in files[old] if a[name] != b[name])
    same_pixels = same_files and not differ
    print(f"same instances, tracks and measures: {same_rows}; same files: {same_files}; same pixels: {same_pixels}"
          + (f" (files whose pixels differ, by folder: {dict(sorted(differ.items()))})" if differ else ""))
    for _, _, out in prepared.values():  # the scratch outputs and the baseline's source copy
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(Path(str(versions["baseline"]["__path__"])).parent, ignore_errors=True)


def compare_models(project: Path, versions: dict[str, dict[str, object]],
                   picks: list[tuple[str, list[dict[str, object]]]], repeats: int) -> None:
    """``--model``: each version's own segmenter (``held_segmenter``: the model, instances and
    tracks) on the same decoded frames, alternating, best round each; then its instances
    against the baseline's: same count per frame, and the IoU of each baseline instance's mask
    (``alpha_threshold``) with its best match in this tree's."""
    from animlora.io.images import read_image

    decoded = {key: [read_image(str(f["source"]), "RGB") for f in frames] for key, frames in picks}
    n_frames = sum(len(v) for v in decoded.values())
    best = {name: (float("inf"), float("inf")) for name in versions}
    found: dict[str, dict[str, list[object]]] = {}
    threshold = 0.15
    for r in range(repeats + 1):  # round 0 warms each engine up (its first calls compile and allocate)
        for name, modules in versions.items():
            with _active(modules):
                from animlora.backends.segmentation.base import Frames
                from animlora.config import load_settings
                from animlora.stages.segment import held_segmenter

                settings = load_settings(project).settings
                threshold = settings.segment.alpha_threshold
                segmenter, _ = held_segmenter(settings)
                start, start_cpu = time.perf_counter(), time.process_time()
                found[name] = {key: segmenter.segment(Frames.of_arrays(arrays)) for key, arrays in decoded.items()}
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            if r:
                best[name] = (min(best[name][0], seconds), min(best[name][1], cpu_seconds))
                print(f"model round {r} {name:9s}: {seconds / n_frames:.2f} s/frame, {cpu_seconds / n_frames:.2f} "
                      f"CPU-s/frame ({segmenter.describe()}); load average {os.getloadavg()[0]:.1f}", flush=True)
    (w_old, c_old), (w_new, c_new) = best["baseline"], best["this tree"]
    print(f"model (matte + instances + tracks): baseline {w_old / n_frames:.2f} s/frame {c_old / n_frames:.2f} "
          f"CPU-s/frame, this tree {w_new / n_frames:.2f} s/frame {c_new / n_frames:.2f} CPU-s/frame, ratio "
          f"{w_old / w_new:.2f}x wall, {c_old / c_new:.2f}x CPU")
    ious, counts_equal, frames_seen = [], 0, 0
    for key, arrays in decoded.items():
        height, width = arrays[0].shape[:2]
        for index in range(len(arrays)):
            old = [i.full_alpha(height, width) >= threshold for i in found["baseline"][key] if i.frame == index]
            new = [i.full_alpha(height, width) >= threshold for i in found["this tree"][key] if i.frame == index]
            frames_seen += 1
            counts_equal += len(old) == len(new)
            for a in old:
                union = [(a | b).sum() for b in new]
                ious.append(max((float((a & b).sum() / u) for b, u in zip(new, union, strict=True) if u), default=0.0))
    if ious:
        print(f"instances: {sum(len(v) for v in found['baseline'].values())} baseline, "
              f"{sum(len(v) for v in found['this tree'].values())} this tree; same count in {counts_equal} of "
              f"{frames_seen} frames; mask IoU per baseline instance (best match): mean {np.mean(ious):.4f}, "
              f"min {np.min(ious):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--streams", type=int, default=0, help="segment.cpu_streams for ours (0 = auto)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "openvino", "onnxruntime"],
                        help="segment.isnet_runtime for ours")
    parser.add_argument("--precision", default="auto", choices=["auto", "f32"], help="segment.isnet_precision")
    parser.add_argument("--stage", metavar="PROJECT", help="time the segment stage on PROJECT's frames, this tree "
                        "against --baseline")
    parser.add_argument("--shots", default="", help="--stage: shot numbers (0-based, comma-separated); default all")
    parser.add_argument("--model", action="store_true", help="--stage: also time each version's own model "
                        "(held_segmenter) on the shots and compare their instances (count, mask IoU)")
    parser.add_argument("--baseline", default="f5f41a1", help="--stage: git commit to compare with")
    args = parser.parse_args()
    if args.stage:
        stage_main(args)
        return

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
