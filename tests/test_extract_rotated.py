"""Rotated videos (display matrix) come out as displayed: width and height swapped by the
probe, saved frames turned the way ffmpeg's autorotate turns them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import media
from animlora.io.video import iter_frames, probe, quarter_turns, to_rgb, upright

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(("angle", "turns"), [(0, 0), (-90, 3), (90, 1), (180, 2), (-180, 2), (270, 3)])
def test_quarter_turns(angle, turns):
    assert quarter_turns(SimpleNamespace(rotation=angle)) == turns


def test_no_rotation_attribute_is_upright():
    image = np.arange(6).reshape(2, 3)
    assert quarter_turns(SimpleNamespace()) == 0
    assert upright(image, SimpleNamespace()) is image


def _bright_corner(rgb: np.ndarray) -> tuple[bool, bool]:
    """(top, left) of the white block."""
    ys, xs = np.nonzero(rgb[..., 0] > 128)
    h, w = rgb.shape[:2]
    return ys.mean() < h / 2, xs.mean() < w / 2


def test_rotate_90_clip_is_turned_clockwise(tmp_path):
    path = media.make_rotated(tmp_path / "phone.mp4")
    info = probe(path)
    assert (info.width, info.height) == (60, 80)
    frame = next(iter(iter_frames(path))).frame
    assert quarter_turns(frame) == 3  # PyAV reports -90 for rotate=90
    rgb = to_rgb(frame)
    assert rgb.shape[:2] == (80, 60)
    assert _bright_corner(rgb) == (True, False)  # top-left block, turned clockwise: top-right (as ffmpeg does)


def test_unrotated_clip_unchanged(tmp_path):
    path = media.make_rotated(tmp_path / "flat.mp4", matrix=(1, 0, 0, 1))
    info = probe(path)
    assert (info.width, info.height) == (80, 60)
    rgb = to_rgb(next(iter(iter_frames(path))).frame)
    assert rgb.shape[:2] == (60, 80) and _bright_corner(rgb) == (True, True)


def test_extract_writes_upright_frames(tmp_path):
    from PIL import Image

    path = media.make_rotated(tmp_path / "phone.mp4")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-m", "animlora", "extract", "--input", str(path), "--output", str(out),
                             "--set", "extract.mode=all", "--set", "extract.crop_bars=false"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    (video,) = json.loads((out / "extraction_results.json").read_text())["videos"]
    assert video["size"] == [60, 80]
    images = list(out.rglob("*.jpg"))
    assert images
    for image in images:
        rgb = np.asarray(Image.open(image).convert("RGB"))
        assert rgb.shape[:2] == (80, 60) and _bright_corner(rgb) == (True, False)
