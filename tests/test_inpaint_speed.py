"""The inpaint stage's cheaper paths stay close to the full-size ones: OpenCV's two-scale fill
of large holes, DIS flow at a reduced size."""

from __future__ import annotations

import numpy as np

from animlora.backends.inpainting.flow import DISFlow
from animlora.backends.inpainting.opencv import TWO_SCALE_MIN, fill


def _scene(height: int = 360, width: int = 640) -> np.ndarray:
    import cv2

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.dstack([110 + 70 * np.sin(xx / 41.0 + c) * np.cos(yy / 29.0 - c) for c in (0.0, 1.1, 2.2)])
    rng = np.random.default_rng(0)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(img, (x, y), int(rng.integers(5, 30)), rng.integers(30, 230, 3).tolist(), -1)
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), 1.0)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / mse)


def test_two_scale_fill_is_as_good_as_one_pass_and_small_holes_are_unchanged():
    import cv2

    image = _scene()
    hole = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(hole, (320, 180), (90, 130), 0, 0, 360, 1, -1)
    hole = hole > 0
    assert hole.sum() >= TWO_SCALE_MIN
    one = fill(image, hole, 5, two_scale=False)
    two = fill(image, hole, 5)
    assert np.array_equal(two[~hole], image[~hole])  # only the hole changes
    assert _psnr(two, image, hole) >= _psnr(one, image, hole) - 0.5  # against the true background
    assert np.abs(two.astype(np.int16) - one)[hole].mean() < 8
    small = np.zeros_like(hole)
    small[100:140, 200:260] = True  # under TWO_SCALE_MIN: one pass, as before
    assert np.array_equal(fill(image, small, 5), fill(image, small, 5, two_scale=False))


def test_dis_at_reduced_size_finds_the_camera_motion():
    image = _scene(720, 1280)
    moved = np.roll(image, (4, -7), axis=(0, 1))  # content moves 7 px left, 4 px down
    for estimator in (DISFlow(max_side=0), DISFlow(max_side=640)):
        flow = estimator.flow(moved, image)
        inner = flow[40:-40, 40:-40].reshape(-1, 2)
        assert flow.shape == (720, 1280, 2)
        assert np.allclose(np.median(inner, axis=0), [7.0, -4.0], atol=0.5)
