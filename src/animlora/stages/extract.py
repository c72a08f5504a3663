"""The extract stage: videos in, shots and frames out.

One item per video, one decode per video:

1. probe; find black bars on a dozen keyframes (seek + decode one each);
2. decode every frame once (threaded); each frame feeds the shot detector (a small image
   read from the YUV planes) and the frame selector of the mode:
   - ``scene``: a cheap sharpness on a few frames a second, the best one per time bin kept
     (bins double in width as a shot grows, so memory is bounded); when a shot closes, its
     middle (``shot_margin`` off each end) is cut into ``frames_per_shot`` parts and the
     sharpest frame of each part is taken;
   - ``interval``: the first frame at or after every ``interval_seconds``;
   - ``all``: every frame;
3. a taken frame is measured exactly (sharpness on the full-size luma, perceptual hash),
   rejected as ``blurry`` under ``blur_threshold``, else cropped, converted to RGB and
   written (PNG or JPEG q95) by a writer thread while decoding goes on;
4. ``commit`` writes the video, shots and frames rows;
5. ``finish`` removes near-duplicates over ALL videos at once (sharpest first, ties by id,
   so the result does not depend on the order videos were processed), moving duplicate
   files to ``_duplicates/`` (and back, should a later run keep them), then writes
   ``extraction_results.json``.
"""

from __future__ import annotations

import json
import shutil
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from animlora.errors import BadInputError, StageError
from animlora.io.files import atomic_path, atomic_write_json, unique_names
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

RESULTS_FILE = "extraction_results.json"
DUPLICATES_DIR = "_duplicates"
_MAX_BINS = 48  # candidate frames held per open shot in scene mode
_MAX_PENDING_WRITES = 6


def frame_file(name: str, shot_idx: int, seconds: float, quality: str) -> str:
    """``<video>/<video>_s0012_00h01m23s456.png``: by video, shot and timestamp; sorts in time."""
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    ext = "png" if quality == "high" else "jpg"
    return f"{name}/{name}_s{shot_idx:04d}_{h:02d}h{m:02d}m{s:02d}s{ms:03d}.{ext}"


def _encode(rgb: Any, suffix: str) -> bytes:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if suffix == ".png":
        # zlib level 1 + RLE + the Up filter: lossless, about as small as the defaults, 2.5x faster
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                  cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise ValueError(f"cannot encode a frame as {suffix}")
    return buf.tobytes()


def _write_frame(path: Path, frame: Any, crop: Any) -> None:
    from animlora.io.video import to_rgb

    data = _encode(to_rgb(frame, crop), path.suffix)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class _VideoExtraction:
    """The per-video work of ``process``: streaming, bounded memory."""

    def __init__(self, job: StageJob, payload: dict[str, Any], progress: Progress) -> None:
        self.job = job
        self.s = job.settings.extract
        self.payload = payload
        self.progress = progress
        self.name = payload["name"]
        self.vid = payload["id"]
        self.out = job.output_dir
        # two writers: PNG encoding (~15 ms a 720p frame) is the heaviest work after decoding, and
        # the last frames of a video are encoded side by side instead of one after another
        self.writer = ThreadPoolExecutor(max_workers=2)
        self.pending_writes: list[Future[None]] = []
        self.files: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.times = array("d")
        self.boundaries: list[Any] = []
        self.shot_starts = [0]
        # scene mode
        self.bin_width = 1
        self.bins: dict[int, tuple[float, Any]] = {}  # bin -> (proxy sharpness, DecodedFrame)
        self.last_sample = -(10**9)
        # interval / all modes
        self.waiting: list[Any] = []
        self.next_time = 0.0

    # -- 1. probe and bars -------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from animlora.io.video import FrameOrderError, luma, probe, sample_frames
        from animlora.stages.frame_measures import detect_bars, limited_range

        path = Path(self.payload["path"])
        info = probe(path, check_end=False)

        def find_bars() -> Any:
            # a dozen keyframes on a film, fewer on a short clip (each costs a seek and a decode)
            samples = sample_frames(path, min(12, max(4, int(info.duration // 10))))
            return detect_bars([luma(f) for f in samples], limited_range(samples[0])) if samples else None

        # the bars are looked for on the writer thread while the first frames decode
        self.crop = self.writer.submit(find_bars) if self.s.crop_bars else None
        self.fps = info.fps
        self.sample_step = max(1, round(info.fps / 8))  # scene mode: ~8 sharpness samples a second
        try:
            try:
                result = self._decode(path, info, reference_only=self.s.mode == "scene")
            except FrameOrderError:  # rare streams: decode every frame instead, from scratch
                self._wait_writes(0)
                for rel in self.files:
                    (self.out / rel).unlink(missing_ok=True)
                crop, writer = self.crop, self.writer
                self.__init__(self.job, self.payload, self.progress)  # type: ignore[misc]
                writer.shutdown(wait=True)
                self.crop, self.fps, self.sample_step = crop, info.fps, max(1, round(info.fps / 8))
                result = self._decode(path, info, reference_only=False)
            self._wait_writes(0)
        except BaseException as exc:
            self.writer.shutdown(wait=True, cancel_futures=True)
            if isinstance(exc, Exception):  # a failed video leaves no frames behind
                for rel in self.files:
                    (self.out / rel).unlink(missing_ok=True)
            raise
        self.writer.shutdown(wait=True)
        return result

    # -- 2. one decode: detector + selector ----------------------------------------------
    def _decode(self, path: Path, info: Any, reference_only: bool) -> dict[str, Any]:
        """Scene mode reads only the reference frames (see io/video.py ReferenceFrames): a
        third to a half less decoding, and the frames it keeps are the encoder's best-quality
        ones. Interval and all modes need any frame, so they decode every one."""
        from animlora.io.video import ReadAhead, ReferenceFrames, analysis_images, iter_frames
        from animlora.stages.shots import ShotDetector, refine_cuts

        detector = ShotDetector(
            info.fps, detector=self.s.detector, threshold=self.s.threshold,
            min_shot_seconds=self.s.min_shot_seconds, dissolve_threshold=self.s.dissolve_threshold,
        )
        reader = ReferenceFrames(path) if reference_only else None
        if reader is not None:
            self.sample_step = 1  # reference frames are already sparse: rank every one
        push = detector.push_after_gap if reader is not None else detector.push
        total = max(1, info.frame_count)
        count = reported = 0
        with ReadAhead(reader if reader is not None else iter_frames(path)) as frames:
            if isinstance(self.crop, Future):
                self.crop = self.crop.result()
            for decoded in frames:
                count = decoded.index + 1
                if reader is None:
                    self.times.append(decoded.time)
                found = push(decoded.index, *analysis_images(decoded.frame, self.s.analysis_width))
                self._select(decoded)
                self._boundaries(found)
                self._drain(detector.finalized_upto)
                if count - reported >= 256:
                    reported = count
                    self.progress(count, total)
        if reader is not None:
            count = reader.count
            self.times = array("d", (reader.time_of(i) for i in range(count)))
        self._boundaries(detector.flush(count))
        self._close_shot(count)
        self._drain(count)
        if reader is not None:  # cuts found across skipped frames: the exact frame
            self.boundaries = refine_cuts(path, self.boundaries, reader.decoded, self.s.analysis_width, 0)
            self.shot_starts = [0, *(b.index for b in self.boundaries)]
        self.progress(count, count)
        return self._result(info, count, detector)

    def _boundaries(self, found: list[Any]) -> None:
        for boundary in found:
            self._close_shot(boundary.index)
            self.boundaries.append(boundary)
            self.shot_starts.append(boundary.index)

    # -- selection -----------------------------------------------------------------------
    def _select(self, decoded: Any) -> None:
        mode = self.s.mode
        if mode == "scene":
            if decoded.index - self.last_sample < self.sample_step:
                return
            self.last_sample = decoded.index
            from animlora.io.video import luma
            from animlora.stages.frame_measures import sharpness_proxy

            score = sharpness_proxy(luma(decoded.frame), self.crop)
            key = decoded.index // self.bin_width
            held = self.bins.get(key)
            if held is None or score > held[0]:
                self.bins[key] = (score, decoded)
            if len(self.bins) > _MAX_BINS:
                self._widen_bins()
        elif mode == "all" or decoded.time >= self.next_time - 1e-6:
            self.waiting.append(decoded)
            if mode == "interval":
                while self.next_time <= decoded.time + 1e-6:
                    self.next_time += self.s.interval_seconds

    def _widen_bins(self) -> None:
        self.bin_width *= 2
        merged: dict[int, tuple[float, Any]] = {}
        for score, decoded in self.bins.values():
            key = decoded.index // self.bin_width
            held = merged.get(key)
            if held is None or score > held[0]:
                merged[key] = (score, decoded)
        self.bins = merged

    def _close_shot(self, end: int) -> None:
        """Scene mode: the shot [last start, end) is complete; take its best frames."""
        start = self.shot_starts[-1]
        if self.s.mode != "scene" or end <= start:
            return
        inside = sorted(
            ((d.index, score, d) for score, d in self.bins.values() if start <= d.index < end),
            key=lambda t: t[0],
        )
        self.bins = {k: v for k, v in self.bins.items() if v[1].index >= end}
        length = end - start
        margin = int(length * self.s.shot_margin)
        lo, hi = start + margin, end - margin
        if hi <= lo:
            lo, hi = start, end
        k = self.s.frames_per_shot
        edges = [lo + (hi - lo) * j / k for j in range(k + 1)]
        for j in range(k):
            part = [t for t in inside if edges[j] <= t[0] < edges[j + 1]]
            if part:
                best = max(part, key=lambda t: (t[1], -t[0]))
                self._take(best[2], len(self.shot_starts) - 1)

    def _drain(self, upto: int) -> None:
        """Interval / all modes: frames whose shot is known are taken."""
        if not self.waiting:
            return
        keep = []
        for decoded in self.waiting:
            if decoded.index < upto:
                shot = sum(1 for s in self.shot_starts[1:] if s <= decoded.index)
                self._take(decoded, shot)
            else:
                keep.append(decoded)
        self.waiting = keep

    # -- 3. measure, reject or write -------------------------------------------------------
    def _take(self, decoded: Any, shot_idx: int) -> None:
        from animlora.io.video import luma, luma_scale
        from animlora.stages.frame_measures import phash, sharpness

        frame = decoded.frame
        y = luma(frame)
        sharp = sharpness(y, self.crop, luma_scale(frame))
        w, h = (self.crop[2], self.crop[3]) if self.crop else (frame.width, frame.height)
        row: dict[str, Any] = {
            "id": f"{self.vid}_f{decoded.index}",
            "video_id": self.vid,
            "shot_id": f"{self.vid}_s{shot_idx}",
            "frame_index": decoded.index,
            "timestamp": round(decoded.time, 6),
            "path": None,
            "width": w,
            "height": h,
            "sharpness": round(sharp, 3),
            "phash": phash(y, self.crop),
            "kept": 0,
            "reject_reason": None,
        }
        if sharp < self.s.blur_threshold:
            row["reject_reason"] = "blurry"
        else:
            rel = frame_file(self.name, shot_idx, decoded.time, self.s.quality)
            row["path"] = rel
            row["kept"] = 1
            self._wait_writes(_MAX_PENDING_WRITES)
            # conversion, encoding and writing overlap with decoding (all release the GIL)
            self.pending_writes.append(self.writer.submit(_write_frame, self.out / rel, frame, self.crop))
            self.files.append(rel)
        self.frames.append(row)

    def _wait_writes(self, keep: int) -> None:
        while len(self.pending_writes) > keep:
            self.pending_writes.pop(0).result()

    # -- result -------------------------------------------------------------------------------
    def _result(self, info: Any, count: int, detector: Any) -> dict[str, Any]:
        times = self.times
        end_time = times[-1] + 1.0 / self.fps if len(times) else 0.0
        starts = self.shot_starts
        transitions = {b.index: b for b in self.boundaries}
        shots = []
        for idx, start in enumerate(starts):
            end = starts[idx + 1] if idx + 1 < len(starts) else count
            boundary = transitions.get(start)
            shots.append({
                "id": f"{self.vid}_s{idx}",
                "video_id": self.vid,
                "idx": idx,
                "start_frame": start,
                "end_frame": end,
                "start_time": round(times[start], 6),
                "end_time": round(times[end] if end < count else end_time, 6),
                "frame_count": end - start,
                "transition": boundary.transition if boundary is not None else None,
            })
        video = {
            "id": self.vid,
            "path": self.payload["path"],
            "name": self.name,
            "size": self.payload["size"],
            "duration": round(end_time, 6),
            "fps": round(info.fps, 6),
            "width": info.width,
            "height": info.height,
            "frame_count": count,
            "crop": list(self.crop) if self.crop else None,
            "status": "ok",
            "error": None,
        }
        spans = [list(b.span) for b in self.boundaries if b.span is not None]
        stats = {"raw_cuts": list(detector.raw_cuts), "flashes": list(detector.flashes), "dissolves": spans}
        return {"video": video, "shots": shots, "frames": self.frames, "stats": stats}


class ExtractStage(Stage):
    """Videos → shots and frames (see the module docstring)."""

    name = "extract"
    folder = "frames"
    version = "1"

    # -- inputs ----------------------------------------------------------------------------
    def _videos(self, job: StageJob, root: Path) -> list[Path]:
        from animlora.io.video import list_videos

        if job.standalone:
            src = Path(job.input_path) if job.input_path else None
            if src is None:
                raise StageError("extract: no --input given")
            return list_videos(src) if src.is_dir() else [src]
        paths = []
        for entry in job.settings.project.videos:
            p = Path(entry).expanduser()
            paths.append(p if p.is_absolute() else root / p)
        return paths

    def check_inputs(self, job: StageJob) -> None:
        from animlora.io.video import VIDEO_SUFFIXES, probe

        if job.standalone:
            src = Path(job.input_path) if job.input_path else None
            if src is None or not src.exists():
                raise BadInputError(src or "--input", "no such file or folder")
            if src.is_dir():
                if not self._videos(job, job.workspace_root):
                    raise BadInputError(src, f"no video files in this folder (looked for {', '.join(VIDEO_SUFFIXES)})")
            else:
                probe(src)  # one line naming the file and the problem, before anything is written
        elif not job.settings.project.videos:
            raise StageError("extract: project.yaml lists no videos (project.videos); add one with `--video` at init")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.io.video import content_id

        paths = self._videos(ctx.job, ctx.workspace.root)
        found = []
        for p in paths:
            resolved = p.resolve() if p.exists() else p
            if p.is_file():
                vid, size = content_id(p), p.stat().st_size
            else:
                vid, size = digest("missing", str(resolved))[:16], 0
            found.append((p, resolved, vid, size))
        names = unique_names([(f[0].stem, f[2]) for f in found], "video")  # `a b` and `a_b` stay apart
        ids = [f[2] for f in found]
        items = []
        for p, resolved, vid, size in found:
            if ids.count(vid) > 1:  # the same file listed twice (or a copy): ids must stay apart
                vid = digest(vid, str(resolved))[:16]
            name = names[len(items)]
            payload = {"path": str(resolved), "id": vid, "name": name, "size": size}
            items.append(WorkItem(key=str(resolved), fingerprint=digest(vid, size, name), payload=payload,
                                  label=p.name))
        return items

    # -- work ------------------------------------------------------------------------------
    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        if not Path(item.payload["path"]).exists():
            raise BadInputError(item.payload["path"], "no such file")
        result = _VideoExtraction(job, item.payload, progress).run()
        files = tuple(f["path"] for f in result["frames"] if f["path"])
        return ItemOutput(files=files, data=result)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        data = output.data
        vid = data["video"]["id"]
        _delete_rows(ctx, vid)
        ctx.catalog.upsert("videos", [data["video"]])
        ctx.catalog.upsert("shots", data["shots"])
        ctx.catalog.upsert("frames", data["frames"])
        ctx.catalog.set_meta(f"extract.stats.{vid}", json.dumps(data["stats"]))

    def fail(self, ctx: StageContext, item: WorkItem, error: str) -> None:
        p = item.payload
        _delete_rows(ctx, p["id"])
        ctx.catalog.upsert("videos", [{
            "id": p["id"], "path": p["path"], "name": p["name"], "size": p["size"],
            "status": "error", "error": error,
        }])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        for row in ctx.catalog.rows("SELECT id, name FROM videos WHERE path = ?", (item_key,)):
            _delete_rows(ctx, row["id"])
            dup = ctx.output_dir / DUPLICATES_DIR / row["name"]
            if dup.is_dir():
                shutil.rmtree(dup)

    # -- 5. dedupe over everything + report ------------------------------------------------
    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        s = ctx.settings.extract
        cat = ctx.catalog
        rows = cat.rows(
            "SELECT f.id, f.sharpness, f.phash, f.kept, f.reject_reason, f.timestamp, f.path, v.name, "
            "sh.idx AS shot_idx FROM frames f JOIN videos v ON v.id = f.video_id "
            "JOIN shots sh ON sh.id = f.shot_id "
            "WHERE v.status = 'ok' AND (f.kept = 1 OR f.reject_reason = 'duplicate')"
        )
        duplicate_of = _dedupe(rows, s.dedupe_distance) if s.dedupe else {}
        out = ctx.output_dir
        with cat.transaction():
            for row in rows:
                rel = frame_file(row["name"], row["shot_idx"], row["timestamp"], s.quality)
                main, moved = out / rel, out / DUPLICATES_DIR / rel
                if row["id"] in duplicate_of:
                    if main.exists():
                        moved.parent.mkdir(parents=True, exist_ok=True)
                        main.replace(moved)
                    if row["kept"] or row["reject_reason"] != "duplicate":
                        cat.execute("UPDATE frames SET kept = 0, reject_reason = 'duplicate', path = NULL "
                                    "WHERE id = ?", (row["id"],))
                else:
                    if moved.exists() and not main.exists():
                        moved.replace(main)
                    if not row["kept"]:
                        cat.execute("UPDATE frames SET kept = 1, reject_reason = NULL, path = ? WHERE id = ?",
                                    (rel, row["id"]))
        report = _report(ctx, duplicate_of)
        atomic_write_json(out / RESULTS_FILE, report)
        return {"videos": len(report["videos"]), "frames_kept": report["totals"]["kept"],
                "rejected": report["totals"]["rejected"]}


def _safe(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._")
    return cleaned or "video"


def _delete_rows(ctx: StageContext, vid: str) -> None:
    ctx.catalog.execute("DELETE FROM frames WHERE video_id = ?", (vid,))
    ctx.catalog.execute("DELETE FROM shots WHERE video_id = ?", (vid,))
    ctx.catalog.execute("DELETE FROM videos WHERE id = ?", (vid,))
    ctx.catalog.execute("DELETE FROM meta WHERE key = ?", (f"extract.stats.{vid}",))


def _dedupe(rows: list[Any], distance: int) -> dict[str, str]:
    """frame id -> id of the frame it duplicates. Sharpest first, ties by id: the result
    depends only on the set of frames, never on the order they were extracted in."""
    import numpy as np

    order = sorted(rows, key=lambda r: (-(r["sharpness"] or 0.0), r["id"]))
    kept_hashes = np.zeros(0, dtype=np.uint64)
    kept_ids: list[str] = []
    result: dict[str, str] = {}
    for row in order:
        h = np.uint64(int(row["phash"], 16))
        if len(kept_hashes):
            x = np.bitwise_xor(kept_hashes, h)
            dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
            hit = int(np.argmin(dist))
            if dist[hit] <= distance:
                result[row["id"]] = kept_ids[hit]
                continue
        kept_hashes = np.append(kept_hashes, h)
        kept_ids.append(row["id"])
    return result


def _report(ctx: StageContext, duplicate_of: dict[str, str]) -> dict[str, Any]:
    cat = ctx.catalog
    videos = []
    totals: dict[str, Any] = {"kept": 0, "rejected": {}}
    for v in cat.rows("SELECT * FROM videos ORDER BY name, id"):
        entry: dict[str, Any] = {"name": v["name"], "id": v["id"], "path": v["path"], "status": v["status"]}
        if v["status"] != "ok":
            entry["error"] = v["error"]
            videos.append(entry)
            continue
        stats = json.loads(cat.get_meta(f"extract.stats.{v['id']}") or "{}")
        shots = []
        for sh in cat.rows("SELECT * FROM shots WHERE video_id = ? ORDER BY idx", (v["id"],)):
            counts = {r["reason"] or "kept": r["n"] for r in cat.rows(
                "SELECT reject_reason AS reason, COUNT(*) AS n FROM frames WHERE shot_id = ? GROUP BY reject_reason",
                (sh["id"],))}
            kept = counts.pop("kept", 0)
            totals["kept"] += kept
            for reason, n in counts.items():
                totals["rejected"][reason] = totals["rejected"].get(reason, 0) + n
            shots.append({"shot": sh["idx"], "start": sh["start_time"], "end": sh["end_time"],
                          "frames": sh["frame_count"], "transition": sh["transition"],
                          "kept": kept, "rejected": counts})
        entry.update({
            "duration": v["duration"], "fps": v["fps"], "size": [v["width"], v["height"]],
            "frame_count": v["frame_count"], "crop": json.loads(v["crop"]) if v["crop"] else None,
            "shots": shots, "flashes_ignored": stats.get("flashes", []), "dissolves": stats.get("dissolves", []),
        })
        videos.append(entry)
    return {
        "settings": ctx.settings.extract.model_dump(mode="json"),
        "videos": videos,
        "totals": totals,
        "duplicates": dict(sorted(duplicate_of.items())),
    }
