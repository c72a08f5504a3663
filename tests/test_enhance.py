"""The enhance stage: spandrel models with random weights built from their architectures,
tiles without seams, alpha aligned, the SSIM gate, the OpenCV path, kill -9 and resume, and
the dataset taking enhanced crops (never more than max_enlarge of plain resampling)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from animlora.config import load_settings
from animlora.io.images import read_image, write_image

SRC = Path(__file__).resolve().parents[1] / "src"


def settings(**enhance):
    return load_settings(overrides={"enhance": {"device": "cpu", **enhance}}).settings


def scene_with_disc(h: int = 48, w: int = 64, cx: float = 30.0, cy: float = 22.0, r: float = 9.0):
    """A smooth background with a bright disc; the disc is the alpha."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.dstack([40 + xx * 1.5, 60 + yy, np.full_like(xx, 90)]).astype(np.uint8)
    alpha = (np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1) * 255).astype(np.uint8)
    rgb[alpha > 127] = (235, 225, 210)
    return rgb, alpha


def centroid(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    wgt = a.astype(np.float64)
    return float((xs * wgt).sum() / wgt.sum()), float((ys * wgt).sum() / wgt.sum())


def compact(scale: int = 4, *, identity: bool = False, seed: int = 0):
    """A spandrel SRVGGNetCompact descriptor with random weights; ``identity`` zeroes its last
    conv, so the output is the nearest-neighbour enlargement Compact adds to its residual."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=scale)
    state = net.state_dict()
    if identity:
        last = max(k for k in state if k.startswith("body.") and k.endswith(".weight"))
        state[last].zero_()
        state[last.replace("weight", "bias")].zero_()
    return ModelLoader().load_from_state_dict(state)


def test_tiles_equal_one_pass_when_the_pad_covers_the_receptive_field():
    torch = pytest.importorskip("torch")
    from animlora.backends.enhancement.tiles import run_tiled

    d = compact()
    x = torch.rand(1, 3, 40, 52)
    with torch.inference_mode():
        whole = d(x)
        tiled = run_tiled(d, x, 4, tile=16, pad=6)  # 5 convs: receptive field 5 px each side
        seams = run_tiled(d, x, 4, tile=16, pad=0)
    assert tiled.shape == whole.shape == (1, 3, 160, 208)
    assert float((tiled - whole).abs().max()) < 1e-5
    assert float((seams - whole).abs().max()) > 1e-3  # without context the tile edges differ


def test_spandrel_rrdbnet_and_compact_load_from_their_state_dicts_and_keep_alpha_aligned():
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    from animlora.backends.enhancement.spandrel_sr import SpandrelEnhancer
    from animlora.stages.enhance import enhance_crop

    torch.manual_seed(0)
    rrdb = ModelLoader().load_from_state_dict(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict())
    s = settings(tile=16, tile_pad=8)
    rgb, alpha = scene_with_disc()
    out = SpandrelEnhancer(s.enhance, s.models, descriptor=rrdb, model_name="tiny-rrdb").enhance(rgb, 2.0)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8

    enhancer = SpandrelEnhancer(s.enhance, s.models, descriptor=compact(identity=True), model_name="tiny-compact")
    assert enhancer.method == "spandrel:tiny-compact (Compact x4)"
    result, factor, ssim = enhance_crop(enhancer, rgb, alpha, 4.0, 0.8)
    assert result is not None and result.shape == (192, 256, 4) and factor == 4.0 and ssim > 0.99
    bright = (result[..., :3].astype(int).sum(axis=2) > 600).astype(np.uint8) * 255
    (ax, ay), (bx, by) = centroid(result[..., 3]), centroid(bright)
    assert abs(ax - bx) < 1.0 and abs(ay - by) < 1.0  # output pixels
    assert abs(ax - (30 + 0.5) * 4 + 0.5) < 1.0  # the disc's centre in the source, on the 4x grid

    # a factor below the model's scale: run at 4x, brought down to the size asked
    half, used, _ = enhance_crop(enhancer, rgb, alpha, 2.5, 0.8)
    assert half is not None and half.shape == (120, 160, 4) and used == 2.5


def test_fp16_on_cuda_matches_fp32_on_a_full_size_rrdbnet():
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    if not torch.cuda.is_available():
        pytest.skip("fp16 runs on CUDA only")
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    from animlora.backends.enhancement.spandrel_sr import SpandrelEnhancer

    torch.manual_seed(0)  # Real-ESRGAN x4plus's layout (64 filters, 23 blocks), random weights
    state = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4).state_dict()
    rgb, _ = scene_with_disc(h=150, w=200, cx=90, cy=70, r=40)
    outs = {}
    for device, half in (("cpu", False), ("cuda", False), ("cuda", True)):
        s = load_settings(overrides={"enhance": {"device": device, "half": half, "tile": 64, "tile_pad": 16}}).settings
        enhancer = SpandrelEnhancer(s.enhance, s.models, descriptor=ModelLoader().load_from_state_dict(state),
                                    model_name="x4-random")
        assert enhancer.half == half and enhancer.method.endswith(", fp16)" if half else "x4)")
        outs[device, half] = enhancer.enhance(rgb, 4.0).astype(int)
        enhancer.close()
    assert outs["cuda", True].shape == (600, 800, 3)
    fp32 = np.abs(outs["cuda", False] - outs["cpu", False])
    assert fp32.max() <= 2, (fp32.max(), fp32.mean())  # cuDNN's TF32 convolutions against the CPU's fp32
    fp16 = np.abs(outs["cuda", True] - outs["cuda", False])
    assert fp16.max() <= 4 and fp16.mean() < 0.5, (fp16.max(), fp16.mean())


def test_the_gate_rejects_a_result_whose_structure_drifts():
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    from animlora.backends.enhancement.spandrel_sr import SpandrelEnhancer
    from animlora.stages.enhance import enhance_crop

    torch.manual_seed(1)
    noise = ModelLoader().load_from_state_dict(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict())
    s = settings()
    rgb, alpha = scene_with_disc()
    result, _, ssim = enhance_crop(SpandrelEnhancer(s.enhance, s.models, descriptor=noise), rgb, alpha, 2.0, 0.8)
    assert result is None and ssim < 0.8  # random weights: not the source's structure

    from animlora.backends.enhancement.opencv import OpenCVEnhancer

    kept, used, ssim = enhance_crop(OpenCVEnhancer(s.enhance), rgb, alpha, 3.0, 0.8)
    assert kept is not None and used == 2.0 and ssim > 0.9  # the CPU path stops at cpu_max_scale


def test_opencv_path_is_closer_to_the_true_large_image_than_bicubic():
    from animlora.backends.enhancement.base import structure_similarity
    from animlora.backends.enhancement.opencv import OpenCVEnhancer

    truth, _ = scene_with_disc(128, 160, 80, 60, 28)  # rendered at the large size
    rgb = cv2.resize(truth, (80, 64), interpolation=cv2.INTER_AREA)  # what the film gives
    out = OpenCVEnhancer(settings(denoise=0).enhance).enhance(rgb, 2.0)
    cubic = cv2.resize(rgb, (160, 128), interpolation=cv2.INTER_CUBIC)

    def error(a):
        return float(np.abs(a.astype(int) - truth.astype(int)).mean())

    assert out.shape == truth.shape and error(out) < 0.9 * error(cubic)
    assert structure_similarity(rgb, out) > structure_similarity(rgb, cubic)
    # no halo: nothing brighter than the disc or darker than the background
    assert out.max() <= rgb.max() and out.min() >= rgb.min()


def test_registry_and_models_know_the_family():
    from animlora.backends import registry
    from animlora.models.registry import MODELS

    assert set(registry.BACKENDS["enhance"]) == {"spandrel", "opencv"}
    assert registry.fallback_chain("enhance", "spandrel") == ["spandrel", "opencv"]
    assert registry.available("enhance")["opencv"]
    sr = {n for n, m in MODELS.items() if m.kind == "enhancement"}
    assert {"realesrgan-x4plus", "realesrgan-x4plus-anime6b"} <= sr
    assert all(MODELS[n].license for n in sr)
    assert load_settings().settings.enhance.sr_model == "realesrgan-x4plus"
    assert load_settings(profile="2d").settings.enhance.sr_model == "realesrgan-x4plus-anime6b"


def test_spandrel_weights_resolve_from_an_imported_file(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from animlora.backends.enhancement.spandrel_sr import SpandrelEnhancer
    from animlora.models import import_model
    from animlora.stages.enhance import chosen_backend, open_enhancer

    path = tmp_path / "realesr-general-x4v3.pth"
    torch.save(compact(identity=True).model.state_dict(), path)
    s = load_settings(overrides={"enhance": {"backend": "spandrel", "sr_model": "realesr-general-x4v3",
                                             "device": "cpu"}}).settings
    with pytest.raises(Exception, match="models pull"):  # nothing there yet: one clear error
        SpandrelEnhancer(s.enhance, s.models)
    enhancer, note = open_enhancer(s)
    assert enhancer.name == "opencv" and "enhance.fallback" in note  # the fallback, said so
    with pytest.raises(Exception, match="checksum mismatch"):  # the registry knows this file's sha256
        import_model("realesrgan-x4plus-anime6b", path, s.models)
    auto = s.model_copy(update={"enhance": s.enhance.model_copy(update={"backend": "auto", "device": "auto"})})
    assert chosen_backend(auto) == "opencv"  # no weights
    import_model("realesr-general-x4v3", path, s.models)
    enhancer, note = open_enhancer(s)
    assert enhancer.name == "spandrel" and note is None and enhancer.scale == 4
    # weights found: auto takes the model on CUDA only (seconds per crop on a CPU)
    assert chosen_backend(auto) == ("spandrel" if torch.cuda.is_available() else "opencv")


def _images(folder: Path, n: int) -> None:
    for i in range(n):
        rgb, alpha = scene_with_disc(90, 120, 30 + i % 50, 40, 12)
        write_image(folder / f"img{i:03d}.png", np.dstack([rgb, alpha]))


def test_standalone_folder_keeps_alpha_and_reports(tmp_path):
    from animlora.cli.stages import run_standalone

    _images(tmp_path / "in", 2)
    run_standalone("enhance", tmp_path / "in", tmp_path / "out", {"enhance.backend": "opencv"},
                   sets=None, config_files=None, profile=None, force=False, as_json=True)
    report = json.loads((tmp_path / "out" / "enhance_report.json").read_text())
    assert report["accepted"] == 2 and report["rejected"] == 0 and report["methods"] == ["opencv"]
    assert [c["scale"] for c in report["crops"]] == [2.0, 2.0]
    out = read_image(tmp_path / "out" / "img000.png", "RGBA")
    assert out.shape == (180, 240, 4)
    bright = (out[..., :3].astype(int).sum(axis=2) > 600).astype(np.uint8) * 255
    assert np.hypot(*np.subtract(centroid(out[..., 3]), centroid(bright))) < 1.0


def _command(inp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "animlora", "enhance", "--input-dir", str(inp), "--output-dir", str(out),
            "--model", "opencv", "--set", "enhance.denoise=0", "--json"]


def _done(out: Path) -> int:
    db = out / ".animlora" / "catalog.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM stage_items WHERE stage='enhance' AND status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _snapshot(out: Path) -> tuple[dict, list]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))}
    with sqlite3.connect(out / ".animlora" / "catalog.sqlite") as conn:
        rows = sorted(conn.execute("SELECT * FROM enhanced_crops").fetchall())
    return files, rows


def test_kill_9_mid_stage_then_resume_equals_an_uninterrupted_run(tmp_path):
    from animlora.cli.stages import run_standalone

    inp = tmp_path / "in"
    for i in range(60):
        rgb, alpha = scene_with_disc(120, 160, 30 + i, 50, 20)
        write_image(inp / f"img{i:03d}.png", np.dstack([rgb, alpha]))
    reference, resumed = tmp_path / "ref", tmp_path / "resumed"
    run_standalone("enhance", inp, reference, {"enhance.backend": "opencv"},
                   sets=["enhance.denoise=0"], config_files=None, profile=None, force=False, as_json=True)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(_command(inp, resumed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _done(resumed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed; make the input larger"
    partial = _done(resumed)
    assert 2 <= partial < 60
    again = subprocess.run(_command(inp, resumed), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f'"items_skipped": {partial}' in again.stdout
    assert _snapshot(resumed) == _snapshot(reference)
    assert not list(resumed.rglob(".tmp-*"))


def test_dataset_takes_enhanced_crops_and_never_resamples_past_max_enlarge(tmp_path):
    from dataset_synth import make_project, run_stages

    root = tmp_path / "p"
    make_project(root, {"luca": 9}, shots=3)
    ds = {"dataset": {"min_size": 3, "small_size": 3, "target_size": 9, "report": False}}
    run_stages(root, ["enhance", "dataset"], {**ds, "enhance": {"backend": "none"}})
    plain = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())
    run_stages(root, ["enhance", "dataset"], {**ds, "enhance": {"backend": "opencv", "denoise": 0}})
    report = json.loads((root / "enhancement" / "enhance_report.json").read_text())
    meta = json.loads((root / "training_data" / "luca" / "metadata.json").read_text())

    # 640x360 frames, figures 150-330 px: every crop needs more than 1.25x for a 1024-class bucket
    assert report["items"] == 9 and report["accepted"] == 9 and report["scale"]["max"] == 2.0
    assert meta["count"] == 9 and plain["count"] == 8  # the thinnest figure (32x165 px) needs more than 1.25x
    assert [sk["code"] for sk in plain["skipped"]] == ["too small"] and meta["skipped"] == []
    assert all(r["enhanced"] is None and r["scale"] <= 1.25 + 1e-6 for r in plain["images"])
    assert all(r["enhanced"]["method"] == "opencv" for r in meta["images"])
    assert all(r["resample_scale"] <= 1.25 + 1e-6 < r["scale"] for r in meta["images"])
    assert meta["enlargement"]["enhanced"] == 9
    by_id = {r["instance_id"]: r for r in plain["images"]}
    for r in meta["images"]:  # larger images than plain resampling allowed
        if r["instance_id"] in by_id:
            assert r["size"][0] * r["size"][1] > by_id[r["instance_id"]]["size"][0] * by_id[r["instance_id"]]["size"][1]
        assert read_image(root / "training_data" / r["file"], "RGBA").shape[:2] == (r["size"][1], r["size"][0])
