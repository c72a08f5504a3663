"""Text laid over a frame (titles, subtitles, credits): a pixel mask of where it is.

Two detectors behind one small protocol (``detect(bgr) -> bool mask``):

- ``ppocr``: PP-OCRv4 text detection and recognition as packaged by
  ``rapidocr-onnxruntime`` (Apache-2.0; its ONNX files ship inside the wheel, nothing is
  downloaded: ``pip install 'animlora[text]'``), on onnxruntime. A line is text when it
  is read (see :class:`PPOCRTextDetector`).
- ``opencv``: no weights. Burned-in text is thin high-contrast strokes in a row: top-hat
  and black-hat (both polarities), closed along the row, give candidate lines; a line is
  kept when it is text-shaped (wide, short, strokes with gaps) and its strokes are thin
  for the line's height and of one width. Far weaker than ``ppocr`` (see docs).

``auto`` takes ``ppocr`` when its package is installed, else ``opencv``.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np

from animlora.errors import MissingDependencyError

DETECTORS = ("auto", "ppocr", "opencv", "off")
PPOCR_PACKAGE = "rapidocr_onnxruntime"


class TextDetector(Protocol):
    """One required method, :meth:`detect`. A detector that reads its lines (``ppocr``) also
    has ``lines(bgr) -> list of 4x2 corner arrays`` (the read lines, corners in reading
    order: top-left, top-right, bottom-right, bottom-left), which :func:`text_over_length`
    measures."""

    name: str

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """A bool mask (H x W of ``bgr``) of the pixels that are text, boxes grown to cover
        whole glyphs."""
        ...


class PPOCRTextDetector:
    """PP-OCRv4 detection + recognition from the ``rapidocr-onnxruntime`` wheel (its ONNX
    files ship inside it). A detected line counts as text only when the recogniser reads
    at least ``min_chars`` letters or digits in it with confidence >= ``min_score``, in a
    box shaped like a line (:meth:`is_line`): the detector alone fires on striped shirts,
    windows and tiled roofs (on rendered footage it boxed 8-66% of text-free frames)."""

    name = "ppocr"

    def __init__(self, long_side: int = 960, min_score: float = 0.6, min_chars: int = 3, min_aspect: float = 1.5,
                 read_aspect: float = 12.0, threads: int = 1) -> None:
        import importlib.util

        if importlib.util.find_spec(PPOCR_PACKAGE) is None:
            raise MissingDependencyError("rapidocr-onnxruntime", "text", "The ppocr text detector")
        from rapidocr_onnxruntime import RapidOCR

        # limit type "max": never enlarged. rapidocr 1.4 ignores det_limit_side_len with it (a
        # picture under 1500 px goes in at its own size), so :meth:`read` scales down itself
        self.engine: Any = RapidOCR(det_limit_type="max", intra_op_num_threads=threads, inter_op_num_threads=1)
        self.long_side = long_side
        self.min_score, self.min_chars, self.min_aspect = min_score, min_chars, min_aspect
        self.read_aspect = read_aspect

    def line_shaped(self, box: np.ndarray) -> bool:
        """A box at least ``min_aspect`` times as long as it is high (a rodent's face was read
        as 'yy' at 0.69 in a box 1.29x as long as high, a tail as 'C' at 0.77 in one taller
        than wide; the trailer's stylised two-line logo reads as 'BORR' in a 1.98 box and
        'BigF' 1.38)."""
        length = float(np.linalg.norm(box[1] - box[0]))
        height = float(np.linalg.norm(box[3] - box[0]))
        return length >= self.min_aspect * max(height, 1.0)

    def is_line(self, box: np.ndarray, text: str, score: float) -> bool:
        """A read line of text: ``min_chars`` letters or digits at ``min_score`` in a
        line-shaped box (:meth:`line_shaped`)."""
        return score >= self.min_score and sum(ch.isalnum() for ch in text) >= self.min_chars and self.line_shaped(box)

    def _line_crop(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The start of a detected line, straightened: at most ``read_aspect`` heights of it.
        Whether a line is text is settled by its first few letters, and recognition costs
        grow with the line's length: a credits frame of 42 lines up to 1,070 px long took
        63 s to read whole on one core, ~25x what its first 12 heights take."""
        import cv2

        height = max(float(np.linalg.norm(box[3] - box[0])), 1.0)
        length = float(np.linalg.norm(box[1] - box[0]))
        keep = min(length, self.read_aspect * height)
        start, end = box[0], box[0] + (box[1] - box[0]) * (keep / max(length, 1.0))
        down = box[3] - box[0]
        src = np.float32([start, end, end + down, start + down])
        w, h = max(int(round(keep)), 1), max(int(round(height)), 1)
        dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        return cv2.warpPerspective(bgr, cv2.getPerspectiveTransform(src, dst), (w, h),
                                   flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)

    def read(self, bgr: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        """Every line-shaped box the detector finds, with what its start reads as:
        (4x2 corner points, text, confidence). Boxes not shaped like a line are not read
        (they can never count as text). Lines are found on the picture scaled to
        ``long_side`` (a 720p frame to 960x540: 0.56x the detector's work) and read at full size."""
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, self.long_side / max(h, w))
        small = bgr if scale == 1.0 else cv2.resize(bgr, (round(w * scale), round(h * scale)),
                                                    interpolation=cv2.INTER_AREA)
        boxes, _ = self.engine(small, use_cls=False, use_rec=False)
        found = (np.asarray(box, np.float32) / np.float32(scale) for box in (boxes or []))
        lines = [b for b in found if self.line_shaped(b)]
        if not lines:
            return []
        read, _ = self.engine.text_rec([self._line_crop(bgr, b) for b in lines])
        return [(b, str(r[0]), float(r[1])) for b, r in zip(lines, read, strict=True)]

    def lines(self, bgr: np.ndarray) -> list[np.ndarray]:
        """The corners (4x2) of every line that is text (:meth:`is_line`)."""
        return [box for box, text, score in self.read(bgr) if self.is_line(box, text, score)]

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        return lines_mask(self.lines(bgr), bgr.shape[:2])


class OpenCVTextDetector:
    """Burned-in text without weights: rows of thin strokes of one width (see module doc)."""

    name = "opencv"

    def __init__(self, long_side: int = 960, min_contrast: float = 48.0) -> None:
        self.long_side, self.min_contrast = long_side, min_contrast

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, self.long_side / max(h, w))
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        gh, gw = gray.shape
        # 1. strokes: bright-on-dark or dark-on-bright thin structures (top-hat of both polarities)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        hat = np.maximum(cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, k), cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k))
        strokes = (hat >= self.min_contrast).astype(np.uint8)
        # 2. lines: strokes closed along the row
        gap = max(3, gw // 80)
        lines = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (gap, 3)))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
        out = np.zeros((gh, gw), bool)
        dist = cv2.distanceTransform(strokes, cv2.DIST_L2, 3)
        for i in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            if bh < 8 or bh > gh * 0.15 or bw < 2.5 * bh or area < 0.35 * bw * bh:
                continue
            box = strokes[y:y + bh, x:x + bw]
            fill = float(box.mean())
            if not 0.15 <= fill <= 0.7:  # text is strokes with gaps, not a solid bar or a speck
                continue
            # thin strokes of one width (glyphs), not a textured patch (fur, grass, leaves)
            widths = dist[y:y + bh, x:x + bw][box > 0]
            if widths.size == 0 or float(widths.mean()) > 0.16 * bh or \
                    float(np.std(widths) / (np.mean(widths) + 1e-6)) > 0.7:
                continue
            pad = max(2, bh // 4)
            out[max(0, y - pad):y + bh + pad, max(0, x - pad):x + bw + pad] = True
        if scale < 1.0:
            out = cv2.resize(out.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return out


def resolve_text_detector(name: str) -> str | None:
    """The detector ``name`` stands for here (``auto``: ``ppocr`` when its package is
    installed, else ``opencv``; ``off``: None)."""
    import importlib.util

    if name not in DETECTORS:
        from animlora.errors import ConfigError

        raise ConfigError(f"prefilter.text_detector: unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if name == "off":
        return None
    if name == "auto":
        return "ppocr" if importlib.util.find_spec(PPOCR_PACKAGE) is not None else "opencv"
    return name


def make_text_detector(name: str) -> TextDetector | None:
    """The detector ``name`` (one of :data:`DETECTORS`, see :func:`resolve_text_detector`);
    ``ppocr`` without its package raises :class:`MissingDependencyError` with the pip line."""
    resolved = resolve_text_detector(name)
    if resolved is None:
        return None
    return _ppocr() if resolved == "ppocr" else OpenCVTextDetector()


def text_readers(name: str) -> list[TextDetector]:
    """Detectors to read frames side by side, one per thread: for ``ppocr`` one single-threaded
    engine per core (up to 4), since two frames read at once by one-thread engines take 1.6x
    less wall time and 1.5x less CPU than one frame at a time on a 2-thread engine (20 film
    frames, 2 cores: benchmarks/text_parallel.py); the same lines. Otherwise the one detector."""
    import os

    resolved = resolve_text_detector(name)
    if resolved != "ppocr":
        detector = make_text_detector(name)
        return [] if detector is None else [detector]
    return list(_ppocr_readers(max(1, min(4, os.cpu_count() or 1))))


@functools.lru_cache(maxsize=1)
def _ppocr_readers(count: int) -> tuple[PPOCRTextDetector, ...]:
    """``count`` single-threaded engines, loaded once per process."""
    return tuple(PPOCRTextDetector(threads=1) for _ in range(count))


@functools.lru_cache(maxsize=1)
def _ppocr() -> PPOCRTextDetector:
    """One engine per process (loading its three ONNX sessions takes seconds). It reads the
    frames while the prefilter plans, with nothing else running: onnxruntime may use up to 4
    cores for it (the film's ~400 frames read took 253 s on one core of two; 2 threads: 1.33x
    less wall at load 2, same text masks)."""
    import os

    return PPOCRTextDetector(threads=max(1, min(4, os.cpu_count() or 1)))


def lines_mask(lines: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask of ``shape`` (H, W) with every line's box filled."""
    import cv2

    out = np.zeros(shape[:2], np.uint8)
    for box in lines:
        cv2.fillPoly(out, [np.round(box).astype(np.int32)], 1)
    return out > 0


# the middle of a line's box: its glyphs, without the margin the detector grows around them
LINE_CORE = (0.25, 0.75)


def text_over_length(lines: list[np.ndarray], mask: np.ndarray) -> float:
    """How far text runs over ``mask`` (bool, H x W), in line heights (a letter is ~0.5-0.6):
    per line, the area of the middle half of its box (:data:`LINE_CORE`: the glyphs, not the
    margin the detector adds around them) inside the mask, divided by that band's height and
    by the line's height; summed over the lines. Independent of the mask's size, where the
    share of the mask (:func:`text_cover`) is not: two letters of a subtitle over a close-up
    filling the frame's height are 1-2% of its mask (trailer, Frank under "And three rodent
    pests": 1.1-1.9 line heights), as much as a whole word over a small figure. A line
    passing just above or below the mask, its box grazing it, counts 0."""
    import cv2

    total = 0.0
    top, bottom = LINE_CORE
    for box in lines:
        height = float(np.linalg.norm(box[3] - box[0]))
        if height < 1.0:
            continue
        core = np.round(np.float32([
            box[0] + top * (box[3] - box[0]), box[1] + top * (box[2] - box[1]),
            box[1] + bottom * (box[2] - box[1]), box[0] + bottom * (box[3] - box[0])])).astype(np.int32)
        # drawn in the band's own bounding box (a credits frame has ~40 lines)
        x0, y0 = np.maximum(core.min(axis=0), 0)
        x1, y1 = np.minimum(core.max(axis=0) + 1, (mask.shape[1], mask.shape[0]))
        if x1 <= x0 or y1 <= y0:
            continue
        band = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(band, [core - np.int32([x0, y0])], 1)
        inside = int(np.count_nonzero(band.astype(bool) & mask[y0:y1, x0:x1]))
        total += inside / ((bottom - top) * height) / height
    return total


def text_cover(text: np.ndarray, mask: np.ndarray) -> float:
    """Share of ``mask``'s pixels (bool, same shape as ``text``) that lie in text."""
    total = int(mask.sum())
    return float((text & mask).sum() / total) if total else 0.0
