"""The prefilter stage: instances too small, cut by the frame edge, blurred, or unlike a
character are rejected before identity clustering.

There is no face requirement: back views and non-human characters (robots, animals, toys)
pass. A rejected instance keeps its catalog row in ``prefilter_results`` with its reason
(the first failed test, in the order tiny → truncated → blurred → not_character) and is
never copied to the output folder, which is the next stage's only input.

Measures come from the segment stage (catalog in a project; ``segmentation_results.json``
next to or inside the input folder standalone). A plain folder of RGBA cut-outs without it
is measured from the files: sharpness and size from the image and its alpha; the frame
area and edges are then unknown, so only the box size, blur and shape tests apply.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import BadInputError
from animlora.io.files import atomic_write_bytes, atomic_write_json
from animlora.io.images import list_images, read_image
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

REPORT_FILE = "prefilter_report.json"
REASONS = ("tiny", "truncated", "blurred", "not_character")


def judge(measures: dict[str, Any], mode: Any, blur_threshold: float) -> str | None:
    """The reason to reject, or None to keep. Unknown measures (None) are not tested."""
    w, h = measures["width"], measures["height"]
    area = measures.get("area_fraction")
    if min(w, h) < mode.min_side or (area is not None and area < mode.min_area_fraction):
        return "tiny"
    truncated = measures.get("truncated")
    if truncated is not None and truncated > mode.max_truncated_edges:
        return "truncated"
    if measures["sharpness"] < blur_threshold * mode.blur_factor:
        return "blurred"
    score = measures.get("score")
    aspect = max(w, h) / max(1, min(w, h))
    if (score is not None and score < mode.min_score) or aspect > mode.max_aspect or (
        area is not None and area > mode.max_area_fraction
    ):
        return "not_character"
    return None


def measure_cutout(rgba: np.ndarray) -> dict[str, Any]:
    """Size and sharpness of an RGBA cut-out, from the file alone."""
    from animlora.stages.cutouts import mask_sharpness

    alpha = rgba[..., 3] >= 38  # the 0.15 matte threshold, in 8 bits
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        return {"width": 0, "height": 0, "sharpness": 0.0}
    return {
        "width": int(xs.max() - xs.min() + 1), "height": int(ys.max() - ys.min() + 1),
        "sharpness": mask_sharpness(rgba[..., :3], alpha),
    }


def _results_near(folder: Path) -> dict[str, dict[str, Any]]:
    """segment's per-instance measures by file name, if its results file is at hand."""
    for candidate in (folder / "segmentation_results.json", folder.parent / "segmentation_results.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            return {Path(r["path"]).name: r for r in data.get("instances", []) if "path" in r}
    return {}


class PrefilterStage(Stage):
    name = "prefilter"
    folder = "filtered"
    upstream = ("segment",)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            src = job.input_path
            if src is None or not src.is_dir():
                raise BadInputError(src or Path("?"), "expected a folder of RGBA cut-outs (segment's character/)")
            if not list_images(src):
                raise BadInputError(src, "no images in this folder")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        if ctx.job.standalone:
            return self._plan_standalone(ctx)
        from animlora.stages import stage_folder

        seg_dir = ctx.workspace.stage_dir(stage_folder("segment"))
        items = []
        for r in ctx.catalog.rows("SELECT * FROM instances ORDER BY id"):
            x, y, w, h = json.loads(r["bbox"])
            payload = {
                "instance_id": r["id"], "source": str(seg_dir / r["path"]),
                "measures": {"width": w, "height": h, "area_fraction": r["area_fraction"],
                             "truncated": r["truncated"], "sharpness": r["sharpness"], "score": r["score"]},
            }
            fingerprint = digest(r["path"], payload["measures"])
            items.append(WorkItem(r["id"], fingerprint, payload, label=r["id"]))
        return items

    def _plan_standalone(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.stages.segment import _file_id

        src = ctx.job.input_path
        assert src is not None  # check_inputs
        known = _results_near(src)
        items, seen = [], set()
        for path in list_images(src):
            stat = path.stat()
            meta = known.get(path.name)
            instance_id = meta["id"] if meta else (_file_id(path) if stat.st_size else "empty_" + path.name)
            if instance_id in seen:  # the same bytes twice: both files are still judged
                instance_id = f"{instance_id}_{digest(str(path))[:6]}"
            seen.add(instance_id)
            measures = None
            if meta:
                measures = {"width": meta["bbox"][2], "height": meta["bbox"][3], "area_fraction": meta["area_fraction"],
                            "truncated": meta["truncated"], "sharpness": meta["sharpness"], "score": meta["score"]}
            payload = {"instance_id": instance_id, "source": str(path), "measures": measures}
            rel = str(path.relative_to(src))
            items.append(WorkItem(instance_id, digest(rel, stat.st_size, stat.st_mtime_ns, measures), payload, rel))
        return items

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        p = job.settings.prefilter
        source = Path(item.payload["source"])
        measures = item.payload["measures"]
        if measures is None:
            try:
                measures = measure_cutout(read_image(source, "RGBA"))
            except BadInputError as exc:
                return ItemOutput(data={"instance_id": item.payload["instance_id"], "kept": 0,
                                        "reason": f"unreadable: {exc.problem}", "path": None, "source": str(source)})
        reason = judge(measures, p.modes[p.mode], p.blur_threshold)
        row = {"instance_id": item.payload["instance_id"], "kept": int(reason is None), "reason": reason,
               "path": None, "source": str(source)}
        files: tuple[str, ...] = ()
        if reason is None:
            atomic_write_bytes(job.output_dir / source.name, source.read_bytes())
            row["path"] = source.name
            files = (source.name,)
        progress(1, 1)
        return ItemOutput(files=files, data=row)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        row = {k: v for k, v in output.data.items() if k != "source"}
        ctx.catalog.upsert("prefilter_results", [row])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        ctx.catalog.execute("DELETE FROM prefilter_results WHERE instance_id = ?", (item_key,))

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        p = ctx.settings.prefilter
        rows = [dict(r) for r in ctx.catalog.rows("SELECT * FROM prefilter_results ORDER BY instance_id")]
        reasons = Counter(r["reason"].split(":")[0] for r in rows if not r["kept"])
        report = {
            "mode": p.mode,
            "thresholds": p.modes[p.mode].model_dump(mode="json") | {"blur_threshold": p.blur_threshold},
            "counts": {"total": len(rows), "kept": sum(r["kept"] for r in rows),
                       "rejected": sum(not r["kept"] for r in rows)},
            "rejected_by_reason": {reason: reasons.get(reason, 0) for reason in (*REASONS, "unreadable")},
        }
        full = report | {"rejected": [{"instance_id": r["instance_id"], "reason": r["reason"]} for r in rows if not r["kept"]]}
        atomic_write_json(ctx.output_dir / REPORT_FILE, full)
        return report
