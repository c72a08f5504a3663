"""The segment stage: character instances and tracks from the frames of each shot.

Items are shots. In a project they come from the catalog (frames with ``kept = 1``, grouped
by shot); standalone, from a folder of images: **each subfolder is one shot** (its images,
recursively, in name order) and **each image directly in the folder is a shot of its own**.

Outputs (the original pipeline's contract) in the stage folder::

    character/<frame>_i<k>.png        RGBA cut-out: soft matte, tight box + padding
    variants/original/<...>.jpg       the same box with its original background
    variants/blurred/<...>.jpg        ... with the background blurred
    masks/<frame>_i<k>.png            full-frame 8-bit soft mask of the instance
    background/<frame>.png            the frame with every character transparent
    segmentation_results.json         settings, counts, skipped/converted images, instances

Catalog: ``instances``, ``tracks``, ``segment_frames`` (every frame read, with status).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError
from animlora.io.files import atomic_write_json, file_sha256, safe_name, unique_names
from animlora.io.images import IMAGE_SUFFIXES, list_images, read_image_info, write_image
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
from animlora.records import segment as records
from animlora.stages.fallback import Asked, FallsBack, missing

RESULTS_FILE = "segmentation_results.json"
# decoded frames of one shot kept in memory while it is segmented (past this, read on access):
# 1 GiB holds ~380 frames of 1280x720 RGB, longer than any sampled shot
FRAME_CACHE_BYTES = 1 << 30


def open_segmenter(settings: Any) -> tuple[Any, str | None]:
    """The configured backend, or — when it cannot run and ``segment.fallback`` allows —
    the next that can (sam2 → isnet → classic; isnet → classic), with a note saying why
    (for the report)."""
    from animlora.backends.registry import fallback_chain
    from animlora.backends.segmentation.base import get_segmenter

    s = settings.segment
    chain = fallback_chain("segmentation", s.backend, s.fallback)
    reasons: list[str] = []
    last: Exception | None = None
    for name in chain:
        try:
            segmenter = get_segmenter(name, s, settings.models)
        except (ModelNotFoundError, MissingDependencyError) as exc:
            if s.fallback == "none":
                raise
            reasons.append(f"backend '{name}' unavailable ({exc})")
            last = exc
            continue
        if reasons:
            reasons[-1] += f"; used '{name}' because segment.fallback is {s.fallback}"
        if segmenter.fallback_note:
            reasons.append(segmenter.fallback_note)
        return segmenter, "; ".join(reasons) or None
    assert last is not None
    raise last


def held_segmenter(settings: Any) -> tuple[Any, str | None]:
    """:func:`open_segmenter`, loaded once per process and reused for every shot it is given."""
    from animlora.backends.registry import held

    key = (settings.segment.fingerprint(), settings.models.fingerprint())
    return held("segmentation", key, lambda: open_segmenter(settings))


def backend_weights(s: Any) -> list[str]:
    """The registry names of the weights ``segment.backend`` loads (the prompter's too)."""
    return {"isnet": ["isnet"], "sam2": [s.sam2_model] + (["isnet"] if s.sam2_prompter == "isnet" else []),
            "yolo": [s.yolo_model]}.get(s.backend, [])


def check_backend(settings: Any) -> None:
    """With ``segment.fallback: none``, a backend whose weights or packages are missing is one
    clear error before anything is written (otherwise the stage switches and reports)."""
    from animlora.backends.segmentation.base import BACKENDS, get_segmenter
    from animlora.models import locate, resolve

    s = settings.segment
    entry = BACKENDS[s.backend]
    if not entry.implemented:
        get_segmenter(s.backend, s, settings.models)  # raises: names the working choices
    if s.fallback != "none":
        return
    for pkg in entry.packages:
        if importlib.util.find_spec(pkg) is None:
            get_segmenter(s.backend, s, settings.models)  # raises MissingDependencyError
    for name in backend_weights(s):
        if locate(name, settings.models).path is None:
            resolve(name, settings.models)  # downloads when allowed, else ModelNotFoundError


def _file_id(path: Path) -> str:
    return "img_" + file_sha256(path)[:16]


class _Cancelled(Exception):
    """The look-ahead of a shot the run will not process next (see :class:`_Ahead`)."""


class _Ahead:
    """One shot's frames read and segmented by the model on a background thread, while the
    main thread runs the previous shot's pass and writes its files.

    The model keeps both cores busy only while two frames are in flight; the shot pass, the
    writers and a shot's last odd frame use one. Started as soon as the previous shot's model
    part is done, so the two overlap. At most one exists at a time, so the segmenter is never
    used by two threads at once. ``cancel`` stops it between frames."""

    def __init__(self, key: str, work: Callable[[threading.Event], Any]) -> None:
        self.key = key
        self.cancel = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        # a daemon thread: an interrupted run does not wait for the look-ahead's model calls
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"segment-ahead-{key}", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[threading.Event], Any]) -> None:
        try:
            self._result = work(self.cancel)
        except BaseException as exc:  # noqa: BLE001 - raised again in the thread that takes the result
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def drop(self) -> None:
        self.cancel.set()
        self._thread.join()


class SegmentStage(FallsBack, Stage):
    name = "segment"
    folder = "segmentation"
    # 2: the shot pass (props cut off, parts merged), crispness 0..1, measures JSON; 3: a track that swallowed
    # another keeps its view before; 4: a still character fused with the set is cut by colour alone; 5: the
    # body the frame's edge cuts off a close-up given back by a second look (segment.isnet_edge_size)
    version = "5"
    upstream = ("extract",)

    # -- inputs -------------------------------------------------------------------------
    def asked(self, settings: Any) -> Asked:
        s = settings.segment
        return Asked("segmentation", s.backend, backend_weights(s), "segment.backend", ("segment.fallback", s.fallback))

    def recorded(self, catalog: Any) -> list[str]:
        return records.backends_used(catalog)

    def fallbacks(self, asked: Asked, settings: Any) -> list[str]:
        # sam2 that can run while its ISNet prompter cannot is prompted by the prompter's fallback
        from animlora.backends.registry import fallback_for

        s = settings.segment
        if asked.backend == "sam2" and s.sam2_prompter != "classic" \
                and not missing(asked._replace(weights=[s.sam2_model]), settings.models):
            other = fallback_for("segmentation", s.sam2_prompter, s.fallback)
            return [f"sam2+{other}"] if other else []
        return super().fallbacks(asked, settings)

    def keep_setting(self, asked: Asked, made_by: str) -> str:
        prompter = made_by.partition("+")[2]  # sam2+classic: sam2 prompted by classic
        return f"segment.sam2_prompter: {prompter}" if prompter else super().keep_setting(asked, made_by)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            src = job.input_path
            if src is None or not src.exists():
                raise BadInputError(src or Path("?"), "no such file or folder")
            if src.is_file() and src.suffix.lower() not in IMAGE_SUFFIXES:
                raise BadInputError(src, f"not an image folder or image ({', '.join(IMAGE_SUFFIXES)})")
            if src.is_dir() and not list_images(src):
                raise BadInputError(src, "no images in this folder")
        check_backend(job.settings)

    def setup_worker(self, job: StageJob) -> None:
        held_segmenter(job.settings)  # each pool worker loads the model once, before its first shot

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        items = self._plan_standalone(ctx) if ctx.job.standalone else self._plan_project(ctx)
        self._plan_ahead(ctx, items)
        return items

    def _plan_ahead(self, ctx: StageContext, items: list[WorkItem]) -> None:
        """After each shot, which one to segment ahead (:class:`_Ahead`): the next the runner
        will process. Only when shots run one after another in this process (a worker pool or
        Ray runs shots side by side already); shots done with these settings are passed over."""
        from animlora.pipeline.runner import stage_key_of
        from animlora.records import runs as runs_records

        self._ahead: _Ahead | None = None
        self._next: dict[str, WorkItem] = {}
        self._owner = os.getpid()
        runner = ctx.settings.runner
        executor = runner.executors.get(self.name, runner.executor)
        if executor == "ray" or (executor == "process" and runner.workers > 1):
            return
        key = stage_key_of(self, self.settings_hash(ctx.settings), ctx.catalog)
        done = {} if ctx.force else runs_records.done_items(ctx.catalog, self.name, key)
        todo = [item for item in items if done.get(item.key) is None or done[item.key] not in (item.fingerprint, item.earlier)]
        self._next = {a.key: b for a, b in zip(todo, todo[1:], strict=False)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_ahead", None)  # a thread: stays with the process that started it
        return state

    def _plan_project(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.records.extract import kept_frames, shot_label

        frames_dir = ctx.workspace.stage_path("extract")
        shots: dict[str, list[dict[str, Any]]] = {}
        labels: dict[str, str] = {}
        relative: dict[str, str] = {}
        for row in kept_frames(ctx.catalog):
            shot = row.shot_id or f"{row.video_id}_frame_{row.id}"
            if shot not in labels:
                labels[shot] = shot_label(vars(row), shot)
            relative[row.id] = row.path
            shots.setdefault(shot, []).append(
                {
                    "frame_id": row.id, "video_id": row.video_id, "shot_id": shot,
                    "source": str(frames_dir / row.path), "name": safe_name(Path(row.path).stem, "frame"),
                }
            )
        items = []
        for shot, frames in shots.items():
            # the frames' ids and paths inside the extract folder: a project moved or copied
            # elsewhere is up to date. Earlier releases hashed the absolute paths.
            items.append(WorkItem(key=shot, fingerprint=digest([(f["frame_id"], relative[f["frame_id"]]) for f in frames]),
                                  payload=frames, label=labels[shot],
                                  earlier=digest([(f["frame_id"], f["source"]) for f in frames])))
        return items

    def _plan_standalone(self, ctx: StageContext) -> list[WorkItem]:
        src = ctx.job.input_path
        assert src is not None  # checked by check_inputs
        groups: dict[str, list[Path]] = {}
        if src.is_file():
            groups[src.name] = [src]
            base = src.parent
        else:
            base = src
            for path in list_images(src):
                rel = path.relative_to(src)
                key = rel.parts[0] if len(rel.parts) > 1 else str(rel)
                groups.setdefault(key, []).append(path)
        items, seen = [], set()
        # names unique by construction (`a b.png` and `a_b.png` stay apart): shots, and output
        # files, which share one folder across shots
        keys = sorted(groups)
        shots = unique_names([(key, digest(key)) for key in keys], "shot")
        every = [path for key in keys for path in groups[key]]
        stems = [str(path.relative_to(base).with_suffix("")).replace("/", "__") for path in every]
        pairs = [(stem, digest(str(path))) for stem, path in zip(stems, every, strict=True)]
        file_names = dict(zip(every, unique_names(pairs, "frame"), strict=True))
        for key, shot_name in zip(keys, shots, strict=True):
            paths = groups[key]
            shot = "shot_" + shot_name
            frames = []
            for path in paths:
                name = file_names[path]
                stat = path.stat()
                frame_id = _file_id(path) if stat.st_size else "empty_" + digest(str(path))[:16]
                if frame_id in seen:  # the same image twice: each copy is its own frame
                    frame_id = f"{frame_id}_{digest(str(path))[:6]}"
                seen.add(frame_id)
                frames.append(
                    {
                        "frame_id": frame_id,
                        "video_id": None, "shot_id": shot, "source": str(path),
                        "name": name,
                        "stamp": (stat.st_size, stat.st_mtime_ns),
                    }
                )
            fingerprint = digest([(f["frame_id"], f["source"], f["stamp"]) for f in frames])
            items.append(WorkItem(key=shot, fingerprint=fingerprint, payload=frames, label=key))
        return items

    # -- work ---------------------------------------------------------------------------
    def cost(self, item: WorkItem) -> float:
        return float(len(item.payload))  # frames of the shot

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        # 1-2. read the frames and run the model: done ahead on a thread while the previous
        # shot was written (see _Ahead), or now
        ahead, self._ahead = getattr(self, "_ahead", None), None
        if ahead is not None and ahead.key != item.key:
            ahead.drop()  # not the shot the runner asks for: its model output is not used
            ahead = None
        try:
            shot = ahead.result() if ahead is not None else self._read_and_segment(job, item, None)
            following = getattr(self, "_next", {}).get(item.key)
            if following is not None and getattr(self, "_owner", None) == os.getpid():
                self._ahead = _Ahead(following.key, lambda cancel: self._read_and_segment(job, following, cancel))
            return self._finish_shot(job, item, progress, shot)
        except BaseException as exc:
            # an interrupted run (Ctrl-C): the look-ahead stops at its next batch, so the run
            # does not exit with the model still running on a thread. A shot that fails
            # (an Exception, recorded by the runner) leaves the next shot's look-ahead running.
            if not isinstance(exc, Exception):
                for running in (ahead, self._ahead):
                    if running is not None:
                        running.drop()
                self._ahead = None
            raise

    def _finish_shot(self, job: StageJob, item: WorkItem, progress: Progress, shot: dict[str, Any]) -> ItemOutput:
        """Steps 3-4 of :meth:`process`: the shot pass and every file of the shot."""
        from animlora.backends.segmentation.base import Frames
        from animlora.io.images import read_image

        s = job.settings.segment
        out = job.output_dir
        frame_rows, good, held = shot["frame_rows"], shot["good"], shot["held"]
        files: list[str] = []
        instance_rows: list[dict[str, Any]] = []
        engine = shot["engine"]
        if good:
            segmenter, note = held_segmenter(job.settings)
            frames = Frames([
                (lambda a=arr: a) if arr is not None else (lambda p=f["source"]: read_image(p, "RGB"))
                for (f, _), arr in zip(good, held, strict=True)
            ])
            instances = shot["instances"]
            # 3. the shot pass: props cut off and flagged, parts that move together merged
            extra: list[dict[str, Any]] = [{} for _ in instances]
            if s.refine and instances:
                from animlora.backends.segmentation.refine import refine_shot

                refined = refine_shot(instances, frames, s, relink=segmenter.name != "sam2")
                instances, extra = refined.instances, refined.measures
            by_frame: dict[int, list[Any]] = {}
            for inst, more in zip(instances, extra, strict=True):
                by_frame.setdefault(inst.frame, []).append((inst, more))
            for found in by_frame.values():
                found.sort(key=lambda pair: (pair[0].bbox[0], pair[0].bbox[1]))
            # 4. write each frame's instances and background
            for index, (f, row) in enumerate(good):
                image = frames[index]
                insts = by_frame.get(index, [])
                written, rows = self._write_frame(out, f, image, insts, s, segmenter.recorded_as)
                files.extend(written)
                instance_rows.extend(rows)
                row.update(n_instances=len(insts), backend=segmenter.recorded_as, note=note,
                           background_path=f"background/{f['name']}.png")
                progress(index + 1, len(good))
        counts = Counter(r["track_id"] for r in instance_rows)
        video_id = item.payload[0]["video_id"]
        track_rows = [
            {"id": t, "video_id": video_id, "shot_id": item.key, "n_instances": n} for t, n in sorted(counts.items())
        ]
        return ItemOutput(files=tuple(files), data={"frames": frame_rows, "instances": instance_rows,
                                                    "tracks": track_rows, "engine": engine})

    def _read_and_segment(self, job: StageJob, item: WorkItem, cancel: threading.Event | None) -> dict[str, Any]:
        """Steps 1-2 of :meth:`process` for one shot: every frame read and checked (a bad image
        is skipped and reported, never a crash), then the model's instances and tracks.
        Decoded frames are kept for the rest of the shot (the model, the shot pass and the
        writers each read every frame) up to FRAME_CACHE_BYTES; past that, read on access."""
        from animlora.backends.segmentation.base import Frames
        from animlora.io.images import read_image

        frame_rows, good = [], []
        held: list[np.ndarray | None] = []
        budget = FRAME_CACHE_BYTES
        for f in item.payload:
            if cancel is not None and cancel.is_set():
                raise _Cancelled(item.key)
            try:
                arr, info = read_image_info(f["source"], "RGB")
            except BadInputError as exc:
                frame_rows.append(self._frame_row(f, "skipped", exc.problem))
                continue
            frame_rows.append(self._frame_row(f, "ok", None, info.converted_from, info.width, info.height))
            good.append((f, frame_rows[-1]))
            keep = arr.nbytes <= budget
            budget -= arr.nbytes if keep else 0
            if keep:
                arr.flags.writeable = False  # shared by every reader of the shot: never changed in place
            held.append(arr if keep else None)
            del arr
        instances: list[Any] = []
        engine = None
        if good:
            segmenter, _ = held_segmenter(job.settings)
            engine = segmenter.describe()

            def load(arr: np.ndarray | None, source: str) -> np.ndarray:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled(item.key)
                return arr if arr is not None else read_image(source, "RGB")

            frames = Frames([
                (lambda a=arr, p=f["source"]: load(a, p)) for (f, _), arr in zip(good, held, strict=True)
            ])
            instances = segmenter.segment(frames)
        return {"frame_rows": frame_rows, "good": good, "held": held, "instances": instances, "engine": engine}

    @staticmethod
    def _frame_row(f: dict[str, Any], status: str, problem: str | None, converted: str | None = None,
                   width: int | None = None, height: int | None = None) -> dict[str, Any]:
        return {
            "frame_id": f["frame_id"], "shot_id": f["shot_id"], "source": f["source"], "status": status,
            "problem": problem, "converted_from": converted, "width": width, "height": height,
            "n_instances": 0, "background_path": None, "backend": None, "note": None,
        }

    @staticmethod
    def _write_frame(out: Path, f: dict[str, Any], image: np.ndarray, found: list[tuple[Any, dict[str, Any]]],
                     s: Any, backend: str) -> tuple[list[str], list[dict[str, Any]]]:
        from animlora.backends.segmentation.cutouts import (
            blurred_context,
            crop_alpha,
            measure,
            padded_box,
            rgba_cutout,
        )

        height, width = image.shape[:2]
        files, rows = [], []
        union = np.zeros((height, width), np.float32)
        for k, (inst, more) in enumerate(found):
            name = f"{f['name']}_i{k}"
            full = inst.full_alpha(height, width)
            full[full < s.alpha_threshold] = 0.0
            np.maximum(union, full, out=union)
            box = padded_box(inst.bbox, s.padding, height, width)
            alpha = crop_alpha(inst, box, s.alpha_threshold)
            # PNGs written fast (zlib 1, one row filter: io/images.encode_image), same pixels
            write_image(out / "character" / f"{name}.png", rgba_cutout(image, alpha, box), png_fast=True)
            write_image(out / "masks" / f"{name}.png", np.clip(full * 255 + 0.5, 0, 255).astype(np.uint8),
                        png_fast=True)
            files += [f"character/{name}.png", f"masks/{name}.png"]
            bx, by, bw, bh = box
            if "original" in s.context_variants:
                write_image(out / "variants" / "original" / f"{name}.jpg", image[by : by + bh, bx : bx + bw])
                files.append(f"variants/original/{name}.jpg")
            if "blurred" in s.context_variants:
                write_image(out / "variants" / "blurred" / f"{name}.jpg",
                            blurred_context(image, alpha, box, s.context_blur))
                files.append(f"variants/blurred/{name}.jpg")
            m = measure(image, inst, s.alpha_threshold)
            rows.append(
                {
                    "id": f"{f['frame_id']}_i{k}", "frame_id": f["frame_id"], "video_id": f["video_id"],
                    "shot_id": f["shot_id"], "track_id": f"{f['shot_id']}_t{inst.track}",
                    "path": f"character/{name}.png", "mask_path": f"masks/{name}.png", "bbox": list(inst.bbox),
                    "area_fraction": round(m.area_fraction, 6), "truncated": m.truncated,
                    "sharpness": round(m.sharpness, 4), "score": round(inst.score, 4), "backend": backend,
                    "measures": json.dumps(more | {"signature": m.signature}, sort_keys=True),
                }
            )
        background = np.dstack([image, np.clip((1.0 - union) * 255 + 0.5, 0, 255).astype(np.uint8)])
        # the largest file of the stage (full frame, RGBA): written fast, same pixels
        write_image(out / "background" / f"{f['name']}.png", background, png_fast=True)
        files.append(f"background/{f['name']}.png")
        return files, rows

    # -- catalog ------------------------------------------------------------------------
    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        if output.data.get("engine"):  # as the worker that ran the shot reported it
            ctx.extra["engine"] = output.data["engine"]
        records.replace_shot(ctx.catalog, item.key, output.data["frames"], output.data["instances"],
                             output.data["tracks"], ctx.workspace.root)

    def forget(self, ctx: StageContext, item_key: str) -> None:
        records.delete_shot(ctx.catalog, item_key)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        ahead, self._ahead = getattr(self, "_ahead", None), None
        if ahead is not None:  # a shot the runner did not ask for after all
            ahead.drop()
        cat = ctx.catalog
        s = ctx.settings.segment
        frames = records.frame_rows(cat, ctx.workspace.root)
        instances = records.instance_rows(cat, by_shot=True)
        backends = Counter(r["backend"] for r in frames if r["backend"])
        notes = sorted({r["note"] for r in frames if r["note"]})
        report = {
            "settings": s.model_dump(mode="json"),
            "backend_requested": s.backend,
            "backends_used": dict(backends),
            "fallback": notes,
            # how the backend ran in this run (engine, precision, size); null when every shot was resumed
            "engine": ctx.extra.get("engine"),
            "counts": {
                "shots": len({r["shot_id"] for r in frames}),
                "frames": len(frames),
                "frames_skipped": sum(r["status"] == "skipped" for r in frames),
                "instances": len(instances),
                "tracks": records.count_tracks(cat),
            },
            "skipped": [{"source": r["source"], "problem": r["problem"]} for r in frames if r["status"] == "skipped"],
            "converted": [
                {"source": r["source"], "from": r["converted_from"]} for r in frames if r["converted_from"]
            ],
            "failed_shots": [{"shot": k, "error": e} for k, e in summary.failures],
        }
        full = dict(report)
        full["frames"] = [
            {k: r[k] for k in ("frame_id", "shot_id", "source", "status", "background_path", "n_instances")}
            for r in frames
        ]
        full["instances"] = [
            {k: r[k] for k in ("id", "frame_id", "shot_id", "track_id", "path", "mask_path", "area_fraction",
                               "truncated", "sharpness", "score", "backend")}
            | {"bbox": _json_list(r["bbox"]), "measures": json.loads(r["measures"] or "{}")}
            for r in instances
        ]
        atomic_write_json(ctx.output_dir / RESULTS_FILE, full)
        return report


def _json_list(text: str) -> list[int]:
    return json.loads(text)
