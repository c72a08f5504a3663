"""Video reading on PyAV: probe, streaming decode, cheap views of decoded frames.

Everything ffmpeg reads is accepted. Timestamps come from each frame's PTS, so
variable-frame-rate files get true times; the frame index is the frame's position in
display order. Decoding streams one frame at a time (bounded memory) and uses ffmpeg's
own frame/slice threads. A file that cannot be used raises one :class:`BadInputError`
naming it and the problem.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from animlora.errors import BadInputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".wmv", ".flv")
# Pixel formats whose planes we read directly (8-bit 4:2:0); anything else goes through swscale.
_FAST_FORMATS = ("yuv420p", "yuvj420p")
_LUMA_FIRST = (*_FAST_FORMATS, "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray")


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a video (times in seconds)."""

    path: Path
    duration: float
    fps: float  # average frame rate; a VFR file's true times come from the frames
    frame_count: int  # from the container; 0 when it does not say
    width: int  # as displayed: square pixels (see `sar`), rotation honoured
    height: int
    codec: str
    pix_fmt: str
    # the shape of a stored pixel (width / height; 1 for square pixels): an anamorphic DVD
    # stores a 16:9 picture in 720x480 (32/27), a 4:3 one too (8/9); frames are written square
    sar: float = 1.0
    hdr: str | None = None  # "PQ" or "HLG" for a high-dynamic-range transfer (see :func:`hdr_transfer`)


@dataclass
class DecodedFrame:
    """One decoded frame: its display-order index, time from its PTS, and the PyAV frame."""

    index: int
    time: float
    frame: Any  # av.VideoFrame; kept as is so no copy is made unless a stage needs pixels


def list_videos(folder: str | Path) -> list[Path]:
    """Video files under ``folder`` (recursive), sorted, hidden files excluded; of a Blu-ray's
    clips (``BDMV/STREAM/*.m2ts``), only the largest (see :func:`_disc_film`)."""
    root = Path(folder)
    found = [p for p in root.rglob("*")
             if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")]
    discs: dict[Path, list[Path]] = {}
    for p in found:
        if p.parent.name.upper() == "STREAM" and p.parent.parent.name.upper() == "BDMV":
            discs.setdefault(p.parent, []).append(p)
    films = {_disc_film(clips) for clips in discs.values()}
    return sorted(p for p in found if p in films or p.parent not in discs)


def _disc_film(clips: list[Path]) -> Path:
    """A Blu-ray's folder holds its menus, trailers, extras and the film as clips numbered
    00000.m2ts, 00001.m2ts, ...: listed as videos they would each be extracted (the extras'
    characters, the menus' loops). The film is its largest clip, which is taken, said in a
    warning; a film stored in parts (seamless branching) is made one file first (MakeMKV)."""
    import logging

    sizes = {clip: clip.stat().st_size for clip in clips}
    film = max(clips, key=lambda clip: (sizes[clip], clip.name))
    disc = film.parent.parent.parent
    if len(clips) > 1 and disc not in _DISCS_SAID:  # said once a process (inputs are listed twice)
        _DISCS_SAID.add(disc)
        size = sizes[film]
        logging.getLogger(__name__).warning(
            "%s: a Blu-ray's clips (menus, extras and the film): only the largest, %s (%s), is taken as the film, "
            "the other %d left out; if the film is in parts, make it one file (MakeMKV) and give that",
            disc, film.name, f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB", len(clips) - 1)
    return film


_DISCS_SAID: set[Path] = set()


def no_videos_error(folder: Path) -> BadInputError:
    """The one error for a folder without a video file, with what to do when it is a DVD's
    (VOB files: one film split in 1 GB parts beside its menus, not a list of videos)."""
    problem = f"no video files in this folder (looked for {', '.join(VIDEO_SUFFIXES)})"
    if any(p.suffix.lower() == ".vob" for p in folder.rglob("*") if p.is_file()):
        problem += ('; it holds a DVD\'s VOB files: make the film one file first (MakeMKV, or '
                    'ffmpeg -i "concat:VTS_01_1.VOB|VTS_01_2.VOB|..." -map 0:v -c copy film.mkv) and give that')
    return BadInputError(folder, problem)


def content_id(path: str | Path) -> str:
    """A stable id of a file's content: its size and three 64 KiB samples (fast on big films)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as handle:
        for offset in (0, max(0, size // 2 - 32768), max(0, size - 65536)):
            handle.seek(offset)
            h.update(handle.read(65536))
    return h.hexdigest()[:16]


def _open(path: Path) -> Any:
    import av

    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise BadInputError(path, f"not a readable video ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip().rstrip(".") or type(exc).__name__


def video_stream(container: Any, path: Path) -> Any:
    """The film's picture: FFmpeg's best video stream (``av_find_best_stream``), so a cover
    image or thumbnail stored as a video stream ahead of the film (an MKV's MJPEG track, an
    M4V's attached picture) is passed over; the first video stream when it names none."""
    if not container.streams.video:
        if container.streams.audio:
            raise BadInputError(path, "no video stream (audio only)")
        raise BadInputError(path, "no video stream (no frames at all)")
    return container.streams.best("video") or container.streams.video[0]


def probe(path: str | Path, *, check_end: bool = True) -> VideoInfo:
    """Open ``path``, decode its first frame and (``check_end``) one near its end.

    Raises BadInputError for a missing path, a non-video file, an audio-only file, a
    video with no frames, and a truncated or corrupt file."""
    import av

    p = Path(path)
    container = _open(p)
    try:
        stream = video_stream(container, p)
        try:
            first = _first_frame(container, stream)
        except av.FFmpegError as exc:
            raise BadInputError(p, f"corrupt video stream ({_reason(exc)})") from exc
        if first is None:
            raise BadInputError(p, "no video frames (zero-frame video)")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        turns = quarter_turns(first)
        sar = stream_sar(stream)
        width, height = display_width(first.width, sar), first.height
        duration = _duration(container, stream)
        if check_end:
            _check_end(container, stream, p, duration)
        return VideoInfo(
            path=p,
            duration=duration,
            fps=fps,
            frame_count=int(stream.frames or 0) or int(round(duration * fps)),
            width=height if turns % 2 else width,  # as displayed (square pixels, rotation honoured)
            height=width if turns % 2 else height,
            codec=stream.codec_context.name,
            pix_fmt=first.format.name,
            sar=sar,
            hdr=hdr_transfer(first),
        )
    finally:
        container.close()


def decode_threads() -> int:
    """Frame threads for a streaming decode: more than ffmpeg's default (one per core).

    A frame thread holds one packet at a time, and packets the decoder then skips (the
    non-reference frames of :class:`ReferenceFrames`) or frames waiting on the one before
    them still hold theirs; with a few more threads in flight than cores, the cores stay
    busy while the caller works on the frames. Measured on 2 cores, 720p h264: reference
    frames 16% faster at 8 threads than at the default, every frame 9% faster."""
    import os

    return min(16, max(8, 2 * (os.cpu_count() or 1)))


def _threaded(stream: Any) -> None:
    stream.thread_type = "AUTO"
    stream.thread_count = decode_threads()


def _first_frame(container: Any, stream: Any) -> Any:
    for frame in container.decode(stream):
        return frame
    return None


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return _measured_duration(container, stream)


def _measured_duration(container: Any, stream: Any) -> float:
    """The duration of a file whose header states none (a live or unfinished MKV or WebM: a
    recording, a browser's MediaRecorder): from the first to the end of the last packet, read
    without decoding (a 10-minute film in well under a second). Without it the video counted
    as 0 s long and got the smallest candidate budget: one frame a shot. The container is left
    at its end: callers seek."""
    import av

    if stream.time_base is None:
        return 0.0
    first = last = None
    try:
        container.seek(0, stream=stream, backward=True, any_frame=True)
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            last = max(packet.pts + (packet.duration or 0), last if last is not None else packet.pts)
    except av.FFmpegError:  # damage: what was read so far
        pass
    return 0.0 if first is None or last is None else float((last - first) * stream.time_base)


def _check_end(container: Any, stream: Any, path: Path, duration: float) -> None:
    """A file cut short can keep its index (moov first) but lose its last frames: read every
    packet (no decoding, fast) and compare with the frame count the index promises."""
    import av

    expected = int(stream.frames or 0)
    if expected <= 0:
        return
    container.seek(0, stream=stream, backward=True)
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
    except av.FFmpegError as exc:
        raise BadInputError(path, f"truncated or corrupt (stops after {count} of {expected} frames: "
                                  f"{_reason(exc)})") from exc
    if count < expected - max(2, expected // 100):
        raise BadInputError(path, f"truncated or corrupt (only {count} of {expected} frames are in the file)")


@dataclass
class Damage:
    """Frames lost to a damaged stretch of a video: the frames ``first``..``last`` (display
    indices, inclusive) between the last good frame before it and the first good one after
    it, and the times of those two good frames (``end`` is None when no good frame follows)."""

    first: int
    last: int | None
    start: float
    end: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"frames": [self.first, self.last], "time": [round(self.start, 6),
                                                            None if self.end is None else round(self.end, 6)]}


class _DamageLog:
    """Collects :class:`Damage` while decoding: ``hit`` on a packet that fails to decode,
    ``good`` on each frame that decodes."""

    def __init__(self, out: list[Damage] | None) -> None:
        self.out = out
        self.open: Damage | None = None
        self.last_index = -1
        self.last_time = 0.0

    def hit(self) -> None:
        if self.open is None:
            self.open = Damage(self.last_index + 1, None, self.last_time, None)

    def good(self, index: int, time: float) -> None:
        if self.open is not None:
            self.open.last, self.open.end = index - 1, time
            if self.out is not None and self.open.last >= self.open.first:
                self.out.append(self.open)
            self.open = None
        self.last_index, self.last_time = index, time

    def finish(self, count: int) -> None:
        if self.open is not None and self.out is not None:
            self.open.last = max(self.open.first, count - 1)
            self.out.append(self.open)
        self.open = None


def iter_frames(path: str | Path, *, threads: bool = True, fast_analysis: bool = False,
                damage: list[Damage] | None = None) -> Iterator[DecodedFrame]:
    """Decode every frame of the first video stream, in display order, streaming.

    ``fast_analysis`` skips h264/hevc's in-loop deblocking filter: about 25% faster and
    fine for measuring change between frames, but the pixels are not the real output,
    so never use it for frames that are saved.

    With a ``damage`` list, a packet that fails to decode (a corrupt stretch of the file)
    is skipped and the frames lost are appended to it as :class:`Damage`; the frames after
    it keep their display index (their rank among the packets' PTS). Without one, the
    first such packet raises :class:`BadInputError`."""
    from bisect import bisect_left, insort

    import av

    p = Path(path)
    container = _open(p)
    log = _DamageLog(damage)
    try:
        stream = video_stream(container, p)
        if threads:
            _threaded(stream)
        if fast_analysis:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        base = float(stream.time_base)
        start = stream.start_time if stream.start_time is not None else None
        index = 0
        last_time = -1.0
        seen: list[int] = []  # sorted PTS of every packet (display index after damage)
        damaged = False
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    insort(seen, packet.pts)
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    if damage is None:
                        raise BadInputError(p, f"corrupt or truncated at frame {index} ({_reason(exc)})") from exc
                    damaged = True
                    log.hit()
                    continue
                for frame in frames:
                    pts = frame.pts
                    if pts is None:  # no timestamp: continue at the average rate
                        t = last_time + 1.0 / float(stream.average_rate or 25)
                    else:
                        if start is None:
                            start = pts
                        t = (pts - start) * base
                        if damaged:
                            index = max(index, bisect_left(seen, pts))
                    log.good(index, t)
                    yield DecodedFrame(index, t, frame)
                    last_time = t
                    index += 1
        except av.FFmpegError as exc:
            raise BadInputError(p, f"corrupt or truncated at frame {index} ({_reason(exc)})") from exc
        if index == 0:
            raise BadInputError(p, "no video frames (zero-frame video)")
        log.finish(max(index, len(seen)))
        expected = int(stream.frames or 0)
        if expected and max(index, len(seen) if damaged else 0) < expected - max(2, expected // 100):
            raise BadInputError(p, f"truncated or corrupt (only {index} of {expected} frames decode)")
    finally:
        container.close()


class FrameOrderError(Exception):
    """Frames came out of the decoder in an order the reference-only reader cannot index."""


class ReferenceFrames:
    """Iterate only the reference frames (I, P, referenced B) of the first video stream.

    Nothing depends on the other frames, so the decoder skips them (``skip_frame=NONREF``):
    often a third to a half of all frames. Every packet is still read, so each decoded
    frame gets its true display index (its rank among all packets' PTS: gaps where frames
    were skipped), and after iteration :attr:`count` and :meth:`time_of` cover every frame.
    Raises :class:`FrameOrderError` when the stream does not allow this (no PTS, or frames
    out of order); the caller then decodes every frame instead."""

    def __init__(self, path: str | Path, *, threads: bool = True, fast_analysis: bool = False) -> None:
        self.path = Path(path)
        self.threads = threads
        self.fast_analysis = fast_analysis
        self.pts: list[int] = []  # sorted PTS of every packet
        self.time_base = 0.0
        self.decoded: dict[int, int] = {}  # display index -> pts of each decoded frame
        self.damage: list[Damage] = []  # stretches lost to packets that fail to decode

    @property
    def count(self) -> int:
        return len(self.pts)

    def time_of(self, index: int) -> float:
        return (self.pts[index] - self.pts[0]) * self.time_base

    def __iter__(self) -> Iterator[DecodedFrame]:
        from bisect import bisect_left, insort

        import av

        container = _open(self.path)
        try:
            stream = video_stream(container, self.path)
            if self.threads:
                _threaded(stream)
            ctx = stream.codec_context
            if self.fast_analysis:
                ctx.options = {"skip_loop_filter": "all"}
            ctx.skip_frame = "NONREF"
            self.time_base = float(stream.time_base)
            seen = self.pts
            last = -1
            log = _DamageLog(self.damage)
            try:
                for packet in container.demux(stream):
                    if packet.size and packet.pts is None:
                        raise FrameOrderError(f"{self.path}: packets without timestamps")
                    if packet.size:
                        insort(seen, packet.pts)
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:  # a damaged packet: skip it, note the stretch lost
                        log.hit()
                        continue
                    for frame in frames:
                        # the decoder hands a frame out only once the frames it reorders past
                        # it are read, so every packet shown before it is in `seen`
                        index = bisect_left(seen, frame.pts)
                        if index <= last or frame.pts not in (seen[index] if index < len(seen) else None,):
                            raise FrameOrderError(f"{self.path}: frames out of order")
                        last = index
                        self.decoded[index] = frame.pts
                        t = (frame.pts - seen[0]) * self.time_base
                        log.good(index, t)
                        yield DecodedFrame(index, t, frame)
            except av.FFmpegError as exc:
                raise BadInputError(self.path, f"corrupt or truncated ({_reason(exc)})") from exc
            if not self.decoded:
                raise BadInputError(self.path, "no video frames (zero-frame video)")
            log.finish(len(seen))
            expected = int(stream.frames or 0)
            if expected and len(seen) < expected - max(2, expected // 100):
                raise BadInputError(self.path, f"truncated or corrupt (only {len(seen)} of {expected} frames)")
        finally:
            container.close()


T = TypeVar("T")


class ReadAhead(Iterator[T]):
    """Iterate ``items`` (a decoder) on a background thread, up to ``depth`` ahead; the
    thread starts at once. Use as a context manager (``close`` stops and closes the decoder).

    PyAV decodes without holding the GIL, so the next frames decode while the caller works
    on this one (or on anything else before its first ``next``), instead of the decoder
    idling during the caller's work. An error reaches the caller where it happened."""

    def __init__(self, items: Iterable[T], depth: int = 8) -> None:
        self._pipe: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), name="animlora-decode",
                                        daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._pipe.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterator: Iterator[T]) -> None:
        try:
            for item in iterator:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the caller, raised there
            self._put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, value = self._pipe.get()
        if kind == "item":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_frames(path: str | Path, count: int) -> list[Any]:
    """Up to ``count`` keyframes spread over the video (seek + decode one each): cheap."""
    import av

    p = Path(path)
    container = _open(p)
    frames = []
    try:
        stream = video_stream(container, p)
        stream.codec_context.skip_frame = "NONKEY"
        duration = _duration(container, stream)
        start = stream.start_time or 0
        seen = set()
        for i in range(count):
            t = duration * (i + 0.5) / count
            try:
                container.seek(start + int(t / stream.time_base), stream=stream, backward=True)
                frame = _first_frame(container, stream)
            except av.FFmpegError:
                continue
            if frame is not None and frame.pts not in seen:
                seen.add(frame.pts)
                frames.append(frame)
    finally:
        container.close()
    return frames


# -- cheap views of a decoded frame ------------------------------------------------------

def quarter_turns(frame: Any) -> int:
    """How many times :func:`numpy.rot90` turns ``frame``'s pixels upright (0-3), from its
    display matrix (a phone's ``rotate`` tag). PyAV's ``frame.rotation`` is the matrix's
    counter-clockwise angle (-90 for ``rotate=90``), and ffmpeg's autorotate turns the
    picture by that angle, as ``np.rot90`` does with k = angle / 90 (checked against the
    ffmpeg CLI). PyAV without ``frame.rotation``: 0."""
    angle = getattr(frame, "rotation", 0) or 0
    return round(float(angle) / 90) % 4


def stream_sar(stream: Any) -> float:
    """The sample (pixel) aspect ratio of a video stream: 1.0 for square pixels, when it is
    not given, or when it is not believable (outside 1/4 to 4)."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    value = float(sar) if sar else 1.0
    return value if 0.25 <= value <= 4.0 else 1.0


def hdr_transfer(frame: Any) -> str | None:
    """The frame's high-dynamic-range transfer: "PQ" (SMPTE ST 2084: HDR10, Dolby Vision's
    base) or "HLG" (ARIB STD-B67); None for SDR. Such frames converted as SDR (what swscale
    does) come out flat and pale."""
    return {16: "PQ", 18: "HLG"}.get(int(getattr(frame, "color_trc", 2) or 2))


def square_sar(sar: float) -> bool:
    """Whether pixels of this shape are square (within 1%: tags like 1001/1000 are noise)."""
    return abs(sar - 1.0) < 0.01


def display_width(width: int, sar: float) -> int:
    """A picture ``width`` stored pixels wide, in square pixels (its height kept), as players
    show it and ffmpeg's ``scale=iw*sar:ih`` makes it."""
    return width if square_sar(sar) else max(2, round(width * sar))


def square_pixels(image: np.ndarray, sar: float) -> np.ndarray:
    """``image`` (stored pixels, before any turn) stretched to square pixels: an anamorphic
    frame kept as stored shows every character squeezed (a 16:9 DVD: to 84% of its width)."""
    import cv2

    width = display_width(image.shape[1], sar)
    if width == image.shape[1]:
        return image
    interpolation = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(image, (width, image.shape[0]), interpolation=interpolation)


def upright(image: np.ndarray, frame: Any) -> np.ndarray:
    """``image`` (made from ``frame``'s stored pixels) turned as the video is displayed."""
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image



def _plane(frame: Any, i: int, width: int) -> np.ndarray:
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :width]


def luma(frame: Any) -> np.ndarray:
    """The luma plane as a uint8 HxW view (no copy for 8-bit YUV)."""
    if frame.format.name in _LUMA_FIRST:
        return _plane(frame, 0, frame.width)
    return frame.to_ndarray(format="gray")


def luma_scale(frame: Any) -> float:
    """Factor that turns a Laplacian variance on limited-range luma (16-235) into the
    full-range (0-255) grayscale value that blur thresholds are written for."""
    limited = frame.color_range != 2 and frame.format.name not in ("yuvj420p", "yuvj422p", "yuvj444p")
    return (255.0 / 219.0) ** 2 if limited else 1.0


def small_bgr(frame: Any, width: int) -> np.ndarray:
    """A small BGR image (about ``width`` wide) for shot detection (see :func:`analysis_images`)."""
    return analysis_images(frame, width)[0]


def analysis_stride(frame: Any, width: int) -> int | None:
    """The stride :func:`analysis_images` reads the luma plane with (its gray image is every
    ``stride``-th pixel of it); None where it converts instead (formats other than 8-bit 4:2:0)."""
    return max(1, frame.width // width) if frame.format.name in _FAST_FORMATS else None


def analysis_images(frame: Any, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(BGR, gray) images about ``width`` wide, read straight from the YUV planes by
    striding: about 20x cheaper than a full-size RGB conversion and a resize."""
    import cv2

    step = analysis_stride(frame, width)
    if step is not None:
        y = _plane(frame, 0, frame.width)[::step, ::step]
        cstep = max(1, step // 2)
        cw = frame.width // 2
        u = _plane(frame, 1, cw)[::cstep, ::cstep]
        v = _plane(frame, 2, cw)[::cstep, ::cstep]
        h, w = y.shape
        if u.shape[0] < h or u.shape[1] < w:
            u = cv2.resize(u, (w, h), interpolation=cv2.INTER_NEAREST)
            v = cv2.resize(v, (w, h), interpolation=cv2.INTER_NEAREST)
        y = np.ascontiguousarray(y)
        return cv2.cvtColor(cv2.merge((y, u[:h, :w], v[:h, :w])), cv2.COLOR_YUV2BGR), y
    height = max(2, round(frame.height * width / frame.width))
    bgr = frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def to_rgb(frame: Any, crop: tuple[int, int, int, int] | None = None, fmt: str = "rgb24",
           sar: float = 1.0) -> np.ndarray:
    """Full-size RGB (HxWx3 uint8) with the right YUV matrix (BT.709 for HD when untagged);
    ``fmt="bgr24"`` gives BGR straight from the conversion (for OpenCV's encoders). ``crop``
    is in stored-pixel coordinates; the result is made of square pixels (``sar``: the
    stream's, :func:`stream_sar`) and turned upright (see :func:`upright`)."""
    colorspace = None
    if frame.colorspace in (0, 2):  # RGB / unspecified: ffmpeg's convention, 709 from 720 lines up
        colorspace = "itu709" if frame.height >= 720 else "itu601"
    elif frame.colorspace == 1:
        colorspace = "itu709"
    try:
        rgb = frame.reformat(format=fmt, src_colorspace=colorspace).to_ndarray() if colorspace else \
            frame.to_ndarray(format=fmt)
    except (ValueError, TypeError):
        rgb = frame.to_ndarray(format=fmt)
    if crop is not None:
        x, y, w, h = crop
        rgb = rgb[y : y + h, x : x + w]
    return upright(np.ascontiguousarray(square_pixels(rgb, sar)), frame)
