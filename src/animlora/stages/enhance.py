"""The enhance stage: small character crops enlarged by super-resolution, gated, with lineage.

In a project, an item is one character instance (``character_members``, kept by the
prefilter) whose dataset crop would otherwise be enlarged past ``dataset.max_enlarge`` by
plain resampling (:func:`animlora.curation.enhanced.enhancement_need`). The region the
dataset would crop (the frame, with the deocclude stage's filled box put back) is enlarged
by the backend — a spandrel super-resolution model (``enhance.sr_model``) or the OpenCV path
without weights — and the instance's alpha is enlarged onto the same pixel grid.

The gate: the result shrunk back to the source's size is compared with the source (SSIM on
luminance); below ``enhance.min_ssim`` it is rejected, written nowhere and listed in the
report, and the dataset falls back to plain resampling within ``max_enlarge``.

Standalone (``animlora enhance -i images/ -o out/``): every image of the folder enlarged by
``enhance.scale`` (capped by the backend's own scale), RGBA alpha kept aligned.

Outputs in ``enhancement/``: ``<instance>.png`` (RGBA) and ``enhance_report.json`` (per item:
region, scale, method, SSIM, accepted or rejected); rows in ``enhanced_crops``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError
from animlora.io.files import atomic_write_json, portable, safe_name
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
from animlora.stages.fallback import Asked, FallsBack

REPORT_FILE = "enhance_report.json"


def chosen_backend(settings: Any) -> str:
    """The backend ``auto`` means here: the SR model on CUDA when its weights resolve, else opencv."""
    e = settings.enhance
    if e.backend != "auto":
        return e.backend
    import importlib.util

    if e.device == "cpu" or any(importlib.util.find_spec(p) is None for p in ("torch", "spandrel")):
        return "opencv"  # an SR model on the CPU takes seconds per crop: asked for by name only
    from animlora.models.resolver import locate

    try:
        found = locate(e.sr_model, settings.models, allow_download=False).path is not None
    except Exception:  # an unknown model name is reported when the stage opens it
        found = False
    if not found:
        return "opencv"
    import torch  # only now: importing it costs seconds on every run

    return "spandrel" if torch.cuda.is_available() else "opencv"


def open_enhancer(settings: Any) -> tuple[Any, str | None]:
    """The enhancer, and a note when a fallback replaced the one asked for."""
    from animlora.backends.enhancement.base import get_enhancer

    name = chosen_backend(settings)
    e = settings.enhance
    try:
        return get_enhancer(name, e, settings.models), None
    except (ModelNotFoundError, MissingDependencyError, BadInputError) as exc:
        from animlora.backends.registry import fallback_for

        other = fallback_for("enhance", name, e.fallback) if name == "spandrel" else None
        if other is None:
            raise
        return get_enhancer(other, e, settings.models), (
            f"backend '{name}' unavailable ({exc}); used '{other}' because enhance.fallback is {e.fallback}")


def enhance_crop(enhancer: Any, rgb: np.ndarray, alpha: np.ndarray | None, factor: float,
                 min_ssim: float) -> tuple[np.ndarray | None, float, float]:
    """(RGB or RGBA result or None when the gate rejects it, the factor used, SSIM)."""
    from animlora.backends.enhancement.base import out_size, resize_alpha, structure_similarity

    factor = max(1.0, min(factor, enhancer.max_factor))
    h, w = rgb.shape[:2]
    out = enhancer.enhance(rgb, factor)
    if (out.shape[1], out.shape[0]) != out_size(w, h, factor):
        raise BadInputError(Path(enhancer.method), f"returned {out.shape[1]}x{out.shape[0]}, expected "
                                                   f"{out_size(w, h, factor)}")
    ssim = structure_similarity(rgb, out)
    if ssim < min_ssim:
        return None, factor, ssim
    if alpha is not None:
        out = np.dstack([out, resize_alpha(alpha, (out.shape[1], out.shape[0]))])
    return out, factor, ssim


class EnhanceStage(FallsBack, Stage):
    name = "enhance"
    folder = "enhancement"
    version = "2"  # 2: the alpha of a padded cut-out placed at its padded box, not squeezed into the tight one
    upstream = ("prefilter", "deocclude")

    def settings_hash(self, settings: Any) -> str:
        from animlora.curation.enhanced import settings_fingerprint

        e = settings.enhance
        backend = chosen_backend(settings)
        model = (e.sr_model, e.tile, e.tile_pad) if backend == "spandrel" else ()
        cpu = (e.cpu_max_scale, e.cpu_iterations, e.denoise, e.clahe) if backend == "opencv" else ()
        return digest(self.version, backend, model, cpu, e.max_scale, e.min_ssim, e.scale,
                      settings_fingerprint(settings.dataset), settings.dataset.use_deoccluded)

    def asked(self, settings: Any) -> Asked:
        wanted = chosen_backend(settings)
        return Asked("enhance", wanted, [settings.enhance.sr_model] if wanted == "spandrel" else [], "enhance.backend",
                     ("enhance.fallback", settings.enhance.fallback))

    def runs(self, settings: Any) -> bool:
        return settings.enhance.backend != "none"

    def recorded(self, catalog: Any) -> list[str]:
        from animlora.records import enhance as records

        return records.backends_used(catalog)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone and (job.input_path is None or not job.input_path.is_dir()):
            raise BadInputError(job.input_path or Path("?"), "expected a folder of images")
        e = job.settings.enhance
        if e.backend == "spandrel" and e.fallback == "none":
            from animlora.backends.registry import check_packages
            from animlora.models import resolve

            check_packages("enhance", "spandrel")
            resolve(e.sr_model, job.settings.models)

    # -- plan --------------------------------------------------------------------------
    def plan(self, ctx: StageContext) -> list[WorkItem]:
        if ctx.settings.enhance.backend == "none":
            return []
        if ctx.job.standalone:
            from animlora.io.images import list_images

            folder = ctx.job.input_path
            assert folder is not None
            items = []
            for path in list_images(folder):
                st = path.stat()
                payload = {"source": str(path), "name": safe_name(path.stem)}
                items.append(WorkItem(path.name, digest(payload, st.st_size, st.st_mtime_ns), payload, path.name))
            return items
        from animlora.curation.enhanced import enhancement_need
        from animlora.curation.sources import project_members, stat_key
        from animlora.records.extract import place_labels

        items, seen, labels = [], set(), place_labels(ctx.catalog)
        use_fill = ctx.settings.dataset.use_deoccluded
        for m in project_members(ctx.catalog, ctx.workspace.root):
            if m.instance_id in seen or m.problem or not (m.frame_path and m.bbox and m.frame_size):
                continue
            seen.add(m.instance_id)
            need = enhancement_need(tuple(float(v) for v in m.bbox), m.frame_size, ctx.settings.dataset)
            if need is None:
                continue
            region, factor = need
            # the lineage alone: this stage's own records (enhanced_*) must not change its input
            lineage = {k: v for k, v in m.to_json().items() if not k.startswith("enhanced_")}
            payload = {"instance": lineage, "region": list(region), "factor": factor,
                       "name": safe_name(m.instance_id), "use_fill": use_fill}
            stamps = stat_key(m.image_path), stat_key(m.frame_path), stat_key(m.filled_path if use_fill else None)
            place = labels.get(m.frame_id or "")
            # paths inside the project relative to it: a moved project is up to date (earlier
            # releases hashed them absolute)
            items.append(WorkItem(m.instance_id, digest(portable(payload, ctx.workspace.root), *stamps), payload,
                                  f"{place} #{m.instance_id.rpartition('_i')[2]}" if place else m.instance_id,
                                  earlier=digest(payload, *stamps)))
        return items

    # -- process -----------------------------------------------------------------------
    def setup_worker(self, job: StageJob) -> None:
        self._enhancer(job)

    @staticmethod
    def _enhancer(job: StageJob) -> tuple[Any, str | None]:
        from animlora.backends.registry import held

        st = job.settings
        key = ("enhance", st.enhance.fingerprint(), st.models.fingerprint(), chosen_backend(st))
        return held("enhance", key, lambda: open_enhancer(st))

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        from animlora.io.images import read_image, write_image

        enhancer, note = self._enhancer(job)
        e = job.settings.enhance
        p = item.payload
        if job.standalone:
            image = read_image(p["source"], "RGBA")
            has_alpha = bool((image[..., 3] < 255).any())
            rgb, alpha = np.ascontiguousarray(image[..., :3]), (image[..., 3] if has_alpha else None)
            region, factor = [0, 0, image.shape[1], image.shape[0]], e.scale
        else:
            rgb, alpha = self._instance_region(job, p)
            region, factor = p["region"], p["factor"]
        out, used, ssim = enhance_crop(enhancer, rgb, alpha, factor, e.min_ssim)
        entry: dict[str, Any] = {"item": item.key, "region": region, "scale": round(used, 4),
                                 "method": enhancer.method, "ssim": round(ssim, 4)}
        progress(1, 1)
        if out is None:
            size = [int(round(rgb.shape[1] * used)), int(round(rgb.shape[0] * used))]
            return ItemOutput(files=(), data={"record": entry | {
                "path": None, "size": size, "status": "rejected",
                "reason": f"SSIM {ssim:.3f} of the result shrunk back vs the source < enhance.min_ssim {e.min_ssim}"},
                "note": note})
        rel = f"{p['name']}.png"
        # an intermediate file (the dataset stage reads it): written fast (zlib 1, one row
        # filter: io/images.encode_image), same pixels; it was ~1/3 of the stage's CPU at level 3
        write_image(job.output_dir / rel, out, png_fast=True)
        return ItemOutput(files=(rel,), data={"record": entry | {
            "path": rel, "size": [out.shape[1], out.shape[0]], "status": "accepted", "reason": None}, "note": note})

    @staticmethod
    def _instance_region(job: StageJob, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The region of the frame (filled box put back) and the instance's alpha there."""
        from animlora.curation.build import with_filled_box
        from animlora.curation.images import mask_in_canvas
        from animlora.curation.sources import Member
        from animlora.io.images import read_image

        m = Member.from_json(p["instance"])
        frame = read_image(m.frame_path or "", "RGB")
        if p["use_fill"]:
            frame, _ = with_filled_box(frame, m)
        cutout = read_image(m.image_path, "RGBA")
        mask = mask_in_canvas(cutout, (frame.shape[1], frame.shape[0]), m.bbox)
        x, y, w, h = p["region"]
        return np.ascontiguousarray(frame[y : y + h, x : x + w]), np.ascontiguousarray(mask[y : y + h, x : x + w])

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        from animlora.records import enhance as records

        records.replace(ctx.catalog, records.from_entry(output.data["record"]))
        if output.data.get("note"):
            records.set_fallback(ctx.catalog, output.data["note"])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        from animlora.records import enhance as records

        records.delete(ctx.catalog, item_key)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        from animlora.records import enhance as records

        rows = [r.as_report_entry() for r in records.all_records(ctx.catalog)]
        accepted = [r for r in rows if r["status"] == "accepted"]
        rejected = [r for r in rows if r["status"] == "rejected"]
        scales = sorted(r["scale"] for r in accepted)
        note = records.fallback(ctx.catalog)
        report = {
            "backend": ctx.settings.enhance.backend, "backend_used": chosen_backend(ctx.settings),
            "methods": sorted({r["method"] for r in rows}), "items": len(rows), "accepted": len(accepted),
            "rejected": len(rejected), "min_ssim": ctx.settings.enhance.min_ssim,
            "scale": {"max": scales[-1], "median": scales[len(scales) // 2]} if scales else None,
            "fallback": [note] if note and any(not r["method"].startswith("spandrel") for r in rows) else [],
            "face_restoration": "not available in this version (docs/enhance.md)",
        }
        atomic_write_json(ctx.output_dir / REPORT_FILE, report | {"crops": rows})
        return report
