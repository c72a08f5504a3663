"""The standalone commands as a user types them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from animlora.io.images import write_image
from dataset_synth import COLORS, person_cutout

PANTS = [(40, 80, 200), (25, 25, 25), (120, 75, 40), (245, 245, 245), (25, 35, 90), (128, 128, 128), (20, 130, 130)]
SRC = Path(__file__).resolve().parents[1] / "src"


def animlora(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "animlora", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_caption_then_dataset_on_a_folder(tmp_path):
    folder = tmp_path / "clustered_refined" / "luca"
    for i in range(14):
        write_image(folder / f"luca_{i:02d}.png",
                    person_cutout(240 + 8 * i, ["front", "side", "back"][i % 3], shirt=COLORS[i % len(COLORS)],
                                  pants=PANTS[i % len(PANTS)]))
    (folder / "broken.png").write_bytes(b"not a png")
    cap = animlora("caption", "--input-dir", "clustered_refined/luca", "--model", "template", "--json", cwd=tmp_path)
    # the broken file is a listed failure, the rest are captioned
    summary = json.loads(cap.stdout)
    assert summary["stages"][0]["items_done"] == 14
    assert "broken.png: not an image" in summary["stages"][0]["failed"][0]["error"]
    captions = tmp_path / "captions" / "luca"
    assert (captions / "luca_00.txt").read_text().startswith("luca, full body, front view, wearing")

    ds = animlora("dataset", "--input-dir", "clustered_refined/luca", "--captions-dir", "captions/luca",
                  "--character", "luca", "--output-dir", "training_data/luca", "--target-size", "10",
                  "--caption-prefix", "a 3d animated character, pixar style, smooth shading",
                  "--set", "dataset.min_size=5", "--resolution", "512", "--set", "dataset.min_bucket=128", "--json",
                  cwd=tmp_path)
    assert ds.returncode == 0, ds.stderr
    out = tmp_path / "training_data" / "luca"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["count"] == 10
    assert {s["code"] for s in meta["skipped"]} <= {"unreadable", "near-duplicate", "not picked"}
    for rec in meta["images"]:
        stem = Path(rec["file"]).stem
        text = (out / "captions" / f"{stem}.txt").read_text().strip()
        assert text.startswith("luca, a 3d animated character, pixar style, smooth shading, full body")
        assert rec["caption_source"] == "file:" + f"{Path(rec['cutout']).stem}.txt"
    config = tomllib.loads((out / "dataset.toml").read_text())
    assert config["datasets"][0]["subsets"][0]["image_dir"] == str(out / "images")
    assert (out / "dataset_report.html").is_file()


def test_help_lists_the_commands(tmp_path):
    result = animlora("--help", cwd=tmp_path)
    assert "caption" in result.stdout and "dataset" in result.stdout


def test_dataset_command_reads_a_project(tmp_path):
    """`animlora dataset --character luca --output-dir training_data/luca` inside a project."""
    from dataset_synth import make_project, run_stages

    root = tmp_path / "proj"
    make_project(root, {"luca": 10, "alberto": 9})
    run_stages(root, ["caption"])
    result = animlora("dataset", "--character", "luca", "--output-dir", "training_data/luca", "--target-size", "6",
                      "--set", "dataset.min_size=5", "--resolution", "512", "--set", "dataset.min_bucket=128",
                      "--caption-prefix", "a 3d animated character", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    meta = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())
    assert meta["character"] == "luca" and meta["count"] == 6
    assert all(r["video"] == "v1" and r["shot"] and r["caption_source"] == "template" for r in meta["images"])
    assert all(r["caption"].startswith("luca, a 3d animated character, ") for r in meta["images"])
    assert not (root / "training_data" / "alberto").exists()
