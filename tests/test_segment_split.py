"""Splitting a matte blob into instances: two characters of different size joined by a thin
strand of the set (a near and a far character, a branch between them) are two instances."""

from __future__ import annotations

import cv2
import numpy as np

from animlora.backends.segmentation.instances import split_matte

H, W = 200, 320


def _blob(near: tuple[int, int, int, int], far: tuple[int, int, int, int], strand: int) -> np.ndarray:
    """A near character (big ellipse), a far one (an ellipse about half as thick) and a
    strand ``strand`` px thick between their heads."""
    matte = np.zeros((H, W), np.uint8)
    cv2.ellipse(matte, (near[0], near[1]), (near[2], near[3]), 0, 0, 360, 1, -1)
    cv2.ellipse(matte, (far[0], far[1]), (far[2], far[3]), 0, 0, 360, 1, -1)
    cv2.line(matte, (near[0], near[1] - near[3] // 2), (far[0], far[1] - far[3] // 2), 1, strand)
    return matte.astype(np.float32)


def test_a_near_and_a_far_character_joined_by_a_thin_strand_are_two_instances():
    near, far = (90, 110, 45, 80), (235, 120, 24, 55)
    matte = _blob(near, far, 4)
    found = split_matte(matte, 0, 0.5, 0.003)
    assert len(found) == 2
    for (cx, cy, ax, ay), inst in zip((near, far), sorted(found, key=lambda i: i.bbox[0]), strict=True):
        truth = np.zeros((H, W), np.uint8)
        cv2.ellipse(truth, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
        mask = inst.full_alpha(H, W) >= 0.5
        assert (mask & (truth > 0)).sum() / (mask | (truth > 0)).sum() >= 0.9
    assert found[0].blob == found[1].blob >= 0  # one blob: the shot pass may put them back together


def test_a_character_with_thin_arms_and_ears_stays_one_instance():
    matte = np.zeros((H, W), np.uint8)
    cv2.ellipse(matte, (160, 120), (40, 60), 0, 0, 360, 1, -1)  # body
    cv2.circle(matte, (160, 50), 26, 1, -1)  # head on a thick neck
    for x in (148, 172):  # ears
        cv2.ellipse(matte, (x, 15), (5, 18), 0, 0, 360, 1, -1)
    cv2.line(matte, (120, 110), (70, 80), 1, 6)  # arms
    cv2.line(matte, (200, 110), (250, 80), 1, 6)
    assert len(split_matte(matte.astype(np.float32), 0, 0.5, 0.003)) == 1
