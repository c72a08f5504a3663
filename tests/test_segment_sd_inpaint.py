"""Text-guided SD inpainting (deocclude.backend: sd): a tiny random StableDiffusionInpaintPipeline
saved as a diffusers folder runs the real backend and the deocclude stage; the prompt comes from
characters/<name>.yaml when the catalog knows the instance's character."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

import tiny_sd  # noqa: E402
from animlora.cli.stages import run_standalone  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from animlora.errors import ModelNotFoundError  # noqa: E402
from animlora.io.images import read_image, write_image  # noqa: E402
from segment_synth import scene  # noqa: E402

RED, BLUE = (220, 90, 60), (60, 80, 210)
FAST = {"steps": 2, "resolution": 64}  # tiny canvas, two denoising steps: seconds on a CPU


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_sd.build_sd15(tmp_path_factory.mktemp("sd15-inpainting"), seed=0, inpainting=True)


def sd_inpainter(weights: Path, seed: int = 0):
    from animlora.backends.inpainting.base import get_inpainter

    settings = load_settings(overrides={"deocclude": FAST, "models": {"paths": {"sd15-inpainting": str(weights)}}}).settings
    return get_inpainter("sd", settings.deocclude, settings.models, seed=seed, device="cpu")


def test_canvas_is_a_multiple_of_8_with_the_aspect_kept():
    from animlora.backends.inpainting.sd import canvas_size

    assert canvas_size(70, 50, 64) == (64, 48)
    assert canvas_size(50, 70, 512) == (368, 512)
    assert canvas_size(1000, 20, 512) == (512, 8)


def test_sd_is_in_the_backend_table():
    from animlora.backends.inpainting.base import availability, get_inpainter
    from animlora.errors import ConfigError

    assert set(availability()) == {"lama", "opencv", "sd"} and availability()["sd"]
    with pytest.raises(ConfigError, match="lama, opencv, sd"):
        get_inpainter("nope", None, None)


def test_a_text_to_image_unet_is_refused(tmp_path):
    from animlora.backends.inpainting.sd import load_pipeline
    from animlora.errors import BadInputError

    folder = tiny_sd.build_sd15(tmp_path / "plain", seed=0)  # U-Net with 4 input channels
    with pytest.raises(BadInputError, match="not an inpainting model"):
        load_pipeline(folder, torch.float32)


def test_only_the_hole_changes_and_the_seed_fixes_the_result(weights):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # not a multiple of 8: resized and back
    yy, xx = np.mgrid[0:50, 0:70]
    hole = (xx - 40) ** 2 + (yy - 22) ** 2 <= 12**2

    sd = sd_inpainter(weights, seed=7)
    assert sd.name == "sd" and sd.text_guided and sd.dtype == torch.float32  # fp16 only on CUDA
    out = sd.inpaint(image, hole, prompt="a 3d animated character, a red fox")
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], image[~hole])  # bit-identical outside the hole
    assert np.abs(out[hole].astype(int) - image[hole].astype(int)).mean() > 10
    again = sd.inpaint(image, hole, prompt="a 3d animated character, a red fox")
    assert np.array_equal(out, again)  # a fresh generator from the seed on every call
    other = sd_inpainter(weights, seed=8).inpaint(image, hole, prompt="a 3d animated character, a red fox")
    assert not np.array_equal(out[hole], other[hole])
    assert np.array_equal(sd.inpaint(image, np.zeros_like(hole)), image)  # nothing to fill


def two_characters(root: Path) -> Path:
    """A frame where a small blue character stands in front of a big red one's box."""
    image, _ = scene(4, [((120, 90), (50, 70), RED), ((168, 150), (12, 12), BLUE)])
    write_image(root / "frames" / "two.png", image)
    run_standalone("segment", root / "frames", root / "seg", {"segment.backend": "classic"},
                   sets=None, config_files=None, profile=None, force=False, as_json=False)
    return root / "seg"


def deocclude(seg: Path, out: Path, sets: list[str]) -> dict:
    fast = [f"deocclude.{k}={v}" for k, v in FAST.items()]
    run_standalone("deocclude", seg, out, {"deocclude.backend": "sd"}, sets=fast + sets, config_files=None,
                   profile=None, force=False, as_json=False)
    return json.loads((out / "deocclude_report.json").read_text())


def test_deocclude_with_sd_records_backend_and_prompt(tmp_path, weights):
    seg = two_characters(tmp_path)
    report = deocclude(seg, tmp_path / "deocc", [f"models.paths.sd15-inpainting={weights}"])

    assert report["backend"] == "sd" and report["backends_used"] == ["sd"] and report["fallback"] == []
    assert report["instances_changed"] == 2
    assert [(c["path"], c["backend"], c["prompt"], c["character"]) for c in report["changed"]] == [
        ("two_i0.jpg", "sd", "a 3d animated character", None),  # standalone: character unknown
        ("two_i1.jpg", "sd", "a 3d animated character", None),
    ]
    filled = read_image(tmp_path / "deocc" / "two_i0.jpg")
    original = read_image(tmp_path / "deocc" / "two_i0_original.jpg")
    assert filled.shape == original.shape and not np.array_equal(filled, original)


def test_missing_sd_weights_are_an_error_unless_a_fallback_is_set(tmp_path):
    seg = two_characters(tmp_path)
    empty = [f"models.store={tmp_path / 'empty-store'}"]
    with pytest.raises(ModelNotFoundError, match="sd15-inpainting"):
        deocclude(seg, tmp_path / "a", empty)
    report = deocclude(seg, tmp_path / "b", empty + ["deocclude.fallback=opencv"])
    assert report["backend"] == "sd" and report["backends_used"] == ["opencv"]
    assert "backend 'sd' unavailable" in report["fallback"][0] and "used 'opencv'" in report["fallback"][0]
    assert all("prompt" not in c for c in report["changed"])


def test_project_prompt_comes_from_the_character_yaml(tmp_path, weights):
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    root = tmp_path / "proj"
    (root / "frames").mkdir(parents=True)
    (root / "characters").mkdir()
    (root / "characters" / "red.yaml").write_text("description: a tall red fox with a green scarf\n")
    (root / "project.yaml").write_text(
        "project:\n  name: t\nsegment:\n  backend: classic\n"
        f"deocclude:\n  backend: sd\n  steps: {FAST['steps']}\n  resolution: {FAST['resolution']}\n"
        f"models:\n  paths:\n    sd15-inpainting: {weights}\n"
    )
    ws = Workspace(root)
    cat = ws.open_catalog()
    cat.upsert("videos", [{"id": "v1", "path": "v.mp4", "name": "v", "size": 1, "status": "ok"}])
    cat.upsert("shots", [{"id": "v1_s0", "video_id": "v1", "idx": 0, "start_frame": 0, "end_frame": 10,
                          "start_time": 0, "end_time": 1, "frame_count": 10}])
    image, _ = scene(4, [((120, 90), (50, 70), RED), ((168, 150), (12, 12), BLUE)])
    write_image(root / "frames" / "v1_s0_000002.png", image)
    cat.upsert("frames", [{"id": "v1_f2", "video_id": "v1", "shot_id": "v1_s0", "frame_index": 2,
                           "timestamp": 0.2, "path": "v1_s0_000002.png", "kept": 1}])
    cat.close()
    loaded = load_settings(root)
    Runner(ws, loaded).run([get_stage("segment")])
    cat = ws.open_catalog()
    ids = [r["id"] for r in cat.rows("SELECT id FROM instances ORDER BY id")]
    assert len(ids) == 2
    cat.execute("INSERT INTO character_members VALUES (?, ?)", (ids[0], "red"))  # the review named one
    cat.close()

    Runner(ws, loaded).run([get_stage("deocclude")])
    report = json.loads((root / "deocclusion" / "deocclude_report.json").read_text())
    prompts = {c["instance_id"]: (c["character"], c["prompt"]) for c in report["changed"]}
    assert prompts == {
        ids[0]: ("red", "a 3d animated character, a tall red fox with a green scarf"),
        ids[1]: (None, "a 3d animated character"),
    }
