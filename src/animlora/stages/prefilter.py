"""The prefilter stage: instances too small, cut by the frame edge, unlike a character
(title-card text, odd shapes, the scenery of a shot in which nothing moves relative to the set),
blurred, or repeating a kept instance of their track are rejected before identity clustering.

There is no face requirement: back views and non-human characters (robots, animals, toys)
pass. A rejected instance keeps its catalog row in ``prefilter_results`` with its reason
(the first failed test, in the order of ``REASONS``) and is never copied to the output
folder, which is the next stage's only input.

Blur is relative (the film's crisp instances, the instance's own track), so every verdict is
reached in ``plan()`` with all instances at hand (:func:`decide`); ``process()`` copies.

Measures come from the segment stage (catalog in a project; ``segmentation_results.json``
next to or inside the input folder standalone). A plain folder of RGBA cut-outs without it
is measured from the files: crispness and size from the image and its alpha; the frame
area, edges, track, motion and text are then unknown, so only the box size, blur and shape
tests apply.
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
from animlora.records import prefilter as records

REPORT_FILE = "prefilter_report.json"
# every reason, in the order tested; the first that applies is recorded
REASONS = ("tiny", "truncated", "not_character:text", "text_over", "truncated:matte", "not_character:shape",
           "not_character:still_shot", "blur:floor", "blur:film", "blur:track", "duplicate")
# reasons grouped in the report (the part before ':')
GROUPS = ("tiny", "truncated", "not_character", "text_over", "blur", "duplicate", "unreadable")
# per-frame text found by the text detector, kept so a re-run reads no frame twice
TEXT_CACHE = "text_cover.json"
TEXT_RULES = 4  # bumped when what a detector counts as text changes: the cache is then read anew
# Pixel thresholds (``min_side``) are set for a frame whose shorter side is this long (720p,
# where they were measured); a smaller frame scales them down (never up): a 480x270 film's
# characters are 57 px wide where a 720p film's are 150.
REFERENCE_SHORT_SIDE = 720


def min_side_px(mode: Any, frame: tuple[int, int] | None) -> float:
    """The mode's ``min_side`` for this frame size (``frame`` = (width, height) or None)."""
    if not frame or min(frame) <= 0:
        return float(mode.min_side)
    return mode.min_side * min(1.0, min(frame) / REFERENCE_SHORT_SIDE)


def cut_edges(measures: dict[str, Any]) -> int | None:
    """Frame edges that cut the instance, a pair of *opposite* edges counted once: a
    character spanning the frame's height (top and bottom) is a close-up, framed as one;
    what truncation guards against is a fragment in a corner or a sliver at a side. Without
    the box and the frame size, segment's own count (``truncated``)."""
    count = measures.get("truncated")
    box, frame = measures.get("bbox"), measures.get("frame")
    if count is None or not box or not frame:
        return count
    x, y, w, h = box
    width, height = frame
    top, bottom, left, right = y <= 0, y + h >= height, x <= 0, x + w >= width
    if count < top + bottom + left + right:  # the box touches an edge the mask does not
        return count
    return count - int(top and bottom) - int(left and right)


# an instance whose outline runs along an iris or porthole matte for this share and that holds
# this share of the picture inside it is that picture, not one character (segment's ``matte`` and
# ``picture``; film: the iris closing on Buck at 8:08, 0.50-0.54 and 0.89 -- his head and ears with
# the meadow behind; nothing else of the film's 970 instances above 0.36 and 0.10)
MATTE_OUTLINE = 0.4
MATTE_PICTURE = 0.6


def in_matte(extra: dict[str, Any]) -> bool:
    """The picture inside an iris or porthole matte taken as one instance (see MATTE_OUTLINE)."""
    return (extra.get("matte") or 0.0) >= MATTE_OUTLINE and (extra.get("picture") or 0.0) >= MATTE_PICTURE


# a close-up is not a sliver: its box is at most this many times as tall as wide (a piece of a
# character at a side, a pole, a spike are taller)
CLOSEUP_MAX_ASPECT = 2.5


def close_up(measures: dict[str, Any], min_height: float) -> bool:
    """Framed as a close-up: the frame's bottom edge cuts it (head and shoulders, feet out of the
    frame) and its box spans at least ``min_height`` of the frame's height without being a
    sliver. Such a figure is whole enough for a LoRA whatever the sides do: the caption says
    its framing (close-up / upper body). A fragment in a corner, a piece at a side, something
    cut only at the top are not. False when the box or the frame is unknown, or ``min_height``
    is 0."""
    box, frame = measures.get("bbox"), measures.get("frame")
    if min_height <= 0 or not box or not frame:
        return False
    x, y, w, h = box
    width, height = frame
    return bool(y + h >= height and h >= min_height * height and h <= CLOSEUP_MAX_ASPECT * max(1, w))


# a shot's stillness needs this many frames with a measured instance
STILL_SHOT_FRAMES = 2


def still_shots(items: list[dict[str, Any]], threshold: float) -> set[tuple[Any, Any]]:
    """(film, shot) of every shot in which nothing moves: each instance of it whose ``static`` is
    known (prefilter rejects included: a tiny rock is evidence too) is at least ``threshold``
    static, in ``STILL_SHOT_FRAMES`` frames or more. An idle character is as still as a prop over a
    few frames, but not to the last pixel while something in its shot moves or it breathes (film:
    Buck idle 0.956, Frank gliding 0.945; the seeds' establishing shots 0.988-1.0, the film's
    trees, stakes and a branch 0.977-1.0). Off when ``threshold`` is 0 or the shot is unknown."""
    if threshold <= 0:
        return set()
    shots: dict[tuple[Any, Any], list[tuple[Any, float]]] = {}
    for it in items:
        static = (it["measures"].get("extra") or {}).get("static")
        if it.get("shot") is not None and static is not None:
            shots.setdefault((it.get("film"), it["shot"]), []).append((it.get("frame_id"), float(static)))
    return {key for key, seen in shots.items()
            if len({frame for frame, _ in seen}) >= STILL_SHOT_FRAMES and min(v for _, v in seen) >= threshold}


def still(measures: dict[str, Any], settings: Any) -> bool | None:
    """Unchanged relative to the set (segment's ``static`` fraction >= ``max_static``);
    None when segment could not tell (no registered neighbour)."""
    static = (measures.get("extra") or {}).get("static")
    return None if static is None else bool(static >= settings.max_static)


def judge(measures: dict[str, Any], mode: Any, blur_threshold: float, settings: Any = None) -> str | None:
    """The reason to reject an instance on its own measures, or None. Unknown measures
    (None) are not tested. The tests that compare an instance with its track and its film
    (relative blur, duplicates) are in :func:`decide`."""
    w, h = measures["width"], measures["height"]
    area = measures.get("area_fraction")
    if min(w, h) < min_side_px(mode, measures.get("frame")) or (area is not None and area < mode.min_area_fraction):
        return "tiny"
    truncated = cut_edges(measures)
    if truncated is not None and truncated > mode.max_truncated_edges and not close_up(
        measures, getattr(settings, "closeup_min_height", 0.0)
    ):
        return "truncated"
    extra = measures.get("extra") or {}
    # An instance unchanged relative to the set is NOT rejected here: a character standing idle
    # is as still as a tree (cgi-bench: idle characters 0.99-1.0, like the props). The cluster
    # stage lets a track that is still in every frame join only a character that moves
    # somewhere in the film (identity/still.py).
    cover = extra.get("text_cover")  # share of the mask under text the detector read (None: not looked at)
    if settings is not None and (
        (extra.get("text") or 0.0) >= settings.max_text or (extra.get("flat") or 0.0) >= settings.max_flat
        or (cover is not None and cover >= settings.max_text_cover)
    ):
        return "not_character:text"
    # text over a character only when the text was read (ppocr): the weightless detector's
    # boxes also land on fur and leaves (28 of 57 text-free rendered frames), always on a small share.
    # By share of the mask, or by how far the text runs over it (line heights): a share alone
    # misses letters over a close-up (trailer: 1-2% of Frank's mask under two letters)
    if settings is not None and extra.get("text_read") and (
        (cover is not None and cover >= settings.max_text_over)
        or (settings.max_text_over_length > 0 and (extra.get("text_over") or 0.0) >= settings.max_text_over_length)
    ):
        return "text_over"
    if in_matte(extra):
        return "truncated:matte"
    score = measures.get("score")
    aspect = max(w, h) / max(1, min(w, h))
    if (score is not None and score < mode.min_score) or aspect > mode.max_aspect or (
        area is not None and area > mode.max_area_fraction
    ):
        return "not_character:shape"
    if measures["sharpness"] < blur_threshold * mode.blur_factor:
        return "blur:floor"
    return None


def _relative(ratio: float, factor: float) -> float:
    """A relative threshold made stricter (factor > 1) or looser (< 1) by the mode:
    ratio ** (1 / factor), so 0.6 is 0.71 in strict (x1.5) and 0.36 in lenient (x0.5)."""
    return float(ratio ** (1.0 / max(factor, 1e-6)))


def track_reference(crispness: list[float]) -> float:
    """What crisp means in one track: its median crispness from 3 instances on, the crispest of
    a pair. Not the crispest of a longer track: one odd member sets it too high (film: a track
    that holds a log before Buck, 0.57 against Buck's 0.35-0.47, a butterfly beside Frank's
    face, 0.55 against 0.36-0.49), and every sharp instance of the character fell under it;
    a motion-blurred frame still falls under the median (Frank 0.30 against 0.42)."""
    if len(crispness) >= 3:
        return float(np.median(crispness))
    return max(crispness)


# a long track is judged against its members nearest in time: motion blur and focus pulls are
# brief, while a long shot's light changes (film: Buck climbing from his dark burrow into the
# light, 0.39-0.41 against 0.53-0.70 for the dark burrow and the plants of the same track, 20 s
# earlier) and a tracker can slip from one thing to another
TRACK_WINDOW = 5


def track_mates(item: dict[str, Any], mates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The members of ``item``'s track it is judged against: all of them, or for a track of more
    than ``TRACK_WINDOW`` with known frame positions (``time``), the ``TRACK_WINDOW`` nearest in
    time (itself included)."""
    if len(mates) <= TRACK_WINDOW or item.get("time") is None or any(m.get("time") is None for m in mates):
        return mates
    return sorted(mates, key=lambda m: (abs(m["time"] - item["time"]), m["id"]))[:TRACK_WINDOW]


def decide(items: list[dict[str, Any]], settings: Any) -> dict[str, str | None]:
    """Every instance's verdict (reason or None), judged with its track and its film.

    ``items``: dicts with ``id``, ``measures`` (see :func:`judge`), ``track``, ``film``, ``shot``,
    ``frame_id`` and ``time`` (the frame's position in the film; None when unknown). A measured
    instance of a shot in which nothing moves (:func:`still_shots`) is ``not_character:still_shot``.
    Sharpness is relative: an instance is blurred when it is far less
    crisp than the film's crisp instances (upper quartile; ``blur_film``: the film's own look, depth of
    field included) or than its own track (its median, :func:`track_reference`, over the members
    nearest in time, :func:`track_mates`; ``blur_track``: motion blur, a focus pull). Then, per track, the crispest instances are kept first and an
    instance whose appearance is within ``duplicate_distance`` of one kept is a duplicate."""
    from animlora.backends.segmentation.cutouts import signature_distance

    p = settings
    mode = p.modes[p.mode]
    verdict = {it["id"]: judge(it["measures"], mode, p.blur_threshold, p) for it in items}
    # a shot in which nothing moves is the set: its measured instances are scenery
    quiet = still_shots(items, getattr(p, "still_shot", 0.0))
    for it in items:
        if verdict[it["id"]] in (None, "blur:floor") and (it.get("film"), it.get("shot")) in quiet and (
                it["measures"].get("extra") or {}).get("static") is not None:
            verdict[it["id"]] = "not_character:still_shot"
    film_ratio = _relative(p.blur_film, mode.blur_factor)
    track_ratio = _relative(p.blur_track, mode.blur_factor)
    # what "crisp" means in this film: the upper quartile of its candidates (shape tests passed)
    films: dict[Any, list[float]] = {}
    tracks: dict[Any, list[dict[str, Any]]] = {}
    for it in items:
        if verdict[it["id"]] in (None, "blur:floor"):
            films.setdefault(it.get("film"), []).append(it["measures"]["sharpness"])
            if it.get("track") is not None:
                tracks.setdefault((it.get("film"), it["track"]), []).append(it)
    typical = {film: float(np.percentile(values, 75)) for film, values in films.items() if len(values) >= 2}
    for it in items:
        if verdict[it["id"]] is not None:
            continue
        crisp = it["measures"]["sharpness"]
        ref = typical.get(it.get("film"))
        if ref is not None and crisp < film_ratio * ref:
            verdict[it["id"]] = "blur:film"
            continue
        mates = track_mates(it, tracks.get((it.get("film"), it.get("track")), []))
        if len(mates) >= 2 and crisp < track_ratio * track_reference([m["measures"]["sharpness"] for m in mates]):
            verdict[it["id"]] = "blur:track"
    # duplicates per track: crispest first; each later one must differ from every kept one
    if p.duplicate_distance > 0:
        for mates in tracks.values():
            kept: list[str] = []
            for it in sorted(mates, key=lambda m: (-m["measures"]["sharpness"], m["id"])):
                if verdict[it["id"]] is not None:
                    continue
                sig = (it["measures"].get("extra") or {}).get("signature", "")
                if any(signature_distance(sig, other) < p.duplicate_distance for other in kept):
                    verdict[it["id"]] = "duplicate"
                else:
                    kept.append(sig)
    return verdict


def measure_cutout(rgba: np.ndarray) -> dict[str, Any]:
    """Size and sharpness of an RGBA cut-out, from the file alone."""
    from animlora.backends.segmentation.cutouts import mask_sharpness

    alpha = rgba[..., 3] >= 38  # the 0.15 matte threshold, in 8 bits
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        return {"width": 0, "height": 0, "sharpness": 0.0}
    return {
        "width": int(xs.max() - xs.min() + 1), "height": int(ys.max() - ys.min() + 1),
        "sharpness": mask_sharpness(rgba[..., :3], alpha),
    }


def _read_frames(name: str, groups: list[list[dict[str, Any]]]) -> list[dict[str, dict[str, float | None]]]:
    """:func:`_covers` of each frame (a group of its members), in order, read by the detector
    ``name``'s readers side by side (one thread each, :func:`text_readers`)."""
    if not groups:
        return []
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    from animlora.backends.text.detection import text_readers

    readers = text_readers(name)
    if len(readers) == 1 or len(groups) == 1:
        return [_covers(readers[0], members) for members in groups]
    results: list[Any] = [None] * len(groups)
    order = itertools.count()  # each reader takes the next frame (next() on a count is atomic)

    def work(reader: Any) -> None:
        while (i := next(order)) < len(groups):
            results[i] = _covers(reader, groups[i])

    with ThreadPoolExecutor(max_workers=len(readers)) as pool:
        for done in [pool.submit(work, reader) for reader in readers]:
            done.result()
    return results


def _covers(detector: Any, members: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per instance of one frame: ``cover``, the share of its mask (>= 50%) under text
    ``detector`` reads in the frame, and ``over``, how far read lines run over the mask in
    line heights (:func:`~animlora.backends.text.detection.text_over_length`; None for a
    detector that reads nothing); None when the frame or the mask cannot be read."""
    from animlora.backends.text.detection import lines_mask, text_cover, text_over_length

    ids = [m["id"] for m in members]
    try:
        frame = np.ascontiguousarray(read_image(Path(members[0]["frame"]), "RGB")[..., ::-1])
    except BadInputError:
        return {"cover": dict.fromkeys(ids), "over": dict.fromkeys(ids)}
    lines = detector.lines(frame) if hasattr(detector, "lines") else None
    text = lines_mask(lines, frame.shape) if lines is not None else detector.detect(frame)
    cover: dict[str, float | None] = {}
    over: dict[str, float | None] = {}
    for m in members:
        try:
            mask = read_image(Path(m["mask"]), "L") >= 128
        except BadInputError:
            mask = None
        fits = mask is not None and mask.shape == text.shape
        cover[m["id"]] = round(text_cover(text, mask), 4) if fits else None
        over[m["id"]] = round(text_over_length(lines, mask), 3) if fits and lines is not None else None
    return {"cover": cover, "over": over}


def _lacks_over(entry: dict[str, Any], detector: str) -> bool:
    """A cached frame of an earlier release (before ``over`` was measured) where text was
    read over some mask: read again. Frames with no text over any mask (most) are not: their
    ``over`` is 0."""
    return detector == "ppocr" and "over" not in entry and any(c for c in entry.get("cover", {}).values())


def _extra(text: str | None) -> dict[str, Any]:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


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
        from animlora.records.segment import project_instances

        seg_dir = ctx.workspace.stage_path("segment")
        found = []
        frames_dir = ctx.workspace.stage_path("extract")
        for r in project_instances(ctx.catalog).values():
            x, y, w, h = json.loads(r.bbox)
            frame = [r.frame_width, r.frame_height] if r.frame_width and r.frame_height else None
            measures = {"width": w, "height": h, "area_fraction": r.area_fraction, "truncated": r.truncated,
                        "sharpness": r.sharpness, "score": r.score, "extra": _extra(r.measures),
                        "bbox": [x, y, w, h], "frame": frame}
            found.append({"id": r.id, "source": str(seg_dir / r.path), "path": r.path, "measures": measures,
                          "track": r.track_id, "film": r.video_id, "shot": r.shot_id, "frame_id": r.frame_id,
                          "time": r.frame_index,
                          "frame": str(frames_dir / r.frame_path) if r.frame_path else None,
                          "mask": str(seg_dir / r.mask_path)})
        self._read_text(ctx, found)
        return self._items(ctx, found)

    def _read_text(self, ctx: StageContext, found: list[dict[str, Any]]) -> None:
        """Each instance's ``text_cover`` (share of its mask under text read in its frame),
        added to its measures. Only frames with an instance that passes the cheaper tests
        are read; results are cached per frame in ``TEXT_CACHE`` (by detector)."""
        from animlora.backends.text.detection import resolve_text_detector
        from animlora.curation.sources import stat_key

        p = ctx.settings.prefilter
        name = resolve_text_detector(p.text_detector)
        if name is None:
            return
        version = f"{name}@{TEXT_RULES}"
        mode = p.modes[p.mode]
        frames: dict[str, list[dict[str, Any]]] = {}
        for f in found:
            if f["measures"] is not None and f.get("frame") and f.get("mask"):
                frames.setdefault(f["frame_id"], []).append(f)
        path = ctx.output_dir / TEXT_CACHE
        try:
            cache = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            cache = {}
        known: dict[str, Any] = cache.get("frames", {}) if cache.get("detector") == version else {}
        wanted, todo = [], []
        for frame_id, members in frames.items():
            if not any(judge(m["measures"], mode, p.blur_threshold, p) in (None, "blur:floor") for m in members):
                continue
            key = {m["id"]: list(stat_key(m["mask"])) for m in members}  # a list, as the cache reads back
            entry = known.get(frame_id)
            if entry is None or entry.get("masks") != key or _lacks_over(entry, name):
                todo.append((frame_id, members, key))
            wanted.append((frame_id, members))
        changed = bool(todo)
        for (frame_id, _, key), covers in zip(todo, _read_frames(name, [t[1] for t in todo]), strict=True):
            known[frame_id] = {"masks": key, **covers}
        for frame_id, members in wanted:
            entry = known[frame_id]
            for m in members:
                cover = entry["cover"].get(m["id"])
                if cover is not None:
                    found_text = {"text_cover": cover, "text_read": name == "ppocr"}
                    over = (entry.get("over") or {}).get(m["id"], 0.0 if not cover else None)
                    if over is not None:
                        found_text["text_over"] = over
                    m["measures"] = m["measures"] | {"extra": (m["measures"].get("extra") or {}) | found_text}
        if changed:
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"detector": version, "frames": known})
        ctx.extra["text_detector"] = name

    def _items(self, ctx: StageContext, found: list[dict[str, Any]]) -> list[WorkItem]:
        """Work items carrying the verdict :func:`decide` reached with every instance at
        hand (a verdict that changes re-runs that item)."""
        verdict = decide([f for f in found if f["measures"] is not None], ctx.settings.prefilter)
        ctx.extra["still"] = {f["id"] for f in found if f["measures"] is not None
                              and still(f["measures"], ctx.settings.prefilter)}
        items = []
        for f in found:
            payload = {"instance_id": f["id"], "source": f["source"], "measures": f["measures"],
                       "reason": verdict.get(f["id"])}
            fingerprint = digest(f["path"], f["measures"], payload["reason"], f.get("stamp"))
            items.append(WorkItem(f["id"], fingerprint, payload, label=f.get("label", f["id"])))
        return items

    def _plan_standalone(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.stages.segment import _file_id

        src = ctx.job.input_path
        assert src is not None  # check_inputs
        known = _results_near(src)
        found, seen = [], set()
        for path in list_images(src):
            stat = path.stat()
            meta = known.get(path.name)
            instance_id = meta["id"] if meta else (_file_id(path) if stat.st_size else "empty_" + path.name)
            if instance_id in seen:  # the same bytes twice: both files are still judged
                instance_id = f"{instance_id}_{digest(str(path))[:6]}"
            seen.add(instance_id)
            measures = None
            if not meta:  # a plain cut-out folder: measured from the file
                try:
                    measures = measure_cutout(read_image(path, "RGBA"))
                except BadInputError:
                    measures = None  # process() reports it unreadable
            else:
                measures = {"width": meta["bbox"][2], "height": meta["bbox"][3], "area_fraction": meta["area_fraction"],
                            "truncated": meta["truncated"], "sharpness": meta["sharpness"], "score": meta["score"],
                            "extra": meta.get("measures") or {}}
            rel = str(path.relative_to(src))
            found.append({"id": instance_id, "source": str(path), "path": rel, "measures": measures, "label": rel,
                          "track": meta.get("track_id") if meta else None, "film": None,
                          "shot": meta.get("shot_id") if meta else None, "frame_id": meta.get("frame_id") if meta else None,
                          "stamp": (stat.st_size, stat.st_mtime_ns)})
        return self._items(ctx, found)

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        source = Path(item.payload["source"])
        measures = item.payload["measures"]
        if measures is None:
            try:
                measures = measure_cutout(read_image(source, "RGBA"))
            except BadInputError as exc:
                return ItemOutput(data={"instance_id": item.payload["instance_id"], "kept": 0,
                                        "reason": f"unreadable: {exc.problem}", "path": None, "source": str(source)})
        reason = item.payload["reason"]
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
        row = output.data
        records.write_verdict(ctx.catalog, row["instance_id"], bool(row["kept"]), row["reason"], row["path"])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        records.delete_verdict(ctx.catalog, item_key)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        p = ctx.settings.prefilter
        rows = list(records.verdicts(ctx.catalog).values())
        reasons = Counter(r.reason.split(":")[0] if r.reason.startswith("unreadable") else r.reason
                          for r in rows if not r.kept and r.reason)
        top = {k: v for k, v in p.model_dump(mode="json").items() if k not in ("mode", "modes")}
        report = {
            "mode": p.mode,
            "thresholds": p.modes[p.mode].model_dump(mode="json") | top,
            "counts": {"total": len(rows), "kept": sum(r.kept for r in rows),
                       "rejected": sum(not r.kept for r in rows)},
            "rejected_by_reason": {reason: reasons.get(reason, 0) for reason in (*REASONS, "unreadable")},
            "rejected_by_group": {group: sum(n for reason, n in reasons.items() if reason.split(":")[0] == group)
                                  for group in GROUPS},
            "text_detector": ctx.extra.get("text_detector"),
            # kept, but unchanged relative to the set: identity decides (a still track joins only a
            # character that moves elsewhere; else it is left out as scenery)
            "kept_still": sum(1 for r in rows if r.kept and r.instance_id in ctx.extra.get("still", set())),
        }
        full = report | {"rejected": [{"instance_id": r.instance_id, "reason": r.reason} for r in rows if not r.kept]}
        atomic_write_json(ctx.output_dir / REPORT_FILE, full)
        return report
