"""ISNet's second looks merged into the 1024² matte (backends/segmentation/instances.py):
``add_coarse`` (on with ``segment.isnet_coarse_size``) adds a character the fine look scored as
background, what the fine look found keeps its own edges; ``graft_edge_parts`` (on with
``segment.isnet_edge_size``) gives a head the body the frame's bottom edge cuts."""

from __future__ import annotations

import cv2
import numpy as np

from animlora.backends.segmentation.instances import add_coarse, graft_edge_parts, split_matte

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


def _ellipse(centre: tuple[int, int], axes: tuple[int, int], value: float) -> np.ndarray:
    m = np.zeros((H, W), np.float32)
    cv2.ellipse(m, centre, axes, 0, 0, 360, value, -1)
    return m


def test_the_body_the_frames_edge_cuts_is_given_back_to_its_head_and_kept():
    # cgi-bench seed 6, shot 15: the green boy in close-up; 1024² keeps his head, 320² his shirt too
    head = _ellipse((160, 70), (34, 40), 0.95)
    body = _rect(120, 105, 200, H, 0.8)
    [found] = split_matte(head, 0, 0.15, 0.002)
    [whole] = graft_edge_parts([found], head, np.maximum(head, body), 0.15, 0.002)
    shirt = (body >= 0.15) & (head < 0.15)
    alpha = whole.full_alpha(H, W)
    assert (alpha[shirt] == np.float32(0.8)).all()  # the shirt, with the coarse look's values
    assert np.array_equal(alpha[head >= 0.15], head[head >= 0.15])  # the head keeps its fine matte
    # the fine look kept a faint stripe of the shirt (seed 2 f101): one instance of its own, joined too
    striped = np.maximum(head, _rect(125, 140, 195, 150, 0.3))
    assert len(found_both := split_matte(striped, 0, 0.15, 0.002)) == 2
    [again] = graft_edge_parts(found_both, striped, np.maximum(head, body), 0.15, 0.002)
    assert np.array_equal(again.full_alpha(H, W), alpha) and np.array_equal(again.kept, whole.kept)
    kept = np.zeros((H, W), bool)
    x, y, w, h = whole.bbox
    kept[y : y + h, x : x + w] = whole.kept
    assert np.array_equal(kept, shirt) and whole.frame == found.frame and whole.score == found.score


def test_the_set_under_a_character_a_character_behind_and_a_body_under_two_heads_are_not_given_back():
    head = _ellipse((120, 70), (34, 40), 0.95)
    [found] = split_matte(head, 0, 0.15, 0.002)
    # a character behind a whole one (a bunny behind a walking boy, cgi-bench seed 6 f46): it starts
    # above the middle of the one found, or below it but meets it along its side to the frame's edge
    boy = _rect(90, 20, 150, H, 0.95)
    [walking] = split_matte(boy, 0, 0.15, 0.002)
    for top in (30, 110):
        behind = _rect(150, top, 230, H, 0.7)
        assert graft_edge_parts([walking], boy, np.maximum(boy, behind), 0.15, 0.002)[0] is walking, top
    # the set under a whole character, shaped as no body is (the film: the stick in Buck's hand, the
    # branch Frank stands on, the grass patch drawn faintly)
    for what in (_rect(115, 105, 125, H, 0.9), _rect(0, 105, W, H, 0.9), _rect(90, 105, 150, H, 0.4)):
        assert graft_edge_parts([found], head, np.maximum(head, what), 0.15, 0.002)[0] is found
    # a region that stops short of the frame's edge is not a body the edge cut
    short = _rect(90, 105, 150, H - 10, 0.8)
    assert graft_edge_parts([found], head, np.maximum(head, short), 0.15, 0.002)[0] is found
    # one region under two found instances: nothing says whose it is
    heads = np.maximum(head, _ellipse((230, 70), (30, 36), 0.95))
    two = split_matte(heads, 0, 0.15, 0.002)
    under = _rect(90, 105, 260, H, 0.8)
    assert all(a is b for a, b in zip(graft_edge_parts(two, heads, np.maximum(heads, under), 0.15, 0.002), two,
                                      strict=True))
