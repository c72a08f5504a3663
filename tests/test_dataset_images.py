"""Dataset images: buckets, crops, the upscale limit, background modes; profile augmentation flags."""

from __future__ import annotations

import numpy as np
import pytest

from animlora.config import load_settings
from animlora.dataset.images import bucket_sizes, choose_bucket, render
from dataset_synth import outdoor_frame, person_cutout, place

BUCKETS = bucket_sizes(512, 64, 256, 1024)


def test_buckets_like_sd_scripts():
    assert (512, 512) in BUCKETS and (384, 640) in BUCKETS and (640, 384) in BUCKETS
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in BUCKETS)
    assert choose_bucket(1.0, BUCKETS) == (512, 512)
    assert choose_bucket(0.5, BUCKETS) == (320, 704)  # closest aspect in log scale
    assert choose_bucket(1.9, BUCKETS) == (640, 384)


def kwargs(**over):
    base = {"buckets": BUCKETS, "step": 64, "margin": 0.1, "max_upscale": 2.0, "min_side": 128,
            "background": "alpha", "color": (127, 127, 127), "alpha_threshold": 0.15}
    return {**base, **over}


@pytest.mark.parametrize("mode", ["alpha", "context", "flat", "blur"])
def test_background_modes_with_a_frame(mode):
    frame, cut, bbox = place(outdoor_frame(), 200, 20, 320)
    out = render(cut, frame, bbox, **kwargs(background=mode))
    img = out.image
    assert out.info["background"] == mode
    assert img.shape[2] == (4 if mode == "alpha" else 3)
    assert out.info["size"] == [img.shape[1], img.shape[0]]
    corner = img[2, 2, :3].astype(int)
    if mode in ("alpha", "context"):
        assert abs(corner - np.array([110, 170, 235])).max() < 20  # the real sky behind the character
    if mode == "flat":
        assert (corner == 127).all()
    if mode == "alpha":
        assert img[2, 2, 3] == 0 and img[img.shape[0] // 2, img.shape[1] // 2, 3] == 255


def test_no_frame_falls_back_to_flat_and_says_so():
    out = render(person_cutout(400), None, None, **kwargs(background="blur"))
    assert out.info["background"] == "flat"


def test_upscale_limited():
    small = person_cutout(150)  # a 57x150 figure: 2x gives ~340 px tall, not the 640-720 px bucket
    out = render(small, None, None, **kwargs())
    assert out.info["upscale_limited"] is True
    assert out.info["scale"] <= 2.0
    assert out.image.shape[0] <= 150 * 1.25 * 2  # crop height (with margins) x max_upscale
    tiny = person_cutout(40)
    assert render(tiny, None, None, **kwargs()) is None  # below min_side even at 2x


def test_profiles_set_augmentation():
    d3 = load_settings(profile="3d").settings.dataset
    d2 = load_settings(profile="2d").settings.dataset
    assert (d3.flip_aug, d3.color_aug, d3.target_size) == (False, False, 400)
    assert (d2.flip_aug, d2.color_aug) == (True, True)
    assert load_settings(profile="2d").settings.caption.style_words == []
