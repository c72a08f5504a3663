"""One clean instance per visible character: a shot-level pass over any backend's instances.

A matte (isnet, classic, yolo, sam2's prompter) sees *salient things* one frame at a time: a
boulder the character leans on joins its mask, a dark collar cuts a head from its body, a
tree or a rock is as salient as a rabbit. What tells them apart is what the shot does over
its frames:

1. **Registration.** Each frame is registered to its neighbours in the shot by a homography
   fitted to ORB features *outside* every instance (the set), so camera moves cancel.
2. **Static pixels.** A pixel of an instance is *static* when, registered, the neighbouring
   frames show the same colour there (within a few pixels of parallax). The set and the
   props on it are static; characters animate and move relative to the set.
3. **Props.** An instance whose pixels are static (``STATIC_FRACTION``) is a prop or scenery
   (``static`` in its measures; prefilter rejects it as ``not_character:static``). Where a
   prop seen on its own in one frame is joined to a moving character's mask in another
   (registered onto the same place), its static pixels are cut out of that mask and become
   their own (static) instance; pixels where the character is in front of the prop differ
   from the prop and stay with the character.
4. **Parts that move together.** Two moving instances of one frame that are close and whose
   tracks keep the same offset over the shot's frames are one character (a head cut from
   its body by a thin neck, a collar, or an occluder) and are merged. With one frame only,
   a thin gap and similar colours merge them unless the pair looks like two bodies (two
   distance-transform cores of similar thickness).
5. **Text.** Title cards: an instance of flat colour with crisp edges on a plain background
   gets a high ``text`` score; ``flat`` is the share of its pixels of one colour (logos and
   titles over footage are flat fills, shaded 3D characters are not). Prefilter rejects
   either as ``not_character:text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from animlora.backends.segmentation.base import Instance
from animlora.groups import join_groups

WORK_WIDTH = 480  # analysis resolution of the shot pass
NEIGHBOURS = 3  # each frame is compared with up to this many frames on each side
STATIC_DIFF = 12.0  # Lab levels (8-bit scale, largest channel) under which a registered pixel is unchanged
SHIFT = 2  # px at analysis scale: parallax / registration slack when comparing frames
STATIC_FRACTION = 0.8  # an instance this static (of its pixels with evidence) is a prop
MIN_EVIDENCE = 0.5  # fraction of an instance's pixels that need a registered neighbour
CUT_FRACTION = 0.03  # a set region this large (of the mask) is cut off a moving mask ...
KEEP_FRACTION = 0.25  # ... when at least this much of the mask is left
SET_VOTES = 2  # neighbours that must show a region as the set before it is cut off a mask
MIN_SOLIDITY = 0.7  # ... and it is a solid chunk (area / convex hull area)
ENCLOSED = 0.7  # ... and less than this share of its outline lies on the rest of the mask
ENCLOSED_ALONE = 0.995  # ... (when the prop is seen on its own elsewhere in the shot: the rest of
#                       the rock around the part that matched may be the "mask" around it)
ROCK_AS_PROP = 0.1  # a prop seen on its own, matched in pieces, is cut as one when this much of the match
#                    (and CUT_FRACTION of the mask) was matched as a prop, not only as plain set
ENCLOSED_ROCK = 0.6  # ... unless this much of a ring beyond its rim lies on the rest of the mask
LUMP_ON_PROP = 0.3  # a lump parted from the body by an opening goes with the prop when this much of it lies at it
MERGE_GAP = 0.12  # parts this close (x sqrt(area of the larger)) may be one character
MERGE_GAP_SINGLE = 0.04  # ... and without other frames to show they move together
FUSED_MOVING = 0.05  # share of a mask that must change over the shot to seed the character ...
FUSED_REACH = 0.15  # ... and still pixels this far from the changing ones (x sqrt(area)) seed the set
FUSED_STILL_MAX = 0.97  # a still instance (static >= STATIC_FRACTION) under this is tried too
FUSED_SOLIDITY = 0.5  # ... and its pieces need only this solidity
FUSED_SET_LIKE = 0.5  # a piece is cut when its colours are this much more the set's than the character's
# a still instance (static >= FUSED_STILL_MAX) is cut by colour alone (fused_by_colour): its pixels in colours
# under this share of the frame's scenery seed the character (seed 6: the bunny before a conical tree, the blue
# boy before a round one, idle through their shots) ...
COLOUR_ABSENT = 1e-3
FUSED_OWN = 0.1  # ... when they are this share of the mask; a piece the cut removes goes when it is this far in
FUSED_APART = 25.0  # a*b* from the rest (OpenCV's 8-bit Lab; seed 6's trees off the bunny and the boy: 31-43) ...
FUSED_ONE_BODY = 0.1  # ... and leaves one body: no second part this share of the largest (a shirt in the set's colour)
STILL_PART_RATIO = 0.6  # two still parts of one blob go back together when one is this much smaller
FAR_PARTNERS = 2  # frames beyond the neighbours that may show a fused prop on its own
FAR_FREE = True  # far frames showing a place as plain set (1 vote each; a prop 2) count too
OFFSET_SPREAD = 0.1  # max spread of the parts' offset (x size) over the shot: "move together"
OFFSET_SPREAD_TOUCHING = 0.2  # ... for parts that touch in every frame they share (a head that nods on its body)
TOUCHING = 0.02  # parts this close (x sqrt(area of the larger)) touch
MIX_BINS = (4, 32)  # colour models: L in 4 bins, a and b in 32 each
MIX_DISTINCT = 0.55  # two things seen apart are colour models when their histograms overlap less than this
MIX_RATIO = 2.0  # a pixel is one model's when its density is this many times the other's
MIX_PART = 0.12  # each model's solid piece must be at least this share of the mask
MIX_SOLID = 0.65  # ... holding this share of the pixels of its colour
MIX_GAIN = 0.06  # the two models together explain the mask's colours this much better than either
MIX_EXPLAINED = 0.5  # ... and at least this well (histogram intersection)
MIX_SIZE = 2.0  # ... and each of its two pieces at most this many times the thing seen apart
MIX_LARGER = 1.05  # the mask is larger than either thing seen apart (by this much)
MIX_APART = 0.04  # two things are seen apart when this far apart (x sqrt(area) of the smaller): not touching


@dataclass
class Refined:
    """Instances after the shot pass, each with its measures (same order)."""

    instances: list[Instance]
    measures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _View:
    gray: np.ndarray  # float32 analysis-scale grey, lightly smoothed
    lab: np.ndarray  # float32 analysis-scale CIE Lab (8-bit scale), lightly smoothed
    scale: float  # analysis / full resolution
    shape: tuple[int, int]  # full-resolution (height, width)


def _small_mask(inst: Instance, view: _View, level: float = 0.5) -> np.ndarray:
    return _small(inst.alpha >= level, inst.bbox, view)


def _kept(inst: Instance, view: _View) -> np.ndarray:
    """The pixels a second look joined to ``inst`` (analysis scale), which no cut takes."""
    if inst.kept is None:
        return np.zeros(view.gray.shape, bool)
    return _small(inst.kept, inst.bbox, view)


def _small(crop: np.ndarray, bbox: tuple[int, int, int, int], view: _View) -> np.ndarray:
    import cv2

    h, w = view.shape
    full = np.zeros((h, w), np.uint8)
    x, y, bw, bh = bbox
    full[y : y + bh, x : x + bw] = crop
    sh, sw = view.gray.shape
    return cv2.resize(full, (sw, sh), interpolation=cv2.INTER_AREA if view.scale < 1 else cv2.INTER_NEAREST) > 0


def _views(frames: Sequence[np.ndarray]) -> list[_View]:
    import cv2

    views = []
    for i in range(len(frames)):
        image = frames[i]
        h, w = image.shape[:2]
        scale = min(1.0, WORK_WIDTH / w)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.8)
        lab = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), 0.8)
        views.append(_View(gray, lab, scale, (h, w)))
    return views


def set_features(gray: np.ndarray, set_mask: np.ndarray) -> tuple[Any, Any]:
    """ORB keypoints and descriptors of the set (``set_mask``) in one analysis grey image:
    what :func:`register` matches. Computed once per frame by :func:`refine_shot` and
    reused for every pair the frame is in (the same features a per-pair call finds)."""
    import cv2

    # low FAST threshold: painted and defocused sets have soft corners
    orb = cv2.ORB_create(600, edgeThreshold=15, fastThreshold=7)
    return orb.detectAndCompute(np.clip(gray, 0, 255).astype(np.uint8), set_mask.astype(np.uint8) * 255)


def register(a: np.ndarray, b: np.ndarray, set_a: np.ndarray, set_b: np.ndarray,
             features: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None) -> np.ndarray | None:
    """Homography taking frame ``b`` onto frame ``a`` (analysis grey images), fitted to
    features of the set (``set_*``: pixels outside every instance); identity for a plain or
    still set that agrees; None when the frames cannot be registered. ``features``: both
    frames' :func:`set_features`, when the caller has them."""
    import cv2

    if a.shape != b.shape:
        return None
    if features is None:
        features = (set_features(a, set_a), set_features(b, set_b))
    (ka, da), (kb, db) = features
    if da is not None and db is not None and len(ka) >= 12 and len(kb) >= 12:
        matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(db, da)
        if len(matches) >= 12:
            pb = np.float32([kb[m.queryIdx].pt for m in matches])
            pa = np.float32([ka[m.trainIdx].pt for m in matches])
            hom, inliers = cv2.findHomography(pb, pa, cv2.RANSAC, 3.0)
            if hom is not None and inliers is not None and inliers.sum() >= 12 and inliers.mean() >= 0.25:
                det = float(np.linalg.det(hom[:2, :2]))
                if 0.5 < det < 2.0:
                    return hom
    # a plain or still set (or a pan with too few features): the best translation, kept
    # when it makes the set agree
    both = set_a & set_b
    if both.sum() < 0.05 * both.size:
        return None
    candidates = [np.eye(3)]
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(np.where(set_b, b, b[set_b].mean()).astype(np.float32),
                                             np.where(set_a, a, a[set_a].mean()).astype(np.float32), window)
    if response > 0.05:
        candidates.append(np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64))
    best, best_err = None, 4.0
    for hom in candidates:
        h, w = a.shape
        moved = cv2.warpPerspective(b, hom, (w, h), borderValue=-1000.0)
        valid = both & (moved > -500)
        if valid.sum() < 0.05 * valid.size:
            continue
        err = float(np.median(np.abs(a - moved)[valid]))
        if err < best_err:
            best, best_err = hom, err
    return best


def neighbour_evidence(i: int, views: list[_View], homs: dict[tuple[int, int], Any],
                       partners: Sequence[int] | None = None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For each registered neighbour ``j`` of frame ``i`` (or each of ``partners``): (j,
    unchanged, valid), pixel maps in frame ``i``'s coordinates (unchanged = same grey at the
    registered place, within a few pixels of parallax)."""
    import cv2

    a = views[i].lab
    h, w = a.shape[:2]
    planes = [np.ascontiguousarray(a[..., c]) for c in range(3)]
    out = []
    if partners is None:
        partners = range(max(0, i - NEIGHBOURS), min(len(views), i + NEIGHBOURS + 1))
    for j in partners:
        hom = homs.get((i, j)) if j != i else None
        if hom is None:
            continue
        warped = cv2.warpPerspective(views[j].lab, hom, (w, h), flags=cv2.INTER_LINEAR, borderValue=(-1000.0,) * 3)
        valid = warped[..., 0] > -500
        best = np.full((h, w), 1e9, np.float32)
        padded = cv2.copyMakeBorder(warped, SHIFT, SHIFT, SHIFT, SHIFT, cv2.BORDER_REPLICATE)
        # per channel plane (OpenCV's SIMD absdiff/max/min on strided 2-D views; exact, as
        # numpy's |a - b|.max(axis=2) was, at a fraction of the time)
        pads = [np.ascontiguousarray(padded[..., c]) for c in range(3)]
        diff = np.empty((h, w), np.float32)
        largest = np.empty((h, w), np.float32)
        for dy in range(-SHIFT, SHIFT + 1):
            for dx in range(-SHIFT, SHIFT + 1):
                rows, cols = slice(SHIFT + dy, SHIFT + dy + h), slice(SHIFT + dx, SHIFT + dx + w)
                # the largest channel difference: a grey arm on a grey-green set differs in a, b
                cv2.absdiff(planes[0], pads[0][rows, cols], dst=largest)
                for c in (1, 2):
                    cv2.absdiff(planes[c], pads[c][rows, cols], dst=diff)
                    cv2.max(largest, diff, dst=largest)
                cv2.min(best, largest, dst=best)
        out.append((j, valid & (best < STATIC_DIFF), valid))
    return out


def static_map(evidence: list[tuple[int, np.ndarray, np.ndarray]], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(static, known): pixels unchanged in at least half of the registered neighbours, and
    pixels that have any registered neighbour."""
    votes = np.zeros(shape, np.int16)
    counted = np.zeros(shape, np.int16)
    for _, same, valid in evidence:
        votes += same
        counted += valid
    known = counted > 0
    return known & (2 * votes >= counted), known


def _far_props(moving: list[np.ndarray], still_in: Any, views: list[_View], sets: list[np.ndarray],
               homs: dict[tuple[int, int], Any], feats: Sequence[tuple[Any, Any]] | None = None,
               free: list[np.ndarray] | None = None,
               strong: list[np.ndarray | None] | None = None) -> list[np.ndarray | None]:
    """Per frame ``i``: pixels of its moving instances (``moving[i]``) that a frame farther in
    the shot than the neighbours shows, unchanged, as a prop on its own that is still through
    and through (the boulders a bunny climbs out from behind, seen alone once it has left).
    ``still_in(i)``: per frame, those props as frame ``i`` may use them (refine_shot's
    :func:`_prop_union` at ``FUSED_STILL_MAX``, without frame ``i``'s moving tracks: the
    character itself standing still later is no prop). Up to ``FAR_PARTNERS`` such frames
    per frame, those whose props cover most of this frame's moving instances; ``homs`` gains
    their registrations. ``strong`` (when given) gets, per frame, the pixels that a far frame
    shows unchanged as such a prop (not only as plain set)."""
    import cv2

    n = len(moving)
    out: list[np.ndarray | None] = [None] * n
    for i in range(n):
        if not moving[i].any():
            continue
        prop_masks = still_in(i)
        seen = prop_masks if free is None else [p | f for p, f in zip(prop_masks, free, strict=True)]
        # the frames that show most of this frame's moving pixels as set or a prop, and as many
        # again that show most of them as a prop on its own: a frame showing only plain set
        # there (the character elsewhere) gives one vote a pixel and cannot cut a prop that the
        # matte joined to the character in every nearer frame (the demo's lower boulder, in
        # Buck's mask from frame 28 to 37 and in 107, on its own in 45-67 and 128)
        enough = CUT_FRACTION * moving[i].sum()
        far_js = [j for j in range(n) if abs(i - j) > NEIGHBOURS and seen[j].shape == moving[i].shape]
        by_seen = sorted(((int((seen[j] & moving[i]).sum()), -abs(i - j), j) for j in far_js), reverse=True)
        by_prop = sorted(((int((prop_masks[j] & moving[i]).sum()), -abs(i - j), j) for j in far_js), reverse=True)
        partners = []
        for score, _, j in by_seen[:FAR_PARTNERS] + by_prop[:FAR_PARTNERS]:
            if score < enough or j in partners:
                continue
            if (i, j) not in homs:
                both = (feats[i], feats[j]) if feats else None
                hom = register(views[i].gray, views[j].gray, sets[i], sets[j], both)
                homs[(i, j)] = hom
                homs[(j, i)] = None if hom is None else np.linalg.inv(hom)
            partners.append(j)
        if not partners:
            continue
        h, w = moving[i].shape
        votes = np.zeros((h, w), np.int16)
        as_prop = np.zeros((h, w), bool)
        for j, same, _ in neighbour_evidence(i, views, homs, partners):
            prop = cv2.warpPerspective(prop_masks[j].astype(np.uint8), homs[(i, j)], (w, h), flags=cv2.INTER_NEAREST) > 0
            votes += SET_VOTES * (same & prop)
            as_prop |= same & prop
            if free is not None:  # plain set seen there: 1 vote (the matte may have missed a body)
                there = cv2.warpPerspective(free[j].astype(np.uint8), homs[(i, j)], (w, h), flags=cv2.INTER_NEAREST) > 0
                votes += same & there & ~prop
        out[i] = (votes >= SET_VOTES) & moving[i]
        if strong is not None:
            strong[i] = as_prop & moving[i]
    return out


def _prop_union(ks: Sequence[int], instances: Sequence[Instance], smalls: list[np.ndarray], props: set[int],
                fraction: list[float | None], shape: tuple[int, ...], min_static: float = STATIC_FRACTION,
                skip_tracks: frozenset[int] | set[int] = frozenset()) -> np.ndarray:
    """The pixels of one frame's props (instances ``ks``; in ``props`` with static >=
    ``min_static``), leaving out the tracks in ``skip_tracks``: where a character moves in
    one frame and stands still in another, its still self is no evidence of the set."""
    still = np.zeros(shape, bool)
    for k in ks:
        if k in props and (fraction[k] or 0.0) >= min_static and instances[k].track not in skip_tracks:
            still |= smalls[k]
    return still


def set_in_neighbours(i: int, evidence: list[tuple[int, np.ndarray, np.ndarray]], free: list[np.ndarray],
                      props: list[np.ndarray], homs: dict[tuple[int, int], Any]) -> np.ndarray:
    """Pixels of frame ``i`` that are unchanged *and* part of the set in the registered
    neighbours — the set, wherever a matte took it. A neighbour where the place is a prop
    seen on its own counts ``SET_VOTES`` (strong evidence); one where it is plain set
    (outside every instance) counts 1, since the matte may just have missed a still body
    there; ``SET_VOTES`` in all, and half of the neighbours, are needed."""
    import cv2

    h, w = free[i].shape
    votes = np.zeros((h, w), np.int16)
    agree = np.zeros((h, w), np.int16)
    counted = np.zeros((h, w), np.int16)
    for j, same, valid in evidence:
        hom = homs[(i, j)]
        there = cv2.warpPerspective(free[j].astype(np.uint8), hom, (w, h), flags=cv2.INTER_NEAREST) > 0
        prop = cv2.warpPerspective(props[j].astype(np.uint8), hom, (w, h), flags=cv2.INTER_NEAREST) > 0
        votes += (same & there) + SET_VOTES * (same & prop)
        agree += same & (there | prop)
        counted += valid
    return (votes >= SET_VOTES) & (2 * agree >= counted)


def prop_match(i: int, evidence: list[tuple[int, np.ndarray, np.ndarray]], props: list[np.ndarray],
               homs: dict[tuple[int, int], Any]) -> np.ndarray:
    """Pixels of frame ``i`` that some registered neighbour (``evidence``) shows unchanged
    inside one of its ``props`` (per frame: props seen on their own)."""
    import cv2

    h, w = props[i].shape
    out = np.zeros((h, w), bool)
    for j, same, _ in evidence:
        if props[j].any():
            out |= same & (cv2.warpPerspective(props[j].astype(np.uint8), homs[(i, j)], (w, h),
                                               flags=cv2.INTER_NEAREST) > 0)
    return out


def refine_shot(instances: Sequence[Instance], frames: Sequence[np.ndarray], settings: Any,
                relink: bool = True) -> Refined:
    """The shot pass (module doc): props cut off and flagged, parts merged, measures."""
    import cv2

    from animlora.backends.segmentation.instances import link_tracks

    instances = list(instances)
    if not instances:
        return Refined([], [])
    views = _views(frames)
    n = len(views)
    by_frame: dict[int, list[int]] = {}
    for k, inst in enumerate(instances):
        by_frame.setdefault(inst.frame, []).append(k)
    smalls = [_small_mask(inst, views[inst.frame]) for inst in instances]
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    sets = []
    for i in range(n):
        union = np.zeros(views[i].gray.shape, np.uint8)
        for k in by_frame.get(i, []):
            union |= smalls[k]
        sets.append(cv2.dilate(union, grow) == 0)
    # 1. registration between neighbours
    homs: dict[tuple[int, int], Any] = {}
    feats = [set_features(views[i].gray, sets[i]) for i in range(n)] if n > 1 else []
    for i in range(n):
        for j in range(i + 1, min(n, i + NEIGHBOURS + 1)):
            hom = register(views[i].gray, views[j].gray, sets[i], sets[j], (feats[i], feats[j]))
            homs[(i, j)] = hom
            homs[(j, i)] = None if hom is None else np.linalg.inv(hom)
    # 2. static pixels, 3. props
    evidence = [neighbour_evidence(i, views, homs) if n > 1 else [] for i in range(n)]
    statics = [static_map(evidence[i], views[i].gray.shape) if evidence[i] else None for i in range(n)]

    # per instance: a body the frame's edge cuts, given back by a second look (no cut takes it)
    keeps = [_kept(inst, views[inst.frame]) for inst in instances]

    def shares() -> list[float | None]:
        """Each instance's static share; a body a second look gave back (idle under a talking head, as
        often as not) is left out of it: the instance is judged by what the matte found."""
        return [_static_fraction(smalls[k] & ~keeps[k], statics[inst.frame]) for k, inst in enumerate(instances)]

    fraction = shares()
    # parts the matte split cut out of one blob go back together unless the video shows them apart
    instances, joined = _rejoin_split(instances, fraction)
    if joined:
        by_frame = {}
        for k, inst in enumerate(instances):
            by_frame.setdefault(inst.frame, []).append(k)
        smalls = [_small_mask(inst, views[inst.frame]) for inst in instances]
        keeps = [_kept(inst, views[inst.frame]) for inst in instances]
        fraction = shares()
    props = {k for k, f in enumerate(fraction) if f is not None and f >= STATIC_FRACTION}
    free, prop_masks, moving = [], [], []  # per frame: outside every instance; inside a prop; moving instances
    for i in range(n):
        anything = np.zeros(views[i].gray.shape, np.uint8)
        for k in by_frame.get(i, []):
            anything |= smalls[k]
        free.append(cv2.dilate(anything, np.ones((3, 3), np.uint8)) == 0)
        ks = by_frame.get(i, [])
        prop_masks.append(_prop_union(ks, instances, smalls, props, fraction, views[i].gray.shape))
        here = np.zeros(views[i].gray.shape, bool)
        for k in ks:
            if k not in props:
                here |= smalls[k]
        moving.append(here)
    # a track moving in frame i is a character: where it stands still in other frames it is
    # not a prop there, as far as frame i's evidence goes (one path for near and far props)
    moving_tracks = [{instances[k].track for k in by_frame.get(i, []) if k not in props and instances[k].track >= 0}
                     for i in range(n)]

    def props_seen_from(i: int, min_static: float = STATIC_FRACTION,
                        skip: set[int] | None = None) -> list[np.ndarray]:
        return [_prop_union(by_frame.get(j, []), instances, smalls, props, fraction, views[j].gray.shape,
                            min_static, moving_tracks[i] if skip is None else skip) for j in range(n)]

    out: list[Instance] = []
    notes: list[dict[str, Any]] = []
    strong: list[np.ndarray | None] = [None] * n
    far = _far_props(moving, lambda i: props_seen_from(i, FUSED_STILL_MAX), views, sets, homs, feats,
                     free if FAR_FREE else None, strong)
    rocks = [np.zeros(views[i].gray.shape, bool) for i in range(n)]  # per frame: props cut as seen on their own

    def emit(i: int, k: int, pieces: list[tuple[Instance, bool]], seen_alone: bool, own_static: bool) -> None:
        """Instance ``k``'s pieces (frame ``i``) into ``out`` with their notes; ``own_static``: what is
        left of a still instance gets its own static share."""
        for piece, is_prop in pieces:
            out.append(piece)
            if piece is instances[k]:  # nothing solid to cut
                notes.append({"static": fraction[k], "prop": k in props})
            elif is_prop:
                notes.append({"static": 1.0, "prop": True, "cut_from_prop": False})
                if seen_alone:
                    rocks[i] |= _small_mask(piece, views[i])
            else:
                still = fraction[k]
                if own_static:  # what is left of an idle (or still) instance: its own static share
                    still = _static_fraction(_small_mask(piece, views[i]), statics[i])
                notes.append({"static": still, "prop": still is not None and still >= STATIC_FRACTION,
                              "cut_from_prop": True})

    for i in range(n):
        set_here = (set_in_neighbours(i, evidence[i], free, props_seen_from(i) if moving_tracks[i] else prop_masks,
                                      homs) if evidence[i] else None)
        if evidence[i] and moving[i].any():
            # a near neighbour showing the place unchanged as a prop on its own is as good a
            # match of the rock as a far one (the demo's frame 44: both boulders in Buck's mask,
            # the far frames that show them alone are the 3rd neighbour)
            near = moving[i] & prop_match(i, evidence[i], props_seen_from(i, FUSED_STILL_MAX), homs)
            strong[i] = near if strong[i] is None else strong[i] | near
        if far[i] is not None:
            set_here = far[i] if set_here is None else set_here | far[i]
        for k in by_frame.get(i, []):
            inst = instances[k]
            # a still instance with some motion in it (an idle character fused with the tree
            # behind it) is tried for a fused set only
            idle = k in props and fraction[k] is not None and fraction[k] < FUSED_STILL_MAX
            if k in props and not idle and statics[i] is not None:
                # still through and through: no motion tells the character from the set fused to it
                emit(i, k, _by_colour(inst, smalls[k], views[i], free[i] | (prop_masks[i] & ~smalls[k]), settings),
                     False, True)
                continue
            if (k in props and not idle) or set_here is None:
                out.append(inst)
                notes.append({"static": fraction[k], "prop": k in props})
                continue
            area = max(1, int(smalls[k].sum()))
            if idle:
                cut = np.zeros_like(smalls[k])
                if evidence[i]:
                    # what the neighbours show unchanged as the set or a prop (its own still self
                    # there left out) is the set fused to it: the demo's last frame, Buck idle
                    # with the lower boulder in his mask, plain grass beside it a frame before
                    near_props = props_seen_from(i, skip=moving_tracks[i] | {inst.track})
                    # at the matte's own threshold: a still matte is soft over the set it took
                    # (the demo's boulder at 0.15-0.45 beside Buck, all of it under 0.5)
                    soft = _small_mask(inst, views[i], settings.alpha_threshold)
                    cut = _open3(soft & set_in_neighbours(i, evidence[i], free, near_props, homs))
            else:
                cut = smalls[k] & set_here
                cut = _open3(cut)
            cut &= ~keeps[k]
            pieces = [(inst, False)]
            seen_alone = False
            if CUT_FRACTION * area <= cut.sum() <= (1 - KEEP_FRACTION) * area:
                # a prop seen on its own, in a far frame or (matched as such) a near one — when the
                # shot reaches beyond the neighbours at all: in a 3-frame shot two rodents standing
                # still together are "a prop" (static 1.0) next to the one that moves in the last
                # frame, and his still legs matched it (trailer frame 1032)
                seen_alone = far[i] is not None and any(
                    (m & smalls[k]).sum() >= CUT_FRACTION * area for m in (far[i], strong[i]) if m is not None)
                # a prop seen on its own elsewhere in the shot may be any shape (rocks, a stump)
                pieces = _cut(inst, cut, views[i], settings, FUSED_SOLIDITY if seen_alone else MIN_SOLIDITY,
                              seen_alone, strong[i] if seen_alone else None)
            if len(pieces) == 1 and statics[i] is not None:
                # no neighbour shows that place as set: the set fused to the character in
                # every frame (a tree behind it) is cut by colour from what moves
                cut = fused_set(smalls[k], statics[i], views[i], free[i] | prop_masks[i]) & ~keeps[k]
                if CUT_FRACTION * area <= cut.sum() <= (1 - KEEP_FRACTION) * area:
                    pieces = _cut(inst, cut, views[i], settings, FUSED_SOLIDITY)  # a tree with a bite out of it
            emit(i, k, pieces, seen_alone, idle)
    # 3b. the rock cut off in a neighbour shows where it lies where the match missed it here (a
    # hand's shadow across it, in every far frame's view): what is left of it on a character
    # that was unchanged over the neighbours goes too
    if any(r.any() for r in rocks):
        out, notes = _rocks_again(out, notes, rocks, evidence, homs, views, settings)
    # tracks over the corrected instances
    if relink:
        out = link_tracks(out, frames, settings.track_similarity)
    else:
        top = max((inst.track for inst in out), default=-1)
        fixed = []
        for inst, note in zip(out, notes, strict=True):
            if note.get("prop") and note.get("static") == 1.0 and inst.track < 0:
                top += 1
                inst = replace(inst, track=top)
            fixed.append(inst)
        out = fixed
    # 4. parts that move together
    out, notes = _merge_parts(out, notes, views, frames, settings)
    # 4b. two characters seen apart in the shot, one mask elsewhere: split by their colours
    out, notes, split = _split_mixed(out, notes, views, frames, settings, statics)
    if split:
        if relink:
            out = link_tracks(out, frames, settings.track_similarity)
        else:
            top = max((inst.track for inst in out), default=-1)
            fixed = []
            for inst in out:
                if inst.track < 0:
                    top += 1
                    inst = replace(inst, track=top)
                fixed.append(inst)
            out = fixed
    # 5. text; and the picture inside an iris or a porthole
    for i in range(n):
        here = [k for k, inst in enumerate(out) if inst.frame == i]
        if not here:
            continue
        image = frames[i]
        same = [out[o] for o in here]
        backdrop = text_backdrop(image, same)
        surround = matte_surround(image)
        for k in here:
            notes[k]["text"] = round(text_score(image, out[k], same, backdrop), 3)
            notes[k]["flat"] = round(flat_fill(image, out[k]), 3)
            if surround is not None:
                notes[k].update(matte_measures(surround, out[k]))
    for note in notes:
        if note.get("static") is not None:
            note["static"] = round(float(note["static"]), 3)
    return Refined(out, notes)


def _rocks_again(out: list[Instance], notes: list[dict[str, Any]], rocks: list[np.ndarray],
                 evidence: list[list[tuple[int, np.ndarray, np.ndarray]]], homs: dict[tuple[int, int], Any],
                 views: list[_View], settings: Any) -> tuple[list[Instance], list[dict[str, Any]]]:
    """Second look at the characters that a prop seen on its own was cut off: in the
    neighbours, the cut-off rock (``rocks``: per frame) now is a prop, so their evidence
    (:func:`set_in_neighbours`, prop votes only) cuts what is left of it here."""
    none = [np.zeros_like(r) for r in rocks]
    here_by_frame: dict[int, np.ndarray | None] = {}
    fixed: list[Instance] = []
    fixed_notes: list[dict[str, Any]] = []
    for inst, note in zip(out, notes, strict=True):
        i = inst.frame
        if note.get("prop") or not note.get("cut_from_prop") or not evidence[i]:
            fixed.append(inst)
            fixed_notes.append(note)
            continue
        if i not in here_by_frame:
            near = [j for j, _, _ in evidence[i] if rocks[j].any()]
            here_by_frame[i] = set_in_neighbours(i, evidence[i], none, rocks, homs) if near else None
        set_here = here_by_frame[i]
        small = _small_mask(inst, views[i])
        area = max(1, int(small.sum()))
        pieces = [(inst, False)]
        if set_here is not None:
            cut = _open3(small & set_here)
            if CUT_FRACTION * area <= cut.sum() <= (1 - KEEP_FRACTION) * area:
                pieces = _cut(inst, cut, views[i], settings, FUSED_SOLIDITY, True, cut)
        for piece, is_prop in pieces:
            fixed.append(piece)
            if piece is inst:
                fixed_notes.append(note)
            elif is_prop:
                fixed_notes.append({"static": 1.0, "prop": True, "cut_from_prop": False})
            else:
                fixed_notes.append(dict(note))
    return fixed, fixed_notes


def _open3(mask: np.ndarray) -> np.ndarray:
    """``mask`` opened by a 3x3 square: specks and one-pixel strands gone."""
    import cv2

    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0


def _tracks_apart(instances: Sequence[Instance], ta: int, tb: int) -> bool:
    """True when tracks ``ta`` and ``tb`` share two or more frames and do not keep a steady
    offset over them (two characters, not a head and its body): the median distance of the
    offsets (x size) from their median is over ``OFFSET_SPREAD``."""
    where: dict[tuple[int, int], Instance] = {(inst.track, inst.frame): inst for inst in instances}
    shared = sorted(f for (t, f) in where if t == ta and (tb, f) in where)
    if ta < 0 or tb < 0 or ta == tb or len(shared) < 2:
        return False
    offsets = []
    for f in shared:
        (aa, ca), (ab, cb) = _geometry(where[(ta, f)]), _geometry(where[(tb, f)])
        offsets.append((cb - ca) / np.sqrt(max(aa, ab, 1.0)))
    return offset_spread(offsets) > OFFSET_SPREAD


def offset_spread(offsets: Sequence[np.ndarray]) -> float:
    """How much two parts' offset moves over the frames they share (in the units given): the
    median distance of the offsets from their median. Robust: one frame where a part took a tree
    along (a head whose mask holds the crown behind it) does not make a head and its body apart."""
    offs = np.array(offsets)
    return float(np.median(np.linalg.norm(offs - np.median(offs, axis=0), axis=1)))


def _fused_throughout(instances: Sequence[Instance], ts: int, tm: int) -> bool:
    """True when every instance of track ``ts`` is a part of one blob with an instance of track
    ``tm`` (the matte never showed the two apart in the shot); False without a track."""
    if ts < 0 or tm < 0 or ts == tm:
        return False
    blobs = {(inst.frame, inst.blob) for inst in instances if inst.track == tm and inst.blob >= 0}
    return all(inst.blob >= 0 and (inst.frame, inst.blob) in blobs for inst in instances if inst.track == ts)


def _rejoin_split(instances: list[Instance], fraction: list[float | None]) -> tuple[list[Instance], bool]:
    """Put the parts that ``split_matte`` cut out of one blob (same ``blob``, same frame) back
    together unless the shot shows them apart: one part still (a prop: ``STATIC_FRACTION``)
    and the other moving (a character in front of a tree), or both moving without keeping a
    steady offset over the shot (two characters touching). A head cut from its body at the
    collar moves with it, or both stand still: one instance. A still part clearly smaller than
    the moving one (``STILL_PART_RATIO``) that the matte never showed apart from it in the shot
    is a head held still on a body that animates (cgi-bench seed 5: the robot's head, static
    0.99, on a body at 0.76): it goes back too; so does a moving part clearly smaller than an
    *idle* still one (static under ``FUSED_STILL_MAX``: some motion in it, not the set) that
    the matte never showed apart from it, a head that turns on an idle body."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, inst in enumerate(instances):
        if inst.blob >= 0:
            groups.setdefault((inst.frame, inst.blob), []).append(k)

    def still(k: int) -> bool | None:
        return None if fraction[k] is None else fraction[k] >= STATIC_FRACTION  # type: ignore[operator]

    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        for ai, ka in enumerate(members):
            for kb in members[ai + 1 :]:
                sa, sb = still(ka), still(kb)
                if sa is not None and sb is not None and sa != sb:
                    k_still, k_move = (ka, kb) if sa else (kb, ka)
                    a_still, a_move = _geometry(instances[k_still])[0], _geometry(instances[k_move])[0]
                    t_still, t_move = instances[k_still].track, instances[k_move].track
                    head_held = a_still <= STILL_PART_RATIO * a_move and _fused_throughout(instances, t_still, t_move)
                    # an idle body (some motion in it: not the set) whose head turns, the head
                    # never shown apart from it in the shot (cgi-bench seed 2, shot 4: the green
                    # boy's body at static 0.85-0.87 under his head at 0.65; the foxes of seeds 6, 7)
                    head_turns = (a_move <= STILL_PART_RATIO * a_still and fraction[k_still] < FUSED_STILL_MAX
                                  and _fused_throughout(instances, t_move, t_still))
                    if not (head_held or head_turns):
                        continue
                if sa is False and sb is False and _tracks_apart(instances, instances[ka].track, instances[kb].track):
                    continue
                if sa and sb:
                    # both still: only a part clearly smaller than the other (a head on its
                    # body) goes back; two still things of a size (a bunny and the tree
                    # behind it) stay apart
                    small, large = sorted(_geometry(instances[x])[0] for x in (ka, kb))
                    if small > STILL_PART_RATIO * large:
                        continue
                pairs.append((ka, kb))
    groups_out = join_groups(len(instances), pairs)
    if len(groups_out) == len(instances):
        return instances, False
    out = []
    for members in groups_out:
        if len(members) == 1:
            out.append(instances[members[0]])
            continue
        parts = [instances[k] for k in members]
        largest = max(parts, key=lambda p: float((p.alpha >= 0.5).sum()))
        out.append(_union(parts, largest.track))
    return out, True


def fused_set(mask: np.ndarray, static: tuple[np.ndarray, np.ndarray], view: _View,
              scenery: np.ndarray) -> np.ndarray:
    """Pixels of a moving instance (``mask``, analysis scale) that are the set fused to it in
    every frame: a graph cut (OpenCV GrabCut on Lab) seeded with the pixels that change over
    the shot as the character and the still pixels far from them as probably set, the frame
    around the instance as set; what it removes, and those far still pixels, are candidates.
    Only still pixels are ever returned; empty when the instance does not move enough to seed
    the character. A cut piece must have the colours of the
    frame's ``scenery`` (outside every instance, or a prop) rather than those of the pixels
    that move: a fox's still legs are fox-coloured and stay."""
    import cv2

    still, known = static
    empty = np.zeros_like(mask)
    area = float(mask.sum())
    core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    moving = _open3(core & known & ~still)
    if area < 50 or moving.sum() < FUSED_MOVING * area:
        return empty
    reach = FUSED_REACH * np.sqrt(area)
    far = cv2.distanceTransform((~moving).astype(np.uint8), cv2.DIST_L2, 3) > reach
    far_still = mask & known & still & far
    if far_still.sum() < CUT_FRACTION * area:
        return empty
    removed = _graph_cut(view, mask, ((far_still, cv2.GC_PR_BGD), (moving, cv2.GC_FGD)), cv2.GC_PR_FGD, 3)
    if removed is None:
        return empty
    removed |= far_still  # GrabCut keeps a dark tree that shares a colour with a dark cap
    removed &= mask & still & known
    # colour check: each piece, set-coloured rather than character-coloured
    bins = (np.clip(view.lab, 0, 255).astype(np.int32) // 32) @ np.array([64, 8, 1])
    scenery_hist = np.bincount(bins[scenery & ~mask], minlength=512).astype(np.float64)
    moving_hist = np.bincount(bins[moving], minlength=512).astype(np.float64)
    scenery_hist /= max(1.0, scenery_hist.sum())
    moving_hist /= max(1.0, moving_hist.sum())
    set_like = scenery_hist / np.maximum(scenery_hist + moving_hist, 1e-9)  # a colour neither shows: 0
    out = empty.copy()
    count, pieces = cv2.connectedComponents(removed.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        piece = pieces == label
        if piece.sum() >= CUT_FRACTION * area and float(set_like[bins[piece]].mean()) >= FUSED_SET_LIKE:
            out |= _filled(piece) & mask  # its holes (leaves in the wind, render noise read as motion) filled
    return out


def _graph_cut(view: _View, mask: np.ndarray, seeds: Sequence[tuple[np.ndarray, int]], inside: int,
               rounds: int) -> np.ndarray | None:
    """Pixels of ``mask`` that OpenCV's GrabCut on the Lab image around it (``rounds`` iterations) gives
    to the background: the frame around the mask is background, the mask ``inside`` (a GrabCut label),
    each of ``seeds`` (pixels, label) as labelled, in order; None when GrabCut fails."""
    import cv2

    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    margin = max(4, int(0.1 * np.sqrt(float(mask.sum()))))
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + margin + 1)
    roi = (slice(y0, y1), slice(x0, x1))
    labels = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    labels[mask[roi]] = inside
    for pixels, label in seeds:
        labels[pixels[roi]] = label
    image = np.ascontiguousarray(np.clip(view.lab[roi], 0, 255).astype(np.uint8))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMMs start from k-means: the same cut on every run
    try:
        cv2.grabCut(image, labels, None, bgd, fgd, rounds, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    removed = np.zeros_like(mask)
    removed[roi] = (labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)
    return removed & mask


def _filled(piece: np.ndarray) -> np.ndarray:
    """``piece`` with its holes filled."""
    import cv2

    contours, _ = cv2.findContours(piece.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(piece.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return filled > 0


def _by_colour(inst: Instance, mask: np.ndarray, view: _View, scenery: np.ndarray,
               settings: Any) -> list[tuple[Instance, bool]]:
    """``inst`` (still through and through) and the set fused to it that :func:`fused_by_colour` finds,
    cut off as :func:`_cut` cuts (the pieces; the instance alone when nothing is cut)."""
    cut = fused_by_colour(mask, view, scenery)
    area = max(1, int(mask.sum()))
    if CUT_FRACTION * area <= cut.sum() <= (1 - KEEP_FRACTION) * area:
        return _cut(inst, cut, view, settings, FUSED_SOLIDITY)
    return [(inst, False)]


def fused_by_colour(mask: np.ndarray, view: _View, scenery: np.ndarray) -> np.ndarray:
    """Pixels of a still instance (``mask``, analysis scale) that are the set fused to it, told by
    colour alone (an idle character before a tree in every frame: nothing moves, so
    :func:`fused_set` has no seed). The pixels of ``mask`` in colours (Lab, 16 levels a channel)
    under ``COLOUR_ABSENT`` of the frame's ``scenery`` (outside every instance, or a prop), if
    ``FUSED_OWN`` of the mask, seed the character for a graph cut (GrabCut) that starts from the
    rest of the mask as probably set. A piece it removes is cut when its colours are the scenery's
    rather than the seeds' (``FUSED_SET_LIKE``), its mean a*b* is ``FUSED_APART`` from the rest,
    and the rest stays one body (no second part of ``FUSED_ONE_BODY`` of the largest: a shirt in the
    set's colour between head and legs)."""
    import cv2

    empty = np.zeros_like(mask)
    area = float(mask.sum())
    if area < 50:
        return empty
    seen = scenery & ~(cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    if seen.sum() < area:
        return empty
    bins = (np.clip(view.lab, 0, 255).astype(np.int32) // 16) @ np.array([256, 16, 1])
    scenery_hist = np.bincount(bins[seen], minlength=4096).astype(np.float64)
    scenery_hist /= scenery_hist.sum()
    core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    own = _open3(core & (scenery_hist[bins] < COLOUR_ABSENT))
    if own.sum() < FUSED_OWN * area:
        return empty
    removed = _graph_cut(view, mask, ((own, cv2.GC_FGD),), cv2.GC_PR_BGD, 5)
    rest = mask & ~removed if removed is not None else empty
    if not rest.any():
        return empty
    _, parts, stats, _ = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
    sizes = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    if len(sizes) > 1 and sizes[1] >= FUSED_ONE_BODY * sizes[0]:
        return empty
    body = parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    body_ab = view.lab[body][:, 1:].mean(axis=0)
    own_hist = np.bincount(bins[own], minlength=4096).astype(np.float64)
    set_like = scenery_hist / np.maximum(scenery_hist + own_hist / own_hist.sum(), 1e-9)
    out = empty.copy()
    count, pieces = cv2.connectedComponents(removed.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        piece = pieces == label
        if piece.sum() < CUT_FRACTION * area:
            continue
        apart = float(np.linalg.norm(view.lab[piece][:, 1:].mean(axis=0) - body_ab))
        if apart >= FUSED_APART and float(set_like[bins[piece]].mean()) >= FUSED_SET_LIKE:
            out |= _filled(piece) & mask
    return out


def _static_fraction(mask: np.ndarray, static: tuple[np.ndarray, np.ndarray] | None) -> float | None:
    import cv2

    if static is None:
        return None
    core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if core.sum() < 8:
        core = mask
    still, known = static
    have = known & core
    if have.sum() < MIN_EVIDENCE * max(1, core.sum()):
        return None
    return float((still & have).sum() / have.sum())


def _enclosed_beyond(piece: np.ndarray, mask: np.ndarray, margin: int,
                     frame_edges: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> float:
    """Share of a ring ``margin`` px out from ``piece`` that lies on the rest of ``mask``: 1.0
    for a chunk deep inside a body. Beyond a side of the crop that is the frame's edge
    (``frame_edges``: top, bottom, left, right) nothing is known, so the ring there is not
    counted (a belly cut by the frame's bottom edge is still enclosed)."""
    import cv2

    pad = margin + 3
    grown = np.pad(piece.astype(np.uint8), pad)
    inner = cv2.dilate(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    outer = cv2.dilate(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 5, 2 * margin + 5)))
    ring = (outer > 0) & (inner == 0)
    top, bottom, left, right = frame_edges
    if top:
        ring[:pad] = False
    if bottom:
        ring[-pad:] = False
    if left:
        ring[:, :pad] = False
    if right:
        ring[:, -pad:] = False
    rest = np.pad(mask & ~piece, pad)
    return float((ring & rest).sum() / max(1, ring.sum()))


def _cut(inst: Instance, cut_small: np.ndarray, view: _View, settings: Any,
         min_solidity: float = MIN_SOLIDITY, seen_alone: bool = False,
         as_prop: np.ndarray | None = None) -> list[tuple[Instance, bool]]:
    """Split ``inst`` into the prop part (``cut_small``: its static pixels where a prop
    lies, analysis scale) and the rest; each piece large enough becomes an instance (True =
    the prop part). A leftover lying mostly where the prop is (its anti-aliased rim, a
    sliver) goes with the prop."""
    import cv2

    h, w = view.shape
    x, y, bw, bh = inst.bbox

    def full(small: np.ndarray) -> np.ndarray:
        up = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        return up[y : y + bh, x : x + bw] > 0

    cut = cv2.morphologyEx(full(cut_small).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0
    # a prop is a solid chunk: scattered or ragged set-like patches inside a body are the
    # matte having missed that body elsewhere, not a prop, and stay
    area = float((inst.alpha >= 0.5).sum())
    mask = inst.alpha >= settings.alpha_threshold
    reach = int(max(5, 0.04 * np.sqrt(area)))
    rock = np.zeros_like(cut)  # groups judged as one rock (a prop seen on its own, matched in pieces)
    if seen_alone and as_prop is not None:
        # a rock matched in pieces (its shaded seams, a shadow across it differ from the far
        # frame): the pieces, the seams between them and the holes the match left in them (a
        # hand's shadow) are judged, and cut, as one — when most of what matched was matched
        # as a prop on its own in a far frame, not only as plain set there (a character's
        # soft fur matches a blurred set in places, never a rock that is seen on its own)
        seam = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        closed = cv2.morphologyEx(cut.astype(np.uint8), cv2.MORPH_CLOSE, seam)
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(closed, contours, -1, 1, thickness=-1)
        strong = full(as_prop)
        count, labels = cv2.connectedComponents(((closed > 0) & mask).astype(np.uint8), connectivity=8)
        for label in range(1, count):
            group = labels == label
            matched = int((group & cut).sum())
            seen = int((group & cut & strong).sum())
            if seen >= CUT_FRACTION * area and seen >= ROCK_AS_PROP * matched:
                rock |= group
        cut = cut | rock
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cut.astype(np.uint8), connectivity=8)
    solid = np.zeros_like(cut)
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < CUT_FRACTION * area:
            continue
        piece = (labels == label).astype(np.uint8)
        contours, _ = cv2.findContours(piece, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        if hull > 0 and stats[label, cv2.CC_STAT_AREA] / hull >= min_solidity:
            solid |= piece > 0
    # a chunk lying inside the character (its outline mostly on the character's other
    # pixels: a belly, a face) is the character seen still while the matte missed it in the
    # neighbours, not a prop beside it
    body = mask & ~solid
    count, labels = cv2.connectedComponents(solid.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        piece = labels == label
        if (piece & rock).any():
            # the rim of the rock that did not match surrounds the part that did, so its outline
            # is looked for beyond that rim
            edges = (y <= 0, y + bh >= h, x <= 0, x + bw >= w)
            if _enclosed_beyond(piece, mask, reach, edges) >= ENCLOSED_ROCK:
                solid &= ~piece
            continue
        ring = (cv2.dilate(piece.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~piece
        # partial evidence of a prop seen on its own: the rest of the rock may be the "mask" around it
        if ring.any() and (ring & body).sum() >= (ENCLOSED_ALONE if seen_alone else ENCLOSED) * ring.sum():
            solid &= ~piece
    if not solid.any():
        return [(inst, False)]
    cut = solid
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    prop = cv2.dilate(cut.astype(np.uint8), kernel) > 0
    # the prop's soft rim (matte between the threshold and 0.5) hangs on the character's
    # outline: near the prop, only what is close to the character's own core stays
    core = (inst.alpha >= 0.5) & ~cut
    near_core = cv2.dilate(core.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
    cut |= prop & ~near_core & (inst.alpha > 0)
    binary = (inst.alpha >= settings.alpha_threshold) & ~cut
    count, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        piece = labels == label
        if (piece & prop).sum() >= 0.6 * piece.sum():
            cut |= piece
    # a lump of the rock left hanging on the character by a strand (a blade of grass, a
    # finger on it): what an opening at ``reach`` parts from the body (its largest part) and
    # lies ``LUMP_ON_PROP`` within reach of the prop goes with it (demo: 0.50-0.66; the ears,
    # hands and tails an opening parts: 0.0)
    binary = (inst.alpha >= settings.alpha_threshold) & ~cut
    opened = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count > 2:
        body = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        for label in range(1, count):
            piece = labels == label
            if label != body and (piece & prop).sum() >= LUMP_ON_PROP * piece.sum():
                cut |= piece
    min_area = max(1, int(settings.min_area_fraction * h * w))
    pieces: list[tuple[Instance, bool]] = []
    for part, is_prop in ((inst.alpha * ~cut, False), (inst.alpha * cut, True)):
        binary = (part >= settings.alpha_threshold).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for label in range(1, count):
            if stats[label, cv2.CC_STAT_AREA] < min_area:
                continue
            near = cv2.dilate((labels == label).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            matte = np.where(near & (cut if is_prop else ~cut), inst.alpha, 0).astype(np.float32)
            ys, xs = np.nonzero(matte > 0)
            x0, y0 = int(xs.min()), int(ys.min())
            crop = np.ascontiguousarray(matte[y0 : ys.max() + 1, x0 : xs.max() + 1])
            piece = Instance(frame=inst.frame, bbox=(x + x0, y + y0, crop.shape[1], crop.shape[0]), alpha=crop,
                             score=inst.score, track=-1 if is_prop else inst.track)
            pieces.append((piece, is_prop))
    return pieces or [(inst, False)]


# -- parts that move together ------------------------------------------------------------
def _geometry(inst: Instance, level: float = 0.5) -> tuple[float, np.ndarray]:
    mask = inst.alpha >= level
    area = float(mask.sum())
    ys, xs = np.nonzero(mask)
    x, y = inst.bbox[:2]
    centre = np.array([xs.mean() + x, ys.mean() + y]) if len(xs) else np.array([x, y], float)
    return area, centre


def gap_between(a: Instance, b: Instance, level: float = 0.5) -> float:
    """Shortest distance (px) between two instances' masks (0 when they touch)."""
    import cv2

    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    x0, y0 = min(ax, bx), min(ay, by)
    x1, y1 = max(ax + aw, bx + bw), max(ay + ah, by + bh)
    canvas = np.ones((y1 - y0, x1 - x0), np.uint8)
    canvas[ay - y0 : ay - y0 + ah, ax - x0 : ax - x0 + aw][a.alpha >= level] = 0
    dist = cv2.distanceTransform(canvas, cv2.DIST_L2, 3)
    mb = np.zeros_like(canvas, bool)
    mb[by - y0 : by - y0 + bh, bx - x0 : bx - x0 + bw] = b.alpha >= level
    return float(dist[mb].min()) if mb.any() else float("inf")


def _thickness(inst: Instance, level: float = 0.5) -> float:
    import cv2

    mask = np.pad((inst.alpha >= level).astype(np.uint8), 1)
    return float(cv2.distanceTransform(mask, cv2.DIST_L2, 5).max())


def _colour_similarity(image: np.ndarray, a: Instance, b: Instance) -> float:
    from animlora.backends.segmentation.instances import _histogram

    return float(np.minimum(_histogram(image, a), _histogram(image, b)).sum())


def _merge_parts(instances: list[Instance], notes: list[dict[str, Any]], views: list[_View],
                 frames: Sequence[np.ndarray], settings: Any) -> tuple[list[Instance], list[dict[str, Any]]]:
    moving = [not note.get("prop") for note in notes]
    geo = [_geometry(inst) for inst in instances]
    # per pair of tracks: offsets (x size) and gaps in the frames where both appear
    by_track_frame = {(inst.track, inst.frame): k for k, inst in enumerate(instances) if moving[k]}
    tracks = sorted({t for t, _ in by_track_frame})
    together: dict[tuple[int, int], bool] = {}
    for ai, ta in enumerate(tracks):
        for tb in tracks[ai + 1 :]:
            shared = [f for (t, f) in by_track_frame if t == ta and (tb, f) in by_track_frame]
            if len(shared) < 2:
                continue
            offsets, gaps = [], []
            for f in shared:
                ka, kb = by_track_frame[(ta, f)], by_track_frame[(tb, f)]
                size = np.sqrt(max(geo[ka][0], geo[kb][0], 1.0))
                # the offset in the smaller part's size: a zoom scales both alike, and a body that
                # swings an arm (its area 14.5k -> 10.2k px on cgi-bench seed 3, its head on it within
                # 2 px) does not move the scale the head's offset is measured in
                offsets.append((geo[kb][1] - geo[ka][1]) / np.sqrt(max(min(geo[ka][0], geo[kb][0]), 1.0)))
                gaps.append(gap_between(instances[ka], instances[kb]) / size)
            spread = offset_spread(offsets)
            # parts that touch in every frame may move a little more: a head nodding on its body in a
            # close-up (cgi-bench seed 6, the blue boy, touching at 0.01 in 3 frames, spread 0.18)
            bound = OFFSET_SPREAD_TOUCHING if max(gaps) <= TOUCHING else OFFSET_SPREAD
            together[(ta, tb)] = together[(tb, ta)] = max(gaps) <= MERGE_GAP and spread <= bound
    pairs: list[tuple[int, int]] = []

    by_frame: dict[int, list[int]] = {}
    for k, inst in enumerate(instances):
        if moving[k]:
            by_frame.setdefault(inst.frame, []).append(k)
    for f, ks in by_frame.items():
        for ai, ka in enumerate(ks):
            for kb in ks[ai + 1 :]:
                a, b = instances[ka], instances[kb]
                if a.track == b.track and a.track >= 0:
                    continue
                size = np.sqrt(max(geo[ka][0], geo[kb][0], 1.0))
                key = (a.track, b.track)
                if key in together:
                    merge = together[key]
                else:
                    small, large = sorted((a, b), key=lambda i: float((i.alpha >= 0.5).sum()))
                    merge = (
                        gap_between(a, b) <= MERGE_GAP_SINGLE * size
                        and _thickness(small) < 0.85 * _thickness(large)
                        and _colour_similarity(frames[f], a, b) >= 0.25
                    )
                if merge:
                    pairs.append((ka, kb))
    out, out_notes = [], []
    for members in join_groups(len(instances), pairs):
        if len(members) == 1:
            out.append(instances[members[0]])
            out_notes.append(notes[members[0]])
            continue
        largest = max(members, key=lambda k: geo[k][0])
        out.append(_union([instances[k] for k in members], instances[largest].track))
        note = dict(notes[largest])
        note["parts"] = len(members)
        out_notes.append(note)
    return out, out_notes


def _union(parts: list[Instance], track: int) -> Instance:
    x0 = min(p.bbox[0] for p in parts)
    y0 = min(p.bbox[1] for p in parts)
    x1 = max(p.bbox[0] + p.bbox[2] for p in parts)
    y1 = max(p.bbox[1] + p.bbox[3] for p in parts)
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    # a body a second look gave back to a part stays kept in the whole
    kept = np.zeros(alpha.shape, bool) if any(p.kept is not None for p in parts) else None
    for p in parts:
        x, y, w, h = p.bbox
        region = alpha[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
        np.maximum(region, p.alpha, out=region)
        if kept is not None and p.kept is not None:
            kept[y - y0 : y - y0 + h, x - x0 : x - x0 + w] |= p.kept
    area = [float((p.alpha >= 0.5).sum()) for p in parts]
    score = float(np.average([p.score for p in parts], weights=np.maximum(area, 1)))
    return Instance(frame=parts[0].frame, bbox=(x0, y0, x1 - x0, y1 - y0), alpha=alpha, score=score, track=track,
                    kept=kept)


# -- two characters in one mask -------------------------------------------------------------
def _colour_model(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised Lab histogram of the pixels of ``mask`` (L in ``MIX_BINS[0]`` bins, a and b
    in ``MIX_BINS[1]``), smoothed over a and b by one bin: what one thing's colours are."""
    import cv2

    nl, nab = MIX_BINS
    idx = _colour_bins(lab[mask])
    hist = np.bincount(idx, minlength=nl * nab * nab).astype(np.float32).reshape(nl, nab, nab)
    for k in range(nl):
        hist[k] = cv2.GaussianBlur(hist[k], (0, 0), 1.0)
    total = float(hist.sum())
    return (hist / total).ravel() if total > 0 else hist.ravel()


def _colour_bins(lab: np.ndarray) -> np.ndarray:
    nl, nab = MIX_BINS
    q = np.clip(lab, 0, 255).astype(np.int32)
    return (q[..., 0] * nl // 256) * nab * nab + (q[..., 1] * nab // 256) * nab + q[..., 2] * nab // 256


def _largest_share(mask: np.ndarray) -> tuple[float, np.ndarray]:
    """(share of ``mask`` in its largest 8-connected piece, that piece)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return 0.0, np.zeros_like(mask, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return float(stats[best, cv2.CC_STAT_AREA] / max(1, mask.sum())), labels == best


def mixed_pair(x_lab: np.ndarray, x_mask: np.ndarray, model_a: np.ndarray, model_b: np.ndarray,
               ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Whether the pixels of ``x_mask`` are two things whose colour models are ``model_a``
    and ``model_b`` (two instances seen apart in another frame of the shot): each model
    explains a solid piece of at least ``MIX_PART`` of the mask (a pixel is A's where A's
    density is ``MIX_RATIO`` x B's, and B's likewise), neither alone explains the mask's
    colours as well as the two together (histogram intersection, by ``MIX_GAIN``), and the
    two together explain most of it. Returns (gain, A's piece, B's piece) or None."""
    n = int(x_mask.sum())
    if n < 50:
        return None
    bins = _colour_bins(x_lab)
    pa, pb = model_a[bins], model_b[bins]
    a_side = x_mask & (pa > MIX_RATIO * pb)
    b_side = x_mask & (pb > MIX_RATIO * pa)
    opened = []
    for side in (a_side, b_side):
        side = _open3(side)
        share, piece = _largest_share(side)
        if piece.sum() < MIX_PART * n or share < MIX_SOLID:
            return None
        opened.append(piece)
    x_model = _colour_model(x_lab, x_mask)
    wa = float(a_side.sum()) / max(1, int(a_side.sum() + b_side.sum()))
    alone = max(float(np.minimum(x_model, model_a).sum()), float(np.minimum(x_model, model_b).sum()))
    both = float(np.minimum(x_model, wa * model_a + (1 - wa) * model_b).sum())
    if both < alone + MIX_GAIN or both < MIX_EXPLAINED:
        return None
    return both - alone, opened[0], opened[1]


def _split_by_models(inst: Instance, image: np.ndarray, model_a: np.ndarray, model_b: np.ndarray,
                     settings: Any) -> list[Instance] | None:
    """``inst`` cut in two at full resolution: pixels whose colours are clearly A's or B's
    (largest solid piece of each) seed a watershed on the image inside the mask, so the cut
    follows the edge between the two; each part keeps the soft matte on its side. None when
    either part comes out too small."""
    import cv2

    x, y, w, h = inst.bbox
    crop = np.ascontiguousarray(image[y : y + h, x : x + w])
    lab = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2LAB), (0, 0), 1.0).astype(np.float32)
    mask = inst.alpha >= settings.alpha_threshold
    core = inst.alpha >= 0.5
    bins = _colour_bins(lab)
    # the log-ratio of the two densities, smoothed at a few % of the size: islands of one
    # colour inside the other (a nut in a hand, an eye) do not seed a part of their own
    ratio = np.log((model_a[bins] + 1e-6) / (model_b[bins] + 1e-6)).astype(np.float32)
    sigma = max(1.0, 0.02 * np.sqrt(core.sum()))
    ratio = cv2.GaussianBlur(ratio * core, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(core.astype(np.float32), (0, 0), sigma), 1e-3)
    markers = np.zeros((h, w), np.int32)
    erode = np.ones((5, 5), np.uint8)
    for label, side in ((1, ratio > np.log(MIX_RATIO)), (2, ratio < -np.log(MIX_RATIO))):
        side = cv2.erode((side & core).astype(np.uint8), erode) > 0
        _, piece = _largest_share(side)
        markers[piece] = label
    if not (markers == 1).any() or not (markers == 2).any():
        return None
    markers[~mask] = 3  # outside the mask: neither
    cv2.watershed(crop[..., ::-1].copy(), markers)
    # mask pixels the outside's flood took (thin legs, a tail: the outside marker borders them)
    # and the watershed lines go to the side they are joined to through the mask (each side
    # grown inside the mask, a pixel a step), what is left to the nearer side
    lost = mask & ((markers == 3) | (markers == -1))
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for _ in range(4 * (h + w)):
        if not lost.any():
            break
        grown = False
        for label in (1, 2):
            reach = lost & (cv2.dilate((markers == label).astype(np.uint8), cross) > 0)
            if reach.any():
                markers[reach] = label
                lost &= ~reach
                grown = True
        if not grown:
            break
    if lost.any():
        sides = (markers == 1) | (markers == 2)
        _, nearest = cv2.distanceTransformWithLabels((~sides).astype(np.uint8), cv2.DIST_L2, 3,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(sides)
        owner = np.zeros(int(nearest.max()) + 1, np.int32)
        owner[nearest[ys, xs]] = markers[ys, xs]
        markers[lost] = owner[nearest[lost]]
    parts = []
    min_area = max(1.0, settings.min_area_fraction * image.shape[0] * image.shape[1], MIX_PART * core.sum())
    for label in (1, 2):
        # every pixel the flood reached from this side's seed (an arm apart from the body included)
        piece = (markers == label) & mask
        if (piece & core).sum() < min_area:
            return None
        near = cv2.dilate(piece.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        matte = np.where(near & (markers != 3 - label), inst.alpha, 0).astype(np.float32)
        ys, xs = np.nonzero(matte >= settings.alpha_threshold)
        y0, x0 = int(ys.min()), int(xs.min())
        part = np.ascontiguousarray(matte[y0 : ys.max() + 1, x0 : xs.max() + 1])
        parts.append(Instance(frame=inst.frame, bbox=(x + x0, y + y0, part.shape[1], part.shape[0]), alpha=part,
                              score=inst.score, track=inst.track if label == 1 else -1))
    return parts


def _split_mixed(instances: list[Instance], notes: list[dict[str, Any]], views: list[_View],
                 frames: Sequence[np.ndarray], settings: Any,
                 statics: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
                 ) -> tuple[list[Instance], list[dict[str, Any]], bool]:
    """Two characters that the matte joined into one mask in some frames of a shot and shows
    as two instances in another (Rinky standing in front of Gimera, seen beside her before):
    the two seen apart give two colour models; a moving instance of another frame, larger
    than either, whose pixels are two solid pieces, one of each model's colours, is cut in
    two along the image edges between them (:func:`_split_by_models`). A mask that is two
    such things but cannot be cut cleanly is marked ``mixed`` (the dataset should refuse it).
    Only pairs of different colours (intersection < ``MIX_DISTINCT``) are models: two of a
    colour cannot be told apart this way."""
    moving = [not note.get("prop") for note in notes]
    smalls = [_small_mask(inst, views[inst.frame]) for inst in instances]
    models: dict[int, np.ndarray] = {}
    by_frame: dict[int, list[int]] = {}
    for k, inst in enumerate(instances):
        if moving[k] and smalls[k].sum() >= 50:
            by_frame.setdefault(inst.frame, []).append(k)
            models[k] = _colour_model(views[inst.frame].lab, smalls[k])
    pairs = []  # (frame, a, b): two moving things of distinct colours, apart in one frame
    for f, ks in by_frame.items():
        for ai, ka in enumerate(ks):
            for kb in ks[ai + 1 :]:
                if float(np.minimum(models[ka], models[kb]).sum()) >= MIX_DISTINCT:
                    continue
                # two pieces that touch are not "seen apart": a head and a body the matte parted at
                # the collar (cgi-bench seed 7: the blue boy's head touching his walking body, taken
                # for a pair, cut his head off his body in the shot's other frames)
                smaller = min(float((instances[ka].alpha >= 0.5).sum()), float((instances[kb].alpha >= 0.5).sum()))
                if gap_between(instances[ka], instances[kb]) > MIX_APART * np.sqrt(smaller):
                    pairs.append((f, ka, kb))
    if not pairs:
        return instances, notes, False
    out: list[Instance] = []
    out_notes: list[dict[str, Any]] = []
    changed = False
    for k, inst in enumerate(instances):
        best = None
        if k in models:
            area = float(smalls[k].sum())
            for f, ka, kb in pairs:
                if f == inst.frame:
                    continue
                # larger than either part alone (relative to the frame: the shot may zoom)
                if area < MIX_LARGER * max(float(smalls[ka].sum()), float(smalls[kb].sum())):
                    continue
                found = mixed_pair(views[inst.frame].lab, smalls[k], models[ka], models[kb])
                if found is None:
                    continue
                # each piece about the size of the thing seen apart (allowing for a zoom: the
                # mask against the two together), not a patch of shade as large as a body
                # taken for a small thing of its colour
                a_area, b_area = float(smalls[ka].sum()), float(smalls[kb].sum())
                zoom = max(1.0, area / (a_area + b_area))
                if found[1].sum() > MIX_SIZE * zoom * a_area or found[2].sum() > MIX_SIZE * zoom * b_area:
                    continue
                if best is None or found[0] > best[0]:
                    best = (found[0], ka, kb)
        if best is None:
            out.append(inst)
            out_notes.append(notes[k])
            continue
        changed = True
        parts = _split_by_models(inst, frames[inst.frame], models[best[1]], models[best[2]], settings)
        if parts is None:
            out.append(inst)
            out_notes.append(notes[k] | {"mixed": True})
            continue
        for part in parts:
            out.append(part)
            note = notes[k] | {"colour_split": True}
            if statics is not None and statics[inst.frame] is not None:
                # each part's own static share (a bush cut off a boy is still; the boy is not)
                still = _static_fraction(_small_mask(part, views[inst.frame]), statics[inst.frame])
                note |= {"static": still, "prop": still is not None and still >= STATIC_FRACTION}
            out_notes.append(note)
    return out, out_notes, changed


# -- text ----------------------------------------------------------------------------------
def text_backdrop(image: np.ndarray, same_frame: Sequence[Instance]) -> tuple[np.ndarray, float] | None:
    """Per frame, what :func:`text_score` needs of its instances' surroundings: the grey
    image and how plain the background is (share within a few grey levels of its median);
    None when the instances leave too little background to tell."""
    import cv2

    h, w = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    union = np.zeros((h, w), np.uint8)
    for other in same_frame:
        x, y, bw, bh = other.bbox
        region = union[y : y + bh, x : x + bw]
        region |= other.alpha >= 0.1
    outside = cv2.dilate(union, np.ones((9, 9), np.uint8)) == 0
    if outside.sum() < 0.2 * h * w:
        return None
    bg = gray[outside]
    # the median of uint8 grey levels is exact from a histogram (no sort of the frame)
    counts = np.bincount(bg, minlength=256)
    cum = np.cumsum(counts)
    n = int(cum[-1])
    lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
    hi = int(np.searchsorted(cum, n // 2 + 1))
    median = (lo + hi) / 2.0
    levels = np.arange(256)
    plain = float(counts[np.abs(levels - median) < 10].sum() / n)
    return gray, plain


def text_score(image: np.ndarray, inst: Instance, same_frame: Sequence[Instance],
               backdrop: tuple[np.ndarray, float] | None | str = "compute") -> float:
    """0..1: how much ``inst`` looks like title-card text: flat fills with crisp edges
    (few distinct colours inside, strong edges at the outline) on a plain background.
    ``backdrop``: :func:`text_backdrop` of the frame, computed once per frame by a caller
    scoring several instances."""
    import cv2

    if isinstance(backdrop, str):
        backdrop = text_backdrop(image, same_frame)
    if backdrop is None:
        return 0.0
    gray, plain = backdrop
    x, y, bw, bh = inst.bbox
    mask = inst.alpha >= 0.5
    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if core.sum() < 20:
        return 0.0
    crop = gray[y : y + bh, x : x + bw]
    inside = crop[core].astype(np.float32)
    flat = float((np.abs(inside - np.median(inside)) < 12).mean())
    # glyphs: several separate strokes (components of the matte at 0.5), a wide box, or a
    # line of neighbours of about the same height beside it (each word its own instance)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    strokes = int((stats[1:, cv2.CC_STAT_AREA] >= 0.01 * mask.sum()).sum()) if count > 1 else 0
    in_line = sum(
        1 for o in same_frame
        if o is not inst and 0.6 * bh <= o.bbox[3] <= 1.6 * bh
        and abs((o.bbox[1] + o.bbox[3] / 2) - (y + bh / 2)) <= 0.35 * bh
    )
    glyphs = 1.0 if strokes >= 3 or bw >= 3 * bh or in_line >= 1 else 0.6
    return float(np.clip(plain, 0, 1) * np.clip((flat - 0.5) / 0.4, 0, 1) * glyphs)


def flat_fill(image: np.ndarray, inst: Instance) -> float:
    """Share of the instance's eroded mask within 12 levels (every Lab channel) of its median
    colour. A 3D character is shaded (0.07-0.37 on the trailer); title graphics and logos
    are flat fills (0.74-1.0)."""
    import cv2

    x, y, bw, bh = inst.bbox
    core = cv2.erode((inst.alpha >= 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if core.sum() < 20:
        return 0.0
    lab = cv2.cvtColor(image[y : y + bh, x : x + bw], cv2.COLOR_RGB2LAB)[core]
    # per channel, the median of uint8 levels from a histogram (exactly np.median's, without
    # sorting the pixels) and the band around it as a lookup: the same share, a fraction of the time
    within = np.ones(len(lab), bool)
    levels = np.arange(256)
    for c in range(3):
        median = _hist_median(np.bincount(lab[:, c], minlength=256))
        within &= (np.abs(levels - median) < 12)[lab[:, c]]
    return float(within.mean())


MATTE_NEAR = 4.0  # px: an outline pixel this close to an iris's black runs along it (its soft edge)


def matte_surround(image: np.ndarray) -> np.ndarray | None:
    """Per pixel, the distance (px) to a black matte that surrounds the picture (an iris
    closing on a character, a porthole or telescope view:
    :func:`~animlora.video.frame_measures.black_surround`), or None when the frame has none."""
    import cv2

    from animlora.video.frame_measures import black_surround

    matte = black_surround(image)
    return None if matte is None else cv2.distanceTransform((~matte).astype(np.uint8), cv2.DIST_L2, 3)


def matte_measures(surround: np.ndarray, inst: Instance) -> dict[str, float]:
    """``matte``: the share of the instance's outline that runs along the matte
    (:func:`matte_surround`); ``picture``: the share of the picture inside the matte that its
    mask holds. An instance high on both is the picture itself (the matte's disc taken as
    foreground with the character in it), not one character."""
    import cv2

    x, y, bw, bh = inst.bbox
    mask = (inst.alpha >= 0.5).astype(np.uint8)
    outline = (mask > 0) & (cv2.erode(mask, np.ones((3, 3), np.uint8)) == 0)
    if not outline.any():
        return {}
    near = surround[y : y + bh, x : x + bw] <= MATTE_NEAR
    picture = surround > 0
    held = int((picture[y : y + bh, x : x + bw] & (mask > 0)).sum())
    return {"matte": round(float(near[outline].mean()), 3),
            "picture": round(held / max(1, int(picture.sum())), 3)}


def _hist_median(counts: np.ndarray) -> float:
    """The median (as ``np.median``: the mean of the two middle values for an even count)
    of the integer levels whose histogram is ``counts``."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
    hi = int(np.searchsorted(cum, n // 2 + 1))
    return (lo + hi) / 2.0
