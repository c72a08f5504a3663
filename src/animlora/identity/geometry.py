"""Where instances sit in their frame, to tell two characters from two parts of one.

Two instances of one frame are *different characters* (a cannot-link) only when they do not
touch: segmentation often cuts one character in two (head and body, a raised arm), and the
parts of one character always touch. Touching is judged on the masks when they are on disk
(dilated by ``TOUCH_FRACTION`` of the smaller box's diagonal), else on the boxes (expanded by
the same margin): boxes that meet count as touching, since without a mask nothing proves the
two apart.

Tracks add what one frame cannot: two tracks of one shot whose instances touch in most frames
they share are *attached* (parts of one character moving together), and no frame of theirs
is a cannot-link, even one where the parts came apart for a moment.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

TOUCH_FRACTION = 0.04  # dilation / box margin, fraction of the smaller box's diagonal
ATTACHED_SHARE = 0.5  # two tracks touching in at least this share of their shared frames are one group
MASK_SCALE = 4  # masks are compared at 1/4 of the frame size (fast; a 4 px gap is still a gap)


@dataclass(frozen=True)
class Placement:
    """An instance's box [x, y, w, h] in frame pixels and its full-frame mask file (or None)."""

    box: tuple[float, float, float, float] | None
    mask: Path | None = None
    frame: tuple[int, int] | None = None  # (width, height) of its frame


@dataclass
class FrameGeometry:
    """Placements of the instances being clustered, by index; absent = unknown."""

    placements: dict[int, Placement] = field(default_factory=dict)

    def touching(self, i: int, j: int) -> bool:
        """Do instances i and j (of one frame) touch? An unknown placement counts as apart (the
        old rule: any two instances of a frame are different characters)."""
        a, b = self.placements.get(i), self.placements.get(j)
        if a is None or b is None or a.box is None or b.box is None:
            return False
        margin = TOUCH_FRACTION * min(np.hypot(a.box[2], a.box[3]), np.hypot(b.box[2], b.box[3]))
        if not _boxes_meet(a.box, b.box, margin):
            return False
        if a.mask is None or b.mask is None or not a.mask.is_file() or not b.mask.is_file():
            return True
        return _masks_meet(str(a.mask), str(b.mask), margin / MASK_SCALE)


def _boxes_meet(a: Sequence[float], b: Sequence[float], margin: float) -> bool:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    return not (ax0 + aw + margin < bx0 or bx0 + bw + margin < ax0
                or ay0 + ah + margin < by0 or by0 + bh + margin < ay0)


@lru_cache(maxsize=256)
def _small_mask(path: str) -> np.ndarray | None:
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        return None
    h, w = mask.shape
    small = cv2.resize(mask, (max(1, w // MASK_SCALE), max(1, h // MASK_SCALE)), interpolation=cv2.INTER_AREA)
    return small >= 32


def _masks_meet(path_a: str, path_b: str, radius: float) -> bool:
    import cv2

    a, b = _small_mask(path_a), _small_mask(path_b)
    if a is None or b is None or a.shape != b.shape:
        return True
    r = max(1, int(np.ceil(radius)))
    grown = cv2.dilate(a.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return bool((grown.astype(bool) & b).any())


def parse_box(value: object) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    try:
        x, y, w, h = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y, w, h)


@dataclass(frozen=True)
class Constraints:
    """Cannot-link pairs (instance index pairs, i < j) and the touching same-frame pairs."""

    cannot: frozenset[tuple[int, int]]
    touching: frozenset[tuple[int, int]]
    attached_tracks: int  # track pairs treated as one character's parts
    same_frame_pairs: int  # pairs of instances sharing a frame (what the old rule forbade)


def partners_of(pairs: frozenset[tuple[int, int]]) -> dict[int, set[int]]:
    """Per instance, the instances the ``pairs`` (cannot-links) keep it apart from, both ways."""
    partners: dict[int, set[int]] = defaultdict(set)
    for i, j in pairs:
        partners[i].add(j)
        partners[j].add(i)
    return partners


def build_constraints(
    frame_ids: Sequence[str | None],
    track_ids: Sequence[str | None],
    geometry: FrameGeometry | None = None,
) -> Constraints:
    """Cannot-link between two instances of one frame that do not touch, are not of one track,
    and whose tracks are not attached (see module doc). Without geometry every pair of a
    frame is a cannot-link (the old rule)."""
    geometry = geometry or FrameGeometry()
    by_frame: dict[str, list[int]] = defaultdict(list)
    for i, frame in enumerate(frame_ids):
        if frame:
            by_frame[frame].append(i)
    touching: set[tuple[int, int]] = set()
    apart: set[tuple[int, int]] = set()
    shared: dict[tuple[str, str], list[bool]] = defaultdict(list)  # track pair -> touched per frame
    for members in by_frame.values():
        for n, i in enumerate(members):
            for j in members[n + 1 :]:
                pair = (min(i, j), max(i, j))
                ti, tj = track_ids[i], track_ids[j]
                if ti and tj and ti == tj:
                    touching.add(pair)  # one track in one frame twice: one character
                    continue
                touch = geometry.touching(i, j)
                (touching if touch else apart).add(pair)
                if ti and tj:
                    shared[(min(ti, tj), max(ti, tj))].append(touch)
    attached = {pair for pair, flags in shared.items() if np.mean(flags) >= ATTACHED_SHARE}
    cannot = set()
    for i, j in apart:
        ti, tj = track_ids[i], track_ids[j]
        if ti and tj and (min(ti, tj), max(ti, tj)) in attached:
            continue
        cannot.add((i, j))
    same = sum(len(m) * (len(m) - 1) // 2 for m in by_frame.values())
    return Constraints(frozenset(cannot), frozenset(touching), len(attached), same)


def project_geometry(catalog: object, root: Path, ids: Sequence[str]) -> FrameGeometry:
    """Boxes and mask files of the segment stage's instances (``instances.bbox``, ``mask_path``
    under segmentation/), by position in ``ids``."""
    from animlora.records.folders import stage_folder
    from animlora.records.segment import project_instances

    position = {iid: n for n, iid in enumerate(ids)}
    placements = {}
    for inst in project_instances(catalog).values():  # type: ignore[arg-type]
        n = position.get(inst.id)
        if n is None:
            continue
        mask = root / stage_folder("segment") / inst.mask_path if inst.mask_path else None
        frame = (inst.frame_width, inst.frame_height) if inst.frame_width and inst.frame_height else None
        placements[n] = Placement(parse_box(inst.bbox), mask, frame)
    return FrameGeometry(placements)
