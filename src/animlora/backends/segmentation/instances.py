"""From a soft matte to character instances, and instances to tracks: shared by the
matte-based backends (isnet, classic) and by sam2's prompts.

- :func:`split_matte`: connected components of the thresholded matte; a component whose
  distance transform has two or more well-separated peaks (two characters touching or
  overlapping) is split through the neck between them.
- :func:`graft_edge_parts`: a body the frame's bottom edge cuts, which only a coarser look
  keeps, joined to the head the fine matte found.
- :func:`link_tracks`: instances of consecutive frames linked by mask IoU (after aligning
  box centres, so a panning camera does not break a track) and colour-histogram similarity
  (a mask that swallowed another track keeps the view before it: a crossing does not swap tracks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from animlora.backends.segmentation.base import Instance
from animlora.boxes import box_inside

NECK = 0.3  # a blob eroded to this share of its thickest point ...
NECK_CORE = 0.08  # ... falls apart into cores each at least this share of its area: split there
SWALLOWED = 0.5  # a track's last box this far inside another's new instance: one mask of both (link_tracks)
EDGE_BELOW = 0.5  # a body the frame's edge cuts runs on under its head: the head ends in this top share of it
# ... and is shaped as one (cgi-bench seeds 2, 3, 6: the torsos under the boys' and the bunny's heads 0.57-1.34x
# the head's width, filling 0.47-0.91 of their box, the 320² look 0.63-0.98 sure of them; on the film 21 of the
# 22 regions under whole characters, branches, sticks and spikes, miss one or more)
EDGE_WIDTH = (0.55, 1.4)  # its width, times the head's
EDGE_FILL = 0.45  # share of its box it fills (not a thin branch or stick)
EDGE_SURE = 0.6  # the coarse look's mean value on it


def add_coarse(fine: np.ndarray, coarse: np.ndarray, threshold: float, max_overlap: float = 0.2) -> np.ndarray:
    """The fine matte with what only the coarse look found: each connected region of ``coarse``
    (>= ``threshold``) of which under ``max_overlap`` of the pixels are already in ``fine`` is a
    character the fine look scored as background (a defocused one behind the subject in focus:
    cgi-bench seed 2, shot 9, the bunny at 0.00 of its pixels at 1024², 0.54-1.00 at 512² and
    320²); its coarse values are added there. Regions the fine look found keep the fine edges."""
    import cv2

    have = fine >= threshold
    count, labels = cv2.connectedComponents((coarse >= threshold).astype(np.uint8), connectivity=8)
    out = fine.copy()
    for label in range(1, count):
        region = labels == label
        if have[region].mean() < max_overlap:
            out[region] = np.maximum(out[region], coarse[region])
    return out


def graft_edge_parts(found: list[Instance], fine: np.ndarray, coarse: np.ndarray, threshold: float,
                     min_area_fraction: float, grow: int = 2) -> list[Instance]:
    """``found`` (the instances of the ``fine`` matte) with the body the frame's bottom edge cuts
    given back from the ``coarse`` look. ISNet at 1024² keeps a close-up's head and drops the
    torso that runs off the bottom of the frame (cgi-bench: a boy's striped or green shirt, the
    robot's body), or keeps a few faint stripes of it; at 320² it keeps the torso whole. A
    connected region of the coarse matte outside every instance joins one when all of these hold:

    - it reaches the frame's bottom row and is at least ``min_area_fraction`` of the frame;
    - of the instances it touches (within ``grow`` px), exactly one lies above its top (the
      head), and the others lie below its top and are smaller than it together (stripes of the
      body the fine look kept: they join too);
    - the head ends in its top ``EDGE_BELOW`` share of height: a body that runs on under a head
      (its shoulders may rise beside the chin). A character behind one found whole meets it along
      its side down to the frame's edge (a bunny behind a walking boy) and stays out;
    - it is shaped as a body (:func:`_body_under`), not the branch or stick under a whole character.

    The joined pixels take the coarse values (the head keeps its fine ones) and are marked
    ``kept`` on the instance."""
    import cv2

    height, width = fine.shape
    out: list[Instance | None] = list(found)
    cores = [inst.full_alpha(height, width) >= threshold for inst in found]
    rows = [np.nonzero(core)[0] for core in cores]
    taken = np.any(cores, axis=0) if cores else np.zeros((height, width), bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(((coarse >= threshold) & ~taken).astype(np.uint8),
                                                               connectivity=8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area_fraction * height * width or y + h < height:
            continue
        region = labels == label
        near = cv2.dilate(region.astype(np.uint8), kernel) > 0
        touching = [i for i, core in enumerate(cores) if out[i] is not None and (core & near).any()]
        heads = [i for i in touching if rows[i].mean() < y]
        pieces = [i for i in touching if i not in heads]
        if len(heads) != 1 or any(rows[i].min() < y for i in pieces) or sum(len(rows[i]) for i in pieces) >= area:
            continue
        i = heads[0]
        if rows[i].max() > y + EDGE_BELOW * h or not _body_under(cores[i], w, h, area, float(coarse[region].mean())):
            continue
        inst = out[i]
        assert inst is not None
        alpha = inst.full_alpha(height, width)
        alpha[region] = np.maximum(alpha[region], coarse[region])
        kept = region.copy()
        for j in pieces:  # faint stripes of the body the fine look kept: as sure as the coarse look is
            alpha = np.maximum(alpha, found[j].full_alpha(height, width))
            alpha[cores[j]] = np.maximum(alpha[cores[j]], coarse[cores[j]])
            kept |= cores[j]
            out[j] = None
        if inst.kept is not None:
            bx, by, bw, bh = inst.bbox
            kept[by : by + bh, bx : bx + bw] |= inst.kept
        ys, xs = np.nonzero(alpha > 0)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        out[i] = replace(inst, bbox=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
                         alpha=np.ascontiguousarray(alpha[y0:y1, x0:x1]),
                         kept=np.ascontiguousarray(kept[y0:y1, x0:x1]))
        cores[i] = alpha >= threshold
        rows[i] = np.nonzero(cores[i])[0]
    return [inst for inst in out if inst is not None]


def _body_under(head: np.ndarray, w: int, h: int, area: int, sure: float) -> bool:
    """Whether a region (box ``w`` x ``h``, ``area`` px, the coarse look's mean ``sure``) is shaped as a
    body under ``head`` rather than the set under a whole character: on the film the same place
    holds the branch a character stands on, the stick in its hand, the spikes under the apple."""
    xs = np.nonzero(head)[1]
    width = xs.max() - xs.min() + 1
    return EDGE_WIDTH[0] * width <= w <= EDGE_WIDTH[1] * width and area >= EDGE_FILL * w * h and sure >= EDGE_SURE


def split_matte(
    alpha: np.ndarray, frame: int, threshold: float, min_area_fraction: float,
    split_overlaps: bool = True, score: np.ndarray | None = None,
) -> list[Instance]:
    """Instances in one frame's matte (float32 HxW in [0, 1]).

    The soft matte is kept (anti-aliased edges), but each instance's matte is restricted to
    its region grown by a few pixels, so a neighbour's edge does not leak in. ``score`` is
    an optional per-pixel confidence map (default: the matte itself)."""
    import cv2

    height, width = alpha.shape
    binary = (alpha >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = max(1, int(min_area_fraction * height * width))
    regions: list[np.ndarray] = []
    blobs: list[int] = []  # per region: the blob it was split from, or -1
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < min_area:
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        region = np.zeros((height, width), np.uint8)
        region[y : y + h, x : x + w] = labels[y : y + h, x : x + w] == label
        parts = _split_touching(region, min_area) if split_overlaps else [region]
        regions.extend(parts)
        blobs.extend([label if len(parts) > 1 else -1] * len(parts))
    instances = []
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    confidence = alpha if score is None else score
    for region, blob in zip(regions, blobs, strict=True):
        near = cv2.dilate(region, grow)
        # other regions' cores are excluded from this one's grown border
        matte = np.where(near > 0, alpha, 0).astype(np.float32)
        for other in regions:
            if other is not region:
                matte[other > 0] = 0
        ys, xs = np.nonzero(matte > 0)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        inside = region > 0
        instances.append(
            Instance(
                frame=frame,
                bbox=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
                alpha=np.ascontiguousarray(matte[y0:y1, x0:x1]),
                score=float(np.clip(confidence[inside].mean(), 0, 1)),
                blob=blob,
            )
        )
    instances.sort(key=lambda inst: (inst.bbox[0], inst.bbox[1]))
    return instances


def _split_touching(region: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Split a blob between distance-transform peaks of similar height that are joined by
    a neck (two bodies touching or overlapping a little)."""
    import cv2

    dist = cv2.distanceTransform(region, cv2.DIST_L2, 5)
    peak = float(dist.max())
    if peak < 4:
        return [region]
    # cores: the parts thicker than 70% of the thickest point. Two cores of similar
    # thickness joined by a neck are two bodies; a smaller, thinner core (a head on a body)
    # is not split off.
    cores = (dist >= 0.7 * peak).astype(np.uint8)
    count, markers = cv2.connectedComponents(cores, connectivity=8)
    keep = [k for k in range(1, count) if float(dist[markers == k].max()) >= 0.85 * peak]
    if len(keep) < 2:
        # a thin neck between two large parts of different thickness (a near and a far
        # character joined by a strand of the set): the parts left when the blob is eroded
        # past the neck, each a large share of the blob
        area = float(region.sum())
        cores = (dist >= NECK * peak).astype(np.uint8)
        count, markers, stats, _ = cv2.connectedComponentsWithStats(cores, connectivity=8)
        big = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= NECK_CORE * area]
        if len(big) < 2:
            return [region]
        # a core must be large once grown back: the blob's pixels nearest to it
        keep = big
    # every pixel of the blob goes to its nearest core (the split runs through the neck)
    seeds = np.zeros(region.shape, np.uint8)
    for k in keep:
        seeds[markers == k] = 1
    _, nearest = cv2.distanceTransformWithLabels(1 - seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    parts = []
    for k in keep:
        label = int(nearest[markers == k][0])
        part = ((nearest == label) & (region > 0)).astype(np.uint8)
        if part.sum() >= min_area:
            parts.append(part)
    return parts if len(parts) >= 2 else [region]


def _histogram(image: np.ndarray, inst: Instance) -> np.ndarray:
    import cv2

    x, y, w, h = inst.bbox
    crop = image[y : y + h, x : x + w]
    mask = (inst.alpha >= 0.5).astype(np.uint8)
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask, [16, 8], [0, 180, 0, 256]).ravel()
    total = hist.sum()
    return hist / total if total > 0 else hist


def _aligned_iou(a: Instance, b: Instance) -> float:
    """IoU of two masks after moving b's box centre onto a's (camera motion tolerant),
    times a size-agreement factor."""
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    w, h = max(aw, bw), max(ah, bh)
    canvas_a = np.zeros((h, w), bool)
    canvas_b = np.zeros((h, w), bool)
    oy, ox = (h - ah) // 2, (w - aw) // 2
    canvas_a[oy : oy + ah, ox : ox + aw] = a.alpha >= 0.5
    oy, ox = (h - bh) // 2, (w - bw) // 2
    canvas_b[oy : oy + bh, ox : ox + bw] = b.alpha >= 0.5
    union = np.logical_or(canvas_a, canvas_b).sum()
    return float(np.logical_and(canvas_a, canvas_b).sum() / union) if union else 0.0


def _centre_distance(a: Instance, b: Instance, diagonal: float) -> float:
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    return float(np.hypot(ax + aw / 2 - bx - bw / 2, ay + ah / 2 - by - bh / 2) / diagonal)


def link_tracks(
    instances: Sequence[Instance], images: Sequence[np.ndarray], min_similarity: float
) -> list[Instance]:
    """Give every instance a track id: greedy best-first matching of each frame's
    instances to the tracks by shape, colour and position.

    A track is compared through its latest instance, and also through the one before when the
    latest *swallowed* another track: a track seen in the frame before, matched to nothing
    here, whose last box lies ``SWALLOWED`` or more inside the latest's. That is one mask of two
    characters, one walking in front of the other: its colours, shape and place are both's, and
    the view before the crossing still shows the track's own character, so after the crossing
    the track goes on with it rather than with the one nearer the mixed mask (cgi-bench seed 6,
    shot 2: the blue boy walking past the bunny took the bunny's track from the crossing on)."""
    from dataclasses import replace

    by_frame: dict[int, list[int]] = {}
    for i, inst in enumerate(instances):
        by_frame.setdefault(inst.frame, []).append(i)
    views: list[list[tuple[Instance, np.ndarray]]] = []  # per track: latest (instance, histogram) first
    assigned: dict[int, int] = {}
    previous = None
    for frame in sorted(by_frame):
        image = images[frame]
        diagonal = float(np.hypot(*image.shape[:2]))
        current = [(i, instances[i], _histogram(image, instances[i])) for i in by_frame[frame]]
        pairs = []
        for ci, (_, inst, hist) in enumerate(current):
            for t, track_views in enumerate(views):
                best = 0.0
                for last, last_hist in track_views:
                    colour = float(np.minimum(hist, last_hist).sum())  # histogram intersection
                    shape = _aligned_iou(last, inst)
                    near = max(0.0, 1.0 - 2.0 * _centre_distance(last, inst, diagonal))
                    best = max(best, 0.4 * colour + 0.35 * shape + 0.25 * near)
                pairs.append((best, ci, t))
        pairs.sort(reverse=True)
        used_c: dict[int, int] = {}
        used_t: set[int] = set()
        for sim, ci, t in pairs:
            if sim < min_similarity or ci in used_c or t in used_t:
                continue
            used_c[ci] = t
            used_t.add(t)
            assigned[current[ci][0]] = t
        left = [u for u in range(len(views)) if u not in used_t and views[u][0][0].frame == previous]
        for ci, t in used_c.items():
            inst = current[ci][1]
            swallowed = any(box_inside(views[u][0][0].bbox, inst.bbox) >= SWALLOWED for u in left)
            views[t] = [(inst, current[ci][2])] + (views[t][:1] if swallowed else [])
        for ci, (i, inst, hist) in enumerate(current):
            if ci not in used_c:
                assigned[i] = len(views)
                views.append([(inst, hist)])
        previous = frame
    return [replace(inst, track=assigned[i]) for i, inst in enumerate(instances)]
