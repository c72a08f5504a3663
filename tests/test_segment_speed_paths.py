"""The segment stage's faster paths give the same results as the plain ones: the shot pass's
neighbour comparison, the per-frame text backdrop, frames decoded once per shot, plates
written at a lower PNG compression."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animlora.backends.segmentation import refine
from animlora.backends.segmentation.base import Instance
from animlora.io.images import read_image, write_image
from test_segment_stage import make_input, rows, segment


def _view(rng: np.random.Generator, h: int = 60, w: int = 90) -> refine._View:
    lab = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    return refine._View(lab[..., 0].copy(), lab, 1.0, (h, w))


def test_neighbour_evidence_equals_the_plain_numpy_comparison():
    import cv2

    rng = np.random.default_rng(1)
    views = [_view(rng) for _ in range(4)]
    views[2].lab[:] = views[1].lab + rng.uniform(-6, 6, views[1].lab.shape).astype(np.float32)  # partly "static"
    shift = np.array([[1, 0, 1.5], [0, 1, -1.0], [0, 0, 1]])
    homs = {(i, j): (np.eye(3) if (i + j) % 2 else shift) for i in range(4) for j in range(4) if i != j}
    got = refine.neighbour_evidence(1, views, homs)
    assert [j for j, _, _ in got] == [0, 2, 3]
    a = views[1].lab
    h, w = a.shape[:2]
    for j, same, valid in got:  # the reference: |a - shifted|.max(axis=2), min over shifts
        warped = cv2.warpPerspective(views[j].lab, homs[(1, j)], (w, h), flags=cv2.INTER_LINEAR,
                                     borderValue=(-1000.0,) * 3)
        padded = cv2.copyMakeBorder(warped, 2, 2, 2, 2, cv2.BORDER_REPLICATE)
        best = np.full((h, w), 1e9, np.float32)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = padded[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]
                best = np.minimum(best, np.abs(a - shifted).max(axis=2))
        ref_valid = warped[..., 0] > -500
        assert np.array_equal(valid, ref_valid)
        assert np.array_equal(same, ref_valid & (best < refine.STATIC_DIFF))
    assert any(same.mean() > 0.5 for j, same, _ in got if j == 2)  # the near-copy reads as static


def test_text_backdrop_once_per_frame_scores_as_per_instance():
    import cv2

    rng = np.random.default_rng(2)
    for trial in range(6):
        image = np.full((120, 200, 3), 40 + 30 * trial, np.uint8)
        image[rng.random((120, 200)) < 0.1 * trial] = 200  # from plain to speckled backgrounds
        insts = []
        for x in (20, 80, 140):
            alpha = np.zeros((30, 40), np.float32)
            alpha[5:25, 5:35] = 1.0
            image[30:60, x : x + 40][alpha > 0] = (230, 230, 230)
            insts.append(Instance(0, (x, 30, 40, 30), alpha, 1.0))
        backdrop = refine.text_backdrop(image, insts)
        assert backdrop is not None
        union = np.zeros((120, 200), bool)
        for inst in insts:
            union |= inst.full_alpha(120, 200) >= 0.1
        outside = cv2.dilate(union.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
        bg = backdrop[0][outside].astype(np.float32)  # the histogram median is numpy's median
        assert backdrop[1] == float((np.abs(bg - np.median(bg)) < 10).mean())
        for inst in insts:
            assert refine.text_score(image, inst, insts, backdrop) == refine.text_score(image, inst, insts)


def test_frames_are_decoded_once_per_shot_and_plates_keep_their_pixels(tmp_path, monkeypatch):
    import animlora.io.images as images

    calls: list[str] = []
    real = images.read_image_info

    def counting(path, mode="RGB"):
        calls.append(str(path))
        return real(path, mode)

    monkeypatch.setattr(images, "read_image_info", counting)
    monkeypatch.setattr("animlora.stages.segment.read_image_info", counting)
    inp = make_input(tmp_path / "in")
    segment(inp, tmp_path / "out")
    assert sorted(calls) == sorted(str(p) for p in inp.rglob("*.png"))  # each of the 4 frames read once
    frames = rows(tmp_path / "out", "SELECT source, background_path FROM segment_frames ORDER BY source")
    assert len(frames) == 4
    for r in frames:  # the plate is the frame with the characters transparent, pixel for pixel
        plate = read_image(tmp_path / "out" / r["background_path"], "RGBA")
        frame = read_image(r["source"], "RGB")
        assert np.array_equal(plate[..., :3], frame)
        assert 0 < (plate[..., 3] == 0).mean() < 0.5


def test_png_compression_level_changes_size_not_pixels(tmp_path):
    rng = np.random.default_rng(3)
    image = np.dstack([rng.integers(0, 40, (90, 120, 3)).astype(np.uint8) + 100,
                       np.full((90, 120), 255, np.uint8)])
    fast = write_image(tmp_path / "a.png", image, png_compression=1)
    small = write_image(tmp_path / "b.png", image, png_compression=9)
    assert np.array_equal(read_image(fast, "RGBA"), read_image(small, "RGBA"))
    assert Path(small).stat().st_size <= Path(fast).stat().st_size


def test_png_fast_keeps_pixels_rgba_rgb_and_grey(tmp_path):
    rng = np.random.default_rng(4)
    smooth = np.cumsum(rng.integers(-3, 4, (90, 120, 3)), axis=1) + 128
    for k, image in enumerate([
        np.clip(smooth, 0, 255).astype(np.uint8),
        np.dstack([np.clip(smooth, 0, 255).astype(np.uint8), rng.integers(0, 2, (90, 120)).astype(np.uint8) * 255]),
        np.clip(smooth[..., 0], 0, 255).astype(np.uint8),
    ]):
        fast = write_image(tmp_path / f"f{k}.png", image, png_fast=True)
        mode = "RGBA" if image.ndim == 3 and image.shape[2] == 4 else "RGB"
        got = read_image(fast, mode)
        want = image if image.ndim == 3 else np.dstack([image] * 3)
        assert np.array_equal(got, want)


def test_set_features_once_per_frame_give_the_same_homography():
    import cv2

    rng = np.random.default_rng(5)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (160, 240)).astype(np.float32), (0, 0), 1.5) * 3 - 200
    a = np.clip(base, 0, 255).astype(np.float32)
    b = np.roll(a, (3, -5), axis=(0, 1))
    set_a = np.ones(a.shape, bool)
    set_a[40:100, 60:120] = False
    set_b = np.roll(set_a, (3, -5), axis=(0, 1))
    plain = refine.register(a, b, set_a, set_b)
    cached = refine.register(a, b, set_a, set_b, (refine.set_features(a, set_a), refine.set_features(b, set_b)))
    assert plain is not None and cached is not None
    assert np.array_equal(plain, cached)
    assert abs(plain[0, 2] - 5) < 1 and abs(plain[1, 2] + 3) < 1  # b moved back onto a


def test_flat_fill_from_histograms_equals_the_float_median():
    import cv2

    rng = np.random.default_rng(6)
    for trial in range(30):
        image = cv2.GaussianBlur((rng.integers(0, 255, (120, 160, 3)) // (1 + trial % 7)).astype(np.uint8),
                                 (0, 0), 0.5 + trial % 4)
        h, w = int(rng.integers(10, 100)), int(rng.integers(10, 140))
        alpha = (rng.random((h, w)) > rng.uniform(0, 0.4)).astype(np.float32)
        inst = Instance(frame=0, bbox=(3, 5, w, h), alpha=alpha, score=1.0, track=0)
        core = cv2.erode((alpha >= 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if core.sum() < 20:
            assert refine.flat_fill(image, inst) == 0.0
            continue
        lab = cv2.cvtColor(image[5 : 5 + h, 3 : 3 + w], cv2.COLOR_RGB2LAB).astype(np.float32)[core]
        want = float((np.abs(lab - np.median(lab, axis=0)).max(axis=1) < 12).mean())
        assert refine.flat_fill(image, inst) == want


def test_isnet_preprocess_gives_the_reference_input():
    from types import SimpleNamespace

    import cv2

    from animlora.backends.segmentation.isnet import MEAN, STD, IsnetMatte

    image = np.random.default_rng(7).integers(0, 256, (90, 160, 3)).astype(np.uint8)
    got = IsnetMatte.preprocess(SimpleNamespace(size=(64, 96)), image)  # type: ignore[arg-type]
    small = cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA)
    want = ((small.astype(np.float32) * (1.0 / 255.0) - MEAN) / STD).transpose(2, 0, 1)
    assert got.shape == (3, 64, 96) and got.dtype == np.float32
    assert np.array_equal(got, want)


def test_blurred_context_made_small_is_within_a_level_of_the_full_blur():
    import cv2

    from animlora.backends.segmentation.cutouts import blurred_context

    rng = np.random.default_rng(8)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3)).astype(np.uint8), (0, 0), 2)
    box = (20, 10, 260, 220)
    alpha = np.zeros((220, 260), np.float32)
    alpha[60:160, 80:180] = 1.0
    alpha[59, 80:180] = 0.5
    got = blurred_context(image, alpha, box, 12.0).astype(np.int16)
    crop = image[10:230, 20:280]
    full = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 12.0)
    want = np.clip(alpha[..., None] * crop + (1 - alpha[..., None]) * full + 0.5, 0, 255).astype(np.int16)
    assert np.array_equal(got[60:160, 80:180], crop[60:160, 80:180])  # the character itself untouched
    assert np.abs(got - want).mean() < 0.5 and np.percentile(np.abs(got - want), 99) <= 3
