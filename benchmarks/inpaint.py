"""The inpaint stage of this tree against an older commit, in one process, on the same shots.

    python benchmarks/inpaint.py SEGMENT_DIR [--shots S1,S2 | --count 4] [--baseline 1b614b9]
                                 [--backend opencv] [--repeats 1] [--save DIR]

SEGMENT_DIR is a segment output folder (``background/`` and ``segmentation_results.json``,
e.g. a project's ``segmentation/``). Shots are its moving-camera shots by default (the
costly ones), the ``--count`` longest; ``--shots`` names them. Both versions of ``animlora``
are loaded (the baseline from ``git archive BASELINE``, as benchmarks/segment.py does) and
each runs ``InpaintStage.process`` on every shot; the script prints per version the CPU
seconds per plate (all threads) and the wall time, the ratios, and how far the new plates
are from the old ones inside the holes (mean absolute difference, 0-255) with the stage's own
checks (PSNR/SSIM outside the hole, keyframes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segment import _active, _load_version  # noqa: E402  (benchmarks/segment.py)


def shots_of(seg: Path) -> dict[str, list[dict[str, str]]]:
    results = json.loads((seg / "segmentation_results.json").read_text(encoding="utf-8"))
    shots: dict[str, list[dict[str, str]]] = {}
    for r in sorted(results["frames"], key=lambda r: (r["shot_id"] or "", r["source"])):
        if r.get("status") == "ok" and r.get("background_path") and (seg / r["background_path"]).is_file():
            shots.setdefault(r["shot_id"], []).append({"frame_id": r["frame_id"],
                                                       "background": str(seg / r["background_path"])})
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segment_dir")
    parser.add_argument("--shots", default="", help="shot ids, comma-separated (default: --count moving shots)")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--baseline", default="1b614b9")
    parser.add_argument("--backend", default="opencv", help="inpaint.backend for both")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--save", help="keep both versions' plates under SAVE/baseline and SAVE/this_tree")
    args = parser.parse_args()
    seg = Path(args.segment_dir).resolve()
    shots = shots_of(seg)
    versions = {"baseline": _load_version(args.baseline), "this tree": _load_version(None)}
    if args.shots:
        picks = args.shots.split(",")
    else:  # the longest moving-camera shots (a static shot is one median, cheap in both)
        with _active(versions["this tree"]):
            from animlora.stages.inpaint import InpaintStage, load_background

            moving = []
            for shot, frames in shots.items():
                if len(frames) < 2:
                    continue
                loaded = [load_background(f["background"]) for f in frames[:3]]
                if not InpaintStage._is_static([a for a, _ in loaded], [h for _, h in loaded], 6.0):
                    moving.append((len(frames), shot))
            picks = [shot for _, shot in sorted(moving, reverse=True)[: args.count]]
    n_plates = sum(len(shots[s]) for s in picks)
    print(f"{seg}: {len(picks)} shots, {n_plates} frames, backend {args.backend}", flush=True)
    outputs: dict[str, Path] = {}
    cpu = {name: float("inf") for name in versions}
    wall = {name: float("inf") for name in versions}
    reports: dict[str, list[dict[str, object]]] = {}
    for r in range(args.repeats):
        for name, modules in versions.items():
            with _active(modules):
                from animlora.config import load_settings
                from animlora.pipeline.stage import StageJob, WorkItem
                from animlora.stages.inpaint import InpaintStage

                settings = load_settings(overrides={"inpaint": {"backend": args.backend}}).settings
                out = outputs.setdefault(name, Path(tempfile.mkdtemp(prefix="inpaintbench-")))
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                job = StageJob(settings=settings, output_dir=out, input_path=seg, workspace_root=out, standalone=True)
                stage = InpaintStage()
                rows = []
                start, start_cpu = time.perf_counter(), time.process_time()
                for shot in picks:
                    result = stage.process(job, WorkItem(shot, "x", shots[shot]), lambda done, total: None)
                    rows.extend(result.data["plates"])
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            reports[name] = rows
            cpu[name], wall[name] = min(cpu[name], cpu_seconds), min(wall[name], seconds)
            print(f"round {r + 1} {name:9s}: {cpu_seconds / n_plates:.3f} CPU-s/frame, {seconds:.1f} s wall", flush=True)
    old, new = "baseline", "this tree"
    print(f"inpaint stage: baseline {cpu[old] / n_plates:.3f} CPU-s/frame, this tree {cpu[new] / n_plates:.3f}; "
          f"ratio {cpu[old] / cpu[new]:.2f}x CPU, {wall[old] / wall[new]:.2f}x wall")
    # how far the plates moved, inside the holes
    with _active(versions[new]):
        from animlora.io.images import read_image
        from animlora.stages.inpaint import hole_of, load_background

        by_id = {f["frame_id"]: f for s in picks for f in shots[s]}
        diffs = []
        for row in reports[new]:
            ids = row["frame_ids"]
            _, character = load_background(by_id[ids[0]]["background"])  # type: ignore[index]
            hole = hole_of(character, settings.inpaint.dilation)
            a = read_image(outputs[old] / str(row["path"])).astype(np.int16)
            b = read_image(outputs[new] / str(row["path"])).astype(np.int16)
            if hole.any():
                diffs.append(float(np.abs(a - b)[hole].mean()))
    for name in versions:
        rows = reports[name]
        print(f"{name:9s}: {len(rows)} plates, PSNR outside the hole min {min(r['psnr'] for r in rows):.1f} dB, "
              f"SSIM min {min(r['ssim'] for r in rows):.3f}")
    print(f"plates, this tree vs baseline inside the holes: mean abs difference {np.mean(diffs):.2f} "
          f"(max per plate {np.max(diffs):.2f}) over {len(diffs)} plates")
    for name, path in outputs.items():
        if args.save:
            shutil.copytree(path, Path(args.save) / name.replace(" ", "_"), dirs_exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(Path(str(versions["baseline"]["__path__"])).parent, ignore_errors=True)  # git archive copy


if __name__ == "__main__":
    main()
