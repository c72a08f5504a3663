"""Re-run the segment stage's instance logic (split_matte, link_tracks, the shot pass) on a
finished project's mattes, without the model, and score it against rendered truth with the
measures of ``benchmarks/quality.py``: a dev loop for the shot pass in seconds instead of a
model run.

    PYTHONPATH=src python benchmarks/shot_pass.py PROJECT TRUTH [PROJECT TRUTH ...] [--no-refine]
        [--set segment.key=value ...] [--shots 1,5] [--details] [--json OUT]

PROJECT is a project after ``animlora run`` through ``segment`` (e.g. a copy of a finished
run); TRUTH its cgi-bench folder. The matte of each frame is read back from the stage's
background plate (``segmentation/background/<frame>.png``: alpha = 1 - the union of the
frame's instance mattes, values under ``alpha_threshold`` zeroed), so it is the model's
matte wherever an instance was found, 8-bit. On cgi-bench seeds 2 and 3 this reproduces the
scores of the real runs (seed 3 exactly; seed 2 within 2 character-frames).

Prints per project: mask IoU, one-instance share and every status (as quality.py counts
them), the number of instances, and the CPU seconds of the shot pass.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _shots(project: Path, wanted: set[str]) -> dict[str, list[tuple[int, Path, Path]]]:
    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT f.frame_index, f.shot_id, f.path, s.background_path FROM frames f JOIN segment_frames s "
        "ON s.frame_id = f.id WHERE f.kept = 1 AND s.status = 'ok' ORDER BY f.frame_index").fetchall()
    con.close()
    shots: dict[str, list[tuple[int, Path, Path]]] = defaultdict(list)
    for index, shot, path, background in rows:
        if wanted and shot.rsplit("_s", 1)[-1] not in wanted:
            continue
        shots[shot].append((int(index), project / "frames" / path, project / "segmentation" / background))
    return shots


def score_project(project: Path, truth_dir: Path, settings: Any, refine: bool, wanted: set[str],
                  details: bool) -> dict[str, Any]:
    from quality import Truth, score_frame

    from animlora.backends.segmentation.instances import link_tracks, split_matte
    from animlora.backends.segmentation.refine import refine_shot
    from animlora.io.images import read_image

    s = settings.segment
    truth = Truth.load(truth_dir)
    statuses: Counter[str] = Counter()
    ious: list[float] = []
    n_instances, cpu = 0, 0.0
    failures = []
    for shot, frames in sorted(_shots(project, wanted).items(), key=lambda kv: kv[1][0][0]):
        images = [read_image(path, "RGB") for _, path, _ in frames]
        mattes = [1.0 - read_image(bg, "RGBA")[..., 3].astype(np.float32) / 255.0 for _, _, bg in frames]
        found = []
        for i, matte in enumerate(mattes):
            found += split_matte(matte, i, s.alpha_threshold, s.min_area_fraction, s.split_overlaps)
        found = link_tracks(found, images, s.track_similarity)
        start = time.process_time()
        if refine:
            found = refine_shot(found, images, s).instances
        cpu += time.process_time() - start
        for i, (index, _, _) in enumerate(frames):
            h, w = images[i].shape[:2]
            masks = []
            for inst in (inst for inst in found if inst.frame == i):
                full = inst.full_alpha(h, w)
                full[full < s.alpha_threshold] = 0
                masks.append(np.clip(full * 255 + 0.5, 0, 255).astype(np.uint8) >= 128)  # as the stage writes it
            n_instances += len(masks)
            result = score_frame(truth.mask(index, None, (h, w)), masks)
            for character, c in result.characters.items():
                statuses[c["status"]] += 1
                ious.append(c["iou"])
                if c["status"] != "one":
                    failures.append(f"{shot} frame {index}: {truth.names.get(character)} {c['status']}")
    n = len(ious)
    out = {"project": str(project), "character_frames": n,
           "mask_iou": round(float(np.mean(ious)), 4) if n else None,
           "one_instance": round(statuses["one"] / n, 4) if n else None,
           "status": dict(statuses.most_common()), "instances": n_instances, "shot_pass_cpu_s": round(cpu, 2)}
    if details:
        out["failures"] = failures
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", help="PROJECT TRUTH [PROJECT TRUTH ...]")
    parser.add_argument("--no-refine", action="store_true", help="without the shot pass")
    parser.add_argument("--set", action="append", default=[], metavar="segment.KEY=VALUE")
    parser.add_argument("--shots", default="", help="shot numbers (the catalog's _sN suffix), comma-separated")
    parser.add_argument("--details", action="store_true", help="list every character-frame that is not 'one'")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give PROJECT TRUTH pairs")
    from animlora.config import load_settings

    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        overrides.setdefault(section, {})[name] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    settings = load_settings(overrides=overrides or None).settings
    wanted = {x for x in args.shots.split(",") if x}
    results = []
    for project, truth in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        r = score_project(Path(project), Path(truth), settings, not args.no_refine, wanted, args.details)
        results.append(r)
        print(f"{r['project']}: mask IoU {r['mask_iou']}  one instance {r['one_instance']} over "
              f"{r['character_frames']} character-frames  {r['status']}  instances {r['instances']}  "
              f"shot pass {r['shot_pass_cpu_s']} CPU-s")
        for line in r.get("failures", []):
            print("   ", line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
