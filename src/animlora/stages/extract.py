"""The extract stage: videos in, shots and candidate frames out.

One item per video, one decode per video:

1. probe; find black bars on a dozen keyframes (seek + decode one each);
2. decode every frame once (threaded); each frame feeds the shot detector (a small image
   read from the YUV planes) and the frame selector of the mode:
   - ``scene``: candidates in proportion to a shot's length and to how much its picture
     changes (see :class:`_ShotSampler`): the video's budget (``candidates_per_minute``,
     at most ``max_candidates``, a small project raised to ``min_candidates``: see
     :func:`project_budget`) sets how many candidates a second
     of video and a unit of picture change are worth; each shot is cut into slots of equal
     worth and the sharpest frame of each slot (a relative, in-slot choice) is a candidate;
     at least one per shot, at most ``max_per_shot``; a slot whose best frame is nearly the
     same picture as the shot's previous candidate gives none;
   - ``interval``: the first frame at or after every ``interval_seconds``;
   - ``all``: every frame;
3. every candidate is written (JPEG or PNG) by a writer thread while decoding goes on; its
   sharpness and perceptual hash are recorded, never used to reject it;
4. ``commit`` writes the video, shots and frames rows;
5. ``finish`` (with ``dedupe``, off by default) removes near-duplicates over ALL videos at
   once, then writes ``extraction_results.json``.
"""

from __future__ import annotations

import shutil
from array import array
from bisect import bisect_right
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
from animlora.records import extract as records

RESULTS_FILE = "extraction_results.json"
DUPLICATES_DIR = "_duplicates"
# frames handed to the writer threads and not yet written: up to this many bytes of decoded
# frames, at most 24 (24 up to 1080p, 7 at 4K), so the burst of picks at a shot's end does not
# hold up the decoding loop (6 at any size before: the trailer's stage ran ~5% longer)
_PENDING_WRITE_BYTES = 96 << 20
_MAX_PENDING_WRITES = 24
# decoded frames queued ahead of the detector: the decoder runs on while the detector loads and
# while one frame's measuring is slow; up to 32 frames, 48 MB (720p 32, 1080p 16, 4K 8 frames)
_READ_AHEAD_FRAMES = (8, 32)
_READ_AHEAD_BYTES = 48 << 20


def read_ahead(width: int, height: int) -> int:
    """Frames decoded ahead of the detector for a video of ``width`` x ``height`` (4:2:0)."""
    low, high = _READ_AHEAD_FRAMES
    return max(low, min(high, _READ_AHEAD_BYTES // max(1, width * height * 3 // 2)))
_MAX_RATE = 4.0  # candidates a second of video, at most (a short clip's budget)
# picture change a second (mean abs difference of the still images between decoded
# frames, summed over a second) that a video is assumed to have before it has shown its own
_PRIOR_CHANGE_RATE = 20.0
# a candidate with under this fraction of the contrast of its shot's median candidate is
# part of a fade (a fade through black the detector could not tell from a lighting change)
_FADED = 0.6
_PRIOR_SECONDS = 10.0
# a slot's best frame that changed less than this from the shot's last candidate, the
# camera's move left out (appearance_change, 0-255), is the same picture: one of the two
_DUP_CHANGE = 10.0
_DUP_GRID = (12, 7)  # cells the change is looked for in (8 px cells of the 96 px image)
# the affine fit (a zoom, a dolly) is tried only when the shift alone leaves a change under
# this: of the film's candidate pairs that the fit made the same picture, the shift alone had
# left 13-59 (and one 255: a shift found past a quarter); it skips ~40% of the fits (~3 ms each)
_AFFINE_GATE = 64.0
# a candidate less than this fraction as sharp as its shot's median candidate is motion-blurred
_BLURRED = 0.5
# a video with at least this share of its decoded frames coded as two fields is named as
# interlaced (combing on motion in its frames): a hard-telecined DVD flags every frame
INTERLACED_WARN = 0.5


def frame_file(name: str, shot_idx: int, seconds: float, quality: str) -> str:
    """``<video>/<video>_s0012_00h01m23s456.png``: by video, shot and timestamp; sorts in time."""
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    ext = "png" if quality == "high" else "jpg"
    return f"{name}/{name}_s{shot_idx:04d}_{h:02d}h{m:02d}m{s:02d}s{ms:03d}.{ext}"


def _encode(bgr: Any, suffix: str) -> bytes:
    import cv2

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


def _write_frame(path: Path, frame: Any, crop: Any, quarter: Any = None, sar: float = 1.0) -> tuple[float, str]:
    """Write one frame in square pixels (``sar``: the stream's pixel shape); return its
    (sharpness, perceptual hash), measured on the quarter-size luma (given by scene mode,
    which has it already)."""
    import numpy as np

    from animlora.io.video import luma, luma_scale, to_rgb
    from animlora.video.frame_measures import cropped, phash, sharpness

    if quarter is None:
        quarter = np.ascontiguousarray(cropped(luma(frame), crop)[::4, ::4])
    measures = sharpness(quarter, None, luma_scale(frame)), phash(quarter)
    data = _encode(to_rgb(frame, crop, "bgr24", sar), path.suffix)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return measures


@dataclass
class _Entry:
    """A decoded frame waiting for its shot to be known (scene mode)."""

    index: int
    time: float
    score: float  # sharpness proxy: ranks frames inside one slot only
    change: float  # picture change since the previous decoded frame (mean abs, 0-255)
    gray: Any  # the small gray image (contrast, black frames; still_image's source under 384 px)
    contrast: float  # its standard deviation: a fade in or out lowers it
    quarter: Any  # quarter-size luma (sharpness, perceptual hash)
    black: bool
    decoded: Any
    _still: Any = None  # see still_image (made once per decoded frame, kept for the slot picks)

    def still_image(self) -> Any:
        """The image picture change is measured on (between decoded frames, and by the
        near-identity test): the quarter-size luma averaged over k x k blocks to about 96 px
        wide (720p: 106 px) and blurred (5x5 Gaussian, sigma 1 px); a video under 384 px
        wide: its small gray image, blurred. The detector's gray image is read by striding,
        so fine texture (grass, fur, rolling credits) aliases: between two frames of one
        still picture it changes by 20-40 of 255 when the camera creeps, here by under 10.
        (Whole blocks: OpenCV's area resize is 4x faster at a whole factor; ~75 µs a frame.)"""
        if self._still is None:
            import cv2

            source = self.quarter if self.quarter.shape[1] >= 96 else self.gray
            h, w = source.shape
            k = max(1, round(w / 96))
            if k > 1 and h >= 2 * k:
                source = source[: h - h % k, : w - w % k]
                source = cv2.resize(source, (w // k, h // k), interpolation=cv2.INTER_AREA)
            self._still = cv2.GaussianBlur(source, (5, 5), 1.0)
        return self._still


def appearance_change(a: Any, b: Any) -> float:
    """How much the picture changed from small gray image ``a`` to ``b``, the camera's move
    left out: ``b`` is aligned on ``a`` by the global shift (phase correlation), then the
    largest mean absolute difference (0-255) over a 12x7 grid of cells inside the overlap is
    the change (a character that moves changes its cells; a pan over a still set changes
    none once aligned). A shift past a quarter of the picture is a new view (255); without
    alignment when that says less (a zoom, or a correlation that found the wrong shift)."""
    import cv2
    import numpy as np

    h, w = a.shape
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    plain = _cells_max(cv2.absdiff(fa, fb))
    # (copies: OpenCV 5 applies the window to phaseCorrelate's inputs in place)
    (dx, dy), _ = cv2.phaseCorrelate(fa.copy(), fb.copy(), _hanning(w, h))
    if abs(dx) > w / 4 or abs(dy) > h / 4:
        return 255.0
    if abs(dx) < 0.5 and abs(dy) < 0.5:
        return plain
    moved = cv2.warpAffine(fb, np.float32([[1, 0, -dx], [0, 1, -dy]]), (w, h), flags=cv2.INTER_LINEAR)
    mx, my = int(np.ceil(abs(dx))) + 1, int(np.ceil(abs(dy))) + 1
    return min(plain, _cells_max(cv2.absdiff(fa, moved)[my : h - my, mx : w - mx]))


def _cells_max(diff: Any) -> float:
    import cv2

    return float(cv2.resize(diff, _DUP_GRID, interpolation=cv2.INTER_AREA).max())


def picture_change(a: Any, b: Any, motion: str = "affine", threshold: float = _DUP_CHANGE) -> float:
    """The same-picture test's change from still image ``a`` to ``b``: :func:`appearance_change`,
    and with ``motion="affine"``, when that is from ``threshold`` to ``_AFFINE_GATE``, the
    lower :func:`affine_change`. Under ``threshold`` it is the same picture."""
    shifted = appearance_change(a, b)
    if motion != "affine" or shifted < threshold or shifted >= _AFFINE_GATE:
        return shifted
    return affine_change(a, b, shifted)


def affine_change(a: Any, b: Any, shifted: float | None = None) -> float:
    """:func:`appearance_change` with the camera's move taken as an affine map (a zoom, a
    dolly, a slow turn, not only a shift): ``b`` is fitted onto ``a`` by OpenCV's ECC
    (``MOTION_AFFINE``, started from the phase-correlation shift), then the largest mean
    absolute difference over the 12x7 cells, each cell over its pixels that both pictures
    cover (a cell less than half covered is not counted). A move that shifts by more than a
    quarter of the picture or scales, stretches or turns by more than 25% is a new view, as is
    a fit that does not converge: then it is :func:`appearance_change` (``shifted``, when the
    caller has it), never more. Every
    region must be unchanged once the camera's move is left out: a character that moves
    (even one that only slides across the set) changes its cells."""
    import cv2
    import numpy as np

    if shifted is None:
        shifted = appearance_change(a, b)
    h, w = a.shape
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(fa.copy(), fb.copy(), _hanning(w, h))
    warp = np.float32([[1, 0, dx], [0, 1, dy]])
    try:
        _, warp = cv2.findTransformECC(fa, fb, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3), None, 1)
    except cv2.error:  # no convergence: not the same picture by this test
        return shifted
    scales = np.linalg.svd(warp[:, :2], compute_uv=False)
    if abs(warp[0, 2]) > w / 4 or abs(warp[1, 2]) > h / 4 or scales.max() > 1.25 or scales.min() < 0.8:
        return shifted
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(fb, warp, (w, h), flags=flags)
    # the pixels b covers once moved, one pixel in from the edge (the interpolated border)
    covered = cv2.erode(cv2.warpAffine(np.ones_like(fb), warp, (w, h), flags=flags), np.ones((3, 3), np.uint8))
    covered = (covered > 0.999).astype(np.float32)
    diff = cv2.absdiff(fa, moved) * covered
    area = cv2.resize(covered, _DUP_GRID, interpolation=cv2.INTER_AREA)
    sums = cv2.resize(diff, _DUP_GRID, interpolation=cv2.INTER_AREA)
    seen = area >= 0.5
    if not seen.any():
        return shifted
    return min(shifted, float((sums[seen] / area[seen]).max()))


_HANNING: dict[tuple[int, int], Any] = {}


def _hanning(w: int, h: int) -> Any:
    import cv2

    if (w, h) not in _HANNING:
        _HANNING[(w, h)] = cv2.createHanningWindow((w, h), cv2.CV_32F)
    return _HANNING[(w, h)]


class _ShotSampler:
    """Scene mode: the candidates of one shot after another, streaming, bounded memory.

    A shot's worth grows with time (``rate * share_t`` per second) and with picture change
    (``rate * (1 - share_t)`` per average second's change, the average being the video's
    so far, started from a prior): a still shot gets candidates for its length, a shot
    full of motion gets more. Worth is cut into slots of 1 (one candidate each); the
    sharpest eligible frame of a slot is its candidate. Frames in a dissolve or fade, in a
    flash (and the first after it) and black frames are not eligible (unless the shot has
    nothing else that is not black).
    A slot whose best frame is the same picture as the shot's previous candidate gives none.
    When a shot reaches ``2 * cap`` candidates, neighbours are merged pairwise (the sharper
    kept) and later slots are twice as wide, so memory holds at most ``2 * cap`` frames;
    a shot that ends with more than ``cap`` keeps ``cap`` of them, evenly spread."""

    def __init__(self, rate: float, share_t: float, cap: int, motion: str = "affine") -> None:
        self.rate, self.share_t, self.cap = rate, share_t, cap
        self.motion = motion  # the camera's move left out by the same-picture test: shift | affine
        self.total_change = _PRIOR_CHANGE_RATE * _PRIOR_SECONDS
        self.total_seconds = _PRIOR_SECONDS
        self.shot = -1
        self.stats: dict[int, dict[str, Any]] = {}
        self._reset()

    def _reset(self) -> None:
        self.weight = 0.0
        self.scale = 1.0
        self.slot = 0
        self.slot_best: _Entry | None = None
        self.fallback: _Entry | None = None  # best non-black frame, eligible or not
        self.picks: list[_Entry] = []
        self.prev: _Entry | None = None
        self.change = 0.0
        self.seconds = 0.0
        self.skipped = 0
        self.blurred = 0
        self.contrasts = array("f")  # of every non-black frame of the shot

    def add(self, shot: int, entry: _Entry, in_transition: bool) -> list[tuple[int, _Entry]]:
        """Feed the next frame (in order) of ``shot``; returns picks of shots that closed."""
        done = self.close() if shot != self.shot else []
        if shot != self.shot:
            self.shot = shot
        prev = self.prev
        if prev is not None:
            dt = max(0.0, entry.time - prev.time)
            # a fade, a dissolve or a flash changes the whole picture and shows nothing new: no worth
            change = 0.0 if in_transition or entry.black else entry.change
            self.seconds += dt
            self.change += change
            mean = self.total_change / self.total_seconds
            self.total_change += change
            self.total_seconds += dt
            self.weight += self.rate * (self.share_t * dt + (1 - self.share_t) * change / max(mean, 1e-6)) \
                / self.scale
            while self.weight >= self.slot + 1:
                self.slot += 1
                self._close_slot()
        self.prev = entry
        if entry.black:
            return done
        self.contrasts.append(entry.contrast)
        if self.fallback is None or entry.score > self.fallback.score:
            self.fallback = entry
        if not in_transition and (self.slot_best is None or entry.score > self.slot_best.score):
            self.slot_best = entry
        return done

    def _close_slot(self) -> None:
        best, self.slot_best = self.slot_best, None
        if best is None:
            return
        if self.picks and self._same_picture(self.picks[-1], best):
            # the same picture as the shot's last candidate (the camera's move left out):
            # one of the two, the sharper
            self.skipped += 1
            if best.score > self.picks[-1].score:
                self.picks[-1] = best
            return
        self.picks.append(best)
        if len(self.picks) >= 2 * self.cap:
            pairs = [self.picks[i : i + 2] for i in range(0, len(self.picks), 2)]
            self.picks = [max(pair, key=lambda e: (e.score, -e.index)) for pair in pairs]
            self.scale *= 2
            self.weight /= 2
            self.slot = int(self.weight)  # the open slot, in the new (twice as wide) slots

    def _same_picture(self, last: _Entry, best: _Entry) -> bool:
        """``best`` shows what ``last`` showed: every cell within ``_DUP_CHANGE`` once the
        camera's shift (``motion: shift``) or affine move (``affine``: a zoom or dolly too; only
        fitted when the shift alone leaves a change, ~3 ms a slot) is left out."""
        return picture_change(last.still_image(), best.still_image(), self.motion) < _DUP_CHANGE

    def close(self) -> list[tuple[int, _Entry]]:
        """The open shot is complete: its candidates (at least one unless it is all black)."""
        if self.shot < 0:
            return []
        if self.slot_best is not None and (not self.picks or self.weight - self.slot >= 0.5):
            self._close_slot()
        if len(self.picks) > 1:  # a fade the detector took for a lighting change: the picture half gone
            # (against the median of every frame of the shot: near-duplicates are already
            # gone from the candidates, so theirs can be the fade's own)
            contrasts = sorted(self.contrasts)
            floor = _FADED * contrasts[len(contrasts) // 2]
            self.picks = [e for e in self.picks if e.contrast >= floor]
        if len(self.picks) >= 3:  # motion blur: far less sharp than the shot's other candidates
            scores = sorted(e.score for e in self.picks)
            floor = _BLURRED * scores[len(scores) // 2]
            kept = [e for e in self.picks if e.score >= floor]
            self.blurred = len(self.picks) - len(kept)
            self.picks = kept
        if not self.picks and self.fallback is not None:
            self.picks.append(self.fallback)
        if len(self.picks) > self.cap:  # spread over the shot: evenly in rank
            n = len(self.picks)
            self.picks = [self.picks[round(i * (n - 1) / (self.cap - 1))] for i in range(self.cap)] \
                if self.cap > 1 else [max(self.picks, key=lambda e: (e.score, -e.index))]
        self.stats[self.shot] = {"change": round(self.change, 1), "seconds": round(self.seconds, 3),
                                 "worth": round(self.weight * self.scale, 2), "same_picture": self.skipped,
                                 "blurred": self.blurred,
                                 "black": self.fallback is None}
        picks = [(self.shot, e) for e in sorted(self.picks, key=lambda e: e.index)]
        self._reset()
        self.shot = -1
        return picks


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
        # two writers: image encoding is the heaviest work after decoding, and the last
        # frames of a video are encoded side by side instead of one after another
        self.writer = ThreadPoolExecutor(max_workers=2)
        self.pending_writes: list[Future[None]] = []
        self.files: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.times = array("d")
        self.boundaries: list[Any] = []
        self.shot_starts = [0]
        # scene mode
        self.pending: deque[_Entry] = deque()
        self.transitions: list[tuple[int, int]] = []  # the detector's (it adds to it)
        self.flash_spans: list[tuple[int, int]] = []  # the detector's (it adds to it)
        self.last_still: Any = None
        self.sampler: _ShotSampler | None = None
        # interval / all modes
        self.waiting: list[Any] = []
        self.next_time = 0.0
        self.sar = 1.0  # the stream's pixel shape: frames are written in square pixels

    # -- 1. probe and bars -------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from animlora.io.video import FrameOrderError, luma, probe, sample_frames
        from animlora.video.frame_measures import detect_bars, limited_range

        path = Path(self.payload["path"])
        info = probe(path, check_end=False)

        def find_bars() -> Any:
            # a dozen keyframes on a film, fewer on a short clip (each costs a seek and a decode)
            samples = sample_frames(path, min(12, max(4, int(info.duration // 10))))
            return detect_bars([luma(f) for f in samples], limited_range(samples[0])) if samples else None

        # the bars are looked for on the writer thread while the first frames decode
        self.crop = self.writer.submit(find_bars) if self.s.crop_bars else None
        self.fps, self.sar = info.fps, info.sar
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
                self.crop, self.fps, self.sar = crop, info.fps, info.sar
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
        from animlora.io.video import ReadAhead, ReferenceFrames, iter_frames

        reader = ReferenceFrames(path) if reference_only else None
        damage = reader.damage if reader is not None else []  # stretches lost to corrupt packets
        # decoding starts now, on other cores, while the detector loads (scenedetect, OpenCV)
        frames = ReadAhead(reader if reader is not None else iter_frames(path, damage=damage),
                           depth=read_ahead(info.width, info.height))
        try:
            return self._detect(path, info, reader, damage, frames)
        finally:
            frames.close()

    def _detect(self, path: Path, info: Any, reader: Any, damage: list[Any], frames: Any) -> dict[str, Any]:
        from animlora.io.video import analysis_images
        from animlora.video.shots import ShotDetector, refine_cuts

        detector = ShotDetector(
            info.fps, detector=self.s.detector, threshold=self.s.threshold,
            min_shot_frames=self.s.min_shot_frames, dissolve_threshold=self.s.dissolve_threshold,
        )
        scene = self.s.mode == "scene"
        if scene:
            seconds = max(info.duration, 1.0 / max(info.fps, 1.0))
            rate = float(self.payload.get("budget", self.s.min_candidates)) / seconds
            self.sampler = _ShotSampler(rate, 1.0 - self.s.change_share, self.s.max_per_shot,
                                        self.s.same_picture_motion)
        self.transitions = detector.transitions
        self.flash_spans = detector.flash_spans
        push = detector.push_after_gap if reader is not None else detector.push
        total = max(1, info.frame_count)
        count = reported = decoded_count = interlaced = 0
        if isinstance(self.crop, Future):
            self.crop = self.crop.result()
        for decoded in frames:
            count = decoded.index + 1
            decoded_count += 1
            interlaced += bool(getattr(decoded.frame, "interlaced_frame", False))
            if reader is None:
                gap = decoded.index - len(self.times)  # frames lost to damage: times spread between
                if gap > 0:
                    before = self.times[-1] if len(self.times) else 0.0
                    self.times.extend(before + (decoded.time - before) * k / (gap + 1) for k in range(1, gap + 1))
                self.times.append(decoded.time)
            bgr, gray = analysis_images(decoded.frame, self.s.analysis_width)
            found = push(decoded.index, bgr, gray)
            self._boundaries(found)
            if scene:
                self._queue(decoded, gray)
            else:
                self._select(decoded)
            self._drain(detector.finalized_upto)
            if count - reported >= 256:
                reported = count
                self.progress(count, total)
        if reader is not None:
            count = reader.count
            self.times = array("d", (reader.time_of(i) for i in range(count)))
        self._boundaries(detector.flush(count))
        self._drain(count + 1)
        if self.sampler is not None:
            self._take_picks(self.sampler.close())
        if reader is not None:  # cuts found across skipped frames: the exact frame
            self.boundaries = refine_cuts(path, self.boundaries, reader.decoded, self.s.analysis_width, 0)
            self.shot_starts = [0, *(b.index for b in self.boundaries)]
        self._wait_writes(0)
        self.progress(count, count)
        result = self._result(info, count, detector)
        result["stats"]["damaged"] = [d.as_dict() for d in damage]
        if info.hdr:
            result["stats"]["hdr"] = info.hdr
        if interlaced:  # share of the decoded frames coded as two fields
            result["stats"]["interlaced"] = round(interlaced / max(1, decoded_count), 3)
        return result

    def _boundaries(self, found: list[Any]) -> None:
        for boundary in found:
            self.boundaries.append(boundary)
            self.shot_starts.append(boundary.index)

    # -- selection -----------------------------------------------------------------------
    def _queue(self, decoded: Any, gray: Any) -> None:
        """Scene mode: measure the frame now; it waits until its shot is known."""
        import cv2
        import numpy as np

        from animlora.io.video import analysis_stride, luma
        from animlora.video.frame_measures import cropped, is_black

        if self.crop is None and analysis_stride(decoded.frame, self.s.analysis_width) == 4:
            quarter = gray  # the same pixels (720p at the default width): not copied again
        else:
            quarter = np.ascontiguousarray(cropped(luma(decoded.frame), self.crop)[::4, ::4])
        lap = cv2.Laplacian(quarter, cv2.CV_16S)
        score = float(cv2.meanStdDev(lap)[1][0, 0])
        entry = _Entry(decoded.index, decoded.time, score, 0.0, gray, float(gray.std()), quarter, is_black(gray),
                       decoded)
        still = entry.still_image()
        if self.last_still is not None:
            entry.change = cv2.norm(still, self.last_still, cv2.NORM_L1) / still.size
        self.last_still = still
        self.pending.append(entry)

    def _select(self, decoded: Any) -> None:
        """Interval / all modes."""
        if self.s.mode == "all" or decoded.time >= self.next_time - 1e-6:
            self.waiting.append(decoded)
            if self.s.mode == "interval":
                while self.next_time <= decoded.time + 1e-6:
                    self.next_time += self.s.interval_seconds

    def _drain(self, upto: int) -> None:
        """Frames before ``upto`` have a known shot: scene mode feeds them to the sampler,
        interval / all modes take them."""
        if self.sampler is not None:
            picks = []
            while self.pending and self.pending[0].index < upto:
                entry = self.pending.popleft()
                shot = bisect_right(self.shot_starts, entry.index) - 1
                # a fade or dissolve shows two pictures or one half gone, a flash (lightning, an
                # explosion) the picture under a light that is not the scene's: no candidate
                in_transition = (any(a <= entry.index <= b for a, b in self.transitions[-8:])
                                 or any(a <= entry.index <= b for a, b in self.flash_spans[-4:]))
                picks += self.sampler.add(shot, entry, in_transition)
            self._take_picks(picks)
            return
        if not self.waiting:
            return
        keep = []
        for decoded in self.waiting:
            if decoded.index < upto:
                self._take(decoded, bisect_right(self.shot_starts, decoded.index) - 1)
            else:
                keep.append(decoded)
        self.waiting = keep

    def _take_picks(self, picks: list[tuple[int, _Entry]]) -> None:
        for shot, entry in picks:
            self._take(entry.decoded, shot, entry.quarter)

    # -- 3. measure and write ----------------------------------------------------------------
    def _take(self, decoded: Any, shot_idx: int, quarter: Any = None) -> None:
        from animlora.io.video import display_width, quarter_turns

        frame = decoded.frame
        w, h = (self.crop[2], self.crop[3]) if self.crop else (frame.width, frame.height)
        w = display_width(w, self.sar)
        if quarter_turns(frame) % 2:  # saved upright (see io/video.py upright)
            w, h = h, w
        rel = frame_file(self.name, shot_idx, decoded.time, self.s.quality)
        row: dict[str, Any] = {
            "id": f"{self.vid}_f{decoded.index}",
            "video_id": self.vid,
            "shot_id": f"{self.vid}_s{shot_idx}",
            "frame_index": decoded.index,
            "timestamp": round(decoded.time, 6),
            "path": rel,
            "width": w,
            "height": h,
            "sharpness": None,
            "phash": None,
            "kept": 1,
            "reject_reason": None,
        }
        frame_bytes = max(1, frame.width * frame.height * 3 // 2)
        self._wait_writes(max(2, min(_MAX_PENDING_WRITES, _PENDING_WRITE_BYTES // frame_bytes)))
        # measuring, conversion, encoding and writing overlap with decoding (all release the GIL)
        self.pending_writes.append((row, self.writer.submit(_write_frame, self.out / rel, frame, self.crop, quarter,
                                                            self.sar)))
        self.files.append(rel)
        self.frames.append(row)

    def _wait_writes(self, keep: int) -> None:
        while len(self.pending_writes) > keep:
            row, future = self.pending_writes.pop(0)
            row["sharpness"], row["phash"] = future.result()

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
        stats: dict[str, Any] = {"raw_cuts": list(detector.raw_cuts), "flashes": list(detector.flashes),
                                 "dissolves": spans}
        if self.sampler is not None:
            stats["budget"] = self.payload.get("budget")
            stats["sampling"] = {str(k): v for k, v in sorted(self.sampler.stats.items())}
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
        return [listed_video(root, entry) for entry in job.settings.project.videos]

    def check_inputs(self, job: StageJob) -> None:
        from animlora.io.video import no_videos_error, probe

        if job.standalone:
            src = Path(job.input_path) if job.input_path else None
            if src is None or not src.exists():
                raise BadInputError(src or "--input", "no such file or folder")
            if src.is_dir():
                if not self._videos(job, job.workspace_root):
                    raise no_videos_error(src)
            else:
                probe(src)  # one line naming the file and the problem, before anything is written
        elif not job.settings.project.videos:
            raise StageError("extract: project.yaml lists no videos (project.videos); add one with `--video` at init")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.io.video import content_id, square_sar
        from animlora.records.runs import done_items

        paths = self._videos(ctx.job, ctx.workspace.root)
        recorded = records.all_videos(ctx.catalog)
        done = done_items(ctx.catalog, self.name)
        ids_now = {p: content_id(p) for p in paths if p.is_file()}
        found, held = [], {}
        for p in paths:
            resolved = p.resolve() if p.exists() else p
            if p in ids_now:
                vid, size = ids_now[p], p.stat().st_size
            elif kept := _extracted_from(p, resolved, recorded, done, {*ids_now.values(), *held}):
                vid, size = kept.id, kept.size
                held[vid] = kept
            else:
                vid, size = digest("missing", str(resolved))[:16], 0
            found.append((p, resolved, vid, size))
        ids = [f[2] for f in found]
        found = [(p, resolved, digest(vid, str(resolved))[:16] if ids.count(vid) > 1 else vid, size)
                 for p, resolved, vid, size in found]  # the same file listed twice (or a copy): ids stay apart
        names = unique_names([(p.stem, vid) for p, _, vid, _ in found], "video")  # `a b` and `a_b` stay apart
        facts = [((held[vid].duration or 0.0), 1.0) if vid in held else video_facts(p) for p, _, vid, _ in found]
        budgets, shared = _budgets(ctx.settings.extract, [seconds for seconds, _ in facts])
        paths_then = {v.id: v.path for v in recorded}
        items = []
        for (p, resolved, vid, size), name, budget, old, (_, sar) in zip(found, names, budgets, shared, facts,
                                                                          strict=True):
            if vid in held:  # out of reach now: its frames (and all made from them) stay as they are
                items.append(WorkItem(key=vid, fingerprint=done[vid], label=p.name, held=True))
                continue
            payload = {"path": str(resolved), "id": vid, "name": name, "size": size, "budget": budget}
            # keyed by the video's content, not by where it is: a moved project (its video
            # inside it) or a moved film is the same item; earlier releases keyed it by path
            # frames of non-square pixels are written square: earlier releases wrote them as
            # stored (squeezed), so such a video is extracted again; others are as they were
            square = () if square_sar(sar) else (("square pixels", round(sar, 4)),)
            items.append(WorkItem(key=vid, fingerprint=digest(vid, size, name, budget, *square), payload=payload,
                                  label=p.name, earlier_key=paths_then.get(vid),
                                  earlier=digest(vid, size, name, old) if old != budget and not square else None))
        self.plan_note = None
        if held:
            missing = ", ".join(str(p) for p, _, vid, _ in found if vid in held)
            self.plan_note = (f"not found: {missing}; the frames extracted before, and everything made from them, are "
                              "kept (put the file back to extract it again, or remove it from project.yaml to drop "
                              "them)")
        return items

    # -- work ------------------------------------------------------------------------------
    def cost(self, item: WorkItem) -> float:
        return float(item.payload["size"])  # bytes of the video: its length, near enough

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        if not Path(item.payload["path"]).exists():
            raise BadInputError(item.payload["path"], "no such file")
        result = _VideoExtraction(job, item.payload, progress).run()
        files = tuple(f["path"] for f in result["frames"] if f["path"])
        return ItemOutput(files=files, data=result)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        data = output.data
        records.write_video(ctx.catalog, data["video"], data["shots"], data["frames"], data["stats"])
        if data["stats"].get("hdr"):
            ctx.log.warning("extract: %s is HDR (%s): its frames are written without tone mapping, flat and pale, and "
                            "a LoRA learns those colours; extract an SDR copy instead (docs/extract.md, \"HDR videos\")",
                            data["video"]["name"], data["stats"]["hdr"])
        if data["stats"].get("interlaced", 0) >= INTERLACED_WARN:
            ctx.log.warning("extract: %s is interlaced (%.0f%% of its frames are two fields): moving pictures show "
                            "combing in its frames; deinterlace it first (ffmpeg -vf bwdif; a telecined film: "
                            "-vf fieldmatch,decimate)", data["video"]["name"], 100 * data["stats"]["interlaced"])
        for d in data["stats"].get("damaged", []):
            ctx.log.warning("extract: %s: damaged, frames %s-%s (%ss-%ss) could not be decoded and were skipped",
                            data["video"]["name"], d["frames"][0], d["frames"][1], d["time"][0],
                            "end" if d["time"][1] is None else d["time"][1])

    def fail(self, ctx: StageContext, item: WorkItem, error: str) -> None:
        p = item.payload
        records.write_failed_video(ctx.catalog, p["id"], p["path"], p["name"], p["size"], error)

    def output_present(self, ctx: StageContext, rel: str) -> bool:
        out = ctx.output_dir
        return (out / rel).is_file() or (out / DUPLICATES_DIR / rel).is_file()  # dedupe moves a duplicate aside

    def forget(self, ctx: StageContext, item_key: str) -> None:
        for video in records.videos_of_item(ctx.catalog, item_key):
            records.delete_video(ctx.catalog, video.id)
            dup = ctx.output_dir / DUPLICATES_DIR / video.name
            if dup.is_dir():
                shutil.rmtree(dup)

    # -- 5. dedupe over everything + report ------------------------------------------------
    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        s = ctx.settings.extract
        cat = ctx.catalog
        rows = records.dedupe_candidates(cat)
        duplicate_of = _dedupe(rows, s.dedupe_distance) if s.dedupe else {}
        out = ctx.output_dir
        with cat.transaction():
            for row in rows:
                rel = frame_file(row.video_name, row.shot_idx, row.timestamp, s.quality)
                main, moved = out / rel, out / DUPLICATES_DIR / rel
                if row.id in duplicate_of:
                    if main.exists():
                        moved.parent.mkdir(parents=True, exist_ok=True)
                        main.replace(moved)
                    if row.kept or row.reject_reason != "duplicate":
                        records.mark_duplicate(cat, row.id)
                else:
                    if moved.exists() and not main.exists():
                        moved.replace(main)
                    if not row.kept:
                        records.mark_kept(cat, row.id, rel)
        report = _report(ctx, duplicate_of)
        atomic_write_json(out / RESULTS_FILE, report)
        return {"videos": len(report["videos"]), "frames_kept": report["totals"]["kept"],
                "rejected": report["totals"]["rejected"]}


def listed_video(root: Path, entry: str) -> Path:
    """The file a ``project.videos`` entry names: absolute, or relative to the project ``root``."""
    path = Path(entry).expanduser()
    return path if path.is_absolute() else root / path


def video_seconds(path: Path) -> float:
    """A video's duration (0 for one missing or unreadable: it fails on its own in process)."""
    return video_facts(path)[0]


def video_facts(path: Path) -> tuple[float, float]:
    """A video's duration and pixel shape (``VideoInfo.sar``); (0, 1) for one missing or
    unreadable: it fails on its own in process."""
    from animlora.errors import BadInputError
    from animlora.io.video import probe

    try:
        info = probe(path, check_end=False) if path.is_file() else None
    except BadInputError:
        info = None
    return (info.duration, info.sar) if info is not None else (0.0, 1.0)


def _budgets(s: Any, seconds: list[float]) -> tuple[list[int], list[int]]:
    """Scene mode: each video's candidate budget (see :func:`project_budget`), and the one
    the release before computed (:func:`_shared_cap_budget`: its item fingerprints)."""
    if s.mode != "scene":
        return [0] * len(seconds), [0] * len(seconds)
    bounds = (s.candidates_per_minute, s.min_candidates, s.max_candidates)
    return project_budget(seconds, *bounds), _shared_cap_budget(seconds, *bounds)


def _extracted_from(path: Path, resolved: Path, recorded: list[Any], done: dict[str, str],
                    claimed: set[str]) -> Any:
    """The video extracted before from ``path``, now missing (a drive not mounted, a file
    renamed): a finished one, not claimed by a video present, read from that path (else the
    one of that file name); None when there is none."""
    usable = [v for v in recorded if v.status == "ok" and v.id in done and v.id not in claimed]
    same_path = [v for v in usable if v.path == str(resolved)]
    same_name = [v for v in usable if Path(v.path).name == path.name]
    return (same_path or (same_name if len(same_name) == 1 else [None]))[0]


def project_budget(seconds: list[float], per_minute: float, least: int, most: int) -> list[int]:
    """Each video's candidate budget: ``per_minute`` times its minutes, at most ``most`` (a
    feature film's downstream CPU time stays bounded) and never more than ``_MAX_RATE`` a
    second (a 5 s clip is not sampled frame by frame). A project under ``least`` in all (a
    trailer, a few short clips) is raised to it, shared by duration, so it still feeds every
    later stage. Beyond that floor a video's budget depends only on its own length: adding a
    video (a second film) redoes no other."""
    natural = [per_minute * sec / 60.0 for sec in seconds]
    total = sum(natural)
    if total <= 0:
        return [0] * len(seconds)
    raise_to = least / total if total < least else 1.0
    return [round(min(n * raise_to, most, _MAX_RATE * sec)) for n, sec in zip(natural, seconds, strict=True)]


def _shared_cap_budget(seconds: list[float], per_minute: float, least: int, most: int) -> list[int]:
    """The budgets of releases before session 26: ``most`` capped the whole project, shared
    by duration (a second film took frames from the first, and every video was extracted
    again). Kept for :attr:`WorkItem.earlier`: a project made so is not extracted again."""
    total = sum(seconds)
    if total <= 0:
        return [0] * len(seconds)
    budget = min(max(per_minute * total / 60.0, least), most)
    return [round(min(budget * sec / total, _MAX_RATE * sec)) for sec in seconds]


def _dedupe(rows: list[records.Candidate], distance: int) -> dict[str, str]:
    """frame id -> id of the frame it duplicates. Sharpest first, ties by id: the result
    depends only on the set of frames, never on the order they were extracted in."""
    import numpy as np

    order = sorted(rows, key=lambda r: (-(r.sharpness or 0.0), r.id))
    kept_hashes = np.zeros(0, dtype=np.uint64)
    kept_ids: list[str] = []
    result: dict[str, str] = {}
    for row in order:
        h = np.uint64(int(row.phash, 16))
        if len(kept_hashes):
            x = np.bitwise_xor(kept_hashes, h)
            dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
            hit = int(np.argmin(dist))
            if dist[hit] <= distance:
                result[row.id] = kept_ids[hit]
                continue
        kept_hashes = np.append(kept_hashes, h)
        kept_ids.append(row.id)
    return result


def _report(ctx: StageContext, duplicate_of: dict[str, str]) -> dict[str, Any]:
    cat = ctx.catalog
    videos = []
    totals: dict[str, Any] = {"kept": 0, "rejected": {}}
    for v in records.all_videos(cat):
        entry: dict[str, Any] = {"name": v.name, "id": v.id, "path": v.path, "status": v.status}
        if v.status != "ok":
            entry["error"] = v.error
            videos.append(entry)
            continue
        stats = records.video_stats(cat, v.id)
        sampling = stats.get("sampling", {})
        shots = []
        for sh in records.shots_of(cat, v.id):
            counts = {reason or "kept": n for reason, n in records.frame_outcomes(cat, sh.id).items()}
            kept = counts.pop("kept", 0)
            totals["kept"] += kept
            for reason, n in counts.items():
                totals["rejected"][reason] = totals["rejected"].get(reason, 0) + n
            shots.append({"shot": sh.idx, "start": sh.start_time, "end": sh.end_time,
                          "frames": sh.frame_count, "transition": sh.transition,
                          "kept": kept, "rejected": counts, **sampling.get(str(sh.idx), {})})
        entry.update({
            "duration": v.duration, "fps": v.fps, "size": [v.width, v.height],
            "frame_count": v.frame_count, "crop": list(v.crop) if v.crop else None,
            "budget": stats.get("budget"), "shots": shots,
            "shots_without_candidates": [sh["shot"] for sh in shots
                                         if not sh["kept"] and not sh["rejected"] and not sh.get("black")],
            "black_shots": [sh["shot"] for sh in shots if sh.get("black")],
            "flashes_ignored": stats.get("flashes", []), "dissolves": stats.get("dissolves", []),
            "damaged": stats.get("damaged", []), "hdr": stats.get("hdr"), "interlaced": stats.get("interlaced", 0.0),
        })
        videos.append(entry)
    return {
        "settings": ctx.settings.extract.model_dump(mode="json"),
        "videos": videos,
        "totals": totals,
        "duplicates": dict(sorted(duplicate_of.items())),
    }
