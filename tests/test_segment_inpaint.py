"""Background plates: OpenCV fills a known hole well, a static shot gets one plate from its
own frames, and LaMa (spandrel architecture, random weights) runs the model path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animlora.cli.stages import run_standalone
from animlora.config import load_settings
from animlora.io.images import read_image, write_image
from animlora.stages.inpaint import psnr


def smooth_background(height: int = 120, width: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 100 + 80 * xx / width
    g = 120 + 50 * np.sin(yy / 30.0)
    b = 90 + 60 * (xx + yy) / (width + height)
    return np.dstack([r, g, b]).clip(0, 255).astype(np.uint8)


def disc(height: int, width: int, cx: int, cy: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def background_file(path: Path, image: np.ndarray, character: np.ndarray) -> None:
    """segment's background/ format: the frame, alpha 0 where a character was."""
    painted = image.copy()
    painted[character] = (250, 20, 200)  # the character's own colours must not leak into the plate
    write_image(path, np.dstack([painted, np.where(character, 0, 255).astype(np.uint8)]))


def inpaint(inp: Path, out: Path, model: str) -> dict:
    run_standalone("inpaint", inp, out, {"inpaint.backend": model}, sets=None, config_files=None,
                   profile=None, force=False, as_json=False)
    return json.loads((out / "inpaint_report.json").read_text())


def test_opencv_fills_a_known_hole_above_30db(tmp_path):
    truth = smooth_background()
    character = disc(120, 160, 80, 60, 18)
    background_file(tmp_path / "seg" / "background" / "frame1.png", truth, character)
    report = inpaint(tmp_path / "seg", tmp_path / "plates", "opencv")

    plate = read_image(tmp_path / "plates" / "frame1.png")
    hole = disc(120, 160, 80, 60, 18 + 15)  # the 15 px default dilation
    assert psnr(plate, truth, hole) >= 30.0  # stated bound: smooth background, 33 px radius hole
    outside = ~disc(120, 160, 80, 60, 18 + 17)  # clear of the dilation kernel's rounding
    assert (plate[outside] == truth[outside]).all()
    assert report["backends_used"] == ["opencv"] and report["static_shots"] == []
    only = report["plates"][0]
    assert only["psnr"] == 100.0 and only["ssim"] == pytest.approx(1.0, abs=1e-3)
    assert 0.1 < only["hole_fraction"] < 0.2


def test_static_shot_gets_one_plate_from_its_own_frames(tmp_path):
    truth = smooth_background()
    seg = tmp_path / "seg"
    frames = []
    for i, cx in enumerate((40, 80, 120)):
        background_file(seg / "background" / f"f{i}.png", truth, disc(120, 160, cx, 60, 12))
        frames.append({"frame_id": f"fr{i}", "shot_id": "shotA", "source": f"f{i}.png", "status": "ok",
                       "background_path": f"background/f{i}.png", "n_instances": 1})
    (seg / "segmentation_results.json").write_text(json.dumps({"frames": frames}))
    report = inpaint(seg, tmp_path / "plates", "opencv")

    assert report["static_shots"] == ["shotA"]
    assert sorted(p.name for p in (tmp_path / "plates").glob("*.png")) == ["shotA.png"]
    assert report["plates"][0]["frame_ids"] == ["fr0", "fr1", "fr2"]
    plate = read_image(tmp_path / "plates" / "shotA.png")
    # every pixel was visible in some frame: the plate is the true background
    assert psnr(plate, truth, np.ones((120, 160), bool)) >= 45.0
    assert report["plates"][0]["hole_fraction"] == 0.0


def test_lama_random_weights_run_the_spandrel_path():
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader
    from spandrel.architectures.LaMa import LaMa

    from animlora.backends.inpainting.lama import LamaInpainter

    torch.manual_seed(0)
    descriptor = ModelLoader().load_from_state_dict(LaMa(in_nc=4, out_nc=3).state_dict())
    settings = load_settings(overrides={"inpaint": {"device": "cpu"}}).settings
    lama = LamaInpainter(settings.inpaint, settings.models, descriptor=descriptor)
    image = smooth_background(60, 84)  # not a multiple of 8: spandrel pads and crops
    hole = disc(60, 84, 40, 30, 10)
    out = lama.inpaint(image, hole)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_remove_occluders_fills_the_other_character_and_keeps_the_original(tmp_path):
    from segment_synth import scene

    # a small blue character in front of the corner of a big red one's box
    image, _ = scene(4, [((120, 90), (50, 70), (220, 90, 60)), ((168, 150), (12, 12), (60, 80, 210))])
    write_image(tmp_path / "frames" / "two.png", image)
    run_standalone("segment", tmp_path / "frames", tmp_path / "seg", {"segment.backend": "classic"},
                   sets=None, config_files=None, profile=None, force=False, as_json=False)
    run_standalone("deocclude", tmp_path / "seg", tmp_path / "deocc", {"inpaint.backend": "opencv"},
                   sets=None, config_files=None, profile=None, force=False, as_json=False)
    report = json.loads((tmp_path / "deocc" / "deocclude_report.json").read_text())
    assert report["instances_changed"] == 2
    assert sorted(p.name for p in (tmp_path / "deocc").glob("*.jpg")) == [
        "two_i0.jpg", "two_i0_original.jpg", "two_i1.jpg", "two_i1_original.jpg"
    ]
    # the red character's context: the blue one's pixels are gone, the original keeps them
    filled = read_image(tmp_path / "deocc" / "two_i0.jpg").astype(int)
    original = read_image(tmp_path / "deocc" / "two_i0_original.jpg").astype(int)

    def blue(a):
        return ((a[..., 2] - a[..., 0]) > 80).sum()

    assert blue(original) > 100 and blue(filled) < 0.05 * blue(original)
    # each record says where its box sits in the frame (the dataset stage pastes it back there)
    for entry in report["changed"]:
        x, y, w, h = entry["box"]
        crop = read_image(tmp_path / "deocc" / entry["original"]).astype(int)
        assert crop.shape[:2] == (h, w)
        here = np.abs(crop - image[y : y + h, x : x + w].astype(int)).mean()  # JPEG q95 noise only
        beside = np.abs(crop - image[y + 4 : y + h + 4, x + 4 : x + w + 4].astype(int)).mean()
        assert here < 6 and beside > 2 * here
