"""Text in the frame: the detectors, the instance verdicts (``not_character:text``,
``text_over``) and the prefilter stage reading frames in a project."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from animlora.backends.text.detection import (
    OpenCVTextDetector,
    make_text_detector,
    resolve_text_detector,
    text_cover,
    text_over_length,
)
from animlora.config import load_settings
from animlora.errors import ConfigError
from animlora.io.images import write_image
from animlora.stages.prefilter import judge
from animlora.workspace import Workspace

HAS_PPOCR = importlib.util.find_spec("rapidocr_onnxruntime") is not None
H, W = 270, 480


def backdrop() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.dstack([80 + 60 * yy / H, 120 + 40 * xx / W, 90 + 30 * np.sin(xx / 30.0)]).astype(np.uint8)


def subtitled() -> np.ndarray:
    """A shaded blob (the character) with a white subtitle across it (BGR)."""
    img = backdrop()
    cv2.ellipse(img, (240, 140), (60, 100), 0, 0, 360, (60, 90, 200), -1)
    cv2.putText(img, "An unlucky bird", (140, 150), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
    return img


def close_up() -> tuple[np.ndarray, np.ndarray]:
    """A character's close-up, cut by the frame's bottom and right edges (box 200x240 of a
    480x270 frame), with the end of a subtitle over it: "ts" of "And three rodent pests", as
    on the trailer's Frank. The frame (BGR) and the character's mask."""
    img = backdrop()
    cv2.ellipse(img, (430, 250), (150, 220), 0, 0, 360, (60, 90, 200), -1)
    cv2.putText(img, "And three rodent pests", (75, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2,
                cv2.LINE_AA)
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, (430, 250), (150, 220), 0, 0, 360, 255, -1)
    return img, mask


def striped() -> np.ndarray:
    """A striped shirt: rows of bright bars, text-like to a detector, with nothing to read."""
    img = backdrop()
    for y in range(40, 240, 14):
        cv2.rectangle(img, (180, y), (300, y + 6), (240, 240, 240), -1)
    return img


def test_verdicts_from_text_cover():
    p = load_settings().settings.prefilter
    mode = p.modes["balanced"]
    base = {"width": 120, "height": 200, "area_fraction": 0.1, "sharpness": 0.5, "score": 0.9, "truncated": 0}
    covers = (None, 0.0, 0.01, 0.02, 0.3, 0.5, 1.0)
    read = {c: judge(base | {"extra": {"text_cover": c, "text_read": True}}, mode, p.blur_threshold, p) for c in covers}
    assert read == {None: None, 0.0: None, 0.01: None, 0.02: "text_over", 0.3: "text_over",
                    0.5: "not_character:text", 1.0: "not_character:text"}
    # boxes of the weightless detector (nothing read): only an instance mostly in them is text
    boxed = {c: judge(base | {"extra": {"text_cover": c, "text_read": False}}, mode, p.blur_threshold, p) for c in covers}
    assert boxed == {None: None, 0.0: None, 0.01: None, 0.02: None, 0.3: None,
                     0.5: "not_character:text", 1.0: "not_character:text"}
    # size and truncation are tested first
    assert judge(base | {"width": 10, "extra": {"text_cover": 1.0}}, mode, p.blur_threshold, p) == "tiny"


def test_text_over_a_close_up_is_judged_by_length_not_share():
    """Two letters over a close-up filling the frame's height are 1-2% of its mask (trailer:
    Frank under "And three rodent pests", kept before): how far the text runs over the mask,
    in line heights, rejects it; a character beside text (film: 0-0.27) is kept."""
    p = load_settings().settings.prefilter
    mode = p.modes["balanced"]
    frank = {"width": 452, "height": 563, "area_fraction": 0.19, "sharpness": 0.5, "score": 0.9, "truncated": 2,
             "bbox": [828, 157, 452, 563], "frame": [1280, 720]}  # cut by the bottom and the right: a close-up
    def verdict(cover: float, over: float | None, read: bool = True) -> str | None:
        extra = {"text_cover": cover, "text_read": read} | ({} if over is None else {"text_over": over})
        return judge(frank | {"extra": extra}, mode, p.blur_threshold, p)
    assert verdict(0.0, None) is None  # the close-up rule keeps it
    assert verdict(0.0173, 1.86) == "text_over"
    assert verdict(0.0122, 1.18) == "text_over"
    assert verdict(0.0051, 0.27) is None  # a bird beside a fading title
    assert verdict(0.0118, 0.0) is None  # Rinky above a credits line, the box's margin on his feet
    assert verdict(0.0173, 1.86, read=False) is None  # boxes of the weightless detector: never text_over
    assert verdict(0.0173, None) is None  # an earlier cache: share only


def test_text_over_length_counts_the_glyphs_not_the_margin():
    line = np.float32([[100, 100], [300, 100], [300, 140], [100, 140]])  # 40 px high
    mask = np.zeros((270, 480), bool)
    mask[:, 260:] = True  # the line's last 40 px: one line height
    assert text_over_length([line], mask) == pytest.approx(1.0, abs=0.1)  # polygons fill their edge pixels
    assert text_over_length([line, line + np.float32([0, 60])], mask) == pytest.approx(2.0, abs=0.2)
    grazed = np.zeros((270, 480), bool)
    grazed[132:200, :] = True  # under the line, overlapping its box's bottom margin only
    assert text_over_length([line], grazed) == 0.0
    assert text_over_length([], mask) == 0.0


def test_text_cover_is_the_masked_share():
    text = np.zeros((10, 10), bool)
    text[:, :3] = True
    mask = np.zeros((10, 10), bool)
    mask[:, :6] = True
    assert text_cover(text, mask) == 0.5
    assert text_cover(text, np.zeros((10, 10), bool)) == 0.0


def test_detector_choice():
    assert resolve_text_detector("off") is None and make_text_detector("off") is None
    assert make_text_detector("opencv").name == "opencv"
    assert resolve_text_detector("auto") == ("ppocr" if HAS_PPOCR else "opencv")
    with pytest.raises(ConfigError, match="text_detector"):
        resolve_text_detector("tesseract")


def test_opencv_detector_boxes_a_subtitle_and_not_stripes():
    det = OpenCVTextDetector()
    found = det.detect(subtitled())
    ys, xs = np.nonzero(found)
    assert found.any()
    assert xs.min() <= 145 and xs.max() >= 320 and ys.min() >= 120 and ys.max() <= 165  # the line, not the frame
    assert not det.detect(striped()).any()


@pytest.mark.skipif(not HAS_PPOCR, reason="pip install 'animlora[text]'")
def test_ppocr_reads_the_subtitle_and_not_the_stripes():
    det = make_text_detector("ppocr")
    assert det is not None and det.name == "ppocr"
    lines = det.read(subtitled())  # type: ignore[attr-defined]
    assert [t for _, t, s in lines if s > 0.9] == ["An unlucky bird"]
    box = lines[0][0]
    assert box[:, 0].min() <= 145 and box[:, 0].max() >= 320 and box[:, 1].min() >= 115 and box[:, 1].max() <= 165
    assert not det.detect(striped()).any()  # the detector alone boxes stripes; nothing is read there
    # what counts as a line: 3+ letters or digits, confident, in a box longer than high
    line = np.float32([[0, 0], [200, 0], [200, 30], [0, 30]])
    blob = np.float32([[0, 0], [180, 0], [180, 140], [0, 140]])
    assert det.is_line(line, "bird", 0.9)  # type: ignore[attr-defined]
    assert not det.is_line(blob, "yyy", 0.9)  # type: ignore[attr-defined]  (a rodent's face read as 'yy')
    assert not det.is_line(line, "yy", 0.9)  # type: ignore[attr-defined]
    assert not det.is_line(line, "bird", 0.5)  # type: ignore[attr-defined]


def _project(root: Path, detector: str, frames: dict[str, np.ndarray] | None = None,
             masks: dict[str, np.ndarray] | None = None, extra: str = "") -> Workspace:
    """A project whose catalog holds ``frames`` (BGR) and the instances of ``masks`` (named
    ``<frame>_i<n>``). By default: one frame (a subtitle across a character) and three
    instances: the character, the subtitle taken as its own instance, and a clean
    character in a second, text-free frame."""
    (root / "project.yaml").write_text(f"project:\n  name: t\nprefilter:\n  text_detector: {detector}\n"
                                       "  duplicate_distance: 0\n" + extra)
    ws = Workspace(root)
    if frames is None or masks is None:
        frames = {"f0": subtitled(), "f1": backdrop()}
        cv2.ellipse(frames["f1"], (240, 140), (60, 100), 0, 0, 360, (60, 90, 200), -1)
        body = np.zeros((H, W), np.uint8)
        cv2.ellipse(body, (240, 140), (60, 100), 0, 0, 360, 255, -1)
        words = np.zeros((H, W), np.uint8)
        words[128:158, 140:336] = 255
        masks = {"f0_i0": body, "f0_i1": words, "f1_i0": body}  # the matte took the letters with the body
    for name, img in frames.items():
        write_image(root / "frames" / f"{name}.png", img[..., ::-1])
    rows = []
    for name, mask in masks.items():
        frame = frames[name.split("_")[0]]
        rgba = np.dstack([frame[..., ::-1], mask])
        write_image(root / "segmentation" / "character" / f"{name}.png", rgba)
        write_image(root / "segmentation" / "masks" / f"{name}.png", mask)
        ys, xs = np.nonzero(mask)
        edges = int(xs.min() == 0) + int(ys.min() == 0) + int(xs.max() == W - 1) + int(ys.max() == H - 1)
        rows.append({"id": name, "frame_id": name.split("_")[0], "video_id": "v", "shot_id": None,
                     "track_id": None, "path": f"character/{name}.png", "mask_path": f"masks/{name}.png",
                     "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                     "area_fraction": float((mask > 0).mean()), "truncated": edges, "sharpness": 0.5, "score": 0.9,
                     "backend": "test", "measures": "{}"})
    cat = ws.open_catalog()
    cat.upsert("videos", [{"id": "v", "path": "v.mp4", "name": "v", "size": 1, "width": W, "height": H,
                           "status": "ok"}])
    cat.upsert("frames", [{"id": n, "video_id": "v", "frame_index": i, "timestamp": float(i), "path": f"{n}.png",
                           "width": W, "height": H, "kept": 1} for i, n in enumerate(frames)])
    cat.upsert("instances", rows)
    cat.close()
    return ws


@pytest.mark.parametrize("detector", ["opencv", pytest.param("ppocr", marks=pytest.mark.skipif(
    not HAS_PPOCR, reason="pip install 'animlora[text]'"))])
def test_project_rejects_text_and_text_over_a_character(tmp_path, detector):
    from animlora.pipeline.runner import Runner
    from animlora.records.folders import stage_folder
    from animlora.stages import get_stage

    ws = _project(tmp_path, detector)
    assert stage_folder("extract") == "frames"
    Runner(ws, load_settings(tmp_path)).run([get_stage("prefilter")])
    cat = ws.open_catalog()
    reasons = {r["instance_id"]: r["reason"] for r in cat.rows("SELECT * FROM prefilter_results")}
    cat.close()
    # the subtitle instance is text with either detector; the character under it is rejected
    # only when the text was read (ppocr)
    over = "text_over" if detector == "ppocr" else None
    assert reasons == {"f0_i0": over, "f0_i1": "not_character:text", "f1_i0": None}
    assert sorted(p.name for p in (tmp_path / "filtered").glob("*.png")) == sorted(
        ["f1_i0.png"] + ([] if over else ["f0_i0.png"]))
    report = json.loads((tmp_path / "filtered" / "prefilter_report.json").read_text())
    assert report["text_detector"] == detector
    assert report["rejected_by_reason"]["not_character:text"] == 1
    assert report["rejected_by_reason"]["text_over"] == report["rejected_by_group"]["text_over"] == int(bool(over))
    cache = json.loads((tmp_path / "filtered" / "text_cover.json").read_text())
    assert cache["detector"].split("@")[0] == detector and set(cache["frames"]) == {"f0", "f1"}
    assert cache["frames"]["f1"]["cover"] == {"f1_i0": 0.0}


@pytest.mark.skipif(not HAS_PPOCR, reason="pip install 'animlora[text]'")
def test_ppocr_reads_only_the_start_of_a_long_line_and_still_finds_it():
    """A credits line is read by its first ``read_aspect`` heights (what it costs to read grows
    with its length); the whole line is still marked as text."""
    import cv2

    frame = np.full((120, 1280, 3), 30, np.uint8)
    cv2.putText(frame, "Kevin Donovan - Kevin Grinder - Kjell Magne Fauske - Konrad Kleine - Lars Kildemark",
                (20, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (240, 240, 240), 2, cv2.LINE_AA)
    det = make_text_detector("ppocr")
    lines = det.read(frame)  # type: ignore[attr-defined]
    assert len(lines) >= 1
    box, text, score = max(lines, key=lambda line: float(np.ptp(line[0][:, 0])))
    height = float(np.linalg.norm(box[3] - box[0]))
    assert np.ptp(box[:, 0]) > 900  # the detector's box spans the whole line
    assert text.startswith("Kevin") and "Kildemark" not in text  # only its start was read
    assert len(text) < 40  # of 85 characters
    assert score >= det.min_score  # type: ignore[attr-defined]
    mask = det.detect(frame)
    assert mask[60, int(box[:, 0].max()) - 20]  # the unread end of the line is text too
    assert det._line_crop(frame, box).shape[1] <= det.read_aspect * height + 1  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAS_PPOCR, reason="pip install 'animlora[text]'")
def test_ppocr_finds_lines_on_the_frame_scaled_to_its_long_side_and_reads_them_at_full_size():
    """rapidocr 1.4 ignores ``det_limit_side_len`` with limit type "max" (a 1280 px frame went
    in whole, though 960 was asked): the detector is given the frame scaled down, its boxes
    come back in frame pixels, and the line is read from the full-size frame."""
    det = make_text_detector("ppocr")
    frame = np.full((1080, 1920, 3), 30, np.uint8)
    cv2.putText(frame, "The Peach Open Movie", (300, 600), cv2.FONT_HERSHEY_SIMPLEX, 3.0, (240, 240, 240), 6,
                cv2.LINE_AA)
    seen: list[tuple[int, ...]] = []
    engine = det.engine  # type: ignore[attr-defined]

    class Spy:
        text_rec = engine.text_rec

        def __call__(self, image, **kw):
            seen.append(image.shape)
            return engine(image, **kw)

    det.engine = Spy()  # type: ignore[attr-defined]
    try:
        lines = det.read(frame)  # type: ignore[attr-defined]
    finally:
        det.engine = engine  # type: ignore[attr-defined]
    assert seen == [(540, 960, 3)]
    box, text, score = max(lines, key=lambda line: float(np.ptp(line[0][:, 0])))
    assert "Peach" in text and score >= det.min_score  # type: ignore[attr-defined]
    # the box in frame pixels: around the drawn line (x 300 to ~1300, baseline y 600)
    assert 250 <= box[:, 0].min() <= 320 and box[:, 0].max() > 1100 and 480 <= box[:, 1].mean() <= 620


@pytest.mark.skipif(not HAS_PPOCR, reason="pip install 'animlora[text]'")
def test_project_rejects_text_over_a_close_up(tmp_path):
    """The trailer's Frank: a close-up (cut by the bottom and a side, kept by
    ``closeup_min_height``) under the last two letters of a subtitle, 1.8% of its mask (under
    ``max_text_over``): rejected as ``text_over`` by how far the text runs over it; the same
    close-up without the subtitle is kept."""
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage

    frame, mask = close_up()
    clean = backdrop()
    cv2.ellipse(clean, (430, 250), (150, 220), 0, 0, 360, (60, 90, 200), -1)
    # the share bound well above the letters' share (1.8-2.6%: ppocr's boxes differ a little
    # between its builds), so only the length rule can reject them
    ws = _project(tmp_path, "ppocr", {"f0": frame, "f1": clean}, {"f0_i0": mask, "f1_i0": mask},
                  "  max_text_over: 0.05\n")
    Runner(ws, load_settings(tmp_path)).run([get_stage("prefilter")])
    cat = ws.open_catalog()
    reasons = {r["instance_id"]: r["reason"] for r in cat.rows("SELECT * FROM prefilter_results")}
    cat.close()
    assert reasons == {"f0_i0": "text_over", "f1_i0": None}
    cache = json.loads((tmp_path / "filtered" / "text_cover.json").read_text())["frames"]
    assert 0 < cache["f0"]["cover"]["f0_i0"] < load_settings(tmp_path).settings.prefilter.max_text_over
    assert 0.6 <= cache["f0"]["over"]["f0_i0"] <= 1.5  # "ts": about one line height
    assert cache["f1"]["over"] == {"f1_i0": 0.0}


@pytest.mark.skipif(not HAS_PPOCR, reason="pip install 'animlora[text]'")
def test_frames_read_side_by_side_give_what_one_reader_gives(tmp_path):
    # the prefilter reads frames on one single-threaded engine per core, side by side: the
    # covers, in the frames' order, are those of one reader taking the frames one by one
    from animlora.backends.text.detection import text_readers
    from animlora.stages.prefilter import _covers, _read_frames

    body = np.zeros((H, W), np.uint8)
    cv2.ellipse(body, (240, 140), (60, 100), 0, 0, 360, 255, -1)
    write_image(tmp_path / "body.png", body)
    groups = []
    for k in range(5):
        frame = subtitled() if k % 2 == 0 else backdrop()
        write_image(tmp_path / f"f{k}.png", frame[..., ::-1])
        groups.append([{"id": f"f{k}_i0", "frame": str(tmp_path / f"f{k}.png"), "mask": str(tmp_path / "body.png")}])
    assert len(text_readers("ppocr")) == max(1, min(4, os.cpu_count() or 1))
    together = _read_frames("ppocr", groups)
    alone = [_covers(make_text_detector("ppocr"), g) for g in groups]
    assert together == alone
    assert [c["cover"][f"f{k}_i0"] > 0 for k, c in enumerate(together)] == [True, False, True, False, True]
