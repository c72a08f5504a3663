"""The background/style dataset (dataset.kind: background): the inpaint stage's plates, spread
over shots, mostly-inpainted plates left out, own captions, the character datasets' files."""

from __future__ import annotations

import json

import numpy as np

from animlora.catalog import Catalog
from animlora.io.images import read_image, write_image
from dataset_synth import make_project, outdoor_frame, run_stages


def add_plates(root) -> None:
    """Shot s0: five moving-camera plates (one 60% inpainted); shot s1: one static plate."""
    rows = []
    for i in range(5):
        frame = np.roll(outdoor_frame(), 12 * i, axis=1)
        write_image(root / "plates" / f"v1_f{i:05d}.png", frame)
        rows.append({"id": f"v1_f{i:05d}", "shot_id": "v1_s0", "frame_ids": json.dumps([f"v1_f{i:05d}"]),
                     "path": f"v1_f{i:05d}.png", "static": 0, "backend": "opencv",
                     "hole_fraction": 0.6 if i == 1 else 0.1, "psnr": 100.0, "ssim": 1.0})
    dark = (outdoor_frame() * 0.2).astype(np.uint8)
    write_image(root / "plates" / "v1_s1.png", dark)
    rows.append({"id": "v1_s1", "shot_id": "v1_s1", "frame_ids": json.dumps(["v1_f00005", "v1_f00006"]),
                 "path": "v1_s1.png", "static": 1, "backend": "opencv", "hole_fraction": 0.05, "psnr": 100.0,
                 "ssim": 1.0})
    with Catalog(root / "catalog.sqlite") as cat:
        cat.upsert("plates", rows)


def test_background_dataset_from_plates(tmp_path):
    root = tmp_path / "proj"
    make_project(root, {"bob": 2}, shots=2, embeddings=False)
    add_plates(root)
    run_stages(root, ["dataset"], overrides={"dataset": {"kind": "background", "background_per_shot": 2}})
    out = root / "training_data" / "background"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["kind"] == "background" and meta["count"] == 3 and meta["candidates"] == 6
    # s0: the 60% inpainted plate out, then 2 of the remaining 4 spread over the shot; s1: its one plate
    assert sorted(r["plate"] for r in meta["images"]) == ["v1_f00000", "v1_f00004", "v1_s1"]
    assert meta["left_out_counts"] == {"mostly_inpainted": 1, "spread": 2}
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "v1_f00000.png", "v1_f00000.txt", "v1_f00004.png", "v1_f00004.txt", "v1_s1.png", "v1_s1.txt"]
    assert sorted(p.name for p in (out / "captions").iterdir()) == ["v1_f00000.txt", "v1_f00004.txt", "v1_s1.txt"]
    by_plate = {r["plate"]: r for r in meta["images"]}
    day, night = by_plate["v1_f00000"]["caption"], by_plate["v1_s1"]["caption"]
    assert day.startswith("test_background, empty scene") and "sky" in day and "green" in day
    assert "dark" in night and "dark" not in day
    assert (out / "images" / "v1_f00000.txt").read_text().strip() == day
    # 640x360 fits in 512² pixels only shrunk: same aspect, sides multiples of 8
    w, h = by_plate["v1_f00000"]["size"]
    assert w * h <= 512 * 512 and w % 8 == 0 and h % 8 == 0 and abs(w / h - 640 / 360) < 0.03
    assert read_image(out / "images" / "v1_f00000.png").shape == (h, w, 3)
    assert by_plate["v1_s1"]["frames"] == ["v1_f00005", "v1_f00006"] and by_plate["v1_s1"]["static"] is True
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["caption"]
    assert f'image_dir = "{(out / "images").resolve()}"' in (out / "dataset.toml").read_text()
    report = json.loads((root / "training_data" / "dataset_results.json").read_text())
    assert report["characters"] == {} and report["background"]["images"] == 3
    assert report["background"]["trigger"] == "test_background"
    assert not (root / "training_data" / "bob").exists()  # kind background: no character datasets


def test_background_dataset_from_a_folder_of_plates(tmp_path):
    from animlora.cli.stages import run_standalone

    for i in range(3):
        write_image(tmp_path / "plates" / f"p{i}.png", np.roll(outdoor_frame(320, 180), 9 * i, axis=1))
    run_standalone("dataset", tmp_path / "plates", tmp_path / "bg", {"dataset.kind": "background"}, sets=None,
                   config_files=None, profile=None, force=False, as_json=False)
    meta = json.loads((tmp_path / "bg" / "metadata.json").read_text())
    assert meta["count"] == 3 and meta["trigger"] == "plates_background"  # folder name; each image its own shot
    assert sorted(p.name for p in (tmp_path / "bg" / "images").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert meta["images"][0]["size"] == [320, 176]  # never enlarged; height cut to a multiple of 8
