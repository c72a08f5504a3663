"""caption + dataset stages on a project whose upstream rows are written by the test (docs/contract.md)."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import numpy as np
import pytest

from animlora.catalog import Catalog
from animlora.io.images import read_image
from animlora.records.caption import list_captions, store_edit
from dataset_synth import make_project, paint, run_stages

# The allowed keys per level of sd-scripts' dataset config, typed from kohya-ss/sd-scripts
# library/config_util.py (ConfigSanitizer, commit 264167fa) — independent of animlora's own table.
SUBSET_ASC = {"color_aug", "face_crop_aug_range", "flip_aug", "num_repeats", "random_crop", "shuffle_caption",
              "keep_tokens", "keep_tokens_separator", "secondary_separator", "caption_separator", "enable_wildcard",
              "token_warmup_min", "token_warmup_step", "caption_prefix", "caption_suffix", "custom_attributes"}
DO = {"caption_dropout_every_n_epochs", "caption_dropout_rate", "caption_tag_dropout_rate"}
DB_ASC = {"caption_extension", "class_tokens", "cache_info"}
DB_DISTINCT = {"image_dir", "is_reg", "alpha_mask"}
FT_DISTINCT = {"metadata_file", "image_dir", "alpha_mask"}
DATASET_ASC = {"batch_size", "bucket_no_upscale", "bucket_reso_steps", "enable_bucket", "max_bucket_reso",
               "min_bucket_reso", "validation_seed", "validation_split", "resolution", "network_multiplier"}
ALLOWED = {
    "general": DATASET_ASC | SUBSET_ASC | DB_ASC | DO,
    "db_dataset": DATASET_ASC | SUBSET_ASC | DB_ASC | DO | {"subsets"},
    "ft_dataset": DATASET_ASC | SUBSET_ASC | DO | {"subsets"},
    "db_subset": SUBSET_ASC | DB_DISTINCT | DB_ASC | DO,
    "ft_subset": SUBSET_ASC | FT_DISTINCT | DO,
}

SETTINGS = {"dataset": {"target_size": 12, "min_size": 8, "small_size": 12, "resolution": 512, "min_bucket": 128, "max_bucket": 1024,
                        "kohya_layout": True, "regularization": 3, "validation_split": 0.1}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    rows = make_project(root, {"luca": 22, "alberto": 14, "guido": 4}, duplicates=(5,))
    ids = sorted(rows)
    luca = [i for i in ids if rows[i]["track_id"].endswith("_0")]
    # bad input: a corrupt cut-out, a source frame gone, an empty caption
    (root / "segmentation" / rows[luca[0]]["path"]).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "frames" / f"{rows[luca[1]]['frame_id']}.png").unlink()
    summaries = run_stages(root, ["caption"], SETTINGS)
    with Catalog(root / "catalog.sqlite") as cat:
        cat.execute("UPDATE captions SET text = '' WHERE instance_id = ?", (luca[2],))
        store_edit(cat, luca[3], "luca", "luca, laughing on a vespa, wearing a striped shirt")
    summaries += run_stages(root, ["dataset"], SETTINGS)
    return root, rows, luca, summaries


def test_caption_stage_rows_files_and_failures(built):
    root, rows, luca, summaries = built
    cap = summaries[0]
    assert cap.items_total == 39  # 40 members, one with its frame gone is unusable
    assert [label for label, _ in cap.failures] == [f"luca/{luca[0]}"]
    with Catalog(root / "catalog.sqlite") as cat:
        caps = list_captions(cat, "luca")
    assert len(caps) == 20
    for c in caps:
        if c.instance_id in (luca[2], luca[3]):
            continue
        txt = (root / "captions" / "luca" / f"{c.instance_id}.txt").read_text().strip()
        assert txt == c.text and txt.startswith("luca, ")
        assert c.source == "template" and 0 < c.confidence <= 1
        assert {"lighting", "background"} <= set(c.fields)
    # framing unless a side edge cuts the figure; an outfit unless shirt and trousers are one
    # colour family (a blue shirt over blue trousers reads as one material)
    assert sum("framing" in c.fields for c in caps) >= 15
    assert sum("outfit" in c.fields for c in caps) >= 12
    report = json.loads((root / "captions" / "caption_results.json").read_text())
    assert report["unusable"][0]["instance"] == luca[1]


def test_edits_survive_a_forced_rerun(built, tmp_path):
    root, rows, luca, _ = built
    run_stages(root, ["caption"], SETTINGS, force=True)
    with Catalog(root / "catalog.sqlite") as cat:
        row = cat.one("SELECT text, edited, auto_text FROM captions WHERE instance_id = ?", (luca[3],))
    assert row["edited"] == 1 and row["text"] == "luca, laughing on a vespa, wearing a striped shirt"
    assert row["auto_text"].startswith("luca, ")
    assert (root / "captions" / "luca" / f"{luca[3]}.txt").read_text().strip() == row["text"]


def test_characters_built_and_small_one_skipped(built):
    root, *_ = built
    report = json.loads((root / "training_data" / "dataset_results.json").read_text())
    assert sorted(report["characters"]) == ["alberto", "luca"]
    assert [s["character"] for s in report["skipped_characters"]] == ["guido"]
    guido = report["skipped_characters"][0]
    # min_size counts the images that can be written: 4 members, one too small at <= 1.25x
    assert guido["images"] == 3 and "only 3 images could be written" in guido["reason"]
    assert guido["left_out_counts"] == {"too small": 1}
    assert not (root / "training_data" / "guido" / "metadata.json").exists()
    assert report["characters"]["luca"]["images"] == 12
    assert report["characters"]["alberto"]["images"] == 12


def test_bad_inputs_listed_not_silent(built):
    root, rows, luca, _ = built
    meta = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())
    reasons = {s["instance"]: s["reason"] for s in meta["skipped"]}
    assert "corrupt" in reasons[luca[0]] or "not an image" in reasons[luca[0]]
    assert reasons[luca[1]].startswith("source frame gone")
    assert reasons[luca[2]] == "empty caption"
    # exactly one of the duplicate pair (same embedding, same picture) is left out, naming the other
    pair = sorted((reasons.get(i, ""), i) for i in (luca[4], luca[5]))
    assert pair[0][0] == "" and pair[1][0].startswith(f"near-duplicate of {pair[0][1]} (same character, same picture")
    assert meta["selection"]["features"] == "embeddings (test-embed)"
    chosen = {r["instance_id"] for r in meta["images"]}
    assert not chosen & {luca[0], luca[1], luca[2]}


def test_lineage_every_image_maps_to_a_catalog_instance(built):
    root, rows, *_ = built
    con = sqlite3.connect(root / "catalog.sqlite")
    items = con.execute("SELECT character, instance_id, image_path, caption_path FROM dataset_items").fetchall()
    assert len(items) == 24
    for character in ("luca", "alberto"):
        meta = json.loads((root / "training_data" / character / "metadata.json").read_text())
        images = sorted(p.name for p in (root / "training_data" / character / "images").glob("*.png"))
        assert images == sorted(r["file"].split("/")[-1] for r in meta["images"])
        for r in meta["images"]:
            inst = rows[r["instance_id"]]
            assert (r["video"], r["shot"], r["track"], r["frame"]) == (
                inst["video_id"], inst["shot_id"], inst["track_id"], inst["frame_id"])
            assert r["box"] == json.loads(inst["bbox"])
            assert r["mask"].endswith(inst["mask_path"]) and r["cutout"].endswith(inst["path"])
            assert r["timestamp"] is not None and r["caption_source"] in ("template", "edit")
            assert (character, r["instance_id"], r["file"], r["caption_file"]) in items
            frame_owner = con.execute("SELECT character FROM character_members WHERE instance_id = ?",
                                      (r["instance_id"],)).fetchone()[0]
            assert frame_owner == character


def test_images_buckets_and_captions(built):
    root, *_ = built
    folder = root / "training_data" / "luca"
    meta = json.loads((folder / "metadata.json").read_text())
    shots = {r["shot"] for r in meta["images"]}
    assert len(shots) == 6  # 12 images spread over all 6 shots
    for r in meta["images"]:
        img = read_image(root / "training_data" / r["file"], "RGBA")
        h, w = img.shape[:2]
        assert w % 64 == 0 and h % 64 == 0 and max(w, h) <= 1024 and [w, h] == r["size"]
        assert r["scale"] <= 2.0 + 1e-6
        assert img[..., 3].min() == 0 and img[..., 3].max() == 255  # alpha mask kept for masked loss
        stem = r["file"].split("/")[-1].rsplit(".", 1)[0]
        side = (folder / "images" / f"{stem}.txt").read_text()
        assert side == (folder / "captions" / f"{stem}.txt").read_text()
        assert side.startswith("luca, a 3d animated character, pixar style, smooth shading")
        assert "anime" not in side
    edited = [r for r in meta["images"] if r["caption_edited"]]
    for r in edited:
        assert r["caption"] == ("luca, a 3d animated character, pixar style, smooth shading, laughing on a vespa, "
                                "wearing a striped shirt")


def test_sd_scripts_toml_has_only_allowed_keys(built):
    root, *_ = built
    folder = root / "training_data" / "luca"
    for name, kind in (("dataset.toml", "db"), ("dataset_finetune.toml", "ft"), ("../dataset_all.toml", "db")):
        config = tomllib.loads((folder / name).read_text())
        assert set(config) == {"general", "datasets"}
        assert set(config["general"]) <= ALLOWED["general"]
        for ds in config["datasets"]:
            assert set(ds) <= ALLOWED[f"{kind}_dataset"]
            for sub in ds["subsets"]:
                assert set(sub) <= ALLOWED[f"{kind}_subset"]
                assert "validation_split" not in sub
                assert (folder / sub["image_dir"]).is_dir() or sub["image_dir"].endswith("images")
    db = tomllib.loads((folder / "dataset.toml").read_text())
    assert db["general"]["caption_extension"] == ".txt"
    assert db["general"]["flip_aug"] is False and db["general"]["color_aug"] is False  # 3D profile
    assert db["datasets"][0]["validation_split"] == 0.1
    assert db["datasets"][0]["subsets"][0]["alpha_mask"] is True
    assert db["datasets"][0]["subsets"][1]["is_reg"] is True
    assert len(list((folder / "reg").glob("*.png"))) == 3
    ft = tomllib.loads((folder / "dataset_finetune.toml").read_text())
    lines = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    assert ft["datasets"][0]["subsets"][0]["metadata_file"].endswith("metadata.jsonl") and len(lines) == 12
    for line in lines:
        assert set(line) == {"image_path", "caption", "image_size"}
        assert (folder / "images" / line["image_path"]).is_file()


def test_kohya_layout_and_balanced_repeats(built):
    root, *_ = built
    assert sorted(p.name for p in (root / "training_data" / "luca" / "kohya").iterdir()) == ["1_luca"]
    assert len(list((root / "training_data" / "luca" / "kohya" / "1_luca").glob("*.txt"))) == 12
    combined = tomllib.loads((root / "training_data" / "dataset_all.toml").read_text())
    repeats = [s["num_repeats"] for s in combined["datasets"][0]["subsets"]]
    assert repeats == [1, 1]  # both reached 12 images


def test_report_written(built):
    root, *_ = built
    folder = root / "training_data"
    html = (folder / "dataset_report.html").read_text()
    assert "guido" in html and "luca" in html
    for png in ("report_characters.png", "report_framing_view.png", "report_caption_length.png",
                "report_samples_luca.png"):
        assert read_image(folder / png).shape[0] > 50


def test_rerun_is_up_to_date(built):
    root, *_ = built
    run_stages(root, ["dataset"], SETTINGS)  # picks up the captions the forced caption re-run rewrote
    summaries = run_stages(root, ["dataset"], SETTINGS)
    assert summaries[0].up_to_date or summaries[0].items_skipped == summaries[0].items_total


def test_repeats_balance_characters():
    from animlora.curation.formats import balanced_repeats, kohya_folder

    assert balanced_repeats({"luca": 400, "alberto": 100, "giulia": 190}, 2) == {"luca": 2, "alberto": 8, "giulia": 4}
    assert kohya_folder(3, "luca paguro") == "3_luca paguro"
    assert np.isclose(1, 1)


def test_an_edit_follows_its_instance_when_the_character_is_renamed(tmp_path):
    root = tmp_path / "proj"
    rows = make_project(root, {"luca": 10})
    one = sorted(rows)[3]
    run_stages(root, ["caption"], SETTINGS)
    with Catalog(root / "catalog.sqlite") as cat:
        store_edit(cat, one, "luca", "luca, laughing on a vespa")
        cat.execute("UPDATE captions SET accepted = 1 WHERE instance_id = ?", (one,))
        # what the review page's rename writes
        cat.execute("UPDATE character_members SET character = 'luca_paguro' WHERE character = 'luca'")
    run_stages(root, ["caption"], SETTINGS)
    with Catalog(root / "catalog.sqlite") as cat:
        rows_now = [dict(r) for r in cat.rows("SELECT * FROM captions WHERE instance_id = ?", (one,))]
        characters = {r["character"] for r in cat.rows("SELECT character FROM captions")}
    assert len(rows_now) == 1
    row = rows_now[0]
    assert (row["character"], row["text"], row["edited"], row["accepted"]) == (
        "luca_paguro", "luca_paguro, laughing on a vespa", 1, 1)
    assert characters == {"luca_paguro"}
    assert (root / "captions" / "luca_paguro" / f"{one}.txt").read_text().strip() == row["text"]
    assert not list((root / "captions").glob("luca/*.txt"))  # the old name's files are gone
    # and it stays an edit on the next forced run
    run_stages(root, ["caption"], SETTINGS, force=True)
    with Catalog(root / "catalog.sqlite") as cat:
        again = cat.one("SELECT text, edited FROM captions WHERE instance_id = ?", (one,))
    assert (again["text"], again["edited"]) == ("luca_paguro, laughing on a vespa", 1)


def test_surroundings_come_from_the_deoccluded_box_where_there_is_one(tmp_path):
    """Where the deocclude stage painted another character out of an instance's box, the
    dataset image shows the filled box (here: magenta, which nothing else in the frames is)."""
    from animlora.io.images import write_image
    from animlora.records import deocclude as records

    root = tmp_path / "proj"
    rows = make_project(root, {"luca": 10})
    filled = sorted(rows)[:5]
    with Catalog(root / "catalog.sqlite") as cat:
        for iid in filled:
            x, y, w, h = json.loads(rows[iid]["bbox"])
            box = [max(0, x - 20), max(0, y - 10), w + 40, h + 20]
            box[2], box[3] = min(box[2], 640 - box[0]), min(box[3], 360 - box[1])
            write_image(root / "deoccluded" / f"{iid}.png", np.full((box[3], box[2], 3), (255, 0, 255), np.uint8))
            records.replace_frame(cat, rows[iid]["frame_id"], [records.Fill(
                iid, rows[iid]["frame_id"], f"{iid}.png", f"{iid}_original.png", tuple(box), 0.1, "opencv")])

    def built(use: bool) -> dict[str, tuple[bool, int]]:
        settings = {"dataset": SETTINGS["dataset"] | {"background": "context", "use_deoccluded": use,
                                                       "regularization": 0, "validation_split": 0.0}}
        run_stages(root, ["caption", "dataset"], settings, force=True)
        meta = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())
        out = {}
        for rec in meta["images"]:
            image = read_image(root / "training_data" / rec["file"], "RGB").astype(int)
            magenta = (image[..., 0] > 230) & (image[..., 1] < 30) & (image[..., 2] > 230)
            out[rec["instance_id"]] = (rec["deoccluded"], int(magenta.sum()))
        return out

    on = built(True)
    assert set(filled) & set(on)  # some of them are in the set
    assert {i for i, (flag, _) in on.items() if flag} == set(filled) & set(on)
    assert all((n > 0) == (i in filled) for i, (_, n) in on.items())
    off = built(False)
    assert all(flag is False and n == 0 for flag, n in off.values())


def test_a_member_whose_matte_stopped_inside_its_body_is_left_out_with_its_reason(tmp_path):
    from animlora.curation.build import LOOSE_OUTLINE
    from animlora.curation.summary import ending
    from animlora.io.images import write_image

    rows = make_project(tmp_path, {"character_0": 8}, shots=4)
    paint(tmp_path, rows, lambda row: (225, 225, 220))  # a big pale body in every frame, and its cut-out
    cut_short = max(rows, key=lambda i: json.loads(rows[i]["bbox"])[3])  # the tallest body
    path = tmp_path / "segmentation" / rows[cut_short]["path"]
    cutout = read_image(path, "RGBA").copy()
    cutout[:, : cutout.shape[1] // 2, 3] = 0  # the matte kept the body's right half; the frame shows all of it
    write_image(path, cutout)
    settings = {"dataset": {"target_size": 12, "small_size": 4, "resolution": 512, "min_bucket": 128,
                            "max_bucket": 1024}}

    def built() -> tuple[set[str], list[str]]:
        meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
        return {r["instance_id"] for r in meta["images"]}, [s["instance"] for s in meta["skipped"]
                                                           if s["code"] == LOOSE_OUTLINE]

    run_stages(tmp_path, ["dataset"], settings)
    images, loose = built()
    assert loose == [cut_short] and cut_short not in images and images
    report = json.loads((tmp_path / "training_data" / "dataset_results.json").read_text())
    assert report["characters"]["character_0"]["left_out"][LOOSE_OUTLINE] == 1
    said = [line for line in ending(tmp_path / "training_data" / "dataset_results.json")["lines"] if LOOSE_OUTLINE in line]
    assert said == ["left out as not whole (the matte stopped inside the character or ran on into the set; "
                    "not_whole:outline): character_0 1 (dataset.max_loose_outline: 1 keeps them)"]
    run_stages(tmp_path, ["dataset"], {"dataset": {**settings["dataset"], "max_loose_outline": 1.0}})  # off
    images, loose = built()
    assert loose == [] and cut_short in images


def test_a_piece_of_another_colour_apart_from_the_body_is_cut_from_the_image(tmp_path):
    """Film f4032: Rinky's ear tips beside Gimera, in her mask but apart from her body, stayed in her
    image (and widened its crop); now they are cut, the image says so, and cut_foreign: false keeps them."""
    import cv2

    from animlora.io.images import write_image

    rows = make_project(tmp_path, {"character_0": 8}, shots=4)
    paint(tmp_path, rows, lambda row: (120, 120, 128))  # a grey body in every frame, and its cut-out
    speckled = max(rows, key=lambda i: json.loads(rows[i]["bbox"])[3])  # the tallest body
    path = tmp_path / "segmentation" / rows[speckled]["path"]
    cutout = read_image(path, "RGBA").copy()
    cutout[4:16, 4:16] = (200, 50, 40, 255)  # a red bit in the cut-out's corner, apart from the ellipse
    write_image(path, cutout)
    settings = {"dataset": {"target_size": 12, "small_size": 4, "resolution": 512, "min_bucket": 128,
                            "max_bucket": 1024}}

    def image() -> tuple[int, dict]:
        folder = tmp_path / "training_data" / "character_0"
        meta = {r["instance_id"]: r for r in json.loads((folder / "metadata.json").read_text())["images"]}
        record = meta[speckled]
        alpha = read_image(folder.parent / record["file"], "RGBA")[..., 3] > 38
        return cv2.connectedComponents(alpha.astype(np.uint8), connectivity=8)[0] - 1, record

    run_stages(tmp_path, ["dataset"], settings)
    parts, record = image()
    assert parts == 1 and "apart from the body in another colour" in record["piece_cut"]["why"]
    assert 0.005 < record["piece_cut"]["share"] < 0.02  # 144 px of a 140 px ellipse's ~10,000
    page = (tmp_path / "training_data" / "dataset_report.html").read_text()
    said = page.split("Images with another object's piece cut from the mask</h2>")[1]
    assert "character_0: 1 of" in said and record["file"] in said and "apart from the body" in said
    run_stages(tmp_path, ["dataset"], {"dataset": {**settings["dataset"], "cut_foreign": False}})
    parts, record = image()
    assert parts == 2 and "piece_cut" not in record
    page = (tmp_path / "training_data" / "dataset_report.html").read_text()
    assert page.split("Images with another object's piece cut from the mask</h2>")[1].startswith("<p>none</p>")


def test_report_lists_every_left_out_instance(built):
    """The old page said "Instances left out: none" while instances were left out."""
    root, *_ = built
    html = (root / "training_data" / "dataset_report.html").read_text()
    left = []
    for character in ("luca", "alberto"):
        meta = json.loads((root / "training_data" / character / "metadata.json").read_text())
        assert sum(meta["left_out_counts"].values()) == len(meta["skipped"])
        left += meta["skipped"]
    guido = json.loads((root / "training_data" / ".skipped" / "guido.json").read_text())
    left += guido["left_out"]
    assert left
    for sk in left:
        assert sk["instance"] in html and sk["code"] in html


def test_the_run_ends_with_a_table_per_character(built):
    from rich.console import Console

    from animlora.curation.summary import ending, print_ending

    root, *_ = built
    summary = ending(root / "training_data" / "dataset_results.json")
    rows = {r["character"]: r for r in summary["characters"]}
    assert rows["luca"]["status"] == "ok" and rows["luca"]["images"] == 12 and rows["luca"]["shots"] == 6
    assert rows["luca"]["left_out"]["near-duplicate"] == 1
    assert rows["guido"]["status"] == "no dataset" and rows["guido"]["left_out"] == {"too small": 1}
    assert summary["usable"] == 2
    assert any(line.startswith("guido: no dataset") for line in summary["lines"])
    assert summary["upstream"]["instances"] == 40
    console = Console(record=True, width=160)
    print_ending(summary, console)
    text = console.export_text()
    assert "luca" in text and "1 near-duplicate" in text and "guido" in text
    # what is in no character is not lost: the review offers it (said only when there is some)
    assert ("Suggest from noise" in text) == bool(summary["upstream"].get("in_no_character"))
    summary["upstream"]["in_no_character"] = 3
    print_ending(summary, console)
    text = console.export_text()
    assert "3 in no character" in text and "Suggest from noise" in text
    # named folders (luca, guido) are the user's word on who is who: no hint to merge or name them
    assert summary["unnamed"] == 0 and "Same character?" not in text
    # two numbered folders or more: they may be one character, and the review says which look alike
    summary["unnamed"] = 2
    console = Console(record=True, width=160)
    print_ending(summary, console)
    text = console.export_text()
    assert "'Same character?'" in text and "characters/<name>.yaml" in text
    summary["unnamed"] = 1
    console = Console(record=True, width=160)
    print_ending(summary, console)
    assert "Same character?" not in console.export_text()
    # a line is printed as written: rich took "[models]" in a pip line for markup and dropped it
    summary["lines"] = ["deocclude: its packages are missing (pip install 'animlora[models]')"]
    console = Console(record=True, width=160)
    print_ending(summary, console)
    assert "pip install 'animlora[models]'" in console.export_text()


def test_the_ending_says_when_no_usable_dataset_came_out(tmp_path):
    from animlora.curation.summary import ending

    results = tmp_path / "dataset_results.json"
    results.write_text(json.dumps({
        "characters": {"buck": {"images": 9, "status": "small", "shots": 3, "candidate_shots": 4,
                                "left_out": {"near-duplicate": 5}}},
        "skipped_characters": [], "failed": [], "upstream": {"instances": 50}}))
    small = ending(results)
    assert small["usable"] == 1 and "marked small" in small["lines"][0]
    results.write_text(json.dumps({
        "characters": {}, "failed": [], "upstream": {"instances": 50},
        "skipped_characters": [{"character": "buck", "reason": "only 3 images could be written",
                                "left_out_counts": {"too small": 7}}]}))
    none = ending(results)
    assert none["usable"] == 0 and none["lines"][0].startswith("No usable dataset came out.")
    assert "dataset.min_size" in none["lines"][0] and "enhance.backend spandrel" in none["lines"][0]
    # the ways to more images follow why members were left out: no crop too small, no enlarging said
    results.write_text(json.dumps({
        "characters": {}, "failed": [], "upstream": {"instances": 50},
        "skipped_characters": [{"character": "buck", "reason": "only 3 images could be written",
                                "left_out_counts": {"not_whole:outline": 2, "near-duplicate": 4}}]}))
    loose = ending(results)["lines"][0]
    assert "dataset.max_loose_outline: 1" in loose and "spandrel" not in loose
    results.write_text(json.dumps({"characters": {}, "skipped_characters": [], "failed": [],
                                   "upstream": {"instances": 50}}))
    assert "animlora review" in ending(results)["lines"][0]


def test_the_ending_lists_character_10_after_character_9(tmp_path):
    from animlora.curation.summary import ending

    def written(images):
        return {"images": images, "status": "ok", "shots": 2, "candidate_shots": 2, "left_out": {}}

    results = tmp_path / "dataset_results.json"
    results.write_text(json.dumps({
        "characters": {"character_10": written(8), "character_1": written(42), "character_2": written(40),
                       "buck": written(9)},
        "skipped_characters": [{"character": n, "reason": "too few", "left_out_counts": {}}
                               for n in ("character_11", "character_3")],
        "failed": [], "upstream": {"instances": 50}}))
    names = [r["character"] for r in ending(results)["characters"]]
    assert names == ["buck", "character_1", "character_2", "character_10", "character_3", "character_11"]


def test_the_ending_says_each_finding_once_for_every_character_it_concerns(tmp_path):
    """The whole film ended with 19 lines for 11 folders (one per character per finding: marked
    small, enhanced crops, pieces cut); now one line per finding names every character."""
    from animlora.curation.summary import ending

    characters = {}
    for k in range(11):
        characters[f"character_{k}"] = {
            "images": 8 + k, "status": "small" if k >= 6 else "ok", "shots": 3, "left_out": {},
            "enlargement": {"enhanced": 5 + k, "below_min_bucket": 1 if k == 3 else 0, "resample_max": 1.1 + k / 100},
            "pieces_cut": 2 if k in (1, 2) else 0}
    results = tmp_path / "dataset_results.json"
    results.write_text(json.dumps({"characters": characters, "skipped_characters": [], "failed": [],
                                   "upstream": {"instances": 500}}))
    lines = ending(results)["lines"]
    assert len(lines) == 3, lines
    small, enhanced, cut = lines
    assert small.startswith("marked small") and "character_6 14, character_7 15" in small and "character_5" not in small
    assert "character_0 5 of 8" in enhanced and "character_10 15 of 18" in enhanced
    assert "dataset.min_bucket (sd-scripts bucket_no_upscale): character_3 1;" in enhanced
    assert enhanced.endswith("plain resampling at most 1.20x")
    assert "character_1 2 of 9, character_2 2 of 10 (" in cut


def test_instances_that_never_reached_a_character_are_listed(tmp_path):
    """The trailer's report said "Instances left out: none" while 6 instances were in no character."""
    from animlora.curation.report import write_report
    from animlora.curation.summary import upstream_counts, upstream_left_out

    with Catalog(tmp_path / "catalog.sqlite") as cat:
        cat.upsert("prefilter_results", [
            {"instance_id": "a", "kept": 0, "reason": "tiny", "path": None},
            {"instance_id": "b", "kept": 1, "reason": None, "path": "b.png"},
            {"instance_id": "c", "kept": 1, "reason": None, "path": "c.png"},
        ])
        cat.upsert("character_members", [{"instance_id": "c", "character": "buck"}])
        left = upstream_left_out(cat)
        counts = upstream_counts(cat)
    assert [(x["instance"], x["code"]) for x in left] == [("a", "prefilter: tiny"), ("b", "in no character")]
    assert counts["prefilter_rejected"] == {"tiny": 1} and counts["in_no_character"] == 1
    write_report(tmp_path, {}, [], left)
    html = (tmp_path / "dataset_report.html").read_text()
    assert "1 × prefilter: tiny" in html and "1 × in no character" in html and "<code>b</code>" in html


def test_a_caption_file_edited_by_hand_is_kept_when_the_dataset_is_built_again(tmp_path):
    """Kohya users edit captions in the dataset folder; a later run (here: forced, as after a
    review or a new video) built the folder again and wrote the edits over."""
    import os

    root = tmp_path / "proj"
    make_project(root, {"luca": 10})
    run_stages(root, ["caption", "dataset"], SETTINGS)
    out = root / "training_data"

    def beside(record: dict) -> Path:  # images/<name>.txt, what sd-scripts reads
        return (out / record["file"]).with_suffix(".txt")

    first, second, third = json.loads((out / "luca" / "metadata.json").read_text())["images"][:3]
    edits = {first["instance_id"]: (beside(first), "luca, a 3d animated character, laughing on a vespa"),
             second["instance_id"]: (out / second["caption_file"], "luca, holding a gelato")}
    later = (out / "luca" / "metadata.json").stat().st_mtime_ns + 1_000_000_000
    for path, text in edits.values():
        path.write_text(text + "\n")
        os.utime(path, ns=(later, later))  # written after the folder, as a person's edit is
    untouched = beside(third).read_text()

    [summary] = run_stages(root, ["dataset"], SETTINGS, force=True)
    assert not summary.failures
    with Catalog(root / "catalog.sqlite") as cat:
        rows = {r["instance_id"]: r for r in cat.rows("SELECT * FROM captions WHERE edited = 1")}
    assert set(rows) == set(edits)
    meta = {r["instance_id"]: r for r in json.loads((out / "luca" / "metadata.json").read_text())["images"]}
    for instance_id, (_, text) in edits.items():
        assert rows[instance_id]["text"] == text and meta[instance_id]["caption_edited"]
        for written in (beside(meta[instance_id]), out / meta[instance_id]["caption_file"]):  # both files the build wrote
            assert text.split(", ")[-1] in written.read_text()
    assert beside(third).read_text() == untouched
    run_stages(root, ["dataset"], SETTINGS)  # nothing more is taken for an edit on the next run
    with Catalog(root / "catalog.sqlite") as cat:
        assert {r["instance_id"] for r in cat.rows("SELECT * FROM captions WHERE edited = 1")} == set(edits)


def test_images_deleted_by_hand_from_a_dataset_folder_stay_out(tmp_path):
    """Kohya users prune a set by deleting images; the next run made them again (a deleted
    output is remade). Now they leave the character (a review move to noise, logged)."""
    import shutil

    root = tmp_path / "proj"
    make_project(root, {"luca": 14})
    run_stages(root, ["caption", "dataset"], SETTINGS)
    out = root / "training_data"
    meta = json.loads((out / "luca" / "metadata.json").read_text())
    pruned = meta["images"][:2]
    for record in pruned:
        (out / record["file"]).unlink()
    [summary] = run_stages(root, ["dataset"], SETTINGS)
    assert not summary.failures
    after = json.loads((out / "luca" / "metadata.json").read_text())["images"]
    assert after and len(after) <= len(meta["images"])  # (the selection may take an instance it had passed over)
    assert not {r["instance_id"] for r in pruned} & {r["instance_id"] for r in after}
    assert all((out / r["file"]).is_file() for r in after) and not any((out / r["file"]).exists() for r in pruned)
    with Catalog(root / "catalog.sqlite") as cat:
        members = {r["instance_id"] for r in cat.rows("SELECT instance_id FROM character_members")}
        (action, payload), = [(r["action"], json.loads(r["payload"])) for r in cat.rows("SELECT * FROM review_decisions")]
    assert not {r["instance_id"] for r in pruned} & members and len(members) == 12
    assert action == "move" and payload["to"] == "noise" and set(payload["instances"]) == {r["instance_id"] for r in pruned}
    assert run_stages(root, ["dataset"], SETTINGS)[0].up_to_date
    # the whole folder deleted is made again (a deleted output), not taken for pruning
    shutil.rmtree(out / "luca")
    run_stages(root, ["dataset"], SETTINGS)
    assert len(json.loads((out / "luca" / "metadata.json").read_text())["images"]) == len(after)


def test_a_run_killed_while_it_removes_a_stale_set_is_not_taken_for_pruning(tmp_path, monkeypatch):
    """The runner removes a stale item's files last written first: a kill in between leaves no
    metadata.json naming images already gone (the next plan would take them for pruned)."""
    from pathlib import Path as RealPath

    root = tmp_path / "proj"
    make_project(root, {"luca": 14})
    run_stages(root, ["caption", "dataset"], SETTINGS)
    before = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())["images"]
    real_unlink, removed = RealPath.unlink, []

    def unlink(self, missing_ok=False):
        if len(removed) == 2:
            raise KeyboardInterrupt  # killed while the stale set's files go
        removed.append(self.name)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(RealPath, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        run_stages(root, ["dataset"], SETTINGS, force=True)
    monkeypatch.undo()
    [summary] = run_stages(root, ["dataset"], SETTINGS)
    assert not summary.failures
    with Catalog(root / "catalog.sqlite") as cat:
        assert cat.rows("SELECT * FROM review_decisions") == []
    after = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())["images"]
    assert [r["instance_id"] for r in after] == [r["instance_id"] for r in before]


def test_a_character_its_captions_mostly_measure_bare_gets_no_outfit_words(tmp_path):
    """Whole film: "wearing grey and beige" on 55 of 291 images of bare animals (Buck's fur under
    warm light). A character whose captions measured an outfit on fewer than half of its images
    (close-ups aside) is bare in all of them; one measured clothed on most keeps its outfits."""
    root = tmp_path / "proj"
    rows = make_project(root, {"luca": 12, "pip": 12})
    run_stages(root, ["caption"], SETTINGS)
    with Catalog(root / "catalog.sqlite") as cat:
        fields = {r["instance_id"]: (r["character"], json.loads(r["fields"]))
                  for r in cat.rows("SELECT instance_id, character, fields FROM captions")}
        assert len(fields) == len(rows) and all(f["framing"]["value"] != "close-up" for _, f in fields.values())
        worn = {name: sum("outfit" in f for who, f in fields.values() if who == name) for name in ("luca", "pip")}
        assert worn["luca"] >= 8 and worn["pip"] >= 8  # the synthetic figures wear two colours
        for i in sorted(i for i, (who, f) in fields.items() if who == "pip" and "outfit" in f)[3:]:
            bare = {k: v for k, v in fields[i][1].items() if k != "outfit"}  # pip: measured clothed on 3 of 12
            cat.execute("UPDATE captions SET fields = ? WHERE instance_id = ?", (json.dumps(bare), i))
    run_stages(root, ["dataset"], SETTINGS)
    texts = {}
    for name in ("luca", "pip"):
        meta = json.loads((root / "training_data" / name / "metadata.json").read_text())
        texts[name] = [r["caption"] for r in meta["images"]]
        assert ("outfit:*" in meta["captions"]["pruned_traits"]) == (name == "pip")
    assert texts["pip"] and not any("wearing" in t for t in texts["pip"])
    assert sum("wearing" in t for t in texts["luca"]) >= len(texts["luca"]) // 2 > 0


def test_building_one_character_leaves_the_others_datasets_as_they_are(tmp_path):
    """``dataset.character``: only that character's dataset is built; what earlier runs wrote for
    the others stays, byte for byte (it was deleted as stale before session 42). A name that is no
    character of the project is a one-line error naming the ones it has, and deletes nothing."""
    from animlora.errors import ConfigError

    make_project(tmp_path, {"character_0": 8, "hero": 8}, shots=4)
    settings = SETTINGS["dataset"] | {"min_size": 4}
    run_stages(tmp_path, ["dataset"], {"dataset": settings})
    out = tmp_path / "training_data"

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    hero, mine = files(out / "hero"), files(out / "character_0")
    assert any(name.endswith(".png") for name in hero)
    run_stages(tmp_path, ["dataset"], {"dataset": settings | {"character": "character_0"}})
    assert files(out / "hero") == hero
    assert files(out / "character_0") == mine  # the same recipe: nothing to build again
    report = json.loads((out / "dataset_results.json").read_text())
    assert sorted(report["characters"]) == ["character_0", "hero"]  # the ending lists both

    with pytest.raises(ConfigError, match=r"dataset.character 'villain': no such character in this project "
                                          r"\(its characters: character_0, hero\)"):
        run_stages(tmp_path, ["dataset"], {"dataset": settings | {"character": "villain"}})
    assert files(out / "hero") == hero and (out / "character_0" / "metadata.json").is_file()
