"""A corrupt stretch in the middle of a video: the good frames before and after it are kept,
the damaged range is named in the report and in a warning, the video is not rejected."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import media
from animlora.errors import BadInputError
from animlora.io.video import ReferenceFrames, iter_frames

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    return media.make_damaged(tmp_path_factory.mktemp("damaged") / "hurt.mp4")


def _check_range(d: dict) -> None:
    first, last = d["frames"]
    assert 10 < first <= last < 90  # in the middle, not the whole clip
    assert d["time"][0] < d["time"][1]


def test_readers_skip_the_damage_and_keep_indices(damaged):
    damage: list = []
    indices = [f.index for f in iter_frames(damaged, damage=damage)]
    assert len(damage) == 1
    d = damage[0].as_dict()
    _check_range(d)
    first, last = d["frames"]
    assert indices == [*range(first), *range(last + 1, 100)]  # frames after it keep their place
    reader = ReferenceFrames(damaged)
    kept = [f.index for f in reader]
    assert reader.count == 100 and [x.as_dict() for x in reader.damage] == [d]
    assert kept[0] == 0 and kept[-1] >= 95 and not any(first <= i <= last for i in kept)


def test_strict_reader_still_raises(damaged):
    with pytest.raises(BadInputError, match="corrupt"):
        for _ in iter_frames(damaged):
            pass


@pytest.mark.parametrize("mode", ["scene", "interval"])
def test_extract_keeps_good_frames_and_reports_damage(damaged, tmp_path, mode):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    args = ["extract", "--input", str(damaged), "--output", str(out), "--set", f"extract.mode={mode}",
            "--set", "extract.interval_seconds=0.5"]
    result = subprocess.run([sys.executable, "-m", "animlora", *args], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr and "hurt" in result.stderr
    report = json.loads((out / "extraction_results.json").read_text())
    (video,) = report["videos"]
    assert video["status"] == "ok" and video["frame_count"] == 100
    (d,) = video["damaged"]
    _check_range(d)
    start, end = d["time"]
    times = [int(h) * 3600 + int(m) * 60 + int(sec) + int(ms) / 1000
             for h, m, sec, ms in (re.search(r"(\d+)h(\d+)m(\d+)s(\d+)$", p.stem).groups()
                                   for p in out.rglob("*.jpg"))]
    assert any(t < start for t in times) and any(t > end for t in times)
    assert not any(start < t < end for t in times)
