"""Shot boundaries: a real live-action clip, a generated clip with cuts, a dissolve and a
flash, every detector, and variable-frame-rate timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest

import media
from animlora.io.video import iter_frames, probe
from animlora.video.shots import detect_shots

DATA = Path(__file__).parent / "data"
# First frames of each new shot in bikes.mp4, looked up once by eye (frames dumped around
# every candidate: 30 office->man, 76 taxi->cyclist, 137 cyclist->railing, 187 railing->legs,
# 242 bollard->close-up). Frame 97 is a car passing close to the camera: not a cut.
BIKES_CUTS = [30, 76, 137, 187, 242]
THRESHOLDS = {"adaptive": 3.0, "content": 27.0, "hash": 0.35}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return media.make_synthetic(tmp_path_factory.mktemp("syn") / "syn.mp4")


@pytest.fixture(scope="module")
def synthetic_bframes(tmp_path_factory) -> Path:
    """The same clip with only every 4th frame a reference frame and no keyframes at cuts,
    so the coarse pass skips the frames around every cut and must refine them."""
    return media.make_synthetic(tmp_path_factory.mktemp("synb") / "synb.mp4", bframes=True)


@pytest.mark.parametrize("coarse", [True, False])
def test_bikes_cuts_within_one_frame(coarse):
    found, count, fps = detect_shots(DATA / "bikes.mp4", coarse=coarse)
    assert count == 250 and fps == 25.0
    cuts = [b.index for b in found]
    assert len(cuts) == len(BIKES_CUTS)
    for got, want in zip(cuts, BIKES_CUTS, strict=True):
        assert abs(got - want) <= 1
    assert all(b.transition is None for b in found)


@pytest.mark.parametrize(
    ("detector", "encoding", "coarse"),
    [("adaptive", "plain", True), ("content", "plain", True), ("hash", "plain", True),
     ("adaptive", "plain", False), ("adaptive", "bframes", True), ("adaptive", "bframes", False),
     ("content", "bframes", True)],
)
def test_synthetic_cuts_dissolve_and_flash(synthetic, synthetic_bframes, detector, encoding, coarse):
    clip = synthetic if encoding == "plain" else synthetic_bframes
    found, count, _ = detect_shots(clip, detector=detector, threshold=THRESHOLDS[detector], coarse=coarse)
    assert count == media.SYN_FRAMES
    hard = [b.index for b in found if b.transition is None]
    soft = [b for b in found if b.transition == "dissolve"]
    assert hard == media.SYN_CUTS  # frame-exact; nothing at the flash (70-71)
    assert len(soft) == 1  # one boundary for the whole cross-dissolve
    first, last = media.SYN_DISSOLVE
    assert first <= soft[0].index <= last
    assert abs(soft[0].index - (first + last) / 2) <= 3
    assert soft[0].span is not None and first - 3 <= soft[0].span[0] < soft[0].span[1] <= last + 3


def test_vfr_timestamps_come_from_pts(tmp_path):
    path, times = media.make_vfr(tmp_path / "vfr.mp4")
    got = [f.time for f in iter_frames(path)]
    assert len(got) == len(times) == 50
    assert got == pytest.approx(times, abs=1e-3)  # 0.1 s apart, then 1/30 s apart
    found, _, _ = detect_shots(path)
    assert [b.index for b in found] == [20]
    assert probe(path).duration == pytest.approx(3.0, abs=0.05)


def _cut_list(tmp_path: Path, name: str, frames: list, detector: str = "adaptive", coarse: bool = True) -> list[int]:
    clip = media.write_video(tmp_path / f"{name}.mp4", frames)
    found, count, _ = detect_shots(clip, detector=detector, threshold=THRESHOLDS[detector], coarse=coarse)
    assert count == len(frames)
    return [b.index for b in found]


def _pan(seed: int, frames: int, start: int = 0) -> list:
    big = media._scene(seed)
    return [big[20 : 20 + media.H, i : i + media.W].copy() for i in range(start, start + frames)]


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_short_shot_right_after_a_cut_is_found(tmp_path, detector):
    # an 8-frame shot between two others, and an 8-frame cut-away that cuts back to the
    # picture before it (not a flash: it lasts as long as the shortest shot)
    a, b, c = _pan(21, 40), _pan(22, 8), _pan(23, 40)
    assert _cut_list(tmp_path, "short", a + b + c, detector) == [40, 48]
    back = _pan(21, 40, start=48)  # the first shot's picture again, where it would be by now
    assert _cut_list(tmp_path, "cutaway", a + b + back, detector) == [40, 48]
    assert _cut_list(tmp_path, "short2", a + _pan(24, 9) + b + c, detector) == [40, 49, 57]


@pytest.mark.parametrize("length", [1, 3, 5])
def test_a_flash_that_ends_is_not_a_cut(tmp_path, length):
    import numpy as np

    frames = _pan(31, 60) + _pan(32, 60)
    for i in range(20, 20 + length):  # a brightness spike, then the same picture again
        frames[i] = np.clip(frames[i].astype(np.int16) + 160 - 20 * (i - 20), 0, 255).astype(np.uint8)
    assert _cut_list(tmp_path, f"flash{length}", frames) == [60]


def test_stream_finalises_nothing_inside_a_pending_transition():
    # frames of a dissolve are given out (finalized_upto) only once the dissolve is known,
    # so a sampler can leave them out
    import cv2

    from animlora.video.shots import ShotDetector

    frames = media.synthetic_frames()
    shots = ShotDetector(25.0)
    first, last = media.SYN_DISSOLVE
    for i, rgb in enumerate(frames):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        shots.push(i, bgr)
        if shots.finalized_upto > first + 2:
            assert any(a <= first + 3 and b >= first + 3 for a, b in shots.transitions), (i, shots.transitions)
            break
    else:
        raise AssertionError("never finalised past the dissolve")


def _crossing(frames: list, start: int, count: int, speed: int, width: int) -> list:
    """A red-and-white striped object (a shirt close to the camera) sweeping in from the right
    edge at ``speed`` px a frame, from frame ``start`` on for ``count`` frames."""
    import cv2

    out = [f.copy() for f in frames]
    for k in range(count):
        x = media.W - k * speed - width // 3
        for j in range(0, width, 12):
            cv2.rectangle(out[start + k], (x + j, 0), (x + j + 6, media.H), (220, 30, 30), -1)
            cv2.rectangle(out[start + k], (x + j + 6, 0), (x + j + 12, media.H), (240, 240, 240), -1)
    return out


def _pan_at(seed: int, frames: int, speed: int) -> list:
    big = media._scene(seed)
    return [big[20 : 20 + media.H, i * speed : i * speed + media.W].copy() for i in range(frames)]


@pytest.mark.parametrize("coarse", [True, False])
def test_cut_into_fast_motion_is_found(tmp_path, coarse):
    # seed 3 of cgi-bench, frames 51 and 196: the new shot opens with a character crossing
    # close to the camera; the motion after the cut lifts the adaptive detector's average,
    # so it saw no cut (colour-histogram check)
    a = _pan_at(41, 40, 3)
    b = _crossing(_pan_at(42, 40, 3), 0, 10, 30, 120)
    assert _cut_list(tmp_path, "cross", a + b, coarse=coarse) == [40]
    # the same object darting into one shot (a third of it at once) is not a cut
    inside = _crossing(_pan_at(43, 60, 3), 25, 10, 20, 140)
    assert _cut_list(tmp_path, "inside", inside, coarse=coarse) == []


def test_short_dissolve_between_moving_shots_is_found(tmp_path):
    # an 8-frame cross-dissolve between two panning shots (seed 3's dissolve, frames 105-112):
    # motion in both ends leaves the blend a residual over the single-shot limit
    import numpy as np

    a, b = _pan(51, 60), _pan(52, 60)
    blend = [((1 - (k + 1) / 9) * a[40 + k] + (k + 1) / 9 * b[k]).astype(np.uint8) for k in range(8)]
    clip = media.write_video(tmp_path / "dissolve8.mp4", a[:40] + blend + b[8:48])
    found, _, _ = detect_shots(clip)
    assert [(f.index, f.transition) for f in found] == [(44, "dissolve")]
    assert found[0].span == (40, 47)


def test_dissolve_between_faster_pans_is_found_and_a_pan_is_not_one(tmp_path):
    # cgi-bench seed 5's dissolve (frames 184-191): both shots move faster, so the blend's
    # residual (0.133 there) is over the unlike-ends limit; wholly different ends allow more.
    # A pan inside one shot whose ends 0.5 s apart are as unlike must stay one shot.
    import numpy as np

    a, b = _pan_at(51, 60, 2), _pan_at(52, 60, 2)
    blend = [((1 - (k + 1) / 9) * a[40 + k] + (k + 1) / 9 * b[k]).astype(np.uint8) for k in range(8)]
    clip = media.write_video(tmp_path / "dissolve8fast.mp4", a[:40] + blend + b[8:48])
    found, _, _ = detect_shots(clip)
    assert [(f.index, f.transition) for f in found] == [(44, "dissolve")]
    for speed in (2, 3):
        pan = media.write_video(tmp_path / f"pan{speed}.mp4", _pan_at(53, 44, speed))
        assert detect_shots(pan)[0] == []


def test_scenedetect_loads_without_its_ffmpeg_probe_and_progress_bars():
    # a fresh interpreter, as `animlora extract` is: the package's import neither runs ffmpeg
    # nor loads tqdm's asyncio bridge; its detectors work and tqdm imports as usual after
    import json
    import subprocess
    import sys

    code = """
import json, subprocess, sys
calls = []
real = subprocess.Popen.__init__
def spy(self, args, *rest, **kwargs):
    calls.append(str(args))
    return real(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = spy
import numpy as np
from animlora.video.shots import make_detector
detector = make_detector("adaptive", 3.0, 8)
sd = sys.modules["scenedetect"]
cuts = [detector.process_frame(sd.FrameTimecode(i, 24.0), np.full((36, 64, 3), 0 if i < 12 else 255, np.uint8))
        for i in range(24)]
asyncio_loaded = "asyncio" in sys.modules
import tqdm
print(json.dumps({"calls": calls, "asyncio": asyncio_loaded, "tqdm": tqdm.__name__,
                  "cut": [c.frame_num for found in cuts for c in found]}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["calls"] == [] and out["asyncio"] is False and out["tqdm"] == "tqdm"
    assert out["cut"] == [12]


@pytest.mark.parametrize("kind", ["adaptive", "content"])
def test_colour_cut_histogram_reuses_the_detectors_hsv_of_the_same_frame(kind):
    # the colour-cut check reads the HSV planes PySceneDetect's detector keeps of the frame it
    # was just given; were they another frame's (a new PySceneDetect), the cuts would drift
    import cv2
    import numpy as np

    from animlora.video.shots import HIST_BINS, ShotDetector

    rng = np.random.default_rng(3)
    detector = ShotDetector(24.0, detector=kind)
    for i in range(12):
        bgr = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
        detector.push(i, bgr)
        own = cv2.calcHist([cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)], [0, 1, 2], None, list(HIST_BINS),
                           [0, 180, 0, 256, 0, 256]).ravel()
        assert np.array_equal(detector._hist, own / own.sum())
    assert hasattr(detector.inner._last_frame, "lum")  # the planes were there to reuse
