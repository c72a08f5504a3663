"""The deocclude stage: other characters removed from each instance's context image.

When another character overlaps a target instance's padded box, the context variant
(``variants/original``) shows two characters; identity clustering and training with
backgrounds then learn the wrong one. For every frame with two or more instances, each
instance's box is cut from the frame and the *other* instances' masks there (grown by
``inpaint.dilation``, minus the target's own mask) are filled with the inpainting backend
(LaMa by default, OpenCV without weights; ``inpaint.*`` settings).

Outputs in ``deocclusion/`` (``deoccluded/`` in projects of earlier releases): ``<instance>.jpg`` (the filled context) next to
``<instance>_original.jpg`` (the crop as it was), only for instances that changed, and
``deocclude_report.json`` listing them with the occluded fraction of their box, the backend
that filled them and (sd) the prompt. The transparent cut-outs in ``character/`` need no
change: their alpha already excludes the occluder.

**Temporal** (``inpaint.temporal: flow``, the default): before anything is inpainted, each
hole is filled where possible with what the shot's neighbouring frames (the previous and the
next frame of the shot) show there: the neighbour's box is warped onto this one along optical
flow (``inpaint.flow``; the flow inside the hole replaced by the surroundings'), and a pixel
is taken when its source was not covered by another character in the neighbour, lies inside
it, and its hole region's ring agrees with this frame (``inpaint.flow_error``). Only the rest
is inpainted. Borrowed pixels are real content, so a fill changes from frame to frame only
as much as the footage does. ``per_frame`` inpaints each box on its own (the earlier
behaviour). The fraction borrowed per instance is in the report (``borrowed``).

``deocclude.backend: sd`` fills with text-guided Stable Diffusion inpainting (diffusers). The
prompt is ``deocclude.prompt`` plus the target instance's character description from
``characters/<name>.yaml`` when the catalog knows the character (``character_members``,
written by the cluster stage and review: so on a project's second run, or with
``--force``); otherwise the generic prompt alone. Missing weights or diffusers are an error
unless ``deocclude.fallback`` is auto (lama) or names lama or opencv (recorded in the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from animlora.curation.parts import PART_GAP, box_gap, box_size
from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError
from animlora.io.files import atomic_write_json, portable
from animlora.io.images import read_image, write_image
from animlora.pipeline.stage import (
    ItemOutput,
    Progress,
    RunSummary,
    Stage,
    StageContext,
    StageJob,
    WorkItem,
    digest,
)
from animlora.stages.fallback import Asked
from animlora.stages.inpaint import FlowFallsBack, flow_made_by, open_flow_estimator

REPORT_FILE = "deocclude_report.json"
CONTEXT = 16  # px around a box given to the flow (motion at the box's edge needs its surroundings)


def backend_name(settings: Any) -> str:
    d = settings.deocclude
    return settings.inpaint.backend if d.backend == "inherit" else d.backend


def open_occluder_inpainter(settings: Any) -> tuple[Any, str | None]:
    """The backend that fills occluders, and a note when a fallback replaced it."""
    from animlora.backends.inpainting.base import get_inpainter
    from animlora.stages.inpaint import open_inpainter

    def with_backend(name: str) -> Any:
        return settings.model_copy(update={"inpaint": settings.inpaint.model_copy(update={"backend": name})})

    name, d = backend_name(settings), settings.deocclude
    if name != "sd":
        return open_inpainter(with_backend(name))
    try:
        return get_inpainter("sd", d, settings.models, seed=settings.project.seed, device=settings.inpaint.device), None
    except (ModelNotFoundError, MissingDependencyError) as exc:
        from animlora.backends.registry import fallback_for

        other = fallback_for("inpainting", "sd", d.fallback)
        if other is None:
            raise
        inpainter, more = open_inpainter(with_backend(other))
        note = f"backend 'sd' unavailable ({exc}); used '{inpainter.name}' because deocclude.fallback is {d.fallback}"
        return inpainter, note + (f"; {more}" if more else "")


def check_sd(settings: Any) -> None:
    """Missing SD weights or packages stop the stage before any item runs (unless a fallback is set)."""
    import importlib.util

    from animlora.backends.inpainting.base import BACKENDS
    from animlora.models import resolve

    if backend_name(settings) != "sd" or settings.deocclude.fallback != "none":
        return
    entry = BACKENDS["sd"]
    for package in entry.packages:
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, entry.extra, "deocclude backend 'sd'")
    resolve(settings.deocclude.sd_model, settings.models)


def character_prompts(ctx: StageContext) -> dict[str, tuple[str, str]]:
    """instance id -> (character, description) from ``character_members`` and ``characters/*.yaml``."""
    from animlora.config.loader import find_character
    from animlora.records.decisions import members

    if ctx.job.standalone:
        return {}
    descriptions: dict[str, str] = {}
    out = {}
    for instance_id, name in members(ctx.catalog).items():
        if name not in descriptions:
            spec = find_character(ctx.workspace.characters_dir, name)
            descriptions[name] = spec.description if spec is not None else ""
        out[instance_id] = (name, descriptions[name])
    return out


PART_SPREAD = 0.1  # ... and are when their offset varies less than this (x size) over the shot


def parts_of_one_character(instances: list[dict[str, Any]], members: dict[str, str] | None = None) -> set[frozenset[str]]:
    """Pairs of instance ids (same frame) that are one character and so never occlude each
    other: both assigned to the same character (``members``: instance id -> character), or
    parts whose tracks move together over the shot (close boxes, same offset in every frame
    where both appear, two frames or more) — a head the segmenter cut from its body."""
    members = members or {}
    pairs: set[frozenset[str]] = set()
    by_frame: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        by_frame.setdefault(inst["frame_id"], []).append(inst)
    # per shot and track pair: the offsets and closeness of their boxes where both appear
    seen: dict[tuple[Any, str, str], list[tuple[float, float, bool]]] = {}
    for insts in by_frame.values():
        for a in insts:
            for b in insts:
                if a["id"] >= b["id"]:
                    continue
                ca, cb = members.get(a["id"]), members.get(b["id"])
                if ca is not None and ca == cb:
                    pairs.add(frozenset((a["id"], b["id"])))
                ta, tb = a.get("track_id"), b.get("track_id")
                if not ta or not tb or ta == tb:
                    continue
                (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
                size = max(box_size(a["bbox"]), box_size(b["bbox"]))
                gap = box_gap(a["bbox"], b["bbox"])
                key = (a.get("shot_id"), *sorted((ta, tb)))
                sign = 1.0 if ta < tb else -1.0
                dx = sign * ((bx + bw / 2) - (ax + aw / 2)) / size
                dy = sign * ((by + bh / 2) - (ay + ah / 2)) / size
                seen.setdefault(key, []).append((dx, dy, gap <= PART_GAP * size))
    together = {
        key for key, rows in seen.items()
        if len(rows) >= 2 and all(close for _, _, close in rows)
        and float(np.linalg.norm(np.std(np.array([(dx, dy) for dx, dy, _ in rows]), axis=0))) <= PART_SPREAD
    }
    for insts in by_frame.values():
        for a in insts:
            for b in insts:
                if a["id"] < b["id"] and (a.get("shot_id"), *sorted((a.get("track_id") or "", b.get("track_id") or ""))) in together:
                    pairs.add(frozenset((a["id"], b["id"])))
    return pairs


class DeoccludeStage(FlowFallsBack, Stage):
    name = "deocclude"
    folder = "deocclusion"
    # 2: each changed instance records its box in the frame (the dataset pastes it back)
    # 3: parts of the target's own character (same character, or tracks that move together) are never filled
    # (inpaint.temporal flow, where holes first take what the shot's neighbouring frames show,
    # changes the inpaint fingerprint and each item's payload: per_frame projects stay up to date)
    version = "3"
    upstream = ("segment",)

    def __init__(self) -> None:
        self._inpainter: Any = None
        self._note: str | None = None

    def settings_hash(self, settings: Any) -> str:
        # the sd settings and the seed only change sd's output: a lama run ignores them
        sd = (settings.deocclude.fingerprint(), settings.project.seed) if backend_name(settings) == "sd" else ()
        return digest(self.version, settings.inpaint.fingerprint(), backend_name(settings), sd,
                      settings.segment.padding, settings.segment.alpha_threshold)

    def asked(self, settings: Any) -> Asked:
        from animlora.stages.inpaint import inpaint_weights

        name = backend_name(settings)
        setting = "inpaint.backend" if settings.deocclude.backend == "inherit" else "deocclude.backend"
        # sd falls back as deocclude.fallback says; lama as inpaint's (the stage opens it through inpaint)
        fallback = ("deocclude.fallback", settings.deocclude.fallback) if name == "sd" else (
            "inpaint.fallback", settings.inpaint.fallback)
        return Asked("inpainting", name, inpaint_weights(name, settings), setting, fallback)

    def recorded(self, catalog: Any) -> list[str]:
        from animlora.records import deocclude as records

        return records.backends_used(catalog)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            src = job.input_path
            if src is None or not (src / "segmentation_results.json").is_file():
                raise BadInputError(src or Path("?"), "expected a segment output folder (with segmentation_results.json)")
        check_sd(job.settings)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        if ctx.job.standalone:
            seg_dir = ctx.job.input_path
            assert seg_dir is not None
            data = json.loads((seg_dir / "segmentation_results.json").read_text(encoding="utf-8"))
            sources = {f["frame_id"]: f["source"] for f in data.get("frames", [])}
            shot_of = {f["frame_id"]: f.get("shot_id") for f in data.get("frames", [])}
            instances = data.get("instances", [])
        else:
            from animlora.records.segment import instance_rows, segment_frames
            seg_dir = ctx.workspace.stage_path("segment")
            frames = segment_frames(ctx.catalog, ctx.workspace.root)
            sources = {f.frame_id: f.source for f in frames}
            shot_of = {f.frame_id: f.shot_id for f in frames}
            instances = [r | {"bbox": json.loads(r["bbox"])} for r in instance_rows(ctx.catalog)]
        from animlora.records.extract import place_labels

        # only the sd backend reads characters: other backends' items do not rerun when review renames
        known = character_prompts(ctx) if backend_name(ctx.settings) == "sd" else {}
        # never paint out a part of the target's own character
        same = parts_of_one_character(instances, {i: c for i, (c, _) in character_prompts(ctx).items()})
        by_frame: dict[str, list[dict[str, Any]]] = {}
        for inst in instances:
            by_frame.setdefault(inst["frame_id"], []).append(inst)
        neighbours = self._neighbours(ctx.settings, sources, shot_of, by_frame, seg_dir)
        labels = {} if ctx.job.standalone else place_labels(ctx.catalog)
        items = []
        for frame_id, insts in sorted(by_frame.items()):
            if len(insts) < 2 or frame_id not in sources:
                continue
            payload = {
                "source": sources[frame_id],
                "instances": [{"id": i["id"], "bbox": i["bbox"], "mask": str(seg_dir / i["mask_path"]),
                               "name": Path(i["path"]).stem} for i in sorted(insts, key=lambda i: i["id"])],
            }
            if frame_id in neighbours:
                payload["neighbours"] = neighbours[frame_id]
                for inst, raw in zip(payload["instances"], sorted(insts, key=lambda i: i["id"]), strict=True):
                    inst["track_id"] = raw.get("track_id")
            for inst in payload["instances"]:
                inst["same"] = sorted(o["id"] for o in payload["instances"] if frozenset((inst["id"], o["id"])) in same)
                if inst["id"] in known:
                    inst["character"], inst["description"] = known[inst["id"]]
            # paths inside the project relative to it: a moved project is up to date (earlier
            # releases hashed them absolute)
            items.append(WorkItem(frame_id, digest(portable(payload, ctx.workspace.root)), payload,
                                  labels.get(frame_id, frame_id), earlier=digest(payload)))
        return items

    @staticmethod
    def _neighbours(settings: Any, sources: dict[str, str], shot_of: dict[str, Any],
                    by_frame: dict[str, list[dict[str, Any]]], seg_dir: Path) -> dict[str, list[dict[str, Any]]]:
        """frame id -> the previous and next frame of its shot (source, and every instance's
        mask and track), nearest first; empty with ``inpaint.temporal: per_frame``."""
        if settings.inpaint.temporal != "flow":
            return {}
        shots: dict[Any, list[str]] = {}
        for frame_id in sorted(sources, key=lambda f: (str(shot_of.get(f)), sources[f])):
            if shot_of.get(frame_id) is not None:
                shots.setdefault(shot_of[frame_id], []).append(frame_id)
        out: dict[str, list[dict[str, Any]]] = {}
        for frames in shots.values():
            for k, frame_id in enumerate(frames):
                near = [frames[j] for j in (k - 1, k + 1) if 0 <= j < len(frames)]
                out[frame_id] = [{"frame_id": n, "source": sources[n],
                                  "instances": [{"mask": str(seg_dir / i["mask_path"]), "track_id": i.get("track_id")}
                                                for i in sorted(by_frame.get(n, []), key=lambda i: i["id"])]}
                                 for n in near]
        return out

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        import cv2

        from animlora.backends.segmentation.cutouts import padded_box

        s, p = job.settings.segment, job.settings.inpaint
        from animlora.backends.registry import held

        st = job.settings  # one load per process (the inpaint stage's model is released)
        key = ("deocclude", st.deocclude.fingerprint(), st.inpaint.fingerprint(), st.models.fingerprint(), st.project.seed)
        self._inpainter, self._note = held("inpainting", key, lambda: open_occluder_inpainter(st))
        text_guided = getattr(self._inpainter, "text_guided", False)
        image = read_image(item.payload["source"], "RGB")
        height, width = image.shape[:2]
        masks = [read_image(i["mask"], "RGB")[..., 0] >= s.alpha_threshold * 255
                 for i in item.payload["instances"]]
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p.dilation + 1, 2 * p.dilation + 1))
        files, changed, borrowed = [], [], {}
        neighbours = self._load_neighbours(job, item.payload.get("neighbours", []), image.shape, kernel)
        note, estimator = self._note, None
        if neighbours:  # holes first take what the neighbours show, carried along the flow
            estimator, flow_note = open_flow_estimator(job.settings)
            note = "; ".join(n for n in (self._note, flow_note) if n) or None
        made_by = flow_made_by(self._inpainter.name, job.settings, estimator.name if estimator else None)
        for k, inst in enumerate(item.payload["instances"]):
            others = np.zeros((height, width), bool)
            for j, mask in enumerate(masks):
                if j != k and item.payload["instances"][j]["id"] not in inst.get("same", ()):
                    others |= mask
            bx, by, bw, bh = padded_box(tuple(inst["bbox"]), s.padding, height, width)
            region = others[by : by + bh, bx : bx + bw]
            if not region.any():
                continue
            hole = cv2.dilate(region.astype(np.uint8), kernel) > 0
            hole &= ~masks[k][by : by + bh, bx : bx + bw]
            crop = image[by : by + bh, bx : bx + bw]
            entry: dict[str, Any] = {"backend": made_by, "character": inst.get("character")}
            base, todo = crop, hole
            if estimator is not None:
                base, todo = self._borrow(job, estimator, image, (bx, by, bw, bh), hole, inst.get("track_id"),
                                          neighbours)
                borrowed[inst["id"]] = round(float((hole & ~todo).sum()) / max(int(hole.sum()), 1), 4)
            if not todo.any():
                raw = base
            elif text_guided:
                entry["prompt"] = self._inpainter.prompt_for(inst.get("description", ""))
                raw = self._inpainter.inpaint(base, todo, prompt=entry["prompt"])
            else:
                raw = self._inpainter.inpaint(base, todo)
            filled = np.where(todo[..., None], raw, base)
            write_image(job.output_dir / f"{inst['name']}.jpg", filled)
            write_image(job.output_dir / f"{inst['name']}_original.jpg", crop)
            files += [f"{inst['name']}.jpg", f"{inst['name']}_original.jpg"]
            changed.append({"instance_id": inst["id"], "occluded_fraction": round(float(hole.mean()), 4),
                            "path": f"{inst['name']}.jpg", "original": f"{inst['name']}_original.jpg",
                            "box": [bx, by, bw, bh]} | entry)
        progress(1, 1)
        return ItemOutput(files=tuple(files), data={"changed": changed, "note": note, "borrowed": borrowed})

    @staticmethod
    def _load_neighbours(job: StageJob, neighbours: list[dict[str, Any]], shape: tuple[int, ...],
                         kernel: np.ndarray) -> list[tuple[np.ndarray, list[tuple[Any, np.ndarray]]]]:
        """(frame, [(track, grown mask)]) of each neighbour of this frame's size."""
        import cv2

        threshold = job.settings.segment.alpha_threshold * 255
        out = []
        for n in neighbours:
            try:
                frame = read_image(n["source"], "RGB")
                masks = [(i["track_id"], cv2.dilate((read_image(i["mask"], "RGB")[..., 0] >= threshold).astype(np.uint8),
                                                    kernel) > 0) for i in n["instances"]]
            except (BadInputError, OSError):  # a neighbour gone since planning: just not used
                continue
            if frame.shape == shape:
                out.append((frame, masks))
        return out

    def _borrow(self, job: StageJob, flow: Any, image: np.ndarray, box: tuple[int, int, int, int],
                hole: np.ndarray, track: Any, neighbours: list[tuple[np.ndarray, list[tuple[Any, np.ndarray]]]]
                ) -> tuple[np.ndarray, np.ndarray]:
        """The box with what the neighbours show in its hole (carried along ``flow``), and what is
        left to inpaint."""
        from animlora.backends.inpainting.temporal import background_flow, failed_regions, warp

        bx, by, bw, bh = box
        height, width = image.shape[:2]
        x0, y0 = max(0, bx - CONTEXT), max(0, by - CONTEXT)
        x1, y1 = min(width, bx + bw + CONTEXT), min(height, by + bh + CONTEXT)
        inner = (slice(by - y0, by - y0 + bh), slice(bx - x0, bx - x0 + bw))
        region = image[y0:y1, x0:x1]
        hole_r = np.zeros(region.shape[:2], bool)
        hole_r[inner] = hole
        out, todo = region.copy(), hole_r.copy()
        for frame, masks in neighbours:
            # what covers the background there: every instance but the target's own track
            covered = np.zeros(region.shape[:2], bool)
            for other_track, mask in masks:
                if track is None or other_track != track:
                    covered |= mask[y0:y1, x0:x1]
            other = frame[y0:y1, x0:x1]
            motion = background_flow(flow.flow(region, other), hole_r | covered)
            warped, inside = warp(other, motion)
            clear, _ = warp((~covered).astype(np.float32), motion)
            take = todo & inside & (clear > 0.99)
            failed, _ = failed_regions(warped, region, take, job.settings.inpaint.flow_error, hole_r | covered)
            take &= ~failed
            out[take] = warped[take]
            todo &= ~take
            if not todo.any():
                break
        return out[inner], todo[inner]

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        from animlora.records import deocclude as records

        records.replace_frame(ctx.catalog, item.key, [records.fill_from_entry(item.key, entry)
                                                      for entry in output.data["changed"]])
        records.set_borrowed(ctx.catalog, item.key, output.data.get("borrowed") or {})
        if output.data["note"]:
            records.set_fallback(ctx.catalog, output.data["note"])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        from animlora.records import deocclude as records

        records.delete_frame(ctx.catalog, item_key)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        from animlora.records import deocclude as records

        changed = [fill.as_report_entry() for fill in records.all_fills(ctx.catalog)]
        borrowed = records.all_borrowed(ctx.catalog)
        for entry in changed:
            if entry["instance_id"] in borrowed:
                entry["borrowed"] = borrowed[entry["instance_id"]]
        wanted = backend_name(ctx.settings)
        used = sorted({c["backend"] for c in changed})
        note = records.fallback(ctx.catalog)
        report = {"frames_with_several_instances": summary.items_total, "instances_changed": len(changed),
                  "backend": wanted, "backends_used": used, "temporal": ctx.settings.inpaint.temporal,
                  "borrowed_mean": round(float(np.mean(list(borrowed.values()))), 4) if borrowed else None,
                  "fallback": [note] if note and any(b != wanted for b in used) else []}
        atomic_write_json(ctx.output_dir / REPORT_FILE, report | {"changed": changed})
        return report

