"""Parts of one character in one frame, joined into one dataset image.

A character appears once in a frame. When two or more instances of one frame sit in the same
character's folder and their boxes (nearly) touch, the matte parted that character (a head from
its body at the collar, a body cut in two by a leg in front of it) and identity put the parts
back together. Written one by one they are a floating head and a headless body; joined they are
the character. The joined image is cut from the frame with the union of the parts' masks, under
the id of the largest part, or of a part whose enhanced crop (the enhance stage's) covers the
whole union, so that enlargement is used; the other parts are left out with code ``joined``.
Members of one frame that are far apart are not joined (one of them is most likely not the
character).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from animlora.curation.sources import Member
from animlora.groups import join_groups

PART_GAP = 0.12  # boxes this close (x the larger one's size) may be parts of one character
JOINED = "joined"  # the code of a part that went into another part's image


def box_gap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Pixels between two (x, y, w, h) boxes along the axis where they are farthest apart; 0
    when they overlap."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return float(max(bx - (ax + aw), ax - (bx + bw), by - (ay + ah), ay - (by + bh), 0))


def box_size(box: tuple[float, float, float, float]) -> float:
    """A box's size: the square root of its area (at least 1 px)."""
    return max(float(np.sqrt(box[2] * box[3])), 1.0)


def _union_box(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def _inside(box: tuple[int, int, int, int], region: tuple[int, int, int, int] | None) -> bool:
    if region is None:
        return False
    return (box[0] >= region[0] and box[1] >= region[1] and box[0] + box[2] <= region[0] + region[2]
            and box[1] + box[3] <= region[1] + region[3])


def joined_parts(members: list[Member], leave_out: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """{the part whose image holds the joined character: the other parts' ids}, for every frame
    with two or more members whose boxes chain within ``PART_GAP`` of each other. Members in
    ``leave_out``, with a problem, or without a frame, box or mask are not joined."""
    by_frame: dict[str, list[Member]] = {}
    for m in members:
        if m.instance_id in leave_out or m.problem or not (m.frame_id and m.bbox and m.mask_path and m.frame_path):
            continue
        by_frame.setdefault(m.frame_id, []).append(m)
    out: dict[str, list[str]] = {}
    for group in by_frame.values():
        if len(group) < 2:
            continue
        pairs = [(i, j) for i, a in enumerate(group) for j in range(i + 1, len(group))
                 if box_gap(a.bbox, group[j].bbox) <= PART_GAP * max(box_size(a.bbox), box_size(group[j].bbox))]
        for ks in join_groups(len(group), pairs):
            parts = [group[k] for k in ks]
            if len(parts) < 2:
                continue
            union = _union_box([p.bbox for p in parts if p.bbox is not None])
            # the largest part first; among those, one whose enhanced crop holds the union
            parts.sort(key=lambda p: -(p.bbox[2] * p.bbox[3] if p.bbox else 0))
            primary = next((p for p in parts if p.enhanced_path and _inside(union, p.enhanced_region)), parts[0])
            out[primary.instance_id] = [p.instance_id for p in parts if p is not primary]
    return out


def joined_member(primary: Member, others: list[Member], alpha_threshold: float
                  ) -> tuple[Member, np.ndarray, np.ndarray | None]:
    """(the primary with the union's box and area; the RGBA cut-out of that box with the union
    of the parts' masks as alpha; the primary's enhanced crop with the union's alpha, or None
    when it does not hold the whole union). Raises ``BadInputError`` on an unreadable file."""
    import cv2

    from animlora.errors import BadInputError
    from animlora.io.images import read_image

    assert primary.frame_path is not None and primary.mask_path is not None
    frame = read_image(primary.frame_path, "RGB")
    alpha = np.zeros(frame.shape[:2], np.uint8)
    for p in [primary, *others]:
        mask = read_image(p.mask_path or "", "L")
        if mask.shape != alpha.shape:
            mask = cv2.resize(mask, (alpha.shape[1], alpha.shape[0]), interpolation=cv2.INTER_LINEAR)
        np.maximum(alpha, mask, out=alpha)
    alpha[alpha <= int(alpha_threshold * 255)] = 0
    h, w = alpha.shape
    ux, uy, uw, uh = _union_box([p.bbox for p in [primary, *others] if p.bbox is not None])
    x0, y0, x1, y1 = max(0, ux), max(0, uy), min(w, ux + uw), min(h, uy + uh)
    union = (x0, y0, x1 - x0, y1 - y0)
    rgba = np.ascontiguousarray(np.dstack([frame, alpha])[y0:y1, x0:x1])
    enhanced = None
    if primary.enhanced_path and _inside(union, primary.enhanced_region):
        try:
            enhanced = read_image(primary.enhanced_path, "RGBA")
        except BadInputError:  # the frame's crop is used, as for any member without one
            enhanced = None
        if enhanced is not None:
            assert primary.enhanced_region is not None
            rx, ry, rw, rh = primary.enhanced_region
            region = alpha[ry : ry + rh, rx : rx + rw]
            enhanced = enhanced.copy()
            enhanced[..., 3] = cv2.resize(region, (enhanced.shape[1], enhanced.shape[0]),
                                          interpolation=cv2.INTER_LINEAR)
    area = sum(p.area_fraction or 0.0 for p in [primary, *others]) or None
    truncated = any(bool(p.truncated) for p in [primary, *others])
    member = replace(primary, bbox=union, area_fraction=area, truncated=truncated,
                     enhanced_path=primary.enhanced_path if enhanced is not None else None,
                     enhanced_region=primary.enhanced_region if enhanced is not None else None,
                     enhanced_scale=primary.enhanced_scale if enhanced is not None else None)
    return member, rgba, enhanced
