"""Tracks over a shot's frames (``instances.link_tracks``): a character walking in front of
another keeps its own track after the crossing (cgi-bench seed 6, shot 2: the blue boy walking
past the bunny took the bunny's track from the crossing on, and the bunny his)."""

from __future__ import annotations

import numpy as np
import pytest

from animlora.backends.segmentation.base import Instance
from animlora.backends.segmentation.instances import link_tracks

H, W = 120, 240
BLUE, GREY, WHITE, GRASS = (40, 60, 200), (150, 150, 155), (235, 225, 215), (120, 200, 120)


def _crossing(pan: int) -> tuple[list[Instance], list[np.ndarray]]:
    """A (tall, blue) walks right past B (short, grey back and white belly); the camera pans
    ``pan`` px a frame. Frame 0: apart; 1: A hides B's belly; 2: one mask (A in front of B);
    3: apart, A right of B. Frame 0 and 3 list A first."""
    b0 = 110
    steps = [(b0 - 20, b0, False), (b0 + pan + 20, b0 + pan, False),
             (b0 + 2 * pan + 10, b0 + 2 * pan, True), (b0 + 3 * pan + 55, b0 + 3 * pan, False)]
    frames, found = [], []
    for f, (ax, bx, one) in enumerate(steps):
        image = np.empty((H, W, 3), np.uint8)
        image[:] = GRASS
        a = np.zeros((H, W), bool)
        a[20:100, ax:ax + 20] = True
        b = np.zeros((H, W), bool)
        b[40:100, bx:bx + 40] = True
        image[40:100, bx:bx + 20] = GREY
        image[40:100, bx + 20:bx + 40] = WHITE
        image[a] = BLUE
        frames.append(image)
        for m in ([a | b] if one else [a, b & ~a]):
            ys, xs = np.nonzero(m)
            x, y = int(xs.min()), int(ys.min())
            w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
            found.append(Instance(frame=f, bbox=(x, y, w, h), alpha=m[y:y + h, x:x + w].astype(np.float32), score=1.0))
    return found, frames


@pytest.mark.parametrize("pan", [0, -8, -16])
def test_a_character_walking_in_front_of_another_keeps_its_track_after_the_crossing(pan: int) -> None:
    found, frames = _crossing(pan)
    linked = link_tracks(found, frames, 0.35)
    first = [i for i in linked if i.frame == 0]
    last = [i for i in linked if i.frame == 3]
    assert first[0].track != first[1].track
    # the one-mask frame's colours are both characters'; the view before it decides
    assert [i.track for i in last] == [i.track for i in first]
    assert len({i.track for i in linked}) == 2
