"""Bad videos: one line naming the file and the problem, exit code != 0, nothing written;
in a project the bad one fails as an item (shown by status) and the others are processed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import media
from animlora.errors import BadInputError
from animlora.io.video import iter_frames, probe

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ANIMLORA_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "animlora", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("bad")
    return {
        "missing": (d / "missing.mp4", "no such file"),
        "not_video": (media.make_not_video(d / "notes.mp4"), "not a readable video"),
        "truncated": (media.make_truncated(d / "cut.mp4"), "truncated"),
        "truncated_moov_last": (media.make_truncated(d / "cut2.mp4", faststart=False), "not a readable video"),
        "zero_frames": (media.make_zero_frame(d / "empty.mp4"), "no video"),
        "audio_only": (media.make_audio_only(d / "song.m4a"), "audio only"),
    }


@pytest.mark.parametrize("kind", ["missing", "not_video", "truncated", "truncated_moov_last", "zero_frames",
                                  "audio_only"])
def test_probe_names_file_and_problem(bad, kind):
    path, problem = bad[kind]
    with pytest.raises(BadInputError) as info:
        probe(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_decoding_a_truncated_file_fails_too(bad):
    path, _ = bad["truncated"]
    with pytest.raises(BadInputError, match="truncated"):
        for _ in iter_frames(path):
            pass


@pytest.mark.parametrize("kind", ["missing", "not_video", "truncated", "zero_frames", "audio_only"])
def test_standalone_cli_one_line_exit_1_nothing_written(bad, tmp_path, kind):
    path, problem = bad[kind]
    out = tmp_path / "out"
    result = _run("extract", "--input", str(path), "--output", str(out))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert path.name in lines[0] and problem in lines[0]
    assert not out.exists()


def test_project_bad_video_fails_as_item_others_processed(bad, tmp_path):
    good = media.make_clip(tmp_path / "good.mp4", seed=3)
    broken, _ = bad["truncated"]
    project = tmp_path / "proj"
    assert _run("init", "p", "--dir", str(project), "--video", str(good), "--video", str(broken)).returncode == 0
    result = _run("run", "-p", str(project))
    assert result.returncode == 1
    status = json.loads(_run("status", "-p", str(project), "--json").stdout)
    extract = next(s for s in status["stages"] if s["stage"] == "extract")
    assert extract["items_done"] == 1 and extract["items_failed"] == 1
    assert "cut.mp4" in extract["errors"][0]["error"] and "truncated" in extract["errors"][0]["error"]
    import sqlite3

    con = sqlite3.connect(project / "catalog.sqlite")
    rows = dict(con.execute("SELECT name, status FROM videos").fetchall())
    assert rows == {"good": "ok", "cut": "error"}
    assert con.execute("SELECT COUNT(*) FROM frames WHERE kept = 1").fetchone()[0] > 0
    assert not list((project / "frames").glob("cut/*"))  # the failed video left no frames
    assert list((project / "frames").glob("good/*.jpg"))
    report = json.loads((project / "frames" / "extraction_results.json").read_text())
    assert {v["name"]: v["status"] for v in report["videos"]} == {"good": "ok", "cut": "error"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--detector", "foo"], ["extract.detector", "adaptive, content, hash"]),
        (["--set", "extract.detector_thresholds.hash=-1"], ["extract.detector_thresholds.hash", "greater than 0"]),
        (["--set", "extract.change_share=1.5"], ["extract.change_share", "less than or equal to 1"]),
        (["--set", "extract.no_such_key=1"], ["extract.no_such_key"]),
    ],
)
def test_bad_extract_settings_one_line_naming_the_key(tmp_path, args, words):
    out = tmp_path / "out"
    result = _run("extract", "--input", str(Path(__file__).parent / "data" / "bikes.mp4"), "--output", str(out), *args)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr
    assert not out.exists()


def test_a_file_that_states_no_duration_is_measured(tmp_path):
    """A live MKV (a recording, a browser's MediaRecorder) has no duration in its header: it
    was taken as 0 s long, so extract gave it the smallest budget (one frame a shot)."""
    import av

    live = media.make_clip(tmp_path / "live.mkv", seed=3, shots=2, frames_per_shot=50, live=True)
    with av.open(str(live)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    info = probe(live)
    assert info.duration == pytest.approx(100 / media.FPS, abs=1.5 / media.FPS)
    assert info.frame_count == pytest.approx(100, abs=1)
    assert next(iter(iter_frames(live))).index == 0  # read from its first frame after the measure
