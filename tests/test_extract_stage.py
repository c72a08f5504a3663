"""The extract stage in a project and standalone: rows, files, modes, dedupe, resume, --force."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import media
from animlora.cli.project import create_project
from animlora.config import load_settings
from animlora.pipeline.runner import Runner
from animlora.stages import get_stage
from animlora.workspace import Workspace

SRC = Path(__file__).resolve().parents[1] / "src"
DATA = Path(__file__).parent / "data"
DEDUPE = {"extract": {"dedupe": True}}  # off by default: whole-frame hashes drop distinct poses


def run_project(root: Path, overrides: dict | None = None, force: bool = False):
    loaded = load_settings(root, overrides=overrides or {})
    return Runner(Workspace(root), loaded, force=force).run([get_stage("extract")])[0]


def table(root: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(root / "catalog.sqlite")
    try:
        return sorted(con.execute(sql).fetchall())
    finally:
        con.close()


def snapshot(root: Path) -> dict:
    files = {
        str(p.relative_to(root / "frames")): p.read_bytes()
        for p in sorted((root / "frames").rglob("*")) if p.is_file()
    }
    return {
        "videos": table(root, "SELECT * FROM videos"),
        "shots": table(root, "SELECT * FROM shots"),
        "frames": table(root, "SELECT * FROM frames"),
        "files": files,
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("clips")
    return [media.make_clip(d / f"clip{i}.mp4", seed=i, shots=3, frames_per_shot=30) for i in range(4)]


def test_scene_mode_rows_files_and_report(tmp_path):
    root = create_project(tmp_path / "p", "p", [DATA / "bikes.mp4"], "3d")
    summary = run_project(root, {"extract": {"quality": "high"}})
    assert summary.items_done == 1 and not summary.failures
    shots = table(root, "SELECT idx, start_frame, end_frame, transition FROM shots")
    assert [s[1] for s in shots] == [0, 30, 76, 137, 187, 242]
    assert shots[-1][2] == 250 and all(s[3] is None for s in shots)
    frames = table(root, "SELECT shot_id, frame_index, timestamp, path, kept, sharpness, phash FROM frames")
    by_shot: dict[int, list] = {}
    for shot_id, index, ts, path, kept, sharp, ph in frames:
        by_shot.setdefault(int(shot_id.rsplit("_s")[1]), []).append(index)
        assert ts == pytest.approx(index / 25)
        assert kept == 1 and (root / "frames" / path).is_file() and path.endswith(".png")
        assert sharp > 0 and len(ph) == 16
    for idx, start, end, _ in shots:
        got = by_shot[idx]
        assert 1 <= len(got) <= 24 and all(start <= i < end for i in got)  # every shot, within its frames
        assert all(path.startswith(f"bikes/bikes_s{idx:04d}_") for sid, _, _, path, *_ in frames
                   if int(sid.rsplit("_s")[1]) == idx)
    # a 10 s clip: a budget of 4 candidates a second; change is weighed against the video's
    # mean so far (from a prior), so a clip with more motion than the prior goes over a bit
    assert 20 <= len(frames) <= 60
    report = json.loads((root / "frames" / "extraction_results.json").read_text())
    video = report["videos"][0]
    assert report["totals"]["kept"] == len(frames) and report["totals"]["rejected"] == {}
    assert video["budget"] == 40 and video["shots_without_candidates"] == []
    assert [s["kept"] for s in video["shots"]] == [len(by_shot[i]) for i in range(6)]
    assert all(s["seconds"] > 0 and s["change"] >= 0 for s in video["shots"])


def test_interval_and_all_modes(tmp_path):
    root = create_project(tmp_path / "p", "p", [DATA / "bikes.mp4"], "3d")
    run_project(root, {"extract": {"mode": "interval", "interval_seconds": 2.0,
                                   "dedupe": False, "quality": "medium"}})
    rows = table(root, "SELECT frame_index, path FROM frames")
    assert [r[0] for r in rows] == [0, 50, 100, 150, 200]
    assert all(r[1].endswith(".jpg") for r in rows)
    root2 = create_project(tmp_path / "q", "q", [DATA / "bikes.mp4"], "3d")
    run_project(root2, {"extract": {"mode": "all", "dedupe": False}})
    assert len(table(root2, "SELECT id FROM frames")) == 250


def test_dedupe_across_videos_is_order_independent(tmp_path, clips):
    # a byte-identical copy (a recap): each of its frames duplicates one of the original,
    # and which copy keeps a frame does not depend on the order the videos are listed in
    copy = tmp_path / "recap.mp4"
    copy.write_bytes(clips[0].read_bytes())
    results = []
    for i, order in enumerate(([clips[0], copy, clips[1]], [clips[1], copy, clips[0]])):
        root = create_project(tmp_path / f"p{i}", "p", order, "3d")
        run_project(root, {"extract": {"dedupe": True}})
        results.append(table(root, "SELECT v.name, f.frame_index, f.kept, f.reject_reason FROM frames f "
                                   "JOIN videos v ON v.id = f.video_id"))
    assert results[0] == results[1]
    pairs = {(name, index): (kept, reason) for name, index, kept, reason in results[0]}
    twins_kept = 0
    for (name, index), (kept, reason) in pairs.items():
        assert reason in (None, "duplicate")
        if name in ("clip0", "recap"):
            twin = pairs[("recap" if name == "clip0" else "clip0", index)]
            assert kept + twin[0] <= 1  # never both twins
            twins_kept += kept
    assert twins_kept >= 3  # one per shot at least (slow pans: frames of one shot may be near-duplicates)
    assert sum(k for (n, _), (k, _) in pairs.items() if n == "clip1") >= 3


def test_dedupe_recap_shot(tmp_path, clips):
    # clip0's frames again inside another video: duplicates across videos are removed
    import av  # noqa: F401

    frames = media.synthetic_frames()[:60]
    recap = media.write_video(tmp_path / "recap.mp4", frames)
    same = media.write_video(tmp_path / "same.mp4", frames[:55])
    root = create_project(tmp_path / "p", "p", [recap, same], "3d")
    run_project(root, DEDUPE)
    kept = table(root, "SELECT v.name, f.kept, f.reject_reason FROM frames f JOIN videos v ON v.id = f.video_id")
    dup = [k for k in kept if k[2] == "duplicate"]
    assert dup, kept
    assert sum(k[1] for k in kept) + len(dup) == len(kept)
    moved = list((root / "frames" / "_duplicates").rglob("*.jpg"))
    assert len(moved) == len(dup)
    # swapped order in project.yaml gives the same decisions
    root2 = create_project(tmp_path / "q", "q", [same, recap], "3d")
    run_project(root2, DEDUPE)
    kept2 = table(root2, "SELECT v.name, f.kept, f.reject_reason FROM frames f JOIN videos v ON v.id = f.video_id")
    assert kept2 == kept


def test_force_changed_settings_and_new_video(tmp_path, clips):
    root = create_project(tmp_path / "p", "p", clips[:2], "3d")
    first = run_project(root)
    assert first.items_done == 2 and first.items_skipped == 0
    before = snapshot(root)
    again = run_project(root)
    assert again.up_to_date  # nothing changed: skipped
    assert snapshot(root) == before
    forced = run_project(root, force=True)
    assert not forced.up_to_date and forced.items_skipped == 0 and forced.items_done == 2
    assert snapshot(root) == before  # redone, same result
    changed = run_project(root, {"extract": {"max_per_shot": 1}})
    assert changed.items_skipped == 0
    assert len(table(root, "SELECT id FROM frames")) == 2 * 3  # 3 shots x 1 frame
    # a new video: only it is processed
    import yaml

    data = yaml.safe_load((root / "project.yaml").read_text())
    data["project"]["videos"].append(str(clips[2]))
    (root / "project.yaml").write_text(yaml.safe_dump(data))
    added = run_project(root, {"extract": {"max_per_shot": 1}})
    assert added.items_total == 3 and added.items_skipped == 2


def test_a_moved_video_or_project_keeps_its_frames(tmp_path, clips):
    """Items are keyed by the video's content: a video moved (project.yaml updated), a project
    moved with its video inside, and a project of an earlier release (keys were paths) are up
    to date, their frame files untouched (the stages after extract hash their times)."""
    import shutil

    import yaml

    inside = tmp_path / "p" / "videos"
    inside.mkdir(parents=True)
    shutil.copy(clips[0], inside / "a.mp4")
    root = create_project(tmp_path / "p", "p", [inside / "a.mp4", clips[1]], "3d")
    data = yaml.safe_load((root / "project.yaml").read_text())
    data["project"]["videos"] = ["videos/a.mp4", str(clips[1])]  # the first relative to the project
    (root / "project.yaml").write_text(yaml.safe_dump(data))
    assert run_project(root).items_done == 2
    before = snapshot(root)
    times = {p: p.stat().st_mtime_ns for p in (root / "frames").rglob("*.jpg")}
    assert times

    # an earlier release's project: items keyed by the video's path
    con = sqlite3.connect(root / "catalog.sqlite")
    with con:
        for vid, path in con.execute("SELECT id, path FROM videos").fetchall():
            con.execute("UPDATE stage_items SET item_key = ? WHERE stage = 'extract' AND item_key = ?", (path, vid))
    con.close()
    upgraded = run_project(root)
    assert upgraded.items_done == 2 and upgraded.items_skipped == 2  # nothing redone
    assert table(root, "SELECT item_key FROM stage_items WHERE stage = 'extract'") == \
        table(root, "SELECT id FROM videos")

    # the second video moved elsewhere, project.yaml told
    moved_clip = tmp_path / "elsewhere" / clips[1].name  # the same name: it names the frame files
    moved_clip.parent.mkdir()
    shutil.copy(clips[1], moved_clip)
    data["project"]["videos"] = ["videos/a.mp4", str(moved_clip)]
    (root / "project.yaml").write_text(yaml.safe_dump(data))
    again = run_project(root)
    assert again.items_skipped == 2 and again.failures == ()

    # the whole project moved, its first video inside it
    there = tmp_path / "there" / "p"
    there.parent.mkdir()
    root.rename(there)
    after = run_project(there)
    assert after.items_skipped == 2 and after.failures == ()
    assert snapshot(there)["frames"] == before["frames"] and snapshot(there)["files"] == before["files"]
    assert {p.relative_to(there): t for p, t in ((p, p.stat().st_mtime_ns) for p in (there / "frames").rglob("*.jpg"))} \
        == {p.relative_to(root): t for p, t in times.items()}


def test_a_video_budget_is_its_own_and_a_project_of_the_shared_cap_is_kept(tmp_path, clips, monkeypatch):
    """max_candidates caps each video (it capped the project before, shared by duration: a
    new film took frames from the others, and every video was extracted again). A project
    extracted under the old rule is kept on upgrade (WorkItem.earlier)."""
    import yaml

    from animlora.stages import extract as stage

    tight = {"extract": {"candidates_per_minute": 600, "min_candidates": 0, "max_candidates": 10}}
    root = create_project(tmp_path / "p", "p", clips[:2], "3d")
    monkeypatch.setattr(stage, "project_budget", stage._shared_cap_budget)  # the release before
    assert run_project(root, tight).items_done == 2
    assert len(table(root, "SELECT id FROM frames")) <= 2 * 5 + 2  # 10 shared (at least one a shot)
    monkeypatch.undo()
    before = snapshot(root)
    upgraded = run_project(root, tight)
    assert upgraded.items_skipped == 2 and snapshot(root) == before  # kept: nothing extracted again

    def add(clip):
        data = yaml.safe_load((root / "project.yaml").read_text())
        data["project"]["videos"].append(str(clip))
        (root / "project.yaml").write_text(yaml.safe_dump(data))

    add(clips[2])
    third = run_project(root, tight)  # the old rule's shares moved: one last time, all three
    assert (third.items_total, third.items_skipped) == (3, 0)
    add(clips[3])
    fourth = run_project(root, tight)  # each video's budget is its own now: the new one alone
    assert (fourth.items_total, fourth.items_skipped) == (4, 3)


def test_a_missing_video_keeps_what_was_extracted_from_it(tmp_path, clips):
    """A listed video out of reach (a drive not mounted, a file renamed) is held: its frames
    stay, with --force too, and the summary says so; back in place it is up to date. Before,
    its frames, and all made from them, were deleted and the item failed ("no such file")."""
    import shutil

    films = tmp_path / "films"
    films.mkdir()
    for clip in clips[:2]:
        shutil.copy(clip, films / clip.name)
    root = create_project(tmp_path / "p", "p", sorted(films.iterdir()), "3d")
    assert run_project(root).items_done == 2
    before = snapshot(root)
    away = tmp_path / "away"
    films.rename(away)  # the drive is not mounted
    for force in (False, True):
        held = run_project(root, force=force)
        assert held.failures == () and held.items_total == 2 and "not found" in (held.note or "")
        assert str(films / clips[0].name) in held.note
        assert snapshot(root) == before
    from cli_support import animlora_cmd, cli_env

    status = subprocess.run(animlora_cmd("status", "-p", str(root), "--json"), capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert json.loads(status.stdout)["videos_missing"] == [str(films / c.name) for c in clips[:2]]
    away.rename(films)
    back = run_project(root)
    assert back.up_to_date and back.note is None and snapshot(root) == before
    # one video back under another name, the other still missing: the missing one is held by
    # its file name, the renamed one is extracted again
    (films / clips[0].name).rename(films / "renamed.mp4")
    (films / clips[1].name).unlink()
    import yaml

    data = yaml.safe_load((root / "project.yaml").read_text())
    data["project"]["videos"] = [str(films / "renamed.mp4"), str(films / clips[1].name)]
    (root / "project.yaml").write_text(yaml.safe_dump(data))
    mixed = run_project(root)
    assert mixed.failures == () and mixed.items_total == 2 and mixed.items_skipped == 1
    names = {row[0] for row in table(root, "SELECT name FROM videos")}
    assert names == {"renamed", clips[1].stem}


def test_standalone_refuses_foreign_folder_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "animlora", "extract", "--input", str(DATA / "bikes.mp4"), "--output", str(out)]
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 1 and "not empty" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    done = subprocess.run([*cmd, "--force", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "mine.txt").read_text() == "user data"
    assert (out / "extraction_results.json").is_file()
    again = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["stages"][0]["up_to_date"]


def test_kill_9_resume_equals_uninterrupted_run(tmp_path, clips):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    sets = ["--set", "extract.max_per_shot=6"]
    reference = create_project(tmp_path / "ref", "p", clips, "3d")
    subprocess.run([sys.executable, "-m", "animlora", "run", "-p", str(reference), "--json", *sets],
                   check=True, capture_output=True, env=env, timeout=300)

    killed = create_project(tmp_path / "killed", "p", clips, "3d")
    proc = subprocess.Popen([sys.executable, "-m", "animlora", "run", "-p", str(killed), "--json", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    done_at_kill = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(killed / "catalog.sqlite", timeout=1)
            n = con.execute("SELECT COUNT(*) FROM stage_items WHERE stage='extract' AND status='done'").fetchone()[0]
            con.close()
        except sqlite3.Error:
            n = 0
        if n >= 1:
            os.kill(proc.pid, signal.SIGKILL)
            done_at_kill = n
            break
        time.sleep(0.005)
    proc.wait()
    assert done_at_kill is not None and done_at_kill < len(clips), "the run ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, "-m", "animlora", "run", "-p", str(killed), "--json", *sets],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    stage = json.loads(resumed.stdout)["stages"][0]
    assert stage["items_skipped"] >= done_at_kill
    assert snapshot(killed) == snapshot(reference)


def test_scene_mode_on_b_frames_has_exact_shots(tmp_path):
    # only every 4th frame is a reference frame, cuts fall between skipped frames: the stage
    # reads reference frames only, then refines those cuts to the exact frame
    clip = media.make_synthetic(tmp_path / "synb.mp4", bframes=True)
    root = create_project(tmp_path / "p", "p", [clip], "3d")
    run_project(root, {"extract": {"dedupe": False}})
    shots = table(root, "SELECT start_frame, end_frame, transition, start_time FROM shots")
    assert [s[0] for s in shots] == [0, 50, 95, 131, 160]
    assert [s[2] for s in shots] == [None, None, None, "dissolve", None]
    assert shots[-1][1] == media.SYN_FRAMES
    assert [s[3] for s in shots] == pytest.approx([0, 2.0, 3.8, 5.24, 6.4])
    frames = table(root, "SELECT frame_index, timestamp, shot_id FROM frames")
    assert all(ts == pytest.approx(i / 25) for i, ts, _ in frames)
    assert len({f[2] for f in frames}) == 5


def test_letterbox_and_pillarbox_bars_are_cropped(tmp_path):
    import numpy as np

    frames = []
    for img in media.synthetic_frames()[:60]:
        boxed = np.zeros_like(img)
        boxed[16:-16, 16:-16] = img[16:-16, 16:-16]  # 16 px black bars on every side
        frames.append(boxed)
    clip = media.write_video(tmp_path / "boxed.mp4", frames)
    root = create_project(tmp_path / "p", "p", [clip], "3d")
    run_project(root, {"extract": {"dedupe": False}})
    assert table(root, "SELECT crop FROM videos") == [("[16, 16, 128, 88]",)]
    rows = table(root, "SELECT path, width, height FROM frames WHERE kept = 1")
    assert rows
    from animlora.io.images import read_image

    for path, width, height in rows:
        assert (width, height) == (128, 88)
        assert read_image(root / "frames" / path).shape == (88, 128, 3)
    root2 = create_project(tmp_path / "q", "q", [clip], "3d")
    run_project(root2, {"extract": {"dedupe": False, "crop_bars": False}})
    assert table(root2, "SELECT crop FROM videos") == [(None,)]


def test_frames_decoded_ahead_stay_under_48_mb_but_for_the_floor():
    from animlora.stages.extract import read_ahead

    sizes = [(480, 270), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160), (7680, 4320)]
    depths = [read_ahead(w, h) for w, h in sizes]
    assert depths == [32, 32, 16, 9, 8, 8]  # a 4K film queues no more frames than before (8)
    assert all(d * w * h * 3 // 2 <= 48 << 20 or d == 8 for d, (w, h) in zip(depths, sizes, strict=True))
