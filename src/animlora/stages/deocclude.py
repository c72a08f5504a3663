"""The deocclude stage: other characters removed from each instance's context image.

When another character overlaps a target instance's padded box, the context variant
(``variants/original``) shows two characters; identity clustering and training with
backgrounds then learn the wrong one. For every frame with two or more instances, each
instance's box is cut from the frame and the *other* instances' masks there (grown by
``inpaint.dilation``, minus the target's own mask) are filled with the inpainting backend
(LaMa by default, OpenCV without weights; ``inpaint.*`` settings).

Outputs in ``deoccluded/``: ``<instance>.jpg`` (the filled context) next to
``<instance>_original.jpg`` (the crop as it was), only for instances that changed, and
``deocclude_report.json`` listing them with the occluded fraction of their box. The
transparent cut-outs in ``character/`` need no change: their alpha already excludes the
occluder. Text-guided SD inpainting with the character's description is not implemented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import BadInputError
from animlora.io.files import atomic_write_json
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

REPORT_FILE = "deocclude_report.json"


class DeoccludeStage(Stage):
    name = "deocclude"
    folder = "deoccluded"
    upstream = ("segment",)

    def __init__(self) -> None:
        self._inpainter: Any = None

    def settings_hash(self, settings: Any) -> str:
        return digest(self.version, settings.inpaint.fingerprint(), settings.segment.padding,
                      settings.segment.alpha_threshold)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            src = job.input_path
            if src is None or not (src / "segmentation_results.json").is_file():
                raise BadInputError(src or Path("?"), "expected a segment output folder (with segmentation_results.json)")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        if ctx.job.standalone:
            seg_dir = ctx.job.input_path
            assert seg_dir is not None
            data = json.loads((seg_dir / "segmentation_results.json").read_text(encoding="utf-8"))
            sources = {f["frame_id"]: f["source"] for f in data.get("frames", [])}
            instances = data.get("instances", [])
        else:
            from animlora.stages import stage_folder

            seg_dir = ctx.workspace.stage_dir(stage_folder("segment"))
            sources = {r["frame_id"]: r["source"] for r in ctx.catalog.rows("SELECT frame_id, source FROM segment_frames")}
            instances = [dict(r) | {"bbox": json.loads(r["bbox"])} for r in ctx.catalog.rows("SELECT * FROM instances")]
        by_frame: dict[str, list[dict[str, Any]]] = {}
        for inst in instances:
            by_frame.setdefault(inst["frame_id"], []).append(inst)
        items = []
        for frame_id, insts in sorted(by_frame.items()):
            if len(insts) < 2 or frame_id not in sources:
                continue
            payload = {
                "source": sources[frame_id],
                "instances": [{"id": i["id"], "bbox": i["bbox"], "mask": str(seg_dir / i["mask_path"]),
                               "name": Path(i["path"]).stem} for i in sorted(insts, key=lambda i: i["id"])],
            }
            items.append(WorkItem(frame_id, digest(payload), payload, frame_id))
        return items

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        import cv2

        from animlora.stages.cutouts import padded_box
        from animlora.stages.inpaint import open_inpainter

        s, p = job.settings.segment, job.settings.inpaint
        if self._inpainter is None:
            self._inpainter, _ = open_inpainter(job.settings)
        image = read_image(item.payload["source"], "RGB")
        height, width = image.shape[:2]
        masks = [read_image(i["mask"], "RGB")[..., 0] >= s.alpha_threshold * 255
                 for i in item.payload["instances"]]
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p.dilation + 1, 2 * p.dilation + 1))
        files, changed = [], []
        for k, inst in enumerate(item.payload["instances"]):
            others = np.zeros((height, width), bool)
            for j, mask in enumerate(masks):
                if j != k:
                    others |= mask
            bx, by, bw, bh = padded_box(tuple(inst["bbox"]), s.padding, height, width)
            region = others[by : by + bh, bx : bx + bw]
            if not region.any():
                continue
            hole = cv2.dilate(region.astype(np.uint8), kernel) > 0
            hole &= ~masks[k][by : by + bh, bx : bx + bw]
            crop = image[by : by + bh, bx : bx + bw]
            raw = self._inpainter.inpaint(crop, hole)
            filled = np.where(hole[..., None], raw, crop)
            write_image(job.output_dir / f"{inst['name']}.jpg", filled)
            write_image(job.output_dir / f"{inst['name']}_original.jpg", crop)
            files += [f"{inst['name']}.jpg", f"{inst['name']}_original.jpg"]
            changed.append({"instance_id": inst["id"], "occluded_fraction": round(float(hole.mean()), 4),
                            "path": f"{inst['name']}.jpg", "original": f"{inst['name']}_original.jpg",
                            "backend": self._inpainter.name})
        progress(1, 1)
        return ItemOutput(files=tuple(files), data=changed)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        ctx.catalog.set_meta(f"deocclude:{item.key}", json.dumps(output.data))

    def forget(self, ctx: StageContext, item_key: str) -> None:
        ctx.catalog.execute("DELETE FROM meta WHERE key = ?", (f"deocclude:{item_key}",))

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        changed = []
        for row in ctx.catalog.rows("SELECT value FROM meta WHERE key LIKE 'deocclude:%' ORDER BY key"):
            changed.extend(json.loads(row["value"]))
        report = {"frames_with_several_instances": summary.items_total, "instances_changed": len(changed)}
        atomic_write_json(ctx.output_dir / REPORT_FILE, report | {"changed": changed})
        return report

