"""Flicker of background plates: flow propagation (inpaint.temporal: flow) against
frame-by-frame inpainting (per_frame), on a shot whose true background is known.

    python benchmarks/flicker.py [--frames 40] [--size 320x180] [--backend opencv] [--seed 0]
                                 [--flow dis|raft --raft-weights FILE]
    python benchmarks/flicker.py --cgi /work/cgi/seed2 --shot 4 [--step 1] [--save DIR]
    python benchmarks/flicker.py --real PROJECT --shot SHOT_ID [--save DIR]

**Synthetic shot** (truth exact): a textured background image larger than the frame; the
camera pans over it by a whole number of pixels per frame (so motion compensation with the
true motion is exact); three coloured blobs ("characters") move across it with their own
motions and sizes. Each frame is given to both methods in segment's ``background/`` form
(RGB with the characters painted in, plus the hole = blobs grown by ``inpaint.dilation``).

Measures, per method, in one process:

- **flicker**: mean absolute difference (0-255, RGB) of the filled region between
  consecutive frames after motion compensation: plate t-1 shifted by the true camera motion
  vs plate t, over pixels in the hole of t or t-1 (the true background gives 0 here);
- **PSNR / SSIM** of the filled pixels against the true background (SSIM: gray, Gaussian
  window, averaged over the hole);
- the ratio per_frame / flow of flicker (target >= 2) and the PSNR/SSIM differences.

``--cgi`` runs both on one shot of a cgi-bench render (film frames; holes from its true
character masks) and ``--real`` on one shot of an animlora project (its segment
``background/`` files). There is no true background there, so only flicker is printed, with
the camera motion estimated by DIS flow on the frames (background flow, holes filled from
around them); ``frames_flicker_outside_holes`` is the same measure on the visible pixels of
the frames themselves (what imperfect motion compensation alone costs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A background with edges, flat areas and fine detail: rectangles, discs, stripes, grain."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.dstack([90 + 60 * np.sin(xx / 37.0 + c) * np.cos(yy / 23.0 - c) for c in (0.0, 1.3, 2.6)])
    for _ in range(int(height * width / 900)):
        colour = rng.integers(20, 235, 3).tolist()
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            w, h = int(rng.integers(6, 50)), int(rng.integers(6, 50))
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(4, 26)), colour, -1)
    img += 25 * np.sin(xx / 3.1)[..., None] * (yy > height / 2)[..., None]  # stripes on the lower half
    img += rng.normal(0, 4, img.shape)  # grain
    img = cv2.GaussianBlur(img, (3, 3), 0.8)
    return img.clip(0, 255).astype(np.uint8)


def synthetic_shot(frames: int = 40, height: int = 180, width: int = 320, pan: tuple[int, int] = (3, 1),
                   seed: int = 0, blobs: int = 3) -> dict[str, Any]:
    """A moving-camera shot: ``truth`` (backgrounds), ``images`` (with characters), ``characters``
    (bool masks), ``offsets`` (camera (x, y) per frame)."""
    rng = np.random.default_rng(seed)
    px, py = pan
    big = texture(height + abs(py) * frames + 2, width + abs(px) * frames + 2, seed)
    offsets = [(i * px if px >= 0 else (frames - 1 - i) * -px, i * py if py >= 0 else (frames - 1 - i) * -py)
               for i in range(frames)]
    specs = []
    for _ in range(blobs):
        specs.append({
            "start": (float(rng.uniform(0.15, 0.85) * width), float(rng.uniform(0.3, 0.7) * height)),
            "velocity": (float(rng.uniform(-4, 4)), float(rng.uniform(-1.5, 1.5))),
            "axes": (int(rng.uniform(0.06, 0.11) * width), int(rng.uniform(0.14, 0.24) * height)),
            "colour": rng.integers(30, 230, 3).tolist(),
        })
    truth, images, characters = [], [], []
    yy, xx = np.mgrid[0:height, 0:width]
    for i, (ox, oy) in enumerate(offsets):
        bg = big[oy : oy + height, ox : ox + width].copy()
        mask = np.zeros((height, width), bool)
        image = bg.copy()
        for s in specs:
            cx, cy = s["start"][0] + s["velocity"][0] * i, s["start"][1] + s["velocity"][1] * i
            ax, ay = s["axes"]
            blob = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
            shade = (0.75 + 0.25 * (1 - ((xx - cx) / ax) ** 2))[..., None]
            image = np.where(blob[..., None], (np.array(s["colour"]) * shade).clip(0, 255), image).astype(np.uint8)
            mask |= blob
        truth.append(bg)
        images.append(image)
        characters.append(mask)
    return {"truth": truth, "images": images, "characters": characters, "offsets": offsets}


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def shift(image: np.ndarray, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` moved so that its pixel (x + dx, y + dy) lands on (x, y); and where that is defined."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    valid = np.zeros((height, width), bool)
    ys, yd = (slice(dy, height), slice(0, height - dy)) if dy >= 0 else (slice(0, height + dy), slice(-dy, height))
    xs, xd = (slice(dx, width), slice(0, width - dx)) if dx >= 0 else (slice(0, width + dx), slice(-dx, width))
    out[yd, xd] = image[ys, xs]
    valid[yd, xd] = True
    return out, valid


def flicker(plates: list[np.ndarray], holes: list[np.ndarray], offsets: list[tuple[int, int]]) -> float:
    """Mean |plate_t - plate_{t-1} moved by the camera| over hole_t | hole_{t-1} (moved)."""
    total, count = 0.0, 0
    for t in range(1, len(plates)):
        dx, dy = offsets[t][0] - offsets[t - 1][0], offsets[t][1] - offsets[t - 1][1]
        before, valid = shift(plates[t - 1], dx, dy)
        hole_before, _ = shift(holes[t - 1].astype(np.uint8), dx, dy)
        region = (holes[t] | (hole_before > 0)) & valid
        if region.any():
            diff = np.abs(plates[t].astype(np.int16) - before.astype(np.int16)).mean(axis=2)
            total += float(diff[region].sum())
            count += int(region.sum())
    return total / max(count, 1)


def quality(plates: list[np.ndarray], truth: list[np.ndarray], holes: list[np.ndarray]) -> tuple[float, float]:
    from animlora.stages.inpaint import psnr, ssim

    ps = [psnr(p, t, h) for p, t, h in zip(plates, truth, holes, strict=True) if h.any()]
    ss = [ssim(p, t, h) for p, t, h in zip(plates, truth, holes, strict=True) if h.any()]
    return float(np.mean(ps)), float(np.mean(ss))


def inpainter(backend: str) -> Any:
    from animlora.backends.inpainting.base import get_inpainter
    from animlora.config import load_settings

    settings = load_settings(overrides={"inpaint": {"backend": backend, "device": "auto"}}).settings
    return get_inpainter(backend, settings.inpaint, settings.models), settings


def run_methods(images: list[np.ndarray], holes: list[np.ndarray], backend: str = "opencv",
                flow_name: str = "dis", raft_weights: str = "") -> dict[str, dict[str, Any]]:
    """Both methods on one shot: plates, seconds, and the flow method's per-frame stats."""
    from animlora.backends.inpainting.flow import DISFlow, RAFTFlow
    from animlora.backends.inpainting.temporal import fill_shot, per_frame

    model, settings = inpainter(backend)
    s = settings.inpaint
    estimator = DISFlow() if flow_name == "dis" else RAFTFlow(raft_weights or s.raft_weights)
    out: dict[str, dict[str, Any]] = {}
    start = time.process_time()
    results = per_frame(images, holes, model.inpaint)
    out["per_frame"] = {"plates": [r.plate for r in results], "cpu_s": time.process_time() - start}
    start = time.process_time()
    results = fill_shot(images, holes, model.inpaint, estimator, flow_error=s.flow_error,
                        reinpaint_fraction=s.reinpaint_fraction)
    out["flow"] = {"plates": [r.plate for r in results], "cpu_s": time.process_time() - start,
                   "keyframes": sum(r.keyframe for r in results),
                   "reinpainted": float(np.mean([r.reinpainted for r in results]))}
    return out


def synthetic(args: argparse.Namespace) -> dict[str, Any]:
    width, height = (int(v) for v in args.size.split("x"))
    shot = synthetic_shot(args.frames, height, width, seed=args.seed)
    from animlora.config import load_settings

    dilation = load_settings().settings.inpaint.dilation if args.dilation is None else args.dilation
    holes = [grow(c, dilation) for c in shot["characters"]]
    methods = run_methods(shot["images"], holes, args.backend, args.flow, args.raft_weights)
    report: dict[str, Any] = {"shot": {"frames": args.frames, "size": args.size, "dilation": dilation,
                                       "hole_fraction": round(float(np.mean([h.mean() for h in holes])), 4),
                                       "backend": args.backend, "flow": args.flow, "seed": args.seed}}
    for name, m in methods.items():
        p, s = quality(m["plates"], shot["truth"], holes)
        report[name] = {"flicker": round(flicker(m["plates"], holes, shot["offsets"]), 3), "psnr": round(p, 2),
                        "ssim": round(s, 4), "cpu_s": round(m["cpu_s"], 2)} | {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k in ("keyframes", "reinpainted")}
    report["truth_flicker"] = round(flicker(shot["truth"], holes, shot["offsets"]), 3)
    report["flicker_ratio"] = round(report["per_frame"]["flicker"] / max(report["flow"]["flicker"], 1e-6), 2)
    report["psnr_gain_db"] = round(report["flow"]["psnr"] - report["per_frame"]["psnr"], 2)
    report["ssim_gain"] = round(report["flow"]["ssim"] - report["per_frame"]["ssim"], 4)
    return report


def project_shot(root: Path, shot: str, limit: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """An animlora project's shot: its segment background/ files (through load_background)."""
    import sqlite3

    from animlora.config import load_settings
    from animlora.stages.inpaint import hole_of, load_background

    conn = sqlite3.connect(f"file:{root / 'catalog.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT frame_id, background_path FROM segment_frames WHERE shot_id = ? AND status = 'ok' "
                        "AND background_path IS NOT NULL ORDER BY source", (shot,)).fetchall()
    rows = rows[:limit] if limit else rows
    dilation = load_settings().settings.inpaint.dilation
    loaded = [load_background(root / "segmentation" / r["background_path"]) for r in rows]
    return [r["frame_id"] for r in rows], [rgb for rgb, _ in loaded], [hole_of(c, dilation) for _, c in loaded]


def cgi_shot(folder: Path, shot: int, step: int, limit: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """A cgi-bench shot: film frames, holes from the true character masks (grown by inpaint.dilation)."""
    import av

    from animlora.config import load_settings
    from animlora.io.images import read_image
    from animlora.stages.inpaint import hole_of

    truth = json.loads((folder / "truth.json").read_text())
    spec = truth["shots"][shot]
    wanted = list(range(spec["start"], spec["end"] + 1, step))[: limit or None]
    dilation = load_settings().settings.inpaint.dilation
    images: dict[int, np.ndarray] = {}
    with av.open(str(folder / "film.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                images[index] = frame.to_ndarray(format="rgb24")
            if index >= wanted[-1]:
                break
    holes = [hole_of(read_image(folder / "masks" / f"frame_{i:05d}.png", "L") > 0, dilation) for i in wanted]
    return [f"frame_{i:05d}" for i in wanted], [images[i] for i in wanted], holes


def real(args: argparse.Namespace) -> dict[str, Any]:
    """A real shot (no truth): flicker with the camera motion estimated by DIS flow on the frames."""
    from animlora.backends.inpainting.flow import DISFlow
    from animlora.backends.inpainting.temporal import background_flow, warp

    if args.cgi:
        names, images, holes = cgi_shot(Path(args.cgi), int(args.shot), args.step, args.limit)
    else:
        names, images, holes = project_shot(Path(args.real), args.shot, args.limit)
    methods = run_methods(images, holes, args.backend, args.flow, args.raft_weights)
    dis = DISFlow()
    report: dict[str, Any] = {"shot": {"source": args.cgi or args.real, "shot": args.shot, "frames": len(images),
                                       "step": args.step if args.cgi else None,
                                       "hole_fraction": round(float(np.mean([h.mean() for h in holes])), 4)}}
    motions = [background_flow(dis.flow(images[t], images[t - 1]), holes[t] | holes[t - 1])
               for t in range(1, len(images))]
    for name, m in methods.items():
        total, count = 0.0, 0
        for t in range(1, len(images)):
            before, inside = warp(m["plates"][t - 1], motions[t - 1])
            region = (holes[t] | holes[t - 1]) & inside
            diff = np.abs(m["plates"][t].astype(np.int16) - before.astype(np.int16)).mean(axis=2)
            total += float(diff[region].sum())
            count += int(region.sum())
        report[name] = {"flicker": round(total / max(count, 1), 3), "cpu_s": round(m["cpu_s"], 2)} | {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k in ("keyframes", "reinpainted")}
        if args.save:
            from animlora.io.images import write_image

            out = Path(args.save) / name
            out.mkdir(parents=True, exist_ok=True)
            for frame_name, plate in zip(names, m["plates"], strict=True):
                write_image(out / f"{frame_name}.png", plate)
    # the same measure on the frames themselves, holes included: how well the motion is compensated
    report["frames_flicker_outside_holes"] = round(float(np.mean([
        np.abs(images[t].astype(np.int16) - warp(images[t - 1], motions[t - 1])[0].astype(np.int16)).mean(axis=2)[
            ~(holes[t] | holes[t - 1])].mean() for t in range(1, len(images))])), 3)
    report["flicker_ratio"] = round(report["per_frame"]["flicker"] / max(report["flow"]["flicker"], 1e-6), 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="opencv", help="opencv | lama (weights needed)")
    parser.add_argument("--flow", default="dis", help="dis | raft (--raft-weights needed)")
    parser.add_argument("--raft-weights", default="", help="a torchvision raft_small/raft_large state-dict file")
    parser.add_argument("--dilation", type=int, default=None, help="default: inpaint.dilation")
    parser.add_argument("--real", help="an animlora project folder (its segment background/ files)")
    parser.add_argument("--cgi", help="a cgi-bench folder (film.mp4, masks/, truth.json)")
    parser.add_argument("--shot", help="with --real: the shot id; with --cgi: the shot index")
    parser.add_argument("--step", type=int, default=1, help="with --cgi: every step-th frame")
    parser.add_argument("--limit", type=int, default=0, help="with --real/--cgi: first N frames only")
    parser.add_argument("--save", help="with --real/--cgi: write both methods' plates here")
    args = parser.parse_args()
    report = real(args) if args.real or args.cgi else synthetic(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
