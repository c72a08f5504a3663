"""ISNet's coarse look merged into the 1024² matte (backends/segmentation/instances.py
``add_coarse``, on with ``segment.isnet_coarse_size``): a character the fine look scored as
background is added, what the fine look found keeps its own edges."""

from __future__ import annotations

import cv2
import numpy as np

from animlora.backends.segmentation.instances import add_coarse

H, W = 180, 320


def _rect(x0: int, y0: int, x1: int, y1: int, value: float = 0.9) -> np.ndarray:
    m = np.zeros((H, W), np.float32)
    m[y0:y1, x0:x1] = value
    return m


def test_the_coarse_look_adds_a_character_only_the_fine_look_missed():
    # cgi-bench seed 2, shot 9: the defocused bunny behind the character in focus
    fine = _rect(40, 40, 120, 150)
    bunny = np.zeros((H, W), np.float32)
    cv2.ellipse(bunny, (240, 100), (30, 45), 0, 0, 360, 0.6, -1)
    coarse = np.maximum(_rect(38, 38, 122, 152, 0.8), bunny)
    out = add_coarse(fine, coarse, 0.15)
    assert out[100, 240] == np.float32(0.6)  # the bunny, added with the coarse look's values
    np.testing.assert_array_equal(out[:, :130], fine[:, :130])  # the found region keeps its fine edges
    # a coarse region mostly found already (>= 20 %) adds nothing: its rim stays the fine look's
    wider = np.maximum(fine, _rect(120, 40, 135, 150, 0.8))
    np.testing.assert_array_equal(add_coarse(fine, wider, 0.15), fine)
