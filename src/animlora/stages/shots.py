"""Shot boundaries: a PySceneDetect detector on small frames, plus two checks it lacks.

Frames come from our own decoder (small BGR images read straight from the YUV planes,
see io/video.py), are fed to the detector's ``process_frame``, and its raw cuts pass:

1. a flash check: a cut after which the picture comes back to what it was before the
   cut within ``flash_frames`` (a photo flash, an explosion, a lightning strike) is not a
   cut;
2. a gradual-transition check: where frames half a second apart differ a lot but no hard
   cut was found, and every frame in between is a linear mix of the two ends (a
   cross-dissolve, a fade through black), the transition gives ONE boundary, at the frame
   where the mix passes half way, recorded as ``transition='dissolve'`` with its span.

Boundaries closer than the minimum shot length to the previous one are dropped. Decisions
are made a fixed number of frames behind the newest frame (``lag``) and never revised, so
a caller can stream: everything before ``finalized_upto`` is final.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THUMB = (32, 18)  # size of the luma thumbnails the checks compare (mean abs difference, 0-255)


@dataclass(frozen=True)
class Boundary:
    """The first frame of a new shot; ``span`` = (first, last) frame of a gradual transition."""

    index: int
    transition: str | None = None  # None = hard cut, "dissolve" = gradual transition
    span: tuple[int, int] | None = None


def make_detector(kind: str, threshold: float, min_frames: int) -> Any:
    """The PySceneDetect detector named by ``extract.detector``."""
    from scenedetect import AdaptiveDetector, ContentDetector, HashDetector

    if kind == "adaptive":
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_frames)
    if kind == "content":
        return ContentDetector(threshold=threshold, min_scene_len=min_frames)
    if kind == "hash":
        return HashDetector(threshold=threshold, min_scene_len=min_frames)
    raise ValueError(f"unknown detector {kind!r}; choose adaptive, content or hash")


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
        min_shot_seconds: float = 0.5,
        dissolve_threshold: float = 12.0,
        flash_seconds: float = 0.5,
    ) -> None:
        from scenedetect import FrameTimecode

        self._timecode = FrameTimecode
        self.fps = fps
        self.min_frames = max(1, round(min_shot_seconds * fps))
        self.inner = make_detector(detector, threshold, self.min_frames)
        self.flash_frames = max(2, round(flash_seconds * fps))
        self.window = max(4, round(0.5 * fps))  # frames between the two ends a dissolve check compares
        self.max_span = round(4.0 * fps)  # longest transition followed as one
        self.dissolve_threshold = dissolve_threshold
        # raw cuts reach us `inner lag` frames late; the flash check looks flash_frames ahead
        self.lag = self.window + self.flash_frames + 8
        self._thumbs: deque[tuple[int, np.ndarray]] = deque(maxlen=self.lag + self.max_span + self.window + 4)
        self._raw: list[int] = []  # cuts from the detector, not yet flash-checked
        self._cuts: list[int] = []  # flash-checked cuts not yet emitted
        self._open_span: list[int] | None = None  # [first, last] window ends of a transition being followed
        self._spans: list[Boundary] = []  # finished transitions not yet emitted
        self._checked = -1  # last frame index the dissolve check has looked at
        self._last_emitted = -(10**9)
        self._count = 0
        self.finalized_upto = 0
        self.raw_cuts: list[int] = []  # every cut the detector proposed (for reports/tuning)
        self.flashes: list[int] = []  # cuts dropped by the flash check

    # -- feeding -------------------------------------------------------------------------
    def push(self, index: int, bgr: np.ndarray, gray: np.ndarray | None = None) -> list[Boundary]:
        """Add frame ``index`` (0, 1, 2, ... in order) as a small BGR image (and its gray
        version when the caller has it); return the boundaries that became final."""
        import cv2

        if gray is None:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        self._thumbs.append((index, cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)))
        for tc in self.inner.process_frame(self._timecode(index, self.fps), bgr):
            self._raw.append(tc.frame_num)
            self.raw_cuts.append(tc.frame_num)
        self._count = index + 1
        self._check_flashes(index)
        self._check_dissolves(index - self.flash_frames - 4)
        return self._emit(index - self.lag)

    def flush(self) -> list[Boundary]:
        """End of video: decide everything left."""
        import cv2

        for tc in getattr(self.inner, "post_process", lambda _tc: [])(self._timecode(self._count, self.fps)) or []:
            self._raw.append(tc.frame_num)
            self.raw_cuts.append(tc.frame_num)
        del cv2
        self._check_flashes(self._count + self.flash_frames + 1)
        self._check_dissolves(self._count - 1)
        self._close_span()
        return self._emit(self._count + 1)

    # -- checks ----------------------------------------------------------------------------
    def _thumb(self, index: int) -> np.ndarray | None:
        if not self._thumbs:
            return None
        first = self._thumbs[0][0]
        pos = index - first
        if 0 <= pos < len(self._thumbs):
            return self._thumbs[pos][1]
        return None

    def _check_flashes(self, newest: int) -> None:
        if not self._raw:
            return
        keep = []
        for cut in self._raw:
            if cut + self.flash_frames > newest and newest < self._count + self.flash_frames:
                keep.append(cut)  # not enough frames after it yet
                continue
            before = self._thumb(cut - 1)
            at = self._thumb(cut)
            if before is None or at is None:
                self._cuts.append(cut)
                continue
            jump = _diff(before, at)
            back = False
            for j in range(1, self.flash_frames + 1):
                after = self._thumb(cut + j)
                if after is None:
                    break
                if _diff(before, after) < 0.35 * jump:
                    back = True
                    break
            if back:
                self.flashes.append(cut)
            else:
                self._cuts.append(cut)
        self._raw = keep

    def _check_dissolves(self, upto: int) -> None:
        """Look at windows ending at every frame up to ``upto`` (inclusive)."""
        start = max(self._checked + 1, self.window)
        for end in range(start, upto + 1):
            self._checked = end
            first = end - self.window
            a, b = self._thumb(first), self._thumb(end)
            if a is None or b is None:
                continue
            if (
                _diff(a, b) >= self.dissolve_threshold
                and not any(first - 2 <= c <= end + 2 for c in (*self._cuts, *self._raw, *self.flashes[-4:]))
                and self._is_mix(first, end)
            ):
                if self._open_span is not None and first <= self._open_span[1] + 1:
                    self._open_span[1] = end
                else:
                    self._close_span()
                    self._open_span = [first, end]
                if self._open_span[1] - self._open_span[0] >= self.max_span:
                    self._close_span()
            elif self._open_span is not None and end > self._open_span[1] + 1:
                self._close_span()

    def _is_mix(self, first: int, last: int) -> bool:
        """True when every frame between ``first`` and ``last`` is close to a blend of the ends."""
        a, b = self._thumb(first), self._thumb(last)
        d = b - a
        norm = float((d * d).sum())
        if norm <= 1e-6:
            return False
        sa, sb = float(a.std()), float(b.std())
        if sa > 4 and sb > 4 and float(((a - a.mean()) * (b - b.mean())).mean()) / (sa * sb) > 0.85:
            return False  # the same picture lit differently (a lamp, a brightening sky): not a transition
        inner = [self._thumb(i) for i in range(first + 1, last)]
        if any(f is None for f in inner):
            return False
        if not inner:
            return True
        stack = np.stack(inner).reshape(len(inner), -1) - a.reshape(1, -1)
        flat = d.reshape(-1)
        alphas = stack @ flat / norm
        residual = stack - alphas[:, None] * flat[None, :]
        if float((residual * residual).sum(axis=1).max()) > 0.04 * norm:
            return False
        return bool(np.all(np.diff(alphas) >= -0.1))

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
        alphas = []
        for i in range(first, last + 1):
            f = self._thumb(i)
            alphas.append(0.0 if f is None else float(((f - a) * d).sum()) / norm)
        alphas_arr = np.array(alphas)
        moving = np.nonzero((alphas_arr > 0.1) & (alphas_arr < 0.9))[0]
        half = int(np.argmax(alphas_arr >= 0.5))
        boundary = first + half
        if len(moving) < 2:  # a jump from one picture to the other: a hard cut the detector missed
            self._raw.append(boundary)  # ... unless it is a flash
            return
        self._spans.append(Boundary(boundary, "dissolve", (first + int(moving[0]), first + int(moving[-1]))))

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
        ready = sorted(
            [Boundary(c) for c in self._cuts if c < limit] + [s for s in self._spans if s.index < limit],
            key=lambda b: b.index,
        )
        self._cuts = [c for c in self._cuts if c >= limit]
        self._spans = [s for s in self._spans if s.index >= limit]
        out = []
        for boundary in ready:
            inside_span = any(
                s.span is not None and s.span[0] - 2 <= boundary.index <= s.span[1] + 2
                for s in ready if s is not boundary
            )
            if boundary.transition is None and inside_span:
                continue  # a hard cut the detector put inside a dissolve: the dissolve wins
            if boundary.index <= 0 or boundary.index - self._last_emitted < self.min_frames:
                continue
            out.append(boundary)
            self._last_emitted = boundary.index
        self.finalized_upto = max(self.finalized_upto, limit)
        return out


def detect_shots(
    path: str | Path,
    *,
    detector: str = "adaptive",
    threshold: float = 3.0,
    min_shot_seconds: float = 0.5,
    analysis_width: int = 96,
    dissolve_threshold: float = 12.0,
) -> tuple[list[Boundary], int, float]:
    """Shot boundaries of a whole video, as fast as decoding allows.

    Decodes with the deblocking filter skipped (the pixels are only compared, never
    saved) and reads small frames straight from the YUV planes. Returns (boundaries,
    frame count, average fps)."""
    from animlora.io.video import analysis_images, iter_frames, probe

    info = probe(path, check_end=False)
    shots = ShotDetector(info.fps, detector=detector, threshold=threshold, min_shot_seconds=min_shot_seconds,
                         dissolve_threshold=dissolve_threshold)
    found: list[Boundary] = []
    count = 0
    for decoded in iter_frames(path, fast_analysis=True):
        found += shots.push(decoded.index, *analysis_images(decoded.frame, analysis_width))
        count = decoded.index + 1
    found += shots.flush()
    return found, count, info.fps
