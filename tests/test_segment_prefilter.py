"""prefilter: tiny, truncated, blurred and non-character instances are rejected with their
reason, stay in the catalog, and never reach the output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from animlora.cli.stages import run_standalone
from animlora.config import load_settings
from animlora.io.images import write_image
from animlora.stages.prefilter import judge
from animlora.workspace import Workspace
from segment_synth import scene

RED, BLUE = (220, 90, 60), (60, 80, 210)


def run(stage: str, inp: Path, out: Path, flags: dict) -> None:
    run_standalone(stage, inp, out, flags, sets=None, config_files=None, profile=None, force=False, as_json=False)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pf")
    cases = {
        "good": ([((320, 180), (70, 110), RED)], 0),
        "tiny": ([((320, 180), (18, 22), RED)], 0),
        "blurry": ([((320, 180), (70, 110), RED)], 4),
        "strip": ([((320, 180), (280, 35), BLUE)], 0),
    }
    for k, (name, (shapes, blur)) in enumerate(cases.items()):
        image, _ = scene(k, shapes, height=360, width=640)
        if blur:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        write_image(root / "frames" / f"{name}.png", image)
    run("segment", root / "frames", root / "seg", {"segment.backend": "classic"})
    return root / "seg"


def test_each_reason_is_recorded_and_only_kept_instances_are_copied(segmented, tmp_path):
    out = tmp_path / "filtered"
    run("prefilter", segmented / "character", out, {"prefilter.mode": "balanced"})

    assert sorted(p.name for p in out.glob("*.png")) == ["good_i0.png"]
    report = json.loads((out / "prefilter_report.json").read_text())
    assert report["counts"] == {"total": 4, "kept": 1, "rejected": 3}
    assert {k: v for k, v in report["rejected_by_reason"].items() if v} == {
        "tiny": 1, "blur:film": 1, "not_character:shape": 1}
    assert report["rejected_by_group"] == {"tiny": 1, "truncated": 0, "not_character": 1, "text_over": 0, "blur": 1,
                                           "duplicate": 0, "unreadable": 0}
    catalog = Workspace.for_output(out).open_catalog()
    rows = {r["instance_id"].split("_i")[0]: (r["kept"], r["reason"], r["path"]) for r in catalog.rows("SELECT * FROM prefilter_results")}
    catalog.close()
    seg = json.loads((segmented / "segmentation_results.json").read_text())
    frame_of = {Path(i["path"]).stem.removesuffix("_i0"): i["frame_id"] for i in seg["instances"]}
    assert rows == {
        frame_of["good"]: (1, None, "good_i0.png"),
        frame_of["tiny"]: (0, "tiny", None),
        frame_of["blurry"]: (0, "blur:film", None),
        frame_of["strip"]: (0, "not_character:shape", None),
    }


def test_modes_differ_and_plain_folders_are_measured_from_the_files(segmented, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(segmented / "character", plain)  # no segmentation_results.json next to it
    run("prefilter", plain, tmp_path / "lenient", {"prefilter.mode": "lenient"})
    run("prefilter", plain, tmp_path / "strict", {"prefilter.mode": "strict"})
    lenient = sorted(p.name for p in (tmp_path / "lenient").glob("*.png"))
    strict = sorted(p.name for p in (tmp_path / "strict").glob("*.png"))
    # lenient: 32 px side, aspect 8 < 10, and blur relative to the others 0.55 ** 2 = 0.30 (the
    # sigma-4 ellipse is at 0.46 of the crisp ones' upper quartile)
    assert lenient == ["blurry_i0.png", "good_i0.png", "strip_i0.png", "tiny_i0.png"]
    assert strict == ["good_i0.png"]


def test_truncation_limits_per_mode_and_no_face_needed():
    p = load_settings().settings.prefilter
    base = {"width": 200, "height": 300, "area_fraction": 0.1, "sharpness": 50.0, "score": 0.9}
    verdicts = {
        mode: [judge(base | {"truncated": edges}, p.modes[mode], p.blur_threshold) for edges in (0, 1, 2, 3)]
        for mode in ("strict", "balanced", "lenient")
    }
    assert verdicts == {
        "strict": [None, "truncated", "truncated", "truncated"],
        "balanced": [None, None, "truncated", "truncated"],
        "lenient": [None, None, None, "truncated"],
    }
    # a back view / robot / animal: nothing about faces is measured, a sharp whole instance passes
    assert judge(base | {"truncated": 0, "score": 0.5}, p.modes["balanced"], p.blur_threshold) is None


def test_a_close_up_cut_at_the_bottom_and_a_side_is_kept_a_fragment_or_sliver_is_not():
    """Boxes of the film's own cases (1280x720): Frank's face close-up cut by the bottom and the
    right edge is kept (the caption frames it); a fragment in a corner, a spike at a side, a head
    cut at the top and a side, and a close-up in strict mode are truncated."""
    p = load_settings().settings.prefilter
    balanced = p.modes["balanced"]

    def verdict(bbox, mode=balanced, settings=p):
        x, y, w, h = bbox
        edges = (y <= 0) + (y + h >= 720) + (x <= 0) + (x + w >= 1280)
        m = {"width": w, "height": h, "area_fraction": w * h * 0.6 / (1280 * 720), "sharpness": 0.45, "score": 0.9,
             "truncated": edges, "bbox": list(bbox), "frame": [1280, 720]}
        return judge(m, mode, p.blur_threshold, settings)

    assert verdict((896, 180, 384, 540)) is None                  # face close-up, bottom + right
    assert verdict((0, 0, 1180, 720)) is None                     # Buck filling the frame: top, bottom, left
    assert verdict((1000, 570, 280, 150)) == "truncated"          # a piece in the bottom-right corner
    assert verdict((0, 459, 96, 261)) == "truncated"              # a spike at the left, bottom cut
    assert verdict((0, 0, 1200, 677)) == "truncated"              # cut at the top and a side, not the bottom
    assert verdict((896, 180, 384, 540), mode=p.modes["strict"]) is None  # in every mode (0 = off)
    assert verdict((896, 180, 384, 540), settings=p.model_copy(update={"closeup_min_height": 0.0})) == "truncated"


def test_small_frames_scale_the_pixel_bound_and_a_frame_high_close_up_is_not_truncated():
    p = load_settings().settings.prefilter
    balanced = p.modes["balanced"]
    kid = {"width": 57, "height": 185, "area_fraction": 0.04, "sharpness": 0.5, "score": 0.9, "truncated": 0}
    # 57 px wide: tiny in a 720p frame (min_side 64), a character in a 480x270 one (64 * 270/720 = 24)
    assert judge(kid | {"frame": [1280, 720]}, balanced, p.blur_threshold, p) == "tiny"
    assert judge(kid | {"frame": [480, 270]}, balanced, p.blur_threshold, p) is None
    assert judge(kid | {"width": 20, "frame": [480, 270]}, balanced, p.blur_threshold, p) == "tiny"
    # top + bottom: a close-up spanning the frame's height counts as one cut edge; a corner is two
    close = kid | {"width": 150, "height": 270, "frame": [480, 270], "truncated": 2}
    assert judge(close | {"bbox": [100, 0, 150, 270]}, balanced, p.blur_threshold, p) is None
    corner = close | {"height": 140, "bbox": [0, 0, 150, 140]}
    assert judge(corner, balanced, p.blur_threshold, p) == "truncated"
    # top, bottom and a side: a close-up cut at the side too (a face filling the frame's height) is kept
    # (prefilter.closeup_min_height); without that allowance it is truncated, and a sliver at a side always is
    side = close | {"bbox": [0, 0, 150, 270], "truncated": 3}
    assert judge(side, balanced, p.blur_threshold, p) is None
    assert judge(side, balanced, p.blur_threshold, p.model_copy(update={"closeup_min_height": 0.0})) == "truncated"
    sliver = side | {"width": 40, "bbox": [0, 0, 40, 270]}
    assert judge(sliver, balanced, p.blur_threshold, p) == "truncated"
    # still (unchanged relative to the set) is not a rejection: identity decides
    assert judge(kid | {"frame": [480, 270], "extra": {"static": 1.0}}, balanced, p.blur_threshold, p) is None


def test_project_mode_reads_instances_and_rejects_never_reach_filtered(segmented, tmp_path):
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage

    root = tmp_path / "proj"
    root.mkdir()
    (root / "project.yaml").write_text("project:\n  name: t\n")
    shutil.copytree(segmented, root / "segmentation", ignore=shutil.ignore_patterns(".animlora"))
    ws = Workspace(root)
    src = Workspace.for_output(segmented).open_catalog()
    rows = [dict(r) for r in src.rows("SELECT * FROM instances")]
    src.close()
    cat = ws.open_catalog()
    cat.upsert("instances", rows)
    cat.close()
    Runner(ws, load_settings(root)).run([get_stage("prefilter")])
    assert sorted(p.name for p in (root / "filtered").glob("*.png")) == ["good_i0.png"]
    cat = ws.open_catalog()
    assert cat.one("SELECT COUNT(*) FROM prefilter_results WHERE kept = 0")[0] == 3
    cat.close()


def test_a_shot_in_which_nothing_moves_is_scenery_an_idle_character_beside_motion_is_not():
    from animlora.stages.prefilter import decide

    p = load_settings().settings.prefilter
    base = {"width": 120, "height": 160, "area_fraction": 0.05, "sharpness": 0.5, "score": 0.9, "truncated": 0,
            "frame": [480, 270]}

    def item(iid: str, shot: str, frame: str, static: float | None) -> dict:
        extra = {} if static is None else {"static": static}
        return {"id": iid, "measures": base | {"extra": extra}, "track": f"{shot}_t_{iid}", "film": "v",
                "shot": shot, "frame_id": frame, "time": None}

    items = [
        # seed 2's establishing shot: a house and a tree, 0.994-1.0 in two frames
        item("house_a", "s0", "f2", 1.0), item("tree_a", "s0", "f2", 0.994), item("house_b", "s0", "f12", 1.0),
        # the film's idle Buck alone in a shot: 0.953-0.956
        item("buck_a", "s1", "f3", 0.956), item("buck_b", "s1", "f4", 0.953),
        # seed 2's idle bunny (0.99) beside the robot walking (0.6): something in its shot moves
        item("bunny", "s2", "f5", 0.99), item("robot", "s2", "f6", 0.6),
        # one frame only: no evidence; an instance never measured is not judged
        item("rock", "s3", "f7", 1.0), item("blob", "s0", "f2", None),
    ]
    verdict = decide(items, p)
    assert sorted(k for k, v in verdict.items() if v == "not_character:still_shot") == ["house_a", "house_b", "tree_a"]
    assert {verdict[k] for k in ("buck_a", "buck_b", "bunny", "robot", "rock", "blob")} == {None}
    # off (the 2d profile: held cels)
    off = decide(items, p.model_copy(update={"still_shot": 0.0}))
    assert "not_character:still_shot" not in off.values()
