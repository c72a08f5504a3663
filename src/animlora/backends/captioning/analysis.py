"""What can be measured about a cut-out and its frame without a model.

Each function returns ``(phrase, confidence, measurements)``; a phrase of ``""`` means "cannot
tell". Confidences are rough and deliberately modest where the cue is weak (view, indoor), so
that ``caption.min_field_confidence`` keeps guesses out of the text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Measured = tuple[str, float, dict[str, Any]]

# Named colours (sRGB) compared in CIELAB, where distances match what a person calls "the same".
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "dark grey": (75, 75, 75),
    "grey": (128, 128, 128),
    "light grey": (190, 190, 190),
    "white": (245, 245, 245),
    "red": (200, 35, 35),
    "dark red": (120, 20, 30),
    "pink": (240, 150, 180),
    "orange": (240, 130, 30),
    "yellow": (240, 215, 50),
    "beige": (220, 200, 160),
    "brown": (120, 75, 40),
    "olive": (120, 120, 40),
    "green": (50, 160, 60),
    "dark green": (25, 80, 40),
    "teal": (20, 130, 130),
    "light blue": (130, 185, 235),
    "blue": (40, 80, 200),
    "navy": (25, 35, 90),
    "purple": (120, 55, 160),
}


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float CIELAB (L 0-100, a/b about -128..127)."""
    import cv2

    # one row of pixels, not one pixel per row: OpenCV converts a row with its vector code
    # (~4.5x less CPU on a 720p frame's pixels than one call per 1-pixel row); the values are
    # bit-identical (benchmarks/caption_cost.py checks them)
    flat = rgb.reshape(1, -1, 3).astype(np.float32) / 255.0
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB)
    return lab.reshape(*rgb.shape[:-1], 3)


_NAMED_LAB = to_lab(np.array(list(NAMED_COLORS.values()), np.uint8)[None])[0]
_NAMES = list(NAMED_COLORS)


def color_name(lab: np.ndarray) -> str:
    d = np.linalg.norm(_NAMED_LAB - lab[None, :], axis=1)
    return _NAMES[int(np.argmin(d))]


def alpha_mask(image: np.ndarray, threshold: float) -> np.ndarray:
    return image[..., 3] > int(round(threshold * 255))


def extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """x, y, w, h of the mask's pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


# -- framing ----------------------------------------------------------------------------
_EDGE_TOL = 2  # pixels: a mask this close to the frame's edge touches it
_CUT_SHARE = 0.03  # share of the figure's extent along an edge that is in contact: cut there


def frame_cuts(mask: np.ndarray, bbox: tuple[int, int, int, int] | None,
               frame_size: tuple[int, int]) -> dict[str, float]:
    """Per frame edge (left, top, right, bottom), the share of the figure's extent along that
    edge where the figure touches it — the frame cuts the figure there."""
    fw, fh = frame_size
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return {}
    if mask.shape != (fh, fw) and bbox is not None:  # a cut-out: its pixels in frame coordinates
        from animlora.backends.segmentation.cutouts import cutout_box

        bx, by, bw, bh = cutout_box(bbox, mask.shape, frame_size) or bbox
        xs = bx + (xs + 0.5) * bw / mask.shape[1]
        ys = by + (ys + 0.5) * bh / mask.shape[0]
    h = max(1.0, float(ys.max() - ys.min() + 1))
    w = max(1.0, float(xs.max() - xs.min() + 1))
    out = {}
    for edge, near, along, extent in (("left", xs <= _EDGE_TOL, ys, h), ("right", xs >= fw - 1 - _EDGE_TOL, ys, h),
                                      ("top", ys <= _EDGE_TOL, xs, w), ("bottom", ys >= fh - 1 - _EDGE_TOL, xs, w)):
        if near.any():
            span = len(np.unique(np.round(along[near]).astype(int)))
            out[edge] = round(min(1.0, span / extent), 3)
    return out


def framing(mask: np.ndarray, bbox: tuple[int, int, int, int] | None, frame_size: tuple[int, int] | None) -> Measured:
    """close-up / upper body / full body — only what the frame shows.

    With the frame: a figure no frame edge cuts is *full body*; one cut by the bottom edge is a
    *close-up* when its visible silhouette is about as wide as tall (head and shoulders), else
    *upper body*; one cut only at the top or a side shows its feet but not all of it, so nothing
    is said. Without a frame (a tight cut-out), a figure whose lowest rows are as wide as its
    body is taken as cut there, and a tall silhouette as whole (confidence 0.6).
    """
    ext = extent(mask)
    if ext is None:
        return "", 0.0, {}
    x, y, w, h = ext
    sub = mask[y : y + h, x : x + w]
    band = max(1, h // 25)
    widths = sub.sum(axis=1)
    bottom_cover = float(widths[-band:].mean() / max(1.0, widths.max()))
    aspect = h / max(1, w)
    info: dict[str, Any] = {"bottom_cover": round(bottom_cover, 3)}
    if frame_size is not None and (bbox is not None or mask.shape == (frame_size[1], frame_size[0])):
        cuts = {e: v for e, v in frame_cuts(mask, bbox, frame_size).items() if v >= _CUT_SHARE}
        if bbox is not None:
            aspect = bbox[3] / max(1, bbox[2])
        info.update({"cut_edges": sorted(cuts), "aspect": round(aspect, 3)})
        if not cuts:
            return "full body", 0.8, info
        if "bottom" not in cuts:
            return "", 0.0, info  # feet in the frame, but a side or the top cut: not "full body"
        return ("close-up" if aspect < 1.25 else "upper body"), 0.75, info
    # a tight cut-out: a tall silhouette is a whole standing figure whatever its feet do
    cut = bottom_cover > 0.45 and aspect < 2.3
    info["aspect"] = round(aspect, 3)
    if not cut:
        return "full body", 0.6, info
    return ("close-up" if aspect < 1.25 else "upper body"), 0.6, info


# -- view -------------------------------------------------------------------------------
HUMAN_TALL = 2.2  # a figure this many times as tall as wide is human-like: its head is its top sixth


def view(image: np.ndarray, mask: np.ndarray) -> Measured:
    """front / side / back from left-right symmetry of silhouette and shading.

    A figure facing the camera or away from it is close to mirror-symmetric; a profile is not.
    Front and back differ by detail in the head region (eyes and mouth vs the back of a head).
    """
    import cv2

    ext = extent(mask)
    if ext is None:
        return "", 0.0, {}
    x, y, w, h = ext
    sub = mask[y : y + h, x : x + w].astype(np.uint8)
    gray = cv2.cvtColor(image[y : y + h, x : x + w, :3], cv2.COLOR_RGB2GRAY).astype(np.float32)
    size = (48, 64)
    m = cv2.resize(sub, size, interpolation=cv2.INTER_NEAREST).astype(bool)
    g = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    cx = int(round(np.nonzero(m)[1].mean()))
    shift = size[0] // 2 - cx
    m = np.roll(m, shift, axis=1)
    g = np.roll(g, shift, axis=1)
    mf, gf = m[:, ::-1], g[:, ::-1]
    union = np.logical_or(m, mf).sum()
    shape_sym = float(np.logical_and(m, mf).sum() / max(1, union))
    both = np.logical_and(m, mf)
    shade_diff = float(np.abs(g - gf)[both].mean() / 255.0) if both.any() else 1.0
    symmetry = shape_sym * (1.0 - min(0.5, shade_diff))
    info = {"shape_symmetry": round(shape_sym, 3), "shade_difference": round(shade_diff, 3),
            "symmetry": round(symmetry, 3)}
    # a profile hides the shoulders: torso about as wide as the head. Only a tall, human-like
    # figure has its head in its top rows; a stocky creature's top rows are its ears, or a prop held
    # over it, as wide as its body seen from the front (film: 5 of 7 "side views" were Frank and
    # Buck facing the camera; cgi-bench seeds 2 and 6: 15 of 18 under 2.2, against 3 of 10 over)
    widths = sub.sum(axis=1).astype(np.float32)
    head_w = float(widths[: max(1, int(h * 0.12))].max())
    torso = widths[int(h * 0.25) : max(int(h * 0.25) + 1, int(h * 0.45))]
    tall = h / max(1, w)
    narrow = tall >= HUMAN_TALL and float(np.median(torso)) < 1.25 * head_w
    info["torso_to_head"] = round(float(np.median(torso)) / max(1.0, head_w), 3)
    # front vs back: only eyes decide. A pair of eyes (pupils in their whites) in the head region
    # is a face (front view, whatever the arms do); a symmetric figure whose head shows no inner
    # detail at all is the back of a head (from behind); anything else (an asymmetric pose without
    # visible eyes, fur or hair texture, a head too small to tell) says nothing.
    # The head region: a tall (human-like) figure's top sixth; a stockier one's (a creature with
    # ears, a child) top third; a close-up's top 45%.
    head_rows = max(4, h // 6 if tall >= HUMAN_TALL else h // 3 if tall >= 1.25 else int(h * 0.45))
    head = cv2.erode(sub[:head_rows], np.ones((3, 3), np.uint8), iterations=max(1, head_rows // 12))

    def head_at(rows: int) -> tuple[np.ndarray, np.ndarray]:
        scale = rows / head_rows
        g = cv2.resize(gray[:head_rows], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return g, cv2.resize(head, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_NEAREST) > 0

    head_gray, head_mask = head_at(48)
    lap = np.abs(cv2.Laplacian(head_gray, cv2.CV_32F))
    detail = float(lap[head_mask].mean()) if head_mask.any() else 0.0
    # two dark spots side by side may be a face whose eyes show no white at this size: not enough
    # for "front view", too much for a profile or the back of a head
    spots = eye_pair(head_gray, head_mask, whites=False)
    eyes = eye_pair(*head_at(EYE_ROWS))
    info.update({"head_detail": round(detail, 3), "eyes": eyes, "dark_spots": spots, "head_px": int(head_rows)})
    if eyes:
        return "front view", float(np.clip(0.5 + (symmetry - 0.72), 0.55, 0.8)), info
    if spots:
        return "", 0.0, info
    if narrow and symmetry < 0.9:  # no pair of eyes, an asymmetric figure without shoulders: a profile
        return "side view", float(np.clip(0.55 + (0.9 - symmetry), 0.55, 0.85)), info
    if symmetry >= 0.72 and detail < 1.5 and head_rows >= 24:
        return "from behind", 0.5, info
    return "", 0.0, info


EYE_ROWS = 96  # the head region is searched for eyes this many rows tall (at 48 an eye's white is a pixel)
EYE_WHITE = 12  # a pixel this much brighter than the face around a pupil is the eye's white or its catchlight
EYE_RING = 0.35  # share of the ring around a pupil that must be so bright


def eye_pair(gray: np.ndarray, head: np.ndarray, whites: bool = True) -> bool:
    """Two eyes side by side in a head region: compact spots much darker than the face around
    them (pupils), each ringed by brighter pixels (the eye's white, or a catchlight; not asked
    with ``whites=False``), of similar size, at one height, a sensible distance apart.

    A dark spot is not an eye by itself: a shadow under a cheek, the crease of an arm, a fold of
    fur or the gaps of a bush are dark spots too. Without the ring, the pair found was the eyes
    on about a third of the film's 107 "front view" captions, and some 34 of those images did
    not face the camera (docs/dataset.md, "view")."""
    import cv2

    if head.sum() < 60:
        return False
    k = max(3, (int(head.shape[1] * 0.25) // 2) * 2 + 1)
    around = cv2.medianBlur(gray.astype(np.uint8), k).astype(np.float32)
    face = gray.astype(np.float32)
    dark = ((face < around - 25) & head).astype(np.uint8)
    n, labels, stats, centres = cv2.connectedComponentsWithStats(dark, connectivity=8)
    area = float(head.sum())
    ys, xs = np.nonzero(head)
    hw, hh = float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
    blobs = []
    for i in range(1, n):
        x, y, bw, bh, size = stats[i]
        compact = 0.4 <= bw / max(1, bh) <= 2.5 and size >= 0.35 * bw * bh
        if not (compact and 0.001 * area <= size <= 0.06 * area and size >= 2):
            continue
        if whites:  # a pupil in its white: enough of a ring around it brighter than the face
            pupil = labels == i
            r = max(1, round(0.8 * float(np.sqrt(size / np.pi))))
            grown = cv2.dilate(pupil.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
            ring = (grown > 0) & ~pupil & head
            if not ring.any() or float((face[ring] >= float(np.median(around[pupil])) + EYE_WHITE).mean()) < EYE_RING:
                continue
        blobs.append((float(centres[i][0]), float(centres[i][1]), float(size)))
    for i in range(len(blobs)):
        for j in range(i + 1, len(blobs)):
            (x1, y1, a1), (x2, y2, a2) = blobs[i], blobs[j]
            if (max(a1, a2) / min(a1, a2) <= 3 and abs(y1 - y2) <= 0.12 * hh
                    and 0.12 * hw <= abs(x1 - x2) <= 0.65 * hw):
                return True
    return False


# -- palette ----------------------------------------------------------------------------
def palette(image: np.ndarray, mask: np.ndarray, k: int, min_share: float, seed: int = 0) -> Measured:
    """Named outfit colours: k-means in CIELAB over the figure below the head."""
    ext = extent(mask)
    if ext is None:
        return "", 0.0, {"colors": []}
    x, y, w, h = ext
    region = mask.copy()
    region[: y + h // 5] = False  # the head: skin and hair are not the outfit
    if region.sum() < 20:
        region = mask
    pixels = image[..., :3][region]
    rows = np.nonzero(region)[0].astype(np.float32)
    rng = np.random.default_rng(seed)
    if len(pixels) > 4000:
        pick = rng.choice(len(pixels), 4000, replace=False)
        pixels, rows = pixels[pick], rows[pick]
    lab = to_lab(pixels[None])[0]
    k = min(k, len(lab))
    order = np.argsort(lab[:, 0])
    centres = lab[order[np.linspace(0, len(lab) - 1, k).astype(int)]]  # spread by lightness
    for _ in range(12):
        labels = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if np.any(labels == j):
                centres[j] = lab[labels == j].mean(axis=0)
    shares: dict[str, float] = {}
    heights: dict[str, list[float]] = {}
    found = materials(lab, labels, centres)
    largest = max(float(m.mean()) for m in found)
    for members in found:
        share = float(members.mean())
        if share > 0:
            name = color_name(lit_colour(lab[members]))
            shares[name] = shares.get(name, 0.0) + share
            heights.setdefault(name, []).extend(rows[members].tolist())
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    colors = [name for name, share in ranked if share >= min_share][:3]
    # top to bottom, as a person lists clothes: shirt, then trousers
    colors.sort(key=lambda name: float(np.mean(heights[name])))
    if not colors:
        return "", 0.0, {"colors": [], "shares": shares}
    from animlora.text.captions import outfit_phrase

    covered = sum(shares[c] for c in colors)
    return outfit_phrase(colors), float(np.clip(covered, 0.3, 0.9)), {
        "colors": colors, "shares": {n: round(s, 3) for n, s in ranked}, "one_material": round(largest, 3),
        "one_family": round(max(family_shares(shares).values()), 3)}


_ACHROMATIC = 10.0  # CIELAB chroma below which a colour is a grey
_SAME_HUE = 20.0  # degrees: shading changes lightness, hardly hue


def materials(lab: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> list[np.ndarray]:
    """Join k-means clusters that are one material under shading (pixel masks, one per
    material). A rendered surface runs from lit to shadowed, and k-means cuts that gradient
    into bands ("light grey, grey and black" for one grey coat); two materials of one hue
    (a white shirt over black trousers) meet at an edge instead. So clusters of one hue
    family (both greys, or hues within 20°) that are neighbours in lightness are joined when
    the lightness between them is continuous: the pixels half way between the two centres
    are at least a third as dense as those around the centres."""
    k = len(centres)
    chroma = np.hypot(centres[:, 1], centres[:, 2])
    hue = np.degrees(np.arctan2(centres[:, 2], centres[:, 1])) % 360
    group = list(range(k))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    def one_family(i: int, j: int) -> bool:
        if chroma[i] < _ACHROMATIC and chroma[j] < _ACHROMATIC:
            return True
        gap = abs(hue[i] - hue[j]) % 360
        return chroma[i] >= _ACHROMATIC and chroma[j] >= _ACHROMATIC and min(gap, 360 - gap) < _SAME_HUE

    def continuous(i: int, j: int) -> bool:
        family = (labels == i) | (labels == j)
        lightness = lab[family, 0]
        lo, hi = sorted((float(centres[i, 0]), float(centres[j, 0])))
        band = max((hi - lo) / 6, 1.0)
        density = [float((np.abs(lightness - c) <= band).sum()) for c in (lo, (lo + hi) / 2, hi)]
        return density[1] >= min(density[0], density[2]) / 3

    for i in sorted(range(k), key=lambda c: centres[c, 0]):
        later = [j for j in range(k) if centres[j, 0] > centres[i, 0] and one_family(i, j)]
        if later:
            j = min(later, key=lambda c: centres[c, 0])  # the next lighter one of the family
            if continuous(i, j):
                group[root(j)] = root(i)
    return [np.isin(labels, [c for c in range(k) if root(c) == r]) for r in sorted({root(c) for c in range(k)})]


# colour families: shading and fur markings stay inside one (grey and dark grey; brown and
# beige), clothes usually bring another
FAMILIES = {
    "neutral": ("black", "dark grey", "grey", "light grey", "white"),
    "earth": ("brown", "beige", "orange"),
    "red": ("red", "dark red", "pink"),
    "yellow": ("yellow", "olive"),
    "green": ("green", "dark green"),
    "blue": ("teal", "light blue", "blue", "navy"),
    "purple": ("purple",),
}
_FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}


def family_shares(shares: dict[str, float]) -> dict[str, float]:
    """Share of the figure per colour family (from the named colours' shares)."""
    out: dict[str, float] = {}
    for name, share in shares.items():
        family = _FAMILY_OF.get(name, name)
        out[family] = out.get(family, 0.0) + share
    return out or {"": 0.0}


def lit_colour(lab: np.ndarray) -> np.ndarray:
    """The colour a person names for a shaded material: that of its lit part (the upper
    half of its lightness), not the average with its shadows."""
    lit = lab[lab[:, 0] >= np.median(lab[:, 0])]
    return lit.mean(axis=0)


# -- lighting, time of day, background ---------------------------------------------------
def _background(frame: np.ndarray, bbox: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """Where the frame is away from the character's box (the box grown by 5%), never the black
    of an iris or a porthole around the picture (film: Buck in the closing iris read "dark,
    low-key lighting, at night" from it); None when that black is all there is beside the box."""
    from animlora.video.frame_measures import black_surround

    keep = np.ones(frame.shape[:2], bool)
    if bbox is not None:
        x, y, w, h = bbox
        mx, my = int(w * 0.05), int(h * 0.05)
        keep[max(0, y - my) : y + h + my, max(0, x - mx) : x + w + mx] = False
    if keep.sum() < 0.05 * keep.size:
        keep[:] = True
    surround = black_surround(frame)
    if surround is not None:
        keep &= ~surround
        if keep.sum() < 0.05 * keep.size:
            return None
    return keep


def _background_pixels(frame: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """The frame's pixels where ``keep`` (a ``_background``) is set; none when it is None."""
    if keep is None:
        return frame[:0].reshape(0, frame.shape[-1])
    # the same pixels in the same order as frame[keep]; numpy's 2-D boolean index of an
    # HxWx3 array takes ~7x the CPU of one compress over the flat pixels
    return np.compress(keep.ravel(), frame.reshape(-1, frame.shape[-1]), axis=0)


COOL_LIGHT = 0.7  # log(R / B) of the grey-edge light at or below -this: a blue light (night, moonlight)


def _light_warmth(frame: np.ndarray, keep: np.ndarray) -> float | None:
    """log(R / B) of the light's colour, estimated by grey-edge on the frame where ``keep`` (the
    ``_background``: around the box) is set (``video.frame_measures.estimate_light``), or None
    when it cannot be told."""
    from animlora.video.frame_measures import estimate_light

    light = estimate_light(frame[..., :3], keep)
    return None if light is None else float(np.log(light[0] / light[2]))


def lighting(image: np.ndarray, mask: np.ndarray, frame: np.ndarray | None,
             bbox: tuple[int, int, int, int] | None) -> Measured:
    """Brightness and colour temperature of the scene (frame) or, without one, of the figure."""
    keep = _background(frame, bbox) if frame is not None else None
    source = _background_pixels(frame, keep) if frame is not None else image[..., :3][mask]
    if len(source) == 0:
        return "", 0.0, {}
    lab = to_lab(source[None])[0]
    L, a, b = (float(v) for v in lab.mean(axis=0))
    fig = to_lab(image[..., :3][mask][None])[0] if mask.any() else lab
    info = {"L": round(L, 1), "a": round(a, 1), "b": round(b, 1), "from": "frame" if frame is not None else "figure"}
    conf = 0.7 if frame is not None else 0.5
    # side lighting: the same material much brighter on one half of the figure than on the other
    # (comparing one material keeps a red sleeve beside a white shirt from reading as light)
    ext = extent(mask)
    if ext is not None and mask.sum() > 50:
        x, y, w, h = ext
        cols = np.nonzero(mask)[1]
        # one material = one hue (shading changes lightness, hardly hue); greys are one material
        chroma = np.hypot(fig[:, 1], fig[:, 2])
        hue_bin = ((np.degrees(np.arctan2(fig[:, 2], fig[:, 1])) + 360) % 360 // 15).astype(int)
        colourful = chroma > 8
        if colourful.sum() > 0.3 * len(fig):
            top = int(np.bincount(hue_bin[colourful], minlength=24).argmax())
            near = np.minimum((hue_bin - top) % 24, (top - hue_bin) % 24) <= 1
            same = colourful & near
        else:
            same = ~colourful
        left = fig[same & (cols < x + w / 2), 0]
        right = fig[same & (cols >= x + w / 2), 0]
        if len(left) >= 30 and len(right) >= 30:
            info["side_contrast"] = round(abs(float(left.mean()) - float(right.mean())), 1)
    if L < 22:
        return "dark, low-key lighting", conf, info
    if info.get("side_contrast", 0) > 22:
        return "dramatic side lighting", conf * 0.9, info
    if frame is None:
        # the figure's own colours are its outfit, not the light: no colour temperature from them
        return "", 0.0, info
    if b > 14 and a > 2:
        return "warm lighting", conf, info
    if b < -8:
        # a blue background is a blue sky as often as a blue light: cool only when the light
        # itself is blue (film: 44 images of Frank, Buck and the bird under a daylight sky said
        # "cool lighting"; their grey-edge light was -0.66 to +0.4, night on cgi-bench -0.7 to -1.5)
        warmth = _light_warmth(frame, keep)
        info["light_warmth"] = None if warmth is None else round(warmth, 3)
        if warmth is not None and warmth <= -COOL_LIGHT:
            return "cool lighting", conf, info
    if L > 68:
        return "bright, soft lighting", conf * 0.9, info
    return "soft lighting", 0.45, info


def _sky_and_green(frame: np.ndarray) -> tuple[float, float, float]:
    """Share of sky-like pixels in the top third, of foliage-like pixels overall, and the
    top third's mean warmth (b*)."""
    top = frame[: max(1, frame.shape[0] // 3)]
    lab_top = to_lab(top.reshape(1, -1, 3)[:, ::7])[0]
    lab_all = to_lab(frame.reshape(1, -1, 3)[:, ::11])[0]
    sky = float(((lab_top[:, 2] < -10) & (lab_top[:, 0] > 45)).mean())
    sunset_sky = float(((lab_top[:, 2] > 20) & (lab_top[:, 1] > 8) & (lab_top[:, 0] > 45)).mean())
    green = float(((lab_all[:, 1] < -12) & (lab_all[:, 0] > 20)).mean())
    return sky, green, max(sunset_sky, 0.0)


def background(frame: np.ndarray | None, bbox: tuple[int, int, int, int] | None) -> Measured:
    """plain / outdoors / indoors from the frame around the character."""
    if frame is None:
        return "", 0.0, {}
    pixels = _background_pixels(frame, _background(frame, bbox))
    if len(pixels) == 0:
        return "", 0.0, {}
    lab = to_lab(pixels[None, ::3])[0]
    spread = float(lab.std(axis=0).mean())
    sky, green, sunset = _sky_and_green(frame)
    info = {"spread": round(spread, 2), "sky": round(sky, 3), "foliage": round(green, 3), "warm_sky": round(sunset, 3)}
    if spread < 4:
        return "plain background", 0.85, info
    if sky > 0.2 or green > 0.25 or sunset > 0.3:
        return "outdoors", float(np.clip(0.5 + max(sky, green, sunset), 0.55, 0.9)), info
    return "indoors", 0.4, info


NIGHT_FRAME_L = 28  # CIELAB L* around the box under which a frame may be night...
NIGHT_SKY_L, NIGHT_SKY_B = 40, -5  # ...when the top third (the sky) is this dark and this blue


def time_of_day(frame: np.ndarray | None, bbox: tuple[int, int, int, int] | None) -> Measured:
    """daytime / sunset / night, only for scenes that look outdoor."""
    if frame is None:
        return "", 0.0, {}
    keep = _background(frame, bbox)
    pixels = _background_pixels(frame, keep)
    if keep is None or len(pixels) == 0:
        return "", 0.0, {}
    sky, green, sunset = _sky_and_green(frame)
    lab = to_lab(pixels[None, ::3])[0]
    L, b = float(lab[:, 0].mean()), float(lab[:, 2].mean())
    info = {"L": round(L, 1), "b": round(b, 1)}
    if L < 18 and b <= 5:
        return "at night", 0.6, info
    if L < NIGHT_FRAME_L:
        # a dark frame under a dark blue sky: moonlight (cgi-bench's night, lamp-lit windows and
        # all, is L* 18-25 around the box with its top third at b* -3 to -22; the film's dark
        # burrow is as dark, but its top is warm grass, b* +17)
        sky_part = keep.copy()
        sky_part[frame.shape[0] // 3 :] = False
        if sky_part.sum() > 100:
            top = to_lab(frame[..., :3][sky_part][None, ::5])[0]
            top_L, top_b = float(top[:, 0].mean()), float(top[:, 2].mean())
            info.update({"top_L": round(top_L, 1), "top_b": round(top_b, 1)})
            if top_L < NIGHT_SKY_L and top_b < NIGHT_SKY_B:
                return "at night", 0.55, info
    if sunset > 0.3:
        return "at sunset", 0.55, info
    if sky > 0.2 and L > 45:
        return "daytime", 0.65, info
    return "", 0.0, info
