"""Videos as they are displayed. Anamorphic ones (non-square pixels: a 16:9 DVD stores
720x480 with pixels 32/27 wide) come out in square pixels, as players show them: the probe's
size is the displayed one and saved frames are stretched, so no character is squeezed into a
dataset. An HDR one (PQ, HLG) is named: its frames are not tone-mapped; so is an interlaced
one. A cover image stored
as a video stream ahead of the film is not taken for the film."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from animlora.io.video import display_width, iter_frames, probe, square_pixels, to_rgb

SRC = Path(__file__).resolve().parents[1] / "src"


def _disc(rgb: np.ndarray) -> tuple[int, int]:
    """(width, height) of the white disc."""
    ys, xs = np.nonzero(rgb[..., 0] > 200)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.mark.parametrize(("sar", "width"), [(Fraction(32, 27), 171), (Fraction(8, 9), 128), (Fraction(1, 1), 144)])
def test_probe_and_frames_in_square_pixels(tmp_path, sar, width):
    path = media.make_anamorphic(tmp_path / "dvd.mp4", sar)
    info = probe(path)
    assert (info.width, info.height, info.sar) == (width, 96, pytest.approx(float(sar)))
    rgb = to_rgb(next(iter(iter_frames(path))).frame, sar=info.sar)
    assert rgb.shape[:2] == (96, width)
    w, h = _disc(rgb)
    assert h == pytest.approx(61, abs=1) and w == pytest.approx(61 * float(sar), abs=2)  # round as stored x sar


def test_square_pixels_leaves_square_and_unbelievable_shapes_alone():
    image = np.zeros((4, 6, 3), np.uint8)
    assert square_pixels(image, 1.0) is image and square_pixels(image, 1.004) is image
    assert display_width(720, 32 / 27) == 853 and display_width(720, 8 / 9) == 640


def test_extract_writes_square_frames_and_redoes_only_squeezed_videos(tmp_path):
    from PIL import Image

    from animlora.catalog import Catalog
    from animlora.pipeline.stage import digest

    dvd = media.make_anamorphic(tmp_path / "dvd.mp4", Fraction(32, 27))
    square = media.make_anamorphic(tmp_path / "square.mp4", Fraction(1, 1))
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "animlora", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    project = tmp_path / "p"
    assert run("init", "p", "--dir", str(project), "--video", str(dvd), "--video", str(square)).returncode == 0
    result = run("run", "-p", str(project), "--to", "extract", "--set", "extract.crop_bars=false")
    assert result.returncode == 0, result.stderr
    videos = {v["name"]: v for v in json.loads((project / "frames" / "extraction_results.json").read_text())["videos"]}
    assert videos["dvd"]["size"] == [171, 96] and videos["square"]["size"] == [144, 96]
    with Catalog(project / "catalog.sqlite") as catalog:
        rows = catalog.rows("SELECT path, width, height FROM frames")
        items = {r["item_key"]: r["fingerprint"] for r in catalog.rows("SELECT * FROM stage_items WHERE stage = 'extract'")}
    assert rows
    for row in rows:
        rgb = np.asarray(Image.open(project / "frames" / row["path"]).convert("RGB"))
        assert rgb.shape[:2] == (row["height"], row["width"])
        expected = 171 if row["path"].startswith("dvd") else 144
        assert row["width"] == expected and _disc(rgb)[0] == pytest.approx(61 * expected / 144, abs=2)
    # the recipe an earlier release recorded (frames as stored) still holds for square pixels:
    # upgrading re-extracts the anamorphic video alone
    for name, video in videos.items():
        old = digest(video["id"], (tmp_path / f"{name}.mp4").stat().st_size, name, video["budget"])
        assert (items[video["id"]] == old) == (name == "square")


def test_hdr_and_interlaced_videos_are_named_in_the_run_and_the_report(tmp_path):
    sdr = media.make_anamorphic(tmp_path / "sdr.mp4", Fraction(1, 1))
    hdr = media.make_anamorphic(tmp_path / "uhd.mp4", Fraction(1, 1), color_trc=16)
    media.make_anamorphic(tmp_path / "dvd.mp4", Fraction(1, 1), interlaced=True)
    assert (probe(sdr).hdr, probe(hdr).hdr) == (None, "PQ")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "animlora", "extract", "--input", str(tmp_path), "--output",
                             str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    said = (result.stdout + result.stderr).splitlines()
    named = [line for line in said if "HDR" in line]
    assert len(named) == 1 and "uhd is HDR (PQ)" in named[0] and "SDR copy" in named[0]
    named = [line for line in said if "interlaced" in line]
    assert len(named) == 1 and "dvd is interlaced (100%" in named[0] and "bwdif" in named[0]
    videos = {v["name"]: v for v in json.loads((out / "extraction_results.json").read_text())["videos"]}
    assert (videos["sdr"]["hdr"], videos["uhd"]["hdr"], videos["dvd"]["hdr"]) == (None, "PQ", None)
    assert (videos["sdr"]["interlaced"], videos["uhd"]["interlaced"], videos["dvd"]["interlaced"]) == (0, 0, 1.0)


def test_a_cover_image_stream_ahead_of_the_film_is_passed_over(tmp_path):
    import av

    path = media.make_with_cover(tmp_path / "film.mkv")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"  # the cover comes first
    info = probe(path)
    assert (info.codec, info.width, info.height, info.frame_count) == ("h264", 160, 120, 40)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "animlora", "extract", "--input", str(path), "--output", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    (video,) = json.loads((out / "extraction_results.json").read_text())["videos"]
    assert video["size"] == [160, 120] and video["frame_count"] == 40 and len(video["shots"]) == 2
