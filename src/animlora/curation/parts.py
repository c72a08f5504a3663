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

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from animlora.curation.sources import Member
from animlora.errors import BadInputError
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


# -- a bite the segment stage took out of a character ----------------------------------------------
# The segment stage cuts from a mask what the shot's other frames show as the set (a rock fused to a
# character); the piece stays an instance of its own (measures ``prop: true, cut_from_prop: false``),
# the character keeps the rest (``cut_from_prop: true``). Where its frames showed the character's own
# fur faint under the matte it cut the character itself (the film's f2203: a patch of Buck's chest),
# and the dataset image has a hole in the body. Colour does not tell such a bite from a rock (Buck's
# grey fur and the demo's boulders are 2-7 apart in a*b*); where the piece lies does: a rock beside a
# character touches it along one side, a bite has the body all round it.
BITE_RIM = 0.75  # a piece with this share of the 2-pixel ring around it on the member's mask is a bite out of
#                  it (film bites 0.81, 0.88; rocks, trees and boulders beside a character on the film, the demo
#                  and cgi-bench seeds 2 and 6: 0.59 or less)
BITE_SHARE = 0.05  # ... joined back when it is this share of the member's mask or more (f2203: 5.6%). A smaller
#                    one stays (f7036, 3.3%: made whole it is a near-duplicate of f7013, and Buck's close-up
#                    folder of 8 fell under dataset.min_size)


def bites(members: list[Member], rows: list[dict[str, Any]], seg_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """{member id: the pieces the segment stage cut from it as the set that are a bite out of it}:
    instances of the member's frame with measures ``prop`` and ``cut_from_prop: false`` (the member's
    say ``cut_from_prop: true``) with ``BITE_RIM`` of the 2-pixel ring around their mask on the
    member's mask and ``BITE_SHARE`` of its size. Each piece: id, absolute mask path, box, area
    fraction, truncated. ``rows``: every instance row, its ``measures`` parsed (stages/dataset.py)."""
    import cv2

    from animlora.io.images import read_image

    pieces_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        measures = row.get("measures") or {}
        if measures.get("prop") and measures.get("cut_from_prop") is False:
            pieces_of.setdefault(row.get("frame_id") or "", []).append(row)
    cut = {row["id"] for row in rows if (row.get("measures") or {}).get("cut_from_prop")}
    out: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        pieces = pieces_of.get(m.frame_id or "", [])
        if not pieces or not m.mask_path or m.instance_id not in cut:
            continue
        found = []
        try:
            body = read_image(m.mask_path, "L") >= 128
            for p in pieces:
                mask = read_image(str(seg_dir / p["mask_path"]), "L") >= 128
                if mask.shape != body.shape or mask.sum() < BITE_SHARE * body.sum():
                    continue
                ring = (cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0) & ~mask
                if ring.any() and float((ring & body).sum()) / float(ring.sum()) >= BITE_RIM:
                    found.append({"id": p["id"], "mask_path": str(seg_dir / p["mask_path"]),
                                  "bbox": json.loads(p["bbox"]) if isinstance(p["bbox"], str) else list(p["bbox"]),
                                  "area_fraction": p.get("area_fraction"), "truncated": bool(p.get("truncated"))})
        except BadInputError:
            continue  # an unreadable mask: the image is built as it is
        if found:
            out[m.instance_id] = found
    return out


def bite_members(m: Member, found: list[dict[str, Any]]) -> list[Member]:
    """The pieces :func:`bites` found, as members :func:`joined_member` joins to ``m``."""
    return [replace(m, instance_id=p["id"], mask_path=p["mask_path"], bbox=tuple(p["bbox"]),
                    area_fraction=p["area_fraction"], truncated=p["truncated"]) for p in found]
