"""Shot boundaries: a PySceneDetect detector on small frames, plus two checks it lacks.

Frames come from our own decoder (small BGR images read straight from the YUV planes,
see io/video.py), are fed to the detector's ``process_frame``, and its raw cuts pass:

1. a flash check: a cut after which the picture comes back to what it was before the
   cut within ``flash_frames`` (a photo flash, an explosion, a lightning strike) is not a
   cut; a flash is shorter than the shortest shot (``min_shot_frames``), so a short shot
   that cuts back to the picture before it (a cut-away) is still a shot;
2. a gradual-transition check: where frames half a second apart differ a lot but no hard
   cut was found, and every frame in between is a linear mix of the two ends (a
   cross-dissolve, a fade through black), the transition gives ONE boundary, at the frame
   where the mix passes half way, recorded as ``transition='dissolve'`` with its span.

Boundaries closer than the minimum shot length to the previous one are dropped. Decisions
are made a fixed number of frames behind the newest frame (``lag``) and never revised, so
a caller can stream: everything before ``finalized_upto`` is final.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THUMB = (32, 18)  # size of the luma thumbnails the checks compare (mean abs difference, 0-255)
HIST_BINS = (8, 4, 4)  # hue, saturation, value bins of the colour histograms the cut check compares
# colour-histogram cut check (see ShotDetector._check_colour_cut): a frame whose histogram
# moved at least HIST_MIN (total variation, 0-1) and HIST_BEFORE times the mean move of the two
# frames before it and HIST_AFTER times the larger of the two after it is a cut
HIST_MIN, HIST_BEFORE, HIST_AFTER = 0.2, 3.0, 1.5
MIN_CONTENT = 15.0  # PySceneDetect's min_content_val: a smaller content change is never a cut
CUT_CELLS = 0.5  # ... and at least this share of an 8x6 grid over the picture changed (by 10 of 255)
CONTENT_BEFORE = 2.0  # ... and the content change at least this times that of the two frames before
# a dissolve's inner frames are blends of its ends: the worst frame's residual (squared, as a
# share of the squared change) under BLEND_RESIDUAL; between two unlike pictures (ends
# correlated under UNLIKE_ENDS) BLEND_RESIDUAL_UNLIKE, which lets motion in both shots through
# (seed 3's dissolve: 0.045) while a camera move inside one shot (ends alike) stays out;
# between two wholly different pictures (under FOREIGN_ENDS) BLEND_RESIDUAL_FOREIGN: seed 5's
# 8-frame dissolve between two moving shots leaves 0.133, the film's worst window that is no
# transition (Rinky falling past the camera, frames 10658-10670) 0.186 (docs/extract.md)
BLEND_RESIDUAL, BLEND_RESIDUAL_UNLIKE, UNLIKE_ENDS = 0.04, 0.08, 0.4
BLEND_RESIDUAL_FOREIGN, FOREIGN_ENDS = 0.15, 0.25


@dataclass(frozen=True)
class Boundary:
    """The first frame of a new shot; ``span`` = (first, last) frame of a gradual transition."""

    index: int
    transition: str | None = None  # None = hard cut, "dissolve" = gradual transition
    span: tuple[int, int] | None = None


def _scenedetect() -> Any:
    """The ``scenedetect`` package, imported without its ffmpeg probe and its progress bars.

    Importing it runs ``ffmpeg -v quiet`` in a subprocess to find ffmpeg for its
    ``split_video_ffmpeg`` (0.2-0.3 s CPU, more wall time on a busy machine: a tenth of
    extracting a trailer), and imports tqdm's logging bridge, which loads asyncio (~25 ms),
    for the progress bars of its own scene manager. Only its detectors are used here, so the
    probe is answered "not found" and tqdm "not installed" (it then keeps no-op stand-ins)
    while the package loads; tqdm imports as usual afterwards."""
    import os
    import sys

    if "scenedetect" in sys.modules:
        return sys.modules["scenedetect"]
    import subprocess

    real = subprocess.call

    def no_ffmpeg_probe(args: Any, *rest: Any, **kwargs: Any) -> int:
        # ffmpeg on PATH, then imageio-ffmpeg's (ffmpeg-linux-x86_64-v7.1, ffmpeg-win-x86_64-v7.1.exe)
        if isinstance(args, (list, tuple)) and args and os.path.basename(str(args[0])).startswith("ffmpeg"):
            raise OSError("ffmpeg is not probed for (animlora uses only the detectors)")
        return real(args, *rest, **kwargs)

    hide_tqdm = "tqdm" not in sys.modules  # already loaded (a model stage ran first): nothing to save
    subprocess.call = no_ffmpeg_probe  # type: ignore[assignment]
    if hide_tqdm:
        sys.modules["tqdm"] = None  # type: ignore[assignment]  # `import tqdm` raises ModuleNotFoundError
    try:
        import scenedetect
    finally:
        subprocess.call = real
        if hide_tqdm:
            del sys.modules["tqdm"]
    return scenedetect


def make_detector(kind: str, threshold: float, min_frames: int) -> Any:
    """The PySceneDetect detector named by ``extract.detector``."""
    sd = _scenedetect()
    AdaptiveDetector, ContentDetector, HashDetector = sd.AdaptiveDetector, sd.ContentDetector, sd.HashDetector

    if kind == "adaptive":
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_frames)
    if kind == "content":
        return ContentDetector(threshold=threshold, min_scene_len=min_frames)
    if kind == "hash":
        return HashDetector(threshold=threshold, min_scene_len=min_frames)
    raise ValueError(f"unknown detector {kind!r}; choose adaptive, content or hash")


def _is_black(thumb: np.ndarray) -> bool:
    return float(thumb.max()) < 40 and float(thumb.std()) < 4


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    return cv2.norm(a, b, cv2.NORM_L1) / a.size


class ShotDetector:
    """Streaming shot detection: ``push`` each frame's small BGR image in order, then ``flush``."""

    def __init__(
        self,
        fps: float,
        *,
        detector: str = "adaptive",
        threshold: float = 3.0,
        min_shot_frames: int = 8,
        dissolve_threshold: float = 12.0,
        flash_seconds: float = 0.25,
    ) -> None:
        self._timecode = _scenedetect().FrameTimecode
        self.fps = fps
        self.min_frames = max(1, min_shot_frames)
        # a hard cut this close to a transition's boundary (outside its span) is the boundary
        self.near = max(self.min_frames, round(0.5 * fps))
        self.inner = make_detector(detector, threshold, self.min_frames)
        # a flash ends within flash_seconds, and sooner than the shortest shot
        self.flash_frames = max(1, min(round(flash_seconds * fps), self.min_frames - 1))
        self.window = max(4, round(0.5 * fps))  # frames between the two ends a dissolve check compares
        self.max_span = round(4.0 * fps)  # longest transition followed as one
        self.dissolve_threshold = dissolve_threshold
        # raw cuts reach us `inner lag` frames late; the flash check looks flash_frames ahead
        self.lag = self.window + self.flash_frames + 8
        self._keep = self.lag + self.max_span + self.window + 4  # frames of history held
        self._thumbs: dict[int, np.ndarray] = {}
        self._order: deque[int] = deque()  # indices held, ascending (gaps allowed: see detect_shots)
        self._filled: set[int] = set()  # held indices that push_after_gap made up (blends across a gap)
        self._raw: list[int] = []  # cuts from the detector, not yet flash-checked
        self._cuts: list[int] = []  # flash-checked cuts not yet emitted
        self._open_span: list[int] | None = None  # [first, last] window ends of a transition being followed
        self._span_close = False  # a window of the open span passed under the stricter limits
        self._spans: list[Boundary] = []  # finished transitions not yet emitted
        self._checked = -1  # last frame index the dissolve check has looked at
        self._last_emitted = 0  # a first shot shorter than the minimum is not split off
        self._count = 0
        self.finalized_upto = 0
        self.raw_cuts: list[int] = []  # every cut the detector proposed (for reports/tuning)
        self.flashes: list[int] = []  # cuts dropped by the flash check
        # (flash cut, frame where the picture is back): the frames between are lit by the flash
        self.flash_spans: list[tuple[int, int]] = []
        # (first, last) frames of every blend seen (a dissolve or fade), kept as a boundary
        # or not: its frames show two pictures, or a picture half gone
        self.transitions: list[tuple[int, int]] = []
        self._last_pushed: tuple[int, np.ndarray, np.ndarray] | None = None
        # colour-histogram check: (index, histogram move, content score) of the last 5 frames
        self._hist: np.ndarray | None = None
        self._moves: deque[tuple[int, float, float | None]] = deque(maxlen=5)
        self.colour_cuts: list[int] = []  # cuts the colour check added (the detector had none there)

    # -- feeding -------------------------------------------------------------------------
    def push(self, index: int, bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Boundary]:
        """Add frame ``index`` (0, 1, 2, ... in order) as a small BGR image (and its gray
        version when the caller has it); return the boundaries that became final."""
        import cv2

        if gray is None:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        self._thumbs[index] = cv2_thumb(gray)
        self._order.append(index)
        while self._order[0] < index - self._keep:
            old = self._order.popleft()
            del self._thumbs[old]
            self._filled.discard(old)
        for tc in self.inner.process_frame(self._timecode(index, self.fps), bgr):
            self._raw.append(tc.frame_num)
            self.raw_cuts.append(tc.frame_num)
        self._check_colour_cut(index, bgr)
        self._count = index + 1
        self._check_flashes(index)
        self._check_dissolves(index - self.flash_frames - 4)
        return self._emit(index - self.lag)

    def push_after_gap(self, index: int, bgr: np.ndarray, gray: np.ndarray) -> list[Boundary]:
        """Like :meth:`push`, for a sequence with skipped frames (reference frames only): the
        detector compares neighbours, so it gets blends of the two real frames around a gap
        (motion spread over the gap); cuts across a gap are refined later (:func:`refine_cuts`)."""
        import cv2

        found: list[Boundary] = []
        last = self._last_pushed
        if last is not None and index - last[0] > 1:
            for k in range(last[0] + 1, index):
                w = (k - last[0]) / (index - last[0])
                self._filled.add(k)
                found += self.push(k, cv2.addWeighted(last[1], 1 - w, bgr, w, 0),
                                   cv2.addWeighted(last[2], 1 - w, gray, w, 0))
        found += self.push(index, bgr, gray)
        self._last_pushed = (index, bgr, gray)
        return found

    def flush(self, frame_count: int | None = None) -> list[Boundary]:
        """End of video (``frame_count`` frames, when the last ones were not pushed): decide
        everything left."""
        if frame_count is not None:
            self._count = frame_count
        # detectors that hold cuts back (ContentDetector's flash filter) release them here
        for tc in self.inner.post_process(self._timecode(self._count, self.fps)) or []:
            self._raw.append(tc.frame_num)
            self.raw_cuts.append(tc.frame_num)
        self._check_flashes(self._count + self.flash_frames + 1)
        self._check_dissolves(self._count - 1)
        self._close_span()
        return self._emit(self._count + 1)

    # -- checks ----------------------------------------------------------------------------
    def _thumb(self, index: int) -> np.ndarray | None:
        return self._thumbs.get(index)

    def _held(self, lo: int, hi: int) -> list[int]:
        """Indices held in [lo, hi] (all of them when every frame is pushed)."""
        if hi - lo < 64:
            return [i for i in range(lo, hi + 1) if i in self._thumbs]
        return [i for i in self._order if lo <= i <= hi]

    def _before(self, index: int) -> int | None:
        """The nearest held index before ``index``."""
        for i in range(index - 1, index - 1 - self.window, -1):
            if i in self._thumbs:
                return i
        return None

    def _check_colour_cut(self, index: int, bgr: np.ndarray) -> None:
        """A cut the detector misses when the new shot starts with fast motion (a character
        crossing close to the camera): its score is compared with the average of the frames
        around it, and the motion after the cut raises that average. Colour histograms move
        little with motion and a lot at a cut, so a frame whose histogram jumps far more than
        in the two frames before it and clearly more than in the two after it, with a content
        change the detector would accept that also jumps, over most of the picture, is a cut
        (then flash-checked like any other)."""
        import cv2

        # the HSV planes PySceneDetect's content detectors just made of this frame, when there
        # (the same histogram as of our own conversion, one conversion fewer a frame)
        # (tests/test_extract_shots.py checks it against the installed PySceneDetect)
        made = getattr(self.inner, "_last_frame", None)
        ours = not hasattr(made, "lum") or made.lum.shape != bgr.shape[:2]
        planes = [cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)] if ours else [made.hue, made.sat, made.lum]
        hist = cv2.calcHist(planes, [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
        hist /= max(float(hist.sum()), 1.0)
        move = 0.0 if self._hist is None else 0.5 * float(np.abs(hist - self._hist).sum())
        self._hist = hist
        if self._moves and self._moves[-1][0] != index - 1:
            self._moves.clear()  # frames skipped (not pushed): compare neighbours only
        self._moves.append((index, move, getattr(self.inner, "_frame_score", None)))
        if len(self._moves) < 5:
            return
        (_, b2, s2), (_, b1, s1), (mid, m, score), (_, a1, _), (_, a2, _) = self._moves
        if (
            m >= HIST_MIN
            and m >= HIST_BEFORE * (b1 + b2) / 2
            and m >= HIST_AFTER * max(a1, a2)
            # the content change jumps too (a histogram alone also jumps when the hue of
            # near-black pixels flips, e.g. on end credits)
            and (score is None or (score >= MIN_CONTENT and score >= CONTENT_BEFORE * ((s1 or 0) + (s2 or 0)) / 2))
            and not any(abs(c - mid) <= 2 for c in self.raw_cuts[-4:])
            and self._changed_share(mid) >= CUT_CELLS
        ):
            self._raw.append(mid)
            self.raw_cuts.append(mid)
            self.colour_cuts.append(mid)

    def _changed_share(self, index: int) -> float:
        """Share of the cells of an 8x6 grid whose mean luma changed by 10 or more from the
        frame before: a cut changes most of the picture, something that darts into view a part."""
        import cv2

        a, b = self._thumbs.get(index - 1), self._thumbs.get(index)
        if a is None or b is None:
            return 0.0
        cells = cv2.resize(cv2.absdiff(a, b), (8, 6), interpolation=cv2.INTER_AREA)
        return float((cells >= 10).mean())

    def _check_flashes(self, newest: int) -> None:
        if not self._raw:
            return
        keep = []
        for cut in self._raw:
            if cut + self.flash_frames > newest and newest < self._count + self.flash_frames:
                keep.append(cut)  # not enough frames after it yet
                continue
            prev = self._before(cut)
            before = self._thumb(prev) if prev is not None else None
            at = self._thumb(cut)
            if before is None or at is None:
                self._cuts.append(cut)
                continue
            if any(a < cut <= b for a, b in self.flash_spans[-4:]):
                self.flashes.append(cut)  # where a flash ends: the picture comes back
                continue
            jump = _diff(before, at)
            back = None
            for j in self._held(cut + 1, cut + self.flash_frames):
                after = self._thumb(j)
                if _diff(before, after) < 0.35 * jump:
                    back = j
                    break
            if back is not None:
                self.flashes.append(cut)
                self.flash_spans.append((cut, back))
            else:
                self._cuts.append(cut)
        self._raw = keep

    def _check_dissolves(self, upto: int) -> None:
        """Look at windows ending at every held frame up to ``upto`` (inclusive)."""
        if upto <= self._checked:
            return
        for end in self._held(max(self._checked + 1, self.window), upto):
            self._checked = end
            first = end - self.window
            if first not in self._thumbs:
                first = self._before(first)
                if first is None:
                    continue
            a, b = self._thumbs[first], self._thumbs[end]
            if (
                _diff(a, b) >= self.dissolve_threshold
                and not any(first - 2 <= c <= end + 2 for c in (*self._cuts, *self._raw, *self.flashes[-4:]))
                and (mix := self._is_mix(first, end))
            ):
                if self._open_span is not None and first <= self._open_span[1] + 1:
                    self._open_span[1] = end
                else:
                    self._close_span()
                    self._open_span = [first, end]
                    self._span_close = False
                self._span_close |= mix == "close"
                if self._open_span[1] - self._open_span[0] >= self.max_span:
                    self._close_span()
            elif self._open_span is not None and first > self._open_span[1]:
                self._close_span()
        self._checked = max(self._checked, upto)

    def _is_mix(self, first: int, last: int) -> str | None:
        """Whether every frame between ``first`` and ``last`` is close to a blend of the ends:
        ``"close"`` under the limits for like or unlike ends, ``"loose"`` only under the one for
        wholly different ends, None when not."""
        a, b = self._thumbs[first], self._thumbs[last]
        d = b - a
        norm = float((d * d).sum())
        if norm <= 1e-6:
            return None
        sa, sb = float(a.std()), float(b.std())
        limit = loose = BLEND_RESIDUAL
        if sa > 4 and sb > 4:
            corr = float(((a - a.mean()) * (b - b.mean())).mean()) / (sa * sb)
            if corr > 0.85:
                return None  # the same picture lit differently (a lamp, a brightening sky): not a transition
            if corr < UNLIKE_ENDS:
                limit = loose = BLEND_RESIDUAL_UNLIKE
                if corr < FOREIGN_ENDS:
                    loose = BLEND_RESIDUAL_FOREIGN
        inner = [self._thumbs[i] for i in self._held(first + 1, last - 1)]
        if not inner:
            return "close"
        stack = np.stack(inner).reshape(len(inner), -1) - a.reshape(1, -1)
        flat = d.reshape(-1)
        alphas = stack @ flat / norm
        if not np.all(np.diff(alphas) >= -0.1):
            return None
        residual = stack - alphas[:, None] * flat[None, :]
        worst = float((residual * residual).sum(axis=1).max())
        if worst <= limit * norm:
            return "close"
        return "loose" if worst <= loose * norm else None

    def _close_span(self) -> None:
        span = self._open_span
        self._open_span = None
        if span is None:
            return
        first, last = span
        a, b = self._thumb(first), self._thumb(last)
        if a is None or b is None:
            return
        d = b - a
        norm = float((d * d).sum())
        held = self._held(first, last)
        alphas = np.array([float(((self._thumbs[i] - a) * d).sum()) / norm for i in held])
        moving = [held[int(k)] for k in np.nonzero((alphas > 0.1) & (alphas < 0.9))[0]]
        boundary = held[int(np.argmax(alphas >= 0.5))]
        # a jump from one picture to the other: a hard cut the detector missed (unless it is a
        # flash); so is a "blend" seen in under two decoded frames, the rest being the blends
        # push_after_gap filled a gap with (a cut between two reference frames). Only windows
        # under the stricter limits say so: what only the loose limit lets through is a
        # dissolve or nothing (something darting into the shot also jumps)
        if len(moving) < 2 or sum(i not in self._filled for i in moving) < 2:
            if self._span_close:
                self._raw.append(boundary)
            return
        if _is_black(a):  # fade in from black: the shot starts where the picture appears
            boundary = next((held[k] for k, al in enumerate(alphas) if al > 0.03), boundary)
        elif _is_black(b):  # fade out to black: the shot ends where the picture is gone
            boundary = next((held[k] for k, al in enumerate(alphas) if al > 0.97), boundary)
        self._spans.append(Boundary(boundary, "dissolve", (moving[0], moving[-1])))
        self.transitions.append((moving[0], moving[-1]))

    # -- output ----------------------------------------------------------------------------
    def _emit(self, upto: int) -> list[Boundary]:
        """Boundaries before ``upto`` that nothing can change any more, in order."""
        limit = upto
        if self._open_span is not None:
            limit = min(limit, self._open_span[0])
        if self._raw:
            limit = min(limit, min(self._raw))
        limit = min(limit, self._checked - self.window)
        if upto > self._count:  # flushing
            limit = upto
        if not self._cuts and not self._spans:
            self.finalized_upto = max(self.finalized_upto, limit)
            return []
        flushing = upto > self._count
        # a dissolve waits until the cuts just after it are known: a detector cut near a
        # transition, outside its span (a fade-in from black ends in one), is the boundary
        ready_spans = [b for b in self._spans if flushing or b.index + self.near < limit]
        ready = sorted([Boundary(c) for c in self._cuts if c < limit] + ready_spans, key=lambda b: b.index)
        known_cuts = [*self._cuts, *self._raw]
        spans = list(self._spans)
        self._cuts = [c for c in self._cuts if c >= limit]
        self._spans = [b for b in self._spans if b not in ready_spans]
        out = []
        for boundary in ready:
            if boundary.transition is None:
                if any(b.span is not None and b.span[0] < boundary.index <= b.span[1] for b in spans):
                    continue  # a hard cut the detector put inside a dissolve: the dissolve wins
            else:
                span = boundary.span or (boundary.index, boundary.index)
                if any(abs(c - boundary.index) < self.near and not span[0] < c <= span[1]
                       for c in known_cuts):
                    continue
                if self._last_emitted and boundary.index - self._last_emitted < self.near:
                    continue  # a fade that goes on after the cut where its picture appeared
            if boundary.index <= 0 or boundary.index - self._last_emitted < self.min_frames:
                continue
            out.append(boundary)
            self._last_emitted = boundary.index
        if self._spans:  # frames of a transition not yet given out are not final (callers skip them)
            limit = min(limit, min(b.span[0] if b.span is not None else b.index for b in self._spans))
        self.finalized_upto = max(self.finalized_upto, limit)
        return out


def detect_shots(
    path: str | Path,
    *,
    detector: str = "adaptive",
    threshold: float = 3.0,
    min_shot_frames: int = 8,
    analysis_width: int = 96,
    dissolve_threshold: float = 12.0,
    coarse: bool = True,
) -> tuple[list[Boundary], int, float]:
    """Shot boundaries of a whole video, without saving any frame. Returns (boundaries,
    frame count, average fps).

    Decodes with the deblocking filter skipped (the pixels are only compared). With
    ``coarse`` (default), a first pass decodes only the reference frames (I/P and
    referenced B: no other frame depends on the rest, so skipping them costs nothing):
    encoders put reference frames on both sides of a cut, so most cuts already fall
    between two consecutive frames. A cut the detector finds across skipped frames is
    refined afterwards: decode just that stretch (seek to its keyframe) and take the frame
    where the picture jumps. Hard cuts stay frame-exact either way."""
    from animlora.io.video import probe

    info = probe(path, check_end=False)
    shots = ShotDetector(info.fps, detector=detector, threshold=threshold, min_shot_frames=min_shot_frames,
                         dissolve_threshold=dissolve_threshold)
    if coarse:
        from animlora.io.video import FrameOrderError, ReadAhead, ReferenceFrames, analysis_images

        reader = ReferenceFrames(path, fast_analysis=True)
        try:
            found = []
            with ReadAhead(reader) as frames:  # decoding goes on while the detector works
                for frame in frames:
                    found += shots.push_after_gap(frame.index, *analysis_images(frame.frame, analysis_width))
            found += shots.flush(reader.count)
            return refine_cuts(path, found, reader.decoded, analysis_width, shots.min_frames), reader.count, info.fps
        except FrameOrderError:  # a stream whose frame order we cannot follow: decode every frame
            shots = ShotDetector(info.fps, detector=detector, threshold=threshold,
                                 min_shot_frames=min_shot_frames, dissolve_threshold=dissolve_threshold)
    from animlora.io.video import ReadAhead, analysis_images, iter_frames

    found, count = [], 0
    with ReadAhead(iter_frames(path, fast_analysis=True)) as frames:
        for frame in frames:
            found += shots.push(frame.index, *analysis_images(frame.frame, analysis_width))
            count = frame.index + 1
    found += shots.flush()
    return found, count, info.fps


def refine_cuts(path: str | Path, found: list[Boundary], decoded: dict[int, int], width: int,
                min_frames: int) -> list[Boundary]:
    """Hard cuts with skipped frames just before them (``decoded``: index -> pts of the
    frames that were decoded): decode that stretch, put the cut where the picture jumps."""
    import av

    from animlora.io.video import analysis_images, video_stream

    out = []
    held = sorted(decoded)
    for boundary in found:
        if boundary.transition is not None and boundary.span is not None:
            lo = bisect_left(held, boundary.span[0])
            if lo < len(held) and held[lo] > boundary.span[1]:  # the whole "dissolve" was blends: a cut
                boundary = Boundary(held[lo])
        # the cut lies after the last decoded frame before the boundary and at or before the
        # first decoded frame from it on (the boundary itself may be a blend in a gap)
        pos = bisect_left(held, boundary.index)
        prev = held[pos - 1] if pos > 0 else None
        last = held[pos] if pos < len(held) else None
        if boundary.transition is not None or prev is None or last is None or last - prev <= 1:
            out.append(boundary if last is None or boundary.transition is not None else Boundary(last))
            continue
        thumbs: dict[int, np.ndarray] = {}
        with av.open(str(path)) as container:
            stream = video_stream(container, Path(path))
            stream.codec_context.options = {"skip_loop_filter": "all"}
            container.seek(decoded[prev], stream=stream, backward=True)
            pts_to_index = {pts: i for i, pts in decoded.items()}
            index = None
            for frame in container.decode(stream):
                if frame.pts in pts_to_index:
                    index = pts_to_index[frame.pts]
                elif index is not None:
                    index += 1  # frames between two decoded ones are consecutive
                if index is None or index < prev:
                    continue
                gray = analysis_images(frame, width)[1]
                thumbs[index] = cv2_thumb(gray)
                if index >= last:
                    break
        jumps = {i: _diff(thumbs[i - 1], thumbs[i]) for i in range(prev + 1, last + 1)
                 if i in thumbs and i - 1 in thumbs}
        cut = max(jumps, key=jumps.__getitem__) if jumps else last
        out.append(Boundary(cut, boundary.transition, boundary.span))
    # refinement can move a cut closer to its neighbour than the minimum shot length
    kept: list[Boundary] = []
    for boundary in out:
        if not kept or boundary.index - kept[-1].index >= min_frames:
            kept.append(boundary)
    return kept


def cv2_thumb(gray: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
