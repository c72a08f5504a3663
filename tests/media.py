"""Small videos made in the tests with PyAV, with known shot boundaries."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

W, H, FPS = 160, 120, 25

# The synthetic clip: hard cuts at these frames, one cross-dissolve, one 2-frame flash.
SYN_FRAMES = 200
SYN_CUTS = [50, 95, 160]
SYN_DISSOLVE = (120, 139)  # frames 120..139 blend scene 3 into scene 4 (midpoint ~129-130)
SYN_FLASH = (70, 71)  # inside shot 2: frames 70-71 are nearly white


def _scene(seed: int) -> np.ndarray:
    """A picture larger than the frame (so it can pan): a colour gradient, soft texture, discs.
    Every seed gives a different layout and brightness, as different shots do."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = H + 80, W + 220
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1) / 2
    low, high = rng.uniform(20, 120, 3), rng.uniform(140, 240, 3)
    big = low + ramp[..., None] * (high - low)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 5)
    big = np.clip(big + noise, 0, 255).astype(np.uint8)
    for _ in range(10):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(big, (x, y), int(rng.integers(8, 28)), colour, -1)
    return big


def _view(big: np.ndarray, t: int) -> np.ndarray:
    x = t  # slow pan (one pixel a frame): a shot is not a still
    return big[20 : 20 + H, x : x + W]


def synthetic_frames() -> list[np.ndarray]:
    scenes = [_scene(s) for s in (11, 22, 33, 44, 55)]
    frames = []
    for i in range(SYN_FRAMES):
        if i < SYN_CUTS[0]:
            img = _view(scenes[0], i)
        elif i < SYN_CUTS[1]:
            img = _view(scenes[1], i)
            if SYN_FLASH[0] <= i <= SYN_FLASH[1]:
                img = np.clip(img.astype(np.int16) + 200, 0, 255).astype(np.uint8)
        elif i < SYN_DISSOLVE[0]:
            img = _view(scenes[2], i)
        elif i <= SYN_DISSOLVE[1]:
            a = (i - SYN_DISSOLVE[0] + 1) / (SYN_DISSOLVE[1] - SYN_DISSOLVE[0] + 2)
            img = ((1 - a) * _view(scenes[2], i) + a * _view(scenes[3], i)).astype(np.uint8)
        elif i < SYN_CUTS[2]:
            img = _view(scenes[3], i)
        else:
            img = _view(scenes[4], i)
        frames.append(np.ascontiguousarray(img))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS, pts: list[int] | None = None,
                time_base: Fraction | None = None, faststart: bool = False, bframes: bool = False,
                sar: Fraction | None = None, color_trc: int | None = None, live: bool = False,
                interlaced: bool = False) -> Path:
    """Encode RGB frames with libx264 (yuv420p); ``pts`` in ``time_base`` units for VFR files;
    ``sar``: the pixel shape written in the stream (an anamorphic DVD's 32/27); ``color_trc``:
    the transfer tagged (16: PQ, as HDR10); ``live``: an MKV whose header states no duration
    (as a live recording or a browser's MediaRecorder writes it); ``interlaced``: coded as two
    fields a frame (top field first), as a DVD's video often is."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    if live:
        options = {"live": "1"}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        if bframes:
            # B-frames in a fixed pattern and no scene-cut keyframes: cuts land between
            # skipped (non-reference) frames, as some encoders leave them
            stream.options = {"crf": "18", "preset": "veryfast",
                              "x264-params": "scenecut=0:bframes=3:b-adapt=0:b-pyramid=none:keyint=60"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if color_trc is not None:
            stream.codec_context.color_trc = color_trc
        if interlaced:
            stream.options = {**stream.options, "x264-params": "tff=1"}
            stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_synthetic(path: Path, bframes: bool = False) -> Path:
    return write_video(path, synthetic_frames(), bframes=bframes)


def make_clip(path: Path, seed: int, shots: int = 2, frames_per_shot: int = 20, live: bool = False) -> Path:
    """A short clip of ``shots`` panning scenes (hard cuts), unique per seed."""
    scenes = [_scene(seed * 100 + k) for k in range(shots)]
    frames = [np.ascontiguousarray(_view(scenes[k], i)) for k in range(shots) for i in range(frames_per_shot)]
    return write_video(path, frames, live=live)


def make_vfr(path: Path) -> tuple[Path, list[float]]:
    """Two shots; the first at 10 fps for 2 s, the second at 30 fps for 1 s (times in seconds)."""
    tb = Fraction(1, 1000)
    a, b = _scene(7), _scene(8)
    frames, times = [], []
    for i in range(20):
        frames.append(np.ascontiguousarray(_view(a, i)))
        times.append(i * 0.1)
    for i in range(30):
        frames.append(np.ascontiguousarray(_view(b, i)))
        times.append(2.0 + i / 30)
    pts = [round(t * 1000) for t in times]
    write_video(path, frames, fps=30, pts=pts, time_base=tb)
    return path, [p / 1000 for p in pts]


def make_anamorphic(path: Path, sar: Fraction, size: tuple[int, int] = (144, 96), frames: int = 12,
                    color_trc: int | None = None, interlaced: bool = False) -> Path:
    """A DVD-like clip stored ``size`` (w, h) with pixels ``sar`` wide: a white disc of radius 30
    drawn round *in stored pixels* (as displayed it is ``sar`` times as wide as tall)."""
    import cv2

    w, h = size
    images = []
    for i in range(frames):
        img = np.full((h, w, 3), 40 + 4 * i, np.uint8)
        cv2.circle(img, (w // 2, h // 2), 30, (255, 255, 255), -1)
        images.append(img)
    return write_video(path, images, sar=sar, color_trc=color_trc, interlaced=interlaced)


def make_with_cover(path: Path) -> Path:
    """An MKV whose first video stream is a cover image (one MJPEG frame, 60x90) and whose
    second is the film: ``make_clip``'s two shots of 20 frames, 160x120."""
    import av

    film = [np.ascontiguousarray(_view(_scene(700 + k), i)) for k in range(2) for i in range(20)]
    with av.open(str(path), "w") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 60, 90, "yuvj420p"
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height = film[0].shape[1], film[0].shape[0]
        video.pix_fmt, video.options = "yuv420p", {"crf": "18", "preset": "ultrafast"}
        picture = av.VideoFrame.from_ndarray(np.full((90, 60, 3), 200, np.uint8), format="rgb24")
        for packet in [*cover.encode(picture.reformat(format="yuvj420p")), *cover.encode()]:
            container.mux(packet)
        for img in film:
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def make_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), dtype=np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_zero_frame(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
    return path


def make_truncated(path: Path, faststart: bool = True) -> Path:
    """The first half of a clip: its index (moov) first, so it opens, but the frames stop."""
    source = path.with_name(path.stem + "-whole.mp4")
    write_video(source, synthetic_frames()[:100], faststart=faststart)
    data = source.read_bytes()
    source.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_not_video(path: Path) -> Path:
    path.write_text("this is a text file, not a video\n" * 50)
    return path


def make_damaged(path: Path, span: int = 4000) -> Path:
    """100 frames with ``span`` bytes in the middle of the file overwritten (header and index
    intact): a stretch of packets that fail to decode, good frames before and after it."""
    source = path.with_name(path.stem + "-whole.mp4")
    write_video(source, synthetic_frames()[:100], faststart=True)
    data = bytearray(source.read_bytes())
    source.unlink()
    middle = len(data) // 2
    data[middle : middle + span] = b"\xff" * span
    path.write_bytes(bytes(data))
    return path


def make_rotated(path: Path, matrix: tuple[int, int, int, int] = (0, 1, -1, 0)) -> Path:
    """A 80x60 (stored) clip, white block top-left, whose track header (tkhd) carries the
    display matrix ``(a, b, c, d)``; the default is what a phone's ``rotate=90`` (turn
    clockwise to display) writes. PyAV cannot set the matrix, so its bytes are patched."""
    import struct

    import av

    img = np.zeros((60, 80, 3), np.uint8)
    img[:10, :20] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 80, 60, "yuv420p"
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    i = data.index(b"tkhd")
    offset = i + 8 + (32 if data[i + 4] == 1 else 20) + 16  # version/flags, times+ids, reserved..volume
    a, b, c, d = (v * 0x10000 for v in matrix)
    path.write_bytes(data[:offset] + struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000) + data[offset + 36:])
    return path
