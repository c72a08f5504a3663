"""The ``embed`` stage: one L2-normalised vector per instance, cached by content.

Vectors live in the catalog (``embeddings``, keyed by the cut-out's content hash and the
embedder's key), so a re-run embeds only cut-outs it has not seen with this embedder, and
a changed setting that does not change the vectors (batch size, device) embeds nothing.
Outputs in ``embeddings/``: ``embeddings.npz`` (ids + vectors of the current instances)
and ``embedding_report.json``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from animlora.errors import AnimloraError, StageError
from animlora.identity.inputs import InstanceRef, from_folder, from_project, stored_path
from animlora.io.files import atomic_path, atomic_write_json
from animlora.io.images import read_image
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
from animlora.records import embed as records
from animlora.records.embed import load_vectors

ITEM_SIZE = 256  # instances per work item: the unit of resume


def get_embedder(settings: Any) -> tuple[Any, list[str]]:
    """The configured embedder (wrapped in the per-shot light correction where it applies),
    loaded once per process (a model is loaded once, not once per item)."""
    from animlora.backends.registry import held

    key = settings.embed.fingerprint() + settings.models.fingerprint()
    return held("embedding", key, lambda: _load_embedder(settings))


def _load_embedder(settings: Any) -> tuple[Any, list[str]]:
    from animlora.backends.embedding import create_embedder
    from animlora.identity.light import ShotLight

    embedder, notes = create_embedder(settings.embed, settings.models)
    if uses_shot_light(settings.embed.shot_light, embedder.key):
        embedder = ShotLight(embedder)
    return embedder, notes


def uses_shot_light(mode: str, key: str) -> bool:
    """``on``: always; ``auto``: for the colour descriptor alone (neural models were trained on
    every light; the colour descriptor sees the light as much as the character)."""
    return mode == "on" or (mode == "auto" and key.startswith("color-") and "+" not in key)


def collect(ctx: StageContext) -> list[InstanceRef]:
    if ctx.job.standalone:
        if ctx.job.input_path is None:
            raise StageError("embed: a standalone run needs an input folder of cut-outs")
        return from_folder(ctx.job.input_path)
    return from_project(ctx.catalog, ctx.workspace.root)


class EmbedStage(Stage):
    name = "embed"
    folder = "embeddings"
    version = "1"
    upstream = ("prefilter",)

    def check_inputs(self, job: StageJob) -> None:
        get_embedder(job.settings)  # unknown backend, missing package or weights: fail now

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        embedder, notes = get_embedder(ctx.settings)
        refs = collect(ctx)
        ctx.extra.update(refs=refs, model=embedder.key, notes=notes, started=time.monotonic())
        cached = records.cached_hashes(ctx.catalog, embedder.key)
        todo: dict[str, InstanceRef] = {}
        for ref in refs:
            if ref.content_hash not in cached:
                todo.setdefault(ref.content_hash, ref)
        pending = sorted(todo.values(), key=lambda r: r.content_hash)
        ctx.extra["cached"] = len(refs) - len(pending)
        gains: dict[str, list[float]] = {}
        if hasattr(embedder, "inner") and not ctx.job.standalone:  # also when cached: cluster reads them
            from animlora.identity.light import cache_file, project_plates, shot_gains

            gains = shot_gains(project_plates(ctx.catalog, ctx.workspace.root), cache_file(ctx.workspace.state_dir))
        ctx.extra["shot_gains"] = gains
        items = []
        for start in range(0, len(pending), ITEM_SIZE):
            chunk = pending[start : start + ITEM_SIZE]
            key = digest(embedder.key, [r.content_hash for r in chunk])[:20]
            chunk_gains = [gains.get(r.shot_id or "") for r in chunk]
            items.append(WorkItem(f"batch-{key}", key, (embedder.key, chunk, chunk_gains), f"{len(chunk)} cut-outs"))
        # Batches done before stay in the plan (as done), and one item stands for the set of
        # instances: a re-run with nothing new is "up to date", while a changed set of
        # instances (some dropped upstream) still refreshes identity_instances in finish.
        planned = {item.key for item in items}
        from animlora.records.runs import done_items

        for item_key, fingerprint in done_items(ctx.catalog, self.name).items():
            if item_key.startswith("batch-") and item_key not in planned:
                items.append(WorkItem(item_key, fingerprint, None, "embedded before"))
        lineage = [(r.instance_id, r.content_hash, r.frame_id, r.track_id, r.shot_id, r.video_id) for r in refs]
        items.append(WorkItem("instances", digest(embedder.key, lineage)[:20], None, f"{len(refs)} instances"))
        return items

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        if item.payload is None:  # the instance-set item, or a batch done before a settings change
            return ItemOutput(data={"rows": [], "bad": []})
        model, chunk, chunk_gains = item.payload
        embedder, _ = get_embedder(job.settings)
        images, good, gains, bad = [], [], [], []
        for ref, gain in zip(chunk, chunk_gains, strict=True):
            try:
                images.append(read_image(ref.path, "RGBA"))
                good.append(ref)
                gains.append(gain)
            except AnimloraError as exc:
                bad.append((str(ref.path), str(exc)))
        rows = []
        if images:
            vectors = embedder.embed(images, gains) if hasattr(embedder, "inner") else embedder.embed(images)
            for ref, vec in zip(good, vectors, strict=True):
                rows.append((ref.instance_id, model, ref.content_hash, vec.astype("<f4").tobytes(), int(vec.shape[0])))
        progress(len(chunk), len(chunk))
        return ItemOutput(data={"rows": rows, "bad": bad})

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        records.write_vectors(ctx.catalog, output.data["rows"])
        ctx.extra.setdefault("bad", []).extend(output.data["bad"])
        ctx.extra["embedded"] = ctx.extra.get("embedded", 0) + len(output.data["rows"])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        """Vectors are a cache keyed by content, valid whatever happens to the work item."""

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        refs: list[InstanceRef] = ctx.extra["refs"]
        model = ctx.extra["model"]
        root = ctx.workspace.root
        # standalone, the review page may show cut-outs from the input folder (and only from there, or the workspace)
        records.replace_instances(
            ctx.catalog,
            [records.IdentityInstance(r.instance_id, r.content_hash, stored_path(r.path, root), r.frame_id,
                                      r.track_id, r.shot_id, r.video_id) for r in refs],
            str(ctx.job.input_path.resolve()) if ctx.job.standalone and ctx.job.input_path is not None else None,
        )
        ids, vectors = load_vectors(ctx.catalog, model)
        with atomic_path(ctx.output_dir / "embeddings.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, ids=np.asarray(ids, dtype=str), vectors=vectors)
        report = {
            "model": model,
            "notes": ctx.extra["notes"],
            "instances": len(refs),
            "embedded": ctx.extra.get("embedded", 0),
            "cached": ctx.extra["cached"],
            "unreadable": [{"path": p, "error": e} for p, e in ctx.extra.get("bad", [])],
            "missing": len(refs) - len(ids),
            "dim": int(vectors.shape[1]) if len(ids) else 0,
            "shot_light": {"shots": len(ctx.extra.get("shot_gains", {})), "gains": ctx.extra.get("shot_gains", {})},
            "seconds": round(time.monotonic() - ctx.extra["started"], 3),
            "settings": ctx.settings.embed.model_dump(mode="json"),
        }
        atomic_write_json(ctx.output_dir / records.REPORT, report)
        return report

