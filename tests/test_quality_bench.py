"""benchmarks/quality.py: the scoring functions on synthetic truth, and a tiny project end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


quality = _load("quality")


# -- cuts --------------------------------------------------------------------------------------
def test_cuts_exact_and_off_by_tolerance():
    r = quality.score_cuts([10, 31, 50], [10, 30, 50], tolerance=1)
    assert (r["tp"], r["fp"], r["fn"], r["f1"]) == (3, 0, 0, 1.0)
    r = quality.score_cuts([10, 33, 50], [10, 30, 50], tolerance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["missed_cuts"] == [30] and r["false_cuts"] == [33]


def test_dissolve_counts_once_and_flash_is_a_false_cut():
    # dissolve 40..47: two boundaries inside = found once + one false positive
    r = quality.score_cuts([10, 42, 45, 70], [10, 70], dissolve=[40, 47], flash_frames=[90, 91, 92], tolerance=1)
    assert (r["tp"], r["fp"], r["fn"], r["dissolve_found"]) == (3, 1, 0, 2)
    r = quality.score_cuts([10, 70, 91], [10, 70], dissolve=[40, 47], flash_frames=[90, 91, 92], tolerance=1)
    assert (r["tp"], r["fp"], r["fn"], r["flash_cuts"], r["dissolve_found"]) == (2, 1, 1, 1, 0)
    assert r["f1"] == pytest.approx(4 / 6, abs=1e-4)


# -- one frame ---------------------------------------------------------------------------------
def _scene() -> np.ndarray:
    t = np.zeros((60, 80), np.uint8)
    t[10:50, 5:25] = 1  # character 1: rows 10-29 "head", rows 30-49 "body"
    t[10:50, 50:70] = 2
    return t


def test_frame_clean_instances_are_one():
    t = _scene()
    fs = quality.score_frame(t, [t == 1, t == 2])
    assert fs.labels == [1, 2]
    assert {k: c["status"] for k, c in fs.characters.items()} == {1: "one", 2: "one"}
    assert fs.characters[1]["iou"] == 1.0


def test_frame_split_merge_prop_missed():
    t = _scene()
    head, body = np.zeros_like(t, bool), np.zeros_like(t, bool)
    head[10:30, 5:25] = True
    body[30:50, 5:25] = True
    fs = quality.score_frame(t, [head, body])
    assert fs.characters[1]["status"] == "split" and fs.characters[2]["status"] == "missed"
    assert fs.characters[1]["iou"] == 0.5 and fs.characters[1]["union_iou"] == 1.0
    assert fs.characters[2]["iou"] == 0.0

    both = t > 0
    fs = quality.score_frame(t, [both])
    assert fs.characters[1]["status"] == "merged_character"

    with_prop = t == 1
    with_prop[40:58, 25:45] = True  # a rock beside it: 360 px against 800
    fs = quality.score_frame(t, [with_prop, t == 2])
    assert fs.labels == [1, 2]
    assert fs.characters[1]["status"] == "merged_prop" and fs.characters[2]["status"] == "one"

    rock = np.zeros_like(t, bool)
    rock[52:58, 30:45] = True
    assert quality.score_frame(t, [t == 1, rock]).labels == [1, 0]


def test_split_parts_whose_union_is_the_character_are_a_clean_union():
    # the parts of a split character that together are its one clean instance (what the dataset's
    # join_parts writes as one image); a union holding the set or another character is not
    t = _scene()
    head, body = np.zeros_like(t, bool), np.zeros_like(t, bool)
    head[10:30, 5:25] = True
    body[30:50, 5:25] = True
    assert quality.score_frame(t, [head, body]).characters[1]["union_clean"] is True
    body_rock = body.copy()
    body_rock[40:58, 25:45] = True  # a rock fused to the body: 360 of 960 union px outside
    assert quality.score_frame(t, [head, body_rock]).characters[1]["union_clean"] is False
    head_other = head.copy()
    head_other[10:30, 50:70] = True  # half of character 2 in the head's mask
    fs = quality.score_frame(t, [head_other, body])
    assert fs.characters[1]["status"] == "split" and fs.characters[1]["union_clean"] is False


def test_frame_small_characters_are_not_visible():
    t = np.zeros((100, 100), np.uint8)
    t[0:2, 0:5] = 3  # 10 px = 0.1% of the frame
    assert quality.score_frame(t, [], min_area=0.003).characters == {}
    assert quality.score_frame(t, [], min_area=0.0005).characters[3]["status"] == "missed"


# -- identity and datasets ---------------------------------------------------------------------
def test_adjusted_rand_known_values():
    assert quality.adjusted_rand([1, 1, 2, 2], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert quality.adjusted_rand([1, 1, 2, 2], ["a", "b", "a", "b"]) == pytest.approx(-0.5)
    # values from sklearn.metrics.adjusted_rand_score (not imported: it takes seconds to load)
    assert quality.adjusted_rand([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.242424, abs=1e-5)
    assert quality.adjusted_rand([1, 1, 2, 2, 3, 3, 3], [1, 1, 1, 2, 2, 3, 3]) == pytest.approx(0.2125, abs=1e-5)


def test_identity_purity_noise_and_confusers():
    truth = {f"a{i}": 3 for i in range(6)} | {f"b{i}": 5 for i in range(4)} | {"r": 0, "n": 1}
    cluster = {f"a{i}": "c1" for i in range(6)} | {f"b{i}": "c1" for i in range(2)} | \
        {"b2": "c2", "b3": "c2", "r": "c2", "n": "noise"}
    r = quality.score_identity(truth, cluster, {"noise"}, {3: "blue", 5: "green", 0: "not_character"},
                               confusable=[[3, 5]])
    assert (r["clustered"], r["noise"], r["non_character_clustered"]) == (11, 1, 1)
    c1 = next(c for c in r["clusters"] if c["cluster"] == "c1")
    assert (c1["majority"], c1["purity"]) == ("blue", 0.75)
    assert r["min_purity"] == pytest.approx(2 / 3, abs=1e-3)
    assert r["confusable"][0]["co_clustered"] is True and r["confusable"][0]["clusters"] == ["c1"]
    assert r["ari"] < 1.0


def test_dataset_precision_and_clean():
    truth = {"x1": 1, "x2": 1, "x3": 1, "y": 2, "rock": 0}
    r = quality.score_dataset(["x1", "x2", "x3", "y", "rock"], truth, clean={"x1", "x2"}, names={1: "bunny"})
    assert (r["character"], r["precision"], r["clean"]) == ("bunny", 0.6, 0.4)


def test_captions_against_the_shot_mood():
    mood_of = {1: "day", 2: "day", 3: "sunset", 4: "night", 5: "night", 6: "night"}
    items = [(1, "luca, full body, daytime, outdoors"), (2, "luca, dark, low-key lighting"),
             (3, "luca, warm lighting, at sunset"), (4, "luca, dark, low-key lighting"),
             (5, "luca, bright, soft lighting, daytime"), (6, "luca, soft lighting"), (9, "luca, daytime")]
    r = quality.score_captions(items, mood_of, flash={5})
    assert r["images"] == 6 and r["contradict"] == 2 and r["flash_images"] == 1  # frame 9: no mood, not counted
    assert list(r["per_mood"]) == ["day", "sunset", "night"]
    assert r["per_mood"]["day"] == {"images": 2, "agree": 1, "contradict": 1,
                                    "contradicting": {"dark, low-key lighting": 1}}
    assert r["per_mood"]["sunset"]["agree"] == 1
    night = r["per_mood"]["night"]
    assert (night["images"], night["agree"], night["contradict"]) == (3, 1, 1)
    assert night["contradicting"] == {"bright, soft lighting": 1, "daytime": 1}  # "soft lighting" alone says nothing


# -- a tiny project end to end -----------------------------------------------------------------
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    from animlora.catalog import Catalog

    truth_dir, proj = tmp_path / "truth", tmp_path / "proj"
    t = _scene()
    for i in range(4):
        _png(truth_dir / "masks" / f"frame_{i:05d}.png", t)
    (truth_dir / "truth.json").write_text(json.dumps({
        "n_frames": 4, "width": 80, "height": 60, "cuts": [2], "dissolve": None, "flash_frames": [],
        "characters": {"1": "bunny", "2": "fox"}, "confusable_pairs": [],
        "frames": [{"frame": i, "shot": i // 2, "characters": [{"id": 1, "area_px": 800}, {"id": 2, "area_px": 800}]}
                   for i in range(4)]}))
    proj.mkdir()
    with Catalog(proj / "catalog.sqlite") as cat:
        cat.upsert("videos", [{"id": "v", "path": "film.mp4", "name": "film.mp4", "size": 1, "frame_count": 4,
                               "status": "ok"}])
        cat.upsert("shots", [{"id": f"v_s{k}", "video_id": "v", "idx": k, "start_frame": s, "end_frame": e,
                              "start_time": 0, "end_time": 0, "frame_count": e - s}
                             for k, (s, e) in enumerate([(0, 2), (2, 4)])])
        inst, assign = [], []
        for i in range(4):
            fid = f"v_f{i}"
            cat.upsert("frames", [{"id": fid, "video_id": "v", "shot_id": f"v_s{i // 2}", "frame_index": i,
                                   "timestamp": i / 24, "kept": 1}])
            cat.upsert("segment_frames", [{"frame_id": fid, "source": "x", "status": "ok", "n_instances": 2}])
            masks = [t == 1, t == 2] if i != 3 else [t > 0]  # frame 3: both as one mask
            for k, m in enumerate(masks):
                _png(proj / "segmentation" / "masks" / f"{fid}_i{k}.png", m * 255)
                inst.append({"id": f"{fid}_i{k}", "frame_id": fid, "video_id": "v", "path": "x",
                             "mask_path": f"masks/{fid}_i{k}.png", "bbox": [0, 0, 1, 1], "area_fraction": 0.1,
                             "truncated": 0, "sharpness": 1, "score": 1, "backend": "t"})
                assign.append({"instance_id": f"{fid}_i{k}", "cluster_id": "c1" if k == 0 else "c2"})
        cat.upsert("instances", inst)
        cat.upsert("clusters", [{"id": c, "name": c, "size": 1, "is_noise": 0} for c in ("c1", "c2")])
        cat.upsert("cluster_assignments", assign)
    meta = {"character": "character_01", "images": [{"instance_id": f"v_f{i}_i0"} for i in range(4)]}
    (proj / "training_data" / "character_01").mkdir(parents=True)
    (proj / "training_data" / "character_01" / "metadata.json").write_text(json.dumps(meta))
    return proj, truth_dir


def test_evaluate_tiny_project(tmp_path):
    proj, truth_dir = _tiny(tmp_path)
    r = quality.evaluate(proj, truth_dir)
    assert r["cuts"]["f1"] == 1.0
    m = r["masks"]
    assert (m["frames"], m["instances"], m["character_frames"]) == (4, 7, 8)
    assert m["status"] == {"one": 6, "merged_character": 2}
    assert r["identity"]["ari"] == 1.0 and r["identity"]["clustered"] == 7
    (folder,) = r["datasets"]["folders"]
    assert (folder["character"], folder["precision"], folder["clean"]) == ("bunny", 0.75, 0.75)
    assert r["datasets"]["characters_without_dataset"] == ["bunny", "fox"]
    assert r["coverage"]["share"] == {"segmented": 1.0, "clean": 1.0, "dataset": 0.5}
    assert r["coverage"]["per_character"]["fox"] == {"shots": 2, "segmented": 2, "clean": 2, "dataset": 0}
    assert "bunny" in quality.table(r)


def test_unscorable_inputs_give_one_line_errors(tmp_path, capsys):
    proj, truth_dir = _tiny(tmp_path)
    assert quality.main([str(tmp_path / "nothing"), str(truth_dir)]) == 2
    assert "no catalog.sqlite" in capsys.readouterr().err
    (truth_dir / "truth.json").write_text(json.dumps({"cuts": []}))
    assert quality.main([str(proj), str(truth_dir)]) == 2
    assert "not the cgi-bench format" in capsys.readouterr().err


def test_contact_sheet_pages_and_dataset_labels(tmp_path):
    sheets = _load("contact_sheet")
    folder = tmp_path / "ds" / "images"
    for i in range(5):
        rgba = np.zeros((40, 30, 4), np.uint8)
        rgba[..., 0], rgba[10:30, 5:25, 3] = 200, 255
        _png(folder / f"img{i}.png", rgba)
    (tmp_path / "ds" / "metadata.json").write_text(json.dumps(
        {"images": [{"file": f"images/img{i}.png", "frame_index": 10 * i, "instance_id": f"v_f{i}_i0"}
                    for i in range(5)]}))
    assert sheets.main([str(tmp_path / "ds"), "-o", str(tmp_path / "out"), "--per-page", "3", "--cols", "2",
                        "--thumb", "64", "--label", "frame"]) == 0
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made == ["ds_p01.png", "ds_p02.png"]
    with Image.open(tmp_path / "out" / "ds_p01.png") as im:
        assert im.size == (2 * 70, 2 * 94 + 18)  # 2 columns, 2 rows of 3 images, title strip
    assert sheets.dataset_items(tmp_path / "ds", "frame")[1][2] == "f20 _i0"
    # on a chosen colour, the transparent pixels show it: a rim or a gap the alpha keeps is seen
    assert sheets.main([str(tmp_path / "ds"), "-o", str(tmp_path / "blue"), "--thumb", "40", "--cols", "5",
                        "--background", "0,90,160"]) == 0
    with Image.open(tmp_path / "blue" / "ds_p01.png") as im:
        corner = np.asarray(im.convert("RGB"))[18 + 3, 3 + (40 - 30) // 2]  # the first image's top-left pixel
    assert tuple(corner) == (0, 90, 160)
    with pytest.raises(SystemExit):
        sheets.main([str(tmp_path / "ds"), "--background", "0,90"])


def test_frame_offset_names_a_shifted_project(tmp_path):
    for i in range(6):
        t = np.zeros((30, 60), np.uint8)
        t[5:25, 8 * i : 8 * i + 10] = 1  # moves 8 px a frame
        _png(tmp_path / "masks" / f"frame_{i:05d}.png", t)
    truth = quality.Truth(tmp_path, {"n_frames": 6})
    same = [(i, quality._read_png(tmp_path / "masks" / f"frame_{i:05d}.png") > 0) for i in (1, 2, 3)]
    shifted = [(i - 1, m) for i, m in same]  # the project calls frame i what the truth calls i + 1
    assert quality.frame_offset(truth, same, None) is None
    assert quality.frame_offset(truth, shifted, None) == 1
