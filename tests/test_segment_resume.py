"""kill -9 in the middle of `animlora segment`, run again: the result equals an
uninterrupted run (files and catalog rows), nothing duplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2

from animlora.io.images import write_image
from segment_synth import scene

SRC = Path(__file__).resolve().parents[1] / "src"


def make_shots(root: Path, n: int = 8) -> Path:
    for k in range(n):
        for i in range(2):
            image, _ = scene(10 * k + i, [((90 + 7 * i + 3 * k, 90), (35, 50), (220, 90, 60)), ((235, 95), (30, 40), (60, 80, 210))])
            write_image(root / f"shot{k:02d}" / f"f{i}.png", cv2.resize(image, (640, 360)))
    return root


def command(inp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "animlora", "segment", "--input-dir", str(inp), "--output-dir", str(out),
            "--model", "classic", "--json"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def done_items(out: Path) -> int:
    db = out / ".animlora" / "catalog.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM stage_items WHERE stage='segment' AND status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def snapshot(out: Path) -> tuple[dict, dict]:
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".animlora" not in p.parts and p.name != "segmentation_results.json"
    }
    with sqlite3.connect(out / ".animlora" / "catalog.sqlite") as conn:
        tables = {
            t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall())
            for t in ("instances", "tracks", "segment_frames")
        }
        tables["items"] = sorted(conn.execute("SELECT item_key, status, outputs FROM stage_items").fetchall())
    return files, tables


def test_kill_9_mid_stage_then_resume_equals_an_uninterrupted_run(tmp_path):
    inp = make_shots(tmp_path / "in")
    reference, resumed = tmp_path / "ref", tmp_path / "resumed"
    subprocess.run(command(inp, reference), env=env(), check=True, capture_output=True)

    proc = subprocess.Popen(command(inp, resumed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while done_items(resumed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed; make the input larger"
    partial = done_items(resumed)
    assert 2 <= partial < 8

    again = subprocess.run(command(inp, resumed), env=env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f'"items_skipped": {partial}' in again.stdout
    assert snapshot(resumed) == snapshot(reference)
    assert not list(resumed.rglob(".tmp-*"))
