"""Parts of one character in one frame make one dataset image (curation/parts.py): a head the
matte parted from its body, both in the character's folder, are written as the whole character."""

from __future__ import annotations

import json

import numpy as np

from animlora.catalog import Catalog
from animlora.curation.parts import JOINED, joined_parts
from animlora.curation.sources import Member
from animlora.io.images import read_image, write_image
from dataset_synth import make_project, outdoor_frame, place, run_stages

SETTINGS = {"dataset": {"target_size": 40, "min_size": 4, "small_size": 4, "resolution": 512, "min_bucket": 64,
                        "max_bucket": 1024, "regularization": 0, "validation_split": 0.0, "background": "alpha",
                        "duplicate_similarity": 1.0}}  # every image is kept: no near-duplicates


def _member(iid: str, frame: str, box: tuple[int, int, int, int], **kw) -> Member:
    return Member(instance_id=iid, character="luca", image_path=f"{iid}.png", stem=iid, frame_path=f"{frame}.png",
                  bbox=box, frame_id=frame, mask_path=f"{iid}_mask.png", **kw)


def test_touching_parts_of_one_frame_join_under_the_largest():
    head = _member("head", "f1", (100, 50, 40, 40))
    body = _member("body", "f1", (90, 90, 60, 150))  # right under the head: touching
    far = _member("far", "f1", (500, 60, 60, 150))  # the same frame, far away: not a part
    other = _member("other", "f2", (100, 50, 40, 40))  # another frame
    assert joined_parts([head, body, far, other]) == {"body": ["head"]}
    # a small gap (under PART_GAP x the larger's size, 0.12 x 95 px) still joins; a wide one does not
    near = _member("head", "f1", (100, 40, 40, 40))
    assert joined_parts([near, body]) == {"body": ["head"]}
    apart = _member("head", "f1", (100, 10, 40, 40))
    assert joined_parts([apart, body]) == {}
    # a member left out (a prop piece, a group) is no part of anything
    assert joined_parts([head, body], {"head"}) == {}


def test_parts_chain_and_the_primary_is_one_whose_enhanced_crop_holds_them_all():
    head = _member("head", "f1", (100, 50, 40, 40), enhanced_path="e.png", enhanced_region=(60, 20, 140, 260))
    body = _member("body", "f1", (90, 90, 60, 100))
    legs = _member("legs", "f1", (95, 192, 50, 60))  # touches the body only
    out = joined_parts([head, body, legs])
    assert list(out) == ["head"] and sorted(out["head"]) == ["body", "legs"]


def _split_person(root, rows: dict) -> tuple[str, str, tuple[int, int, int, int]]:
    """A new frame in shot 0 with one person, segmented as two instances of luca that touch: the
    upper body with the head, and the legs (the matte parted it at the belt). Returns (upper id,
    legs id, the whole person's box)."""
    fid = "v1_f09999"
    frame, cut, box = place(outdoor_frame(), 200, 20, 320)
    x, y, w, h = box
    belt = h // 2  # draw_person: head and shirt above, trousers below
    write_image(root / "frames" / f"{fid}.png", frame)
    template = next(r for r in rows.values() if r["track_id"].endswith("_0"))
    with Catalog(root / "catalog.sqlite") as cat:
        cat.execute("INSERT INTO frames (id, video_id, shot_id, frame_index, timestamp, path, width, height, "
                    "sharpness, phash, kept) VALUES (?, 'v1', 'v1_s0', 9999, 416.6, ?, 640, 360, 100, '0', 1)",
                    (fid, f"{fid}.png"))
        ids = []
        for name, (y0, y1) in (("upper", (0, belt)), ("legs", (belt, h))):
            iid = f"{fid}_{name}"
            part = cut[y0:y1]
            full = np.zeros(frame.shape[:2], np.uint8)
            full[y + y0 : y + y1, x : x + w] = part[..., 3]
            write_image(root / "segmentation" / "character" / f"{iid}.png", part)
            write_image(root / "segmentation" / "masks" / f"{iid}.png", full)
            cat.upsert("instances", [template | {
                "id": iid, "frame_id": fid, "shot_id": "v1_s0", "path": f"character/{iid}.png",
                "mask_path": f"masks/{iid}.png", "bbox": json.dumps([x, y + y0, w, y1 - y0]),
                "area_fraction": w * (y1 - y0) / (640 * 360), "truncated": 0}])
            cat.upsert("character_members", [{"instance_id": iid, "character": "luca"}])
            cat.upsert("prefilter_results", [{"instance_id": iid, "kept": 1, "reason": None, "path": None}])
            ids.append(iid)
    return ids[0], ids[1], box


def _images_of(root, frame: str) -> list[dict]:
    meta = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())
    return [r for r in meta["images"] if r["frame"] == frame], meta


def _alpha_box(root, rec: dict) -> tuple[int, int]:
    alpha = read_image(root / "training_data" / rec["file"], "RGBA")[..., 3] > 127
    ys, xs = np.nonzero(alpha)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_two_parts_of_one_character_in_one_frame_are_one_image_of_the_whole_character(tmp_path):
    root = tmp_path / "proj"
    rows = make_project(root, {"luca": 8}, embeddings=False)
    upper, legs, (_, _, w, h) = _split_person(root, rows)

    run_stages(root, ["caption", "dataset"], SETTINGS)
    recs, meta = _images_of(root, "v1_f09999")
    assert len(recs) == 1
    rec = recs[0]
    primary, other = (upper, legs) if rec["instance_id"] == upper else (legs, upper)
    assert rec["joined"] == [other]
    assert rec["box"][3] == h  # the union's box: both parts
    left = {s["instance"]: s for s in meta["skipped"]}
    assert left[other]["code"] == JOINED and primary in left[other]["reason"]
    assert meta["left_out_counts"].get(JOINED) == 1
    # the image shows the whole person: its opaque part has the person's proportions
    iw, ih = _alpha_box(root, rec)
    assert abs(ih / iw - h / w) < 0.08 * h / w
    assert rec["framing"] == "full body"  # the caption is the whole character's

    # with join_parts off, the two halves are two images, as before
    run_stages(root, ["dataset"], {"dataset": SETTINGS["dataset"] | {"join_parts": False}}, force=True)
    recs, meta = _images_of(root, "v1_f09999")
    assert sorted(r["instance_id"] for r in recs) == sorted([upper, legs])
    assert all(r["joined"] == [] for r in recs)
    for r in recs:
        pw, ph = _alpha_box(root, r)
        assert ph / pw < 0.7 * h / w  # each half is far squatter than the person


def test_a_bite_the_segment_stage_took_is_joined_back_and_a_rock_beside_is_not(tmp_path):
    """Film f2203: the segment stage cut a patch of Buck's chest as the set (a piece with the body all
    round it, 5.6 % of the mask); a rock beside him, cut the same way, touches him along one side only."""
    from animlora.curation.parts import bite_members, bites, joined_member

    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[20:110, 40:100] = 230  # the character, white; its chest patch is as white
    body = np.zeros((120, 160), np.uint8)
    body[20:110, 40:100] = 255
    body[50:70, 60:80] = 0  # the bite: a hole in the chest, 400 px of 5000 (8 %)
    bite = np.zeros_like(body)
    bite[50:70, 60:80] = 255
    rock = np.zeros_like(body)
    rock[80:110, 100:130] = 255  # beside the body, touching its side
    nick = np.zeros_like(body)
    nick[30:36, 45:50] = 255  # a bite of 30 px (0.6 %): left as it is
    for name, img in (("frame", frame), ("body", body), ("bite", bite), ("rock", rock), ("nick", nick)):
        write_image(tmp_path / f"{name}.png", img)
    m = Member(instance_id="m", character="buck", image_path=str(tmp_path / "frame.png"), stem="m",
               frame_path=str(tmp_path / "frame.png"), bbox=(40, 20, 60, 90), frame_id="f1",
               mask_path=str(tmp_path / "body.png"), area_fraction=0.25)
    piece = {"prop": True, "cut_from_prop": False}

    def row(iid, frame_id, box, measures):
        return {"id": iid, "frame_id": frame_id, "mask_path": f"{iid if iid != 'other' else 'bite'}.png",
                "bbox": json.dumps(box), "area_fraction": 0.02, "truncated": 0, "measures": measures}

    rows = [{"id": "m", "frame_id": "f1", "measures": {"cut_from_prop": True}},
            row("bite", "f1", [60, 50, 20, 20], piece), row("rock", "f1", [100, 80, 30, 30], piece),
            row("nick", "f1", [45, 30, 5, 6], piece), row("other", "f2", [60, 50, 20, 20], piece)]
    found = bites([m], rows, tmp_path)
    assert [p["id"] for p in found["m"]] == ["bite"] and found["m"][0]["bbox"] == [60, 50, 20, 20]
    joined, rgba, _ = joined_member(m, bite_members(m, found["m"]), 0.15)
    assert joined.bbox == (40, 20, 60, 90) and rgba[30:50, 20:40, 3].min() == 255  # the chest whole again
    # a member the segment stage did not cut (no cut_from_prop) has no bite
    rows[0]["measures"] = {}
    assert bites([m], rows, tmp_path) == {}
