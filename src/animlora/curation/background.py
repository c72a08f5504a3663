"""The background/style dataset (``animlora dataset --kind background``): the inpaint stage's
plates (the film's sets with the characters removed) as a training set of their own.

One work item of the dataset stage (key ``kind:background``), built into
``training_data/background/`` (standalone: the output folder itself):

1. gather plates: in a project the catalog's ``plates`` rows (static shots: one plate; moving
   shots: one per frame); a plain folder: every image in it. Plates whose inpainted share
   (``hole_fraction``) exceeds ``dataset.background_max_hole`` are left out (a training image
   that is mostly the inpainter's guess teaches the guess), each listed with its reason;
2. spread: at most ``dataset.background_per_shot`` plates per shot, evenly over the shot;
3. images: shrunk (never enlarged) to at most ``dataset.resolution``² pixels, sides cut to
   multiples of 8 (sd-scripts' buckets then take them without upscaling);
4. captions from the image itself (no character words): ``<trigger>, empty scene`` plus its
   light (dark / bright; warm / cool, read on its near-grey bright pixels), its two main colours and ``sky`` when the top of the
   frame is sky-like; trigger ``dataset.background_trigger`` or ``<project>_background``;
5. files as for a character: ``images/`` (image + .txt), ``captions/``, ``metadata.json``
   (lineage: plate, shot, frames, hole fraction), ``metadata.jsonl``, ``dataset.toml``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from animlora.io.files import atomic_write_json, atomic_write_text, safe_name
from animlora.pipeline.stage import ItemOutput, Progress, StageContext, StageJob, WorkItem, digest

KEY = "kind:background"  # the work item (not a character's name)
FOLDER = "background"
METADATA = "metadata.json"
MULTIPLE = 8

HUES = (  # OpenCV hue (0-180) upper bounds -> colour word
    (8, "red"), (20, "orange"), (33, "yellow"), (78, "green"), (98, "teal"), (130, "blue"), (150, "purple"),
    (170, "pink"), (181, "red"),
)


# -- 1. gather --------------------------------------------------------------------------
def gather(ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """(plates, project name): each plate {id, shot, frames, path, hole_fraction, static}."""
    if not ctx.job.standalone:
        return project_plates(ctx.catalog, ctx.workspace.root), ctx.settings.project.name
    source = ctx.job.input_path
    assert source is not None
    if (source / "project.yaml").is_file():
        from animlora.workspace import Workspace

        project = Workspace(source)
        catalog = project.open_catalog()
        try:
            return project_plates(catalog, source), source.name
        finally:
            catalog.close()
    from animlora.io.images import list_images

    return [{"id": p.stem, "shot": None, "frames": [p.stem], "path": str(p), "hole_fraction": None, "static": False}
            for p in list_images(source)], source.name


def project_plates(catalog: Any, root: Path) -> list[dict[str, Any]]:
    from animlora.curation.sources import stage_dir
    from animlora.records.inpaint import plate_rows

    folder = stage_dir(root, "inpaint")
    return [{"id": r["id"], "shot": r["shot_id"], "frames": json.loads(r["frame_ids"]), "path": str(folder / r["path"]),
             "hole_fraction": r["hole_fraction"], "static": bool(r["static"])}
            for r in plate_rows(catalog)]


def plan(ctx: StageContext) -> list[WorkItem]:
    from animlora.curation.sources import stat_key

    s = ctx.settings.dataset
    plates, project = gather(ctx)
    if not plates:
        ctx.log.warning("dataset: no background plates found (run the inpaint stage first)")
        return []
    trigger = s.background_trigger or f"{re.sub(r'[^a-z0-9]+', '_', project.lower()).strip('_') or 'film'}_background"
    payload = {"kind": "background", "plates": plates, "trigger": trigger}
    fingerprint = digest(trigger, [(p["id"], p["hole_fraction"], stat_key(p["path"])) for p in plates])
    return [WorkItem(KEY, fingerprint, payload, "background")]


# -- 2. spread --------------------------------------------------------------------------
def select(plates: list[dict[str, Any]], per_shot: int, max_hole: float) -> tuple[list[dict[str, Any]], list[dict]]:
    """(kept plates, left out with reasons): holes above ``max_hole`` out, then evenly per shot."""
    left_out, by_shot = [], {}
    for p in plates:
        if p["hole_fraction"] is not None and p["hole_fraction"] > max_hole:
            left_out.append({"id": p["id"], "code": "mostly_inpainted",
                             "reason": f"{p['hole_fraction']:.0%} inpainted (dataset.background_max_hole {max_hole:.0%})"})
        else:
            by_shot.setdefault(p["shot"] if p["shot"] is not None else p["id"], []).append(p)
    kept = []
    for group in by_shot.values():
        group.sort(key=lambda p: (p["frames"][0] if p["frames"] else "", p["id"]))
        idx = sorted(set(np.linspace(0, len(group) - 1, min(per_shot, len(group))).round().astype(int).tolist()))
        kept += [group[i] for i in idx]
        left_out += [{"id": p["id"], "code": "spread", "reason": f"dataset.background_per_shot {per_shot} reached"}
                     for i, p in enumerate(group) if i not in idx]
    return kept, left_out


# -- 3. images ----------------------------------------------------------------------------
def fit(image: np.ndarray, resolution: int) -> np.ndarray:
    """Shrunk to at most resolution² pixels (never enlarged), sides cut to multiples of 8 (centred)."""
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, resolution / float(np.sqrt(height * width)))
    if scale < 1.0:
        image = cv2.resize(image, (max(MULTIPLE, round(width * scale)), max(MULTIPLE, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    h, w = height - height % MULTIPLE, width - width % MULTIPLE
    y, x = (height - h) // 2, (width - w) // 2
    return image[y : y + h, x : x + w]


# -- 4. captions --------------------------------------------------------------------------
def describe(image: np.ndarray) -> list[str]:
    """Words about the picture's light and colours (nothing about characters: there are none)."""
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    value = float(hsv[..., 2].mean())
    words = []
    if value < 70:
        words.append("dark")
    elif value > 170:
        words.append("bright")
    # the light's colour, read on the near-grey bright pixels (walls, stones, clouds): a
    # frame-wide mean would call every lawn "warm"
    grey = (hsv[..., 1] < 70) & (hsv[..., 2] > 100)
    if grey.mean() > 0.02:
        r, b = float(image[..., 0][grey].mean()), float(image[..., 2][grey].mean())
        if r - b > 20:
            words.append("warm light")
        elif b - r > 20:
            words.append("cool light")
    top = hsv[: max(1, hsv.shape[0] // 4)]
    sky = (top[..., 0] >= 90) & (top[..., 0] <= 130) & (top[..., 2] > 120)
    if sky.mean() > 0.5:
        words.append("sky")
    saturated = hsv[..., 1] > 64
    if saturated.mean() > 0.05:
        histogram = np.bincount(hsv[..., 0][saturated], minlength=181)
        counts: dict[str, int] = {}
        for hue in histogram.nonzero()[0]:
            name = next(word for bound, word in HUES if hue < bound)
            counts[name] = counts.get(name, 0) + int(histogram[hue])
        total = sum(counts.values())
        main = [n for n, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c >= 0.15 * total][:2]
        if main:
            words.append(f"{' and '.join(main)} tones")
    return words


def caption(trigger: str, image: np.ndarray) -> str:
    return ", ".join([trigger, "empty scene", *describe(image)])


# -- 5. files -----------------------------------------------------------------------------
def build(job: StageJob, payload: dict[str, Any], progress: Progress) -> ItemOutput:
    from animlora.curation import formats
    from animlora.io.images import read_image, write_image

    s = job.settings.dataset
    sub = "" if job.standalone else FOLDER
    out = job.output_dir / sub if sub else job.output_dir
    rel = (lambda p: f"{sub}/{p}" if sub else p)  # noqa: E731 - paths relative to the stage folder
    kept, left_out = select(payload["plates"], s.background_per_shot, s.background_max_hole)
    trigger, ext = payload["trigger"], s.image_format
    for folder in ("images", "captions"):  # a rebuild replaces the set: no stale images stay
        for old in (out / folder).glob("*") if (out / folder).is_dir() else ():
            old.unlink()
    files, records = [], []
    for k, p in enumerate(kept):
        try:
            image = fit(read_image(p["path"], "RGB"), s.resolution)
        except Exception as exc:  # noqa: BLE001 - an unreadable plate is listed, the set still builds
            left_out.append({"id": p["id"], "code": "unreadable", "reason": str(exc).splitlines()[0]})
            continue
        stem = safe_name(p["id"], "plate")
        text = caption(trigger, image)
        write_image(out / "images" / f"{stem}.{ext}", image)
        atomic_write_text(out / "images" / f"{stem}.txt", text + "\n")
        atomic_write_text(out / "captions" / f"{stem}.txt", text + "\n")
        files += [rel(f"images/{stem}.{ext}"), rel(f"images/{stem}.txt"), rel(f"captions/{stem}.txt")]
        records.append({"file": rel(f"images/{stem}.{ext}"), "caption_file": rel(f"captions/{stem}.txt"),
                        "plate": p["id"], "caption": text, "caption_source": "background", "size": list(image.shape[1::-1]),
                        "shot": p["shot"], "frames": p["frames"], "static": p["static"],
                        "hole_fraction": p["hole_fraction"], "source_plate": p["path"]})
        progress(k + 1, len(kept))
    root = out.resolve()
    general = {"caption_extension": ".txt", "shuffle_caption": False, "keep_tokens": 1, "flip_aug": s.flip_aug,
               "color_aug": False}
    dataset = {"resolution": s.resolution, "batch_size": 1, "enable_bucket": True, "bucket_no_upscale": True,
               "min_bucket_reso": s.min_bucket, "max_bucket_reso": s.max_bucket, "bucket_reso_steps": s.bucket_step}
    atomic_write_text(out / "dataset.toml", formats.sd_scripts_toml(
        general, [{**dataset, "subsets": [{"image_dir": str(root / "images"), "num_repeats": s.base_repeats}]}],
        f"sd-scripts dataset config for the background/style set (trigger word: {trigger}), written by animlora."))
    atomic_write_text(out / "metadata.jsonl", formats.jsonl(
        [{"image_path": Path(r["file"]).name, "caption": r["caption"], "image_size": r["size"]} for r in records]))
    files += [rel("dataset.toml"), rel("metadata.jsonl")]
    counts: dict[str, int] = {}
    for x in left_out:
        counts[x["code"]] = counts.get(x["code"], 0) + 1
    meta = {
        "character": FOLDER, "kind": "background", "trigger": trigger, "count": len(records),
        "candidates": len(payload["plates"]), "status": "ok" if records else "empty", "folder": sub or ".",
        "coverage": {"shots": len({r["shot"] for r in records if r["shot"]}),
                     "candidate_shots": len({p["shot"] for p in payload["plates"] if p["shot"]}), "videos": None},
        "selection": {"per_shot": s.background_per_shot, "max_hole": s.background_max_hole},
        "images": records, "left_out_counts": counts, "skipped": left_out,
    }
    atomic_write_json(out / METADATA, meta)
    files.append(rel(METADATA))
    return ItemOutput(files=tuple(files), data={"kind": "background", "images": records, "skipped": left_out})


def summary(meta_dir: Path) -> dict[str, Any] | None:
    """The dataset report's ``background`` entry, from its metadata.json (None: not built)."""
    path = meta_dir / METADATA
    if not path.is_file():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("kind") != "background":
        return None
    return {"images": meta["count"], "candidates": meta["candidates"], "shots": meta["coverage"]["shots"],
            "trigger": meta["trigger"], "left_out": meta["left_out_counts"], "folder": meta["folder"]}
