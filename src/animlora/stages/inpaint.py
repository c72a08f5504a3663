"""The inpaint stage (``animlora inpaint``): background plates with the characters removed.

Items are shots. For each shot:

1. read every frame's background (segment's ``background/``, read by :func:`load_background`
   only); the hole is every pixel a character covers, grown by ``inpaint.dilation`` px (soft
   edges, contact shadows);
2. **static camera?** frames of one size whose visible pixels differ by less than
   ``inpaint.static_threshold`` (mean absolute difference, 0-255) share one plate: the
   per-pixel median of the frames where each pixel is visible; only pixels hidden in every
   frame are left to the model;
3. **moving camera**: each frame gets its own plate. ``inpaint.temporal: flow`` (default)
   inpaints a keyframe and carries its fill along optical flow to the other frames,
   re-inpainting only where the carried fill fails (backends/inpainting/temporal.py), so the
   fills do not flicker; ``per_frame`` fills every frame on its own;
4. fill with the backend (LaMa via spandrel, or OpenCV Telea/NS) and composite into the hole;
5. check: PSNR and SSIM between the backend's raw output and the input *outside* the hole
   (a broken model, or a colour shift, shows here; 100 dB = identical).

Outputs in ``inpainting/`` (``plates/`` in projects of earlier releases): ``<shot>.png`` (static) or ``<frame>.png``, ``inpaint_report.json``
(which shots were static, per-plate hole fraction, PSNR/SSIM, backend, fallback, and for flow
shots whether each plate was a keyframe and how much of its hole was carried or re-inpainted),
catalog table ``plates`` (the flow statistics in meta ``inpaint.temporal:<shot>``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError
from animlora.io.files import atomic_write_json, safe_name
from animlora.io.images import list_images, read_image, write_image
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
from animlora.records import inpaint as records
from animlora.stages.fallback import Asked, FallsBack

REPORT_FILE = "inpaint_report.json"
PSNR_CAP = 100.0


def inpaint_weights(name: str, settings: Any) -> list[str]:
    """The registry names of the weights inpainting backend ``name`` loads."""
    return {"lama": ["big-lama"], "sd": [settings.deocclude.sd_model]}.get(name, [])


def flow_made_by(backend: str, settings: Any, flow: str | None) -> str:
    """What a plate or fill records as having made it: ``backend``, or ``backend+dis`` where
    ``inpaint.flow: raft`` was asked for and DIS, its fallback, carried the pixels (``flow``: the
    estimator that ran, None where none did), so a run that can use RAFT makes it again."""
    return f"{backend}+{flow}" if flow and settings.inpaint.flow == "raft" and flow != "raft" else backend


def raft_missing(settings: Any) -> str:
    """What keeps ``inpaint.flow: raft`` from running here ("" when nothing, or when no run asks
    for it). Nothing is loaded."""
    import importlib.util

    s = settings.inpaint
    if s.flow != "raft" or s.temporal != "flow":
        return ""
    if importlib.util.find_spec("torchvision") is None:
        return "its flow 'raft' needs torchvision (pip install 'animlora[models]')"
    if not s.raft_weights or not Path(s.raft_weights).expanduser().is_file():
        return f"its flow 'raft' has no weights (inpaint.raft_weights: {s.raft_weights!r} is not a file)"
    return ""


class FlowFallsBack(FallsBack):
    """:class:`FallsBack` for the stages whose fills may be carried along an optical flow
    (``inpaint.temporal: flow``): RAFT asked for and DIS run instead counts as a fallback too
    (recorded as ``lama+dis``, :func:`flow_made_by`)."""

    def missing_here(self, asked: Asked, settings: Any) -> str:
        return "; ".join(why for why in (super().missing_here(asked, settings), raft_missing(settings)) if why)

    def fallbacks(self, asked: Asked, settings: Any) -> list[str]:
        if not raft_missing(settings):
            return super().fallbacks(asked, settings)
        if settings.inpaint.fallback == "none":  # open_flow raises
            return []
        backends = super().fallbacks(asked, settings) if super().missing_here(asked, settings) else [asked.backend]
        return [f"{backend}+dis" for backend in backends]

    def asked_label(self, asked: Asked, settings: Any) -> str:
        raft = settings.inpaint.flow == "raft" and settings.inpaint.temporal == "flow"
        return super().asked_label(asked, settings) + (" with its flow 'raft'" if raft else "")

    def keep_setting(self, asked: Asked, made_by: str) -> str:
        backend, _, flow = made_by.partition("+")
        kept = [super().keep_setting(asked, backend)] if backend != asked.backend else []
        return " and ".join(kept + ([f"inpaint.flow: {flow}"] if flow else []))


def open_inpainter(settings: Any) -> tuple[Any, str | None]:
    from animlora.backends.inpainting.base import get_inpainter

    s = settings.inpaint
    try:
        return get_inpainter(s.backend, s, settings.models), None
    except (ModelNotFoundError, MissingDependencyError) as exc:
        from animlora.backends.registry import fallback_for

        other = fallback_for("inpainting", s.backend, s.fallback)
        if other is None:
            raise
        note = f"backend '{s.backend}' unavailable ({exc}); used '{other}' because inpaint.fallback is {s.fallback}"
        return get_inpainter(other, s, settings.models), note


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return PSNR_CAP
    mse = float(((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2).mean())
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean SSIM (gray, Gaussian window sigma 1.5) over ``where``; in float32 (the map
    differs from float64's by < 1e-4, at about half the CPU)."""
    import cv2

    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap[where].mean()) if where.any() else 1.0


def load_background(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One of segment's background files -> (HxWx3 RGB, HxW bool: where a character was).

    The one place that knows the format (today RGBA, alpha below 250 where a character
    covers the pixel); every reader of ``background/`` goes through here."""
    rgba = read_image(path, "RGBA")
    return np.ascontiguousarray(rgba[..., :3]), rgba[..., 3] < 250


def hole_of(character: np.ndarray, dilation: int) -> np.ndarray:
    """The pixels to fill: ``character`` (bool) grown by ``dilation`` px."""
    import cv2

    hole = character.astype(np.uint8)
    if dilation > 0 and hole.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        hole = cv2.dilate(hole, kernel)
    return hole > 0


def open_flow_estimator(settings: Any) -> tuple[Any, str | None]:
    """The optical flow of ``inpaint.flow``, held once per process (slot ``optical_flow``)."""
    from animlora.backends.inpainting.flow import open_flow
    from animlora.backends.registry import held

    s = settings.inpaint
    return held("optical_flow", ("flow", s.flow, s.raft_weights, s.device, s.fallback), lambda: open_flow(settings))


class InpaintStage(FlowFallsBack, Stage):
    name = "inpaint"
    folder = "inpainting"
    upstream = ("segment",)

    def __init__(self) -> None:
        self._inpainter: Any = None
        self._note: str | None = None
        self._temporal: list[dict[str, Any]] | None = None

    def asked(self, settings: Any) -> Asked:
        s = settings.inpaint
        return Asked("inpainting", s.backend, inpaint_weights(s.backend, settings), "inpaint.backend",
                     ("inpaint.fallback", s.fallback))

    def runs(self, settings: Any) -> bool:
        """Whether a project run makes plates: only when a dataset reads them (``inpaint.plates``)."""
        return settings.inpaint.plates != "auto" or settings.dataset.kind != "character"

    def recorded(self, catalog: Any) -> list[str]:
        from animlora.records import inpaint as records

        return records.backends_used(catalog)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            src = job.input_path
            if src is None or not (src / "background").is_dir():
                raise BadInputError(src or Path("?"), "expected a segment output folder (with background/)")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        shots: dict[str, list[dict[str, Any]]] = {}
        self.plan_note = None
        if not ctx.job.standalone and not self.runs(ctx.settings):
            # nothing downstream reads plates for a character dataset (deocclude fills its own
            # boxes; the shot light reads segment's backgrounds): on the whole film they cost
            # as much CPU as every stage after them together
            self.plan_note = ("no background plates: no dataset reads them with dataset.kind character "
                              "(inpaint.plates: always, or dataset.kind background|all, makes them)")
            return []
        if ctx.job.standalone:
            seg_dir = ctx.job.input_path
            assert seg_dir is not None
            listed = {}
            results = seg_dir / "segmentation_results.json"
            if results.is_file():
                for r in json.loads(results.read_text(encoding="utf-8")).get("frames", []):
                    if r.get("background_path"):
                        listed[Path(r["background_path"]).name] = (r["frame_id"], r["shot_id"])
            for path in list_images(seg_dir / "background"):
                frame_id, shot = listed.get(path.name, (path.stem, path.stem))
                shots.setdefault(shot, []).append({"frame_id": frame_id, "background": str(path)})
        else:
            from animlora.records.segment import segment_frames
            seg_dir = ctx.workspace.stage_path("segment")
            # by shot, then source (NULL shots first, as the catalog orders them)
            for f in sorted(segment_frames(ctx.catalog, ctx.workspace.root), key=lambda f: (f.shot_id is not None, f.shot_id or "", f.source)):
                if f.status == "ok" and f.background_path is not None:
                    shots.setdefault(f.shot_id, []).append(
                        {"frame_id": f.frame_id, "background": str(seg_dir / f.background_path)}
                    )
        from animlora.records.extract import place_labels

        labels = {} if ctx.job.standalone else place_labels(ctx.catalog)
        items = []
        for shot, frames in sorted(shots.items()):
            stamps = [(f["frame_id"], f["background"], Path(f["background"]).stat().st_mtime_ns) for f in frames]
            items.append(WorkItem(shot, digest(stamps), frames, labels.get(shot, shot)))
        return items

    def cost(self, item: WorkItem) -> float:
        return float(len(item.payload))  # frames of the shot

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        s = job.settings.inpaint
        from animlora.backends.registry import held

        key = ("inpaint", s.fingerprint(), job.settings.models.fingerprint())  # one load per process
        self._inpainter, self._note = held("inpainting", key, lambda: open_inpainter(job.settings))
        # 1. frames and holes
        loaded = [load_background(f["background"]) for f in item.payload]
        images = [rgb for rgb, _ in loaded]
        holes = [hole_of(character, s.dilation) for _, character in loaded]
        del loaded
        # 2. static camera: one plate from the visible pixels of every frame
        static = self._is_static(images, holes, s.static_threshold)
        rows, files, temporal = [], [], {}
        if static:
            stack = np.stack(images).astype(np.float32)
            stack[np.stack(holes)] = np.nan
            with warnings.catch_warnings():  # pixels hidden in every frame are NaN, on purpose
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.nanmedian(stack, axis=0)
            remaining = np.isnan(median[..., 0])
            base = np.nan_to_num(median, nan=0.0).round().astype(np.uint8)
            raw = self._inpainter.inpaint(base, remaining) if remaining.any() else base
            groups = [(item.key, raw, np.where(remaining[..., None], raw, base), remaining,
                       [f["frame_id"] for f in item.payload], images[0], holes[0])]
        else:
            # 3. moving camera: a plate per frame, carried along the flow or filled one by one
            fills = self._fill_moving(job, images, holes, progress)
            groups = [
                (f["frame_id"], raw, plate, hole, [f["frame_id"]], image, hole)
                for f, (raw, plate), image, hole in zip(item.payload, fills, images, holes, strict=True)
            ]
            if self._temporal is not None:
                temporal = {f["frame_id"]: stats for f, stats in zip(item.payload, self._temporal, strict=True)}
        # 4. write; 5. check the raw output outside the hole
        flow = next(iter(temporal.values()))["flow"] if temporal else None  # carried along a flow: which
        made_by = flow_made_by(self._inpainter.name, job.settings, flow)
        for plate_id, raw, plate, hole, frame_ids, reference, ref_hole in groups:
            visible = ~ref_hole
            name = f"{safe_name(plate_id, 'plate')}.png"
            write_image(job.output_dir / name, plate, png_fast=True)  # same pixels, ~half the CPU of level 3
            files.append(name)
            rows.append({
                "id": plate_id, "shot_id": item.key, "frame_ids": frame_ids, "path": name, "static": int(static),
                "backend": made_by, "hole_fraction": round(float(hole.mean()), 6),
                "psnr": round(psnr(raw if not static else plate, reference, visible), 3),
                "ssim": round(ssim(raw if not static else plate, reference, visible), 4),
            })
        return ItemOutput(files=tuple(files), data={"plates": rows, "note": self._note, "temporal": temporal})

    def _fill_moving(self, job: StageJob, images: list[np.ndarray], holes: list[np.ndarray],
                     progress: Progress) -> list[tuple[np.ndarray, np.ndarray]]:
        """(raw output, plate) per frame. Flow: the raw output of a carried frame is its plate
        (the frame outside the hole), so the outside check reads 100 dB there."""
        from animlora.backends.inpainting.temporal import fill_shot

        s = job.settings.inpaint
        self._temporal = None
        if s.temporal == "per_frame" or len(images) < 2:
            out = []
            for k, (image, hole) in enumerate(zip(images, holes, strict=True)):
                raw = self._inpainter.inpaint(image, hole) if hole.any() else image
                out.append((raw, np.where(hole[..., None], raw, image)))
                progress(k + 1, len(images))
            return out
        flow, flow_note = open_flow_estimator(job.settings)
        if flow_note:
            self._note = "; ".join(n for n in (self._note, flow_note) if n)
        raws: dict[int, np.ndarray] = {}

        def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
            raw = self._inpainter.inpaint(image, hole)
            raws[id(image)] = raw
            return raw

        results = fill_shot(images, holes, fill, flow, flow_error=s.flow_error,
                            reinpaint_fraction=s.reinpaint_fraction, progress=progress)
        self._temporal = [{"keyframe": r.keyframe, "propagated": round(r.propagated, 4),
                           "reinpainted": round(r.reinpainted, 4), "flow": flow.name,
                           "flow_error": None if r.flow_error is None else round(r.flow_error, 2)}
                          for r in results]
        return [(raws.get(id(image), r.plate) if r.keyframe else r.plate, r.plate)
                for image, r in zip(images, results, strict=True)]

    @staticmethod
    def _is_static(images: list[np.ndarray], holes: list[np.ndarray], threshold: float) -> bool:
        if len(images) < 2 or len({im.shape for im in images}) != 1:
            return False
        first, first_hole = images[0].astype(np.int16), holes[0]
        for image, hole in zip(images[1:], holes[1:], strict=True):
            visible = ~(first_hole | hole)
            if visible.mean() < 0.2:
                return False
            if float(np.abs(image.astype(np.int16) - first)[visible].mean()) > threshold:
                return False
        return True

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        records.replace_shot(ctx.catalog, item.key, output.data["plates"], output.data.get("temporal"))
        if output.data["note"]:
            records.set_fallback(ctx.catalog, output.data["note"])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        records.delete_shot(ctx.catalog, item_key)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        s = ctx.settings.inpaint
        rows = records.plate_rows(ctx.catalog)
        note = records.fallback(ctx.catalog)
        temporal = records.temporal_stats(ctx.catalog)
        for r in rows:
            r["frame_ids"] = json.loads(r["frame_ids"])
            if r["id"] in temporal and not r["static"]:
                r["temporal"] = temporal[r["id"]]
        flow_rows = [r["temporal"] for r in rows if "temporal" in r]
        report = {
            "settings": s.model_dump(mode="json"),
            "backend_requested": s.backend,
            "backends_used": sorted({r["backend"] for r in rows}),
            "fallback": [note] if note and any(r["backend"] != s.backend for r in rows) else [],
            "static_shots": sorted({r["shot_id"] for r in rows if r["static"]}),
            "counts": {"shots": len({r["shot_id"] for r in rows}), "plates": len(rows)},
            "psnr_unmasked_min": min((r["psnr"] for r in rows), default=None),
            "ssim_unmasked_min": min((r["ssim"] for r in rows), default=None),
            "temporal": {
                "mode": s.temporal, "flow": sorted({t["flow"] for t in flow_rows}),
                "plates": len(flow_rows), "keyframes": sum(t["keyframe"] for t in flow_rows),
                "reinpainted_mean": round(float(np.mean([t["reinpainted"] for t in flow_rows])), 4)
                if flow_rows else None,
            },
        }
        atomic_write_json(ctx.output_dir / REPORT_FILE, report | {"plates": rows})
        return report
