"""Dataset images: an output size per image, a crop around the character, a solid mask, a background.

1. The crop is the character's box grown by ``context_margin``, given the aspect of the nearest
   aspect-ratio bucket (:mod:`animlora.buckets`) by growing, not cutting; it is taken from the
   source frame when there is one, so the character keeps its surroundings.
2. A crop never holds invented pixels: it is shifted to lie inside the frame, and where the
   frame is too small for the bucket's shape the output takes the crop's own shape instead.
   Only when even that would cut the character is the crop padded, with ``background_color``
   under alpha 0 (masked out of the loss; plain colour in the ``context`` mode) — recorded as
   ``padded``. A cut-out without a frame is padded the same way (its surroundings are
   transparent anyway).
3. Nothing is enlarged by more than ``max_enlarge`` (1.25× by default): a crop too small for its
   bucket gets a smaller output of its own shape on the ``bucket_step`` grid (sd-scripts keeps
   such images as they are with ``bucket_no_upscale``); below ``min_bucket`` it is left out.
4. The alpha mask is solid on the body: enclosed holes up to ``fill_holes`` of the figure's area
   and every pixel more than a few pixels inside the figure become opaque; the soft outer edge
   (anti-aliasing, fur) keeps the matting's values.

Backgrounds: ``alpha`` (RGBA: the original pixels under the mask, for sd-scripts'
``alpha_mask = true`` masked loss — trainers that ignore alpha still see the real context),
``context`` (the frame as is), ``flat`` (one colour), ``blur`` (the frame heavily blurred).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from animlora.buckets import enumerate_buckets, nearest_bucket


def bucket_sizes(resolution: int, step: int, min_side: int, max_side: int) -> list[tuple[int, int]]:
    """(w, h) buckets of about ``resolution``² pixels (sd-scripts' set, shared with training)."""
    return enumerate_buckets(resolution, step, min_side, max_side)


def choose_bucket(aspect: float, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect (w/h) is closest in log scale; the larger area wins ties."""
    return nearest_bucket(aspect, buckets)


Box = tuple[float, float, float, float]  # x, y, w, h


@dataclass(frozen=True)
class CropPlan:
    """Where to crop (in canvas pixels, may reach past a frameless canvas) and the output size."""

    crop: Box
    size: tuple[int, int]
    bucket: tuple[int, int]
    scale: float  # output pixels per source pixel (> 1 = enlarged)
    padded: bool  # the crop reaches past the canvas (padded with alpha 0)

    @property
    def limited(self) -> bool:
        return self.size != self.bucket


def _place(cw: float, ch: float, around: Box, canvas: tuple[int, int] | None) -> Box:
    """A cw x ch box centred on ``around``, shifted to lie inside ``canvas`` where it fits."""
    x, y, w, h = around
    x0, y0 = x + w / 2 - cw / 2, y + h / 2 - ch / 2
    if canvas is not None:
        W, H = canvas
        if cw <= W:
            x0 = min(max(x0, 0.0), W - cw)
        if ch <= H:
            y0 = min(max(y0, 0.0), H - ch)
    return x0, y0, cw, ch


def _to_aspect(crop: Box, t: float, box: Box, canvas: tuple[int, int] | None) -> Box:
    """The crop given aspect ``t`` (w/h): grown where the canvas allows, else trimmed where that
    keeps the character's ``box`` whole, else grown past the canvas (padded)."""
    _, _, cw, ch = crop
    if abs(cw / ch - t) < 1e-9:
        return crop
    W, H = canvas if canvas is not None else (math.inf, math.inf)
    if cw / ch < t:  # too narrow
        if ch * t <= W + 1e-6:
            return _place(min(ch * t, W), ch, crop, canvas)
        if cw / t >= box[3]:
            return _place(cw, cw / t, box, canvas)
        return _place(ch * t, ch, crop, canvas)
    if cw / t <= H + 1e-6:
        return _place(cw, min(cw / t, H), crop, canvas)
    if ch * t >= box[2]:
        return _place(ch * t, ch, box, canvas)
    return _place(cw, cw / t, crop, canvas)


def plan_crop(box: Box, canvas: tuple[int, int] | None, *, buckets: list[tuple[int, int]], step: int,
              margin: float, max_enlarge: float, min_side: int, max_aspect: float = 2.0) -> CropPlan | None:
    """The crop and output size of a character whose mask box is ``box`` on a canvas of size
    ``canvas`` (w, h; None = no frame, so no edge); None when the output would be smaller than
    ``min_side`` without enlarging more than ``max_enlarge``."""
    x, y, w, h = box
    gx0, gy0, gx1, gy1 = x - w * margin, y - h * margin, x + w * (1 + margin), y + h * (1 + margin)
    if canvas is not None:
        W, H = canvas
        gx0, gy0, gx1, gy1 = max(0.0, gx0), max(0.0, gy0), min(float(W), gx1), min(float(H), gy1)
    grown = (gx0, gy0, gx1 - gx0, gy1 - gy0)
    gw, gh = grown[2], grown[3]
    # a thin standing figure gets more surroundings rather than a 1:6 bucket; no wider/taller
    # than the frame allows around it
    a = min(max_aspect, max(1 / max_aspect, gw / gh))
    if canvas is not None:
        a = min(canvas[0] / gh, max(gw / canvas[1], a))
    crop = _place(max(gw, gh * a), max(gh, gw / a), grown, canvas)
    bucket = choose_bucket(a, buckets)
    fitted = _to_aspect(crop, bucket[0] / bucket[1], box, canvas)
    scale = bucket[0] / fitted[2]
    if scale <= max_enlarge + 1e-9 and not _outside(fitted, canvas):
        return CropPlan(fitted, bucket, bucket, scale, False)
    # too small for the bucket, or the bucket's shape does not fit the frame: an output of the
    # crop's own shape on the step grid, enlarged at most max_enlarge, no larger than the bucket
    cw, ch = crop[2], crop[3]
    s = min(max_enlarge, math.sqrt(bucket[0] * bucket[1] / (cw * ch)))
    out_w, out_h = int(cw * s // step * step), int(ch * s // step * step)
    if min(out_w, out_h) < min_side:
        return None
    fitted = _to_aspect(crop, out_w / out_h, box, canvas)
    return CropPlan(fitted, (out_w, out_h), bucket, out_w / fitted[2], _outside(fitted, canvas))


def _outside(crop: Box, canvas: tuple[int, int] | None) -> bool:
    if canvas is None:
        return False
    x0, y0, cw, ch = crop
    return x0 < -0.5 or y0 < -0.5 or x0 + cw > canvas[0] + 0.5 or y0 + ch > canvas[1] + 0.5


def mask_in_canvas(cutout: np.ndarray, frame_size: tuple[int, int] | None,
                   bbox: tuple[int, int, int, int] | None) -> np.ndarray:
    """The cut-out's alpha on the frame's canvas (cut-outs are stored around their box, grown by the
    segment stage's padding, or full-frame: :func:`cutout_box`); the cut-out's own alpha without a frame."""
    import cv2

    from animlora.backends.segmentation.cutouts import cutout_box

    alpha = cutout[..., 3]
    if frame_size is None:
        return alpha.copy()
    fw, fh = frame_size
    if alpha.shape == (fh, fw):
        return alpha.copy()
    mask = np.zeros((fh, fw), np.uint8)
    box = cutout_box(bbox, alpha.shape, frame_size)
    if box is None:
        raise ValueError("a tight cut-out needs its box to be placed in the frame")
    x, y, w, h = box
    if alpha.shape != (h, w):
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    return mask


def mask_box(mask: np.ndarray, alpha_threshold: float) -> Box | None:
    """The box of the pixels above the threshold (x, y, w, h), None when there are none.
    OpenCV's bounding rectangle of the binary mask: the box that ``np.nonzero`` and min/max
    give, ~20x less CPU on a full-frame mask (the dataset stage asks for one per member)."""
    import cv2

    x, y, w, h = cv2.boundingRect((mask > int(alpha_threshold * 255)).view(np.uint8))
    if w == 0 or h == 0:
        return None
    return float(x), float(y), float(w), float(h)


# A mask's outline against the picture (dataset.max_loose_outline; docs/dataset.md, "A loose outline"):
# the colour on each side of the outline is averaged over a band this share of the frame's diagonal
# wide (720p: 9 px, cgi-bench's 480x270: 3 px), and the two sides are one surface under this CIELAB
# difference. Measured on the trailer's dataset images: Buck's whole images 0.00-0.14 of their outline,
# six where the matte stopped inside his body 0.30-0.61 (a seventh, ragged at one side, 0.24).
LOOSE_BAND = 0.006
LOOSE_SAME = 6.0
LOOSE_MIN_PIXELS = 20  # a shorter outline off the frame's edge says nothing
LOOSE_DIAGONAL = 1500.0  # a larger frame is judged at this diagonal (720p: 1469)


def loose_outline(frame: np.ndarray, mask: np.ndarray) -> float | None:
    """The share of a mask's outline (its pixels off the frame's edge) along which the picture has
    the same colour just inside and just outside: where the matte stopped inside one surface (a
    part of the character left out: an arm and a head without the body) or ran on into the set
    beside it, rather than following the character's silhouette. ``frame`` is RGB, ``mask`` a
    boolean mask of the same size; None when too little of the outline lies inside the frame."""
    import cv2

    h, w = mask.shape
    r = max(2, round(LOOSE_BAND * math.hypot(h, w)))
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    if bw == 0:
        return None
    pad = 2 * r + 3  # the bands and their averaging windows stay inside the picture cut out
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)
    body = mask[y0:y1, x0:x1].astype(np.uint8)
    picture = frame[y0:y1, x0:x1, :3]
    scale = LOOSE_DIAGONAL / math.hypot(h, w)
    if scale < 1:  # a 1080p or 4K frame is judged at about 720p: the same bands, a fraction of the work
        size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        body = cv2.resize(body, size, interpolation=cv2.INTER_NEAREST)
        r = max(2, round(r * scale))
    # the silhouette is judged: holes the matte left inside the body are no outline (the image fills the
    # small ones, solid_mask; a large one, background seen between an arm and the body, has edges anyway)
    body[~_background_around(body)] = 1
    lab = cv2.cvtColor(picture.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    disc = _disc(r)
    window = (2 * r + 1, 2 * r + 1)
    sides = []
    for band in (body & (1 - cv2.erode(body, disc)), cv2.dilate(body, disc) & (1 - body)):
        weight = cv2.boxFilter(band.astype(np.float32), -1, window, normalize=False)
        total = cv2.boxFilter(lab * band[..., None], -1, window, normalize=False)
        sides.append((total / np.maximum(weight, 1e-6)[..., None], weight > 0))
    line = (body & (1 - cv2.erode(body, np.ones((3, 3), np.uint8)))) > 0
    # the frame's edge is no outline (a character cut by it); two pixels in, as JPEG's edge rows
    k = min(scale, 1.0)
    top, left = math.ceil(max(0, 2 - y0) * k), math.ceil(max(0, 2 - x0) * k)
    bottom, right = math.ceil(max(0, y1 - (h - 2)) * k), math.ceil(max(0, x1 - (w - 2)) * k)
    line[:top] = False
    line[:, :left] = False
    line[line.shape[0] - bottom:] = False
    line[:, line.shape[1] - right:] = False
    (inside, seen_in), (outside, seen_out) = sides
    on = line & seen_in & seen_out
    if int(on.sum()) < LOOSE_MIN_PIXELS:
        return None
    difference = np.linalg.norm(inside[on] - outside[on], axis=1)
    return float((difference < LOOSE_SAME).mean())


HOLE_SEEN = 16.0  # a hole this near in colour to the background beside the figure (Lab, OpenCV's 8-bit scale) ...
HOLE_APART = 30.0  # ... and this far from the body around it (and twice as far as from the background) is the set seen
#                   through a gap (between Buck's ears, an arm and the body), not the matte's hole in the body: not
#                   filled. The film's eyes and mouths, holes in the matte, are 22-60 from the background beside
#                   the head; the gaps 2-17 (and some 21-40, left filled)
HOLE_PALE = (150.0, 20.0)  # a hole this light (L, 0-255) and this near grey (a*b* chroma) is filled whatever is
#                           beside the figure: an eye's white, teeth, a highlight (the film's eyes and mouths: L
#                           174-248, chroma 7-15; the gaps opened: sky 24-29, grass 34-40, or dark)


def solid_mask(alpha: np.ndarray, alpha_threshold: float, fill_holes: float,
               rgb: np.ndarray | None = None) -> np.ndarray:
    """The alpha made solid on the body: enclosed holes of at most ``fill_holes`` of the figure's
    area filled, every pixel more than ~1% of the figure's size inside it opaque; the outer soft
    edge keeps its values. Given the image's pixels (``rgb``, the alpha's grid), a hole that shows
    the background beside the figure, not the body around it (:func:`seen_through`), stays open."""
    import cv2

    body = (alpha > int(alpha_threshold * 255)).astype(np.uint8)
    area = int(body.sum())
    if area == 0:
        return alpha
    out = alpha.copy()
    if fill_holes > 0 and rgb is not None:
        # gaps the matte was unsure of (half-transparent, enclosed by the sure body) that show the set
        # are the set, as an open hole would be: transparent, not made solid below
        sure = (alpha >= 128).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - sure, connectivity=4)
        unsure = np.bincount(labels[(alpha > int(alpha_threshold * 255)) & (sure == 0)], minlength=n) > 0
        gaps = unsure & _enclosed(stats, body.shape, fill_holes * area)
        if gaps.any():
            opened = gaps & seen_through(rgb, sure, labels, stats, gaps, body)
            if opened.any():
                gap = opened[labels]
                body[gap] = 0
                out[gap] = 0
                area = int(body.sum())
    if fill_holes > 0:
        # holes: background components that do not touch the crop's border
        n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - body, connectivity=4)
        inside = _enclosed(stats, body.shape, fill_holes * area)
        if rgb is not None and inside.any():
            inside &= ~seen_through(rgb, body, labels, stats, inside)
        holes = inside[labels]
        body[holes] = 1
        out[holes] = 255
    ys, xs = np.nonzero(body)
    r = max(1, int(round(0.01 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))))
    inner = cv2.erode(body, _disc(r)) > 0
    out[inner] = 255
    return out


def _enclosed(stats: np.ndarray, shape: tuple[int, int], limit: float) -> np.ndarray:
    """Per component (``cv2.connectedComponentsWithStats``' ``stats`` of what is not the body, label 0
    the body itself): whether it touches no side of a crop of ``shape`` and is at most ``limit`` pixels."""
    h, w = shape
    x, y, bw, bh, size = (stats[:, i] for i in range(5))
    inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (size <= limit)
    inside[0] = False
    return inside


def _background_around(body: np.ndarray) -> np.ndarray:
    """The pixels not in ``body`` (uint8 0/1) that reach the crop's border, 4-connected: the background
    around a figure, without the holes in it."""
    import cv2

    _, parts = cv2.connectedComponents(1 - body, connectivity=4)
    around = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    return np.isin(parts, around[around > 0])


def seen_through(rgb: np.ndarray, body: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                 holes: np.ndarray, figure: np.ndarray | None = None) -> np.ndarray:
    """Per component of ``labels`` (``cv2.connectedComponentsWithStats`` of what is not ``body``; judged
    where ``holes``): whether it shows the set seen through a gap in the figure. Its mean colour is
    within ``HOLE_SEEN`` of the background within 4 px of the figure, and ``HOLE_APART`` or more, and
    twice that, from the body within 4 px of it (CIELAB, OpenCV's 8-bit scale); and it is not pale and
    near grey (``HOLE_PALE``: an eye's white against a white sky or snow stays the body's). ``figure``
    (given when ``body`` is the sure part of a matte): the background is the one beside it (the body
    with its soft rim), outside the figure."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float32)
    near = _disc(4)
    if figure is None:
        outer = ~body.astype(bool) & ~holes[labels] & (labels > 0)
        beside = outer & (cv2.dilate(body, near) > 0)
    else:  # the background around ``figure`` (the body with its soft rim), beside it
        beside = _background_around(figure) & (cv2.dilate(figure, near) > 0)
    out = np.zeros(len(holes), bool)
    if not beside.any():
        return out
    background = lab[beside].mean(axis=0)
    h, w = body.shape
    for k in np.nonzero(holes)[0]:
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        x0, y0, x1, y1 = max(0, x - 5), max(0, y - 5), min(w, x + bw + 5), min(h, y + bh + 5)
        hole = labels[y0:y1, x0:x1] == k
        ring = (cv2.dilate(hole.astype(np.uint8), near) > 0) & (body[y0:y1, x0:x1] > 0)
        if not ring.any():
            continue
        window = lab[y0:y1, x0:x1]
        colour = window[hole].mean(axis=0)
        seen, apart = (float(np.linalg.norm(colour - c)) for c in (background, window[ring].mean(axis=0)))
        pale = colour[0] >= HOLE_PALE[0] and float(np.hypot(colour[1] - 128, colour[2] - 128)) < HOLE_PALE[1]
        out[k] = seen <= HOLE_SEEN and apart >= max(HOLE_APART, 2 * seen) and not pale
    return out


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # RGB or RGBA uint8
    info: dict[str, Any]


def _crop(image: np.ndarray, crop: Box, fill: Any) -> np.ndarray:
    """Integer crop of ``image``; parts past its edge are ``fill`` (never replicated edge pixels)."""
    x0, y0 = int(math.floor(crop[0] + 1e-6)), int(math.floor(crop[1] + 1e-6))
    x1, y1 = int(math.ceil(crop[0] + crop[2] - 1e-6)), int(math.ceil(crop[1] + crop[3] - 1e-6))
    h, w = image.shape[:2]
    out = np.empty((y1 - y0, x1 - x0) + image.shape[2:], image.dtype)
    out[...] = fill
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def render(
    cutout: np.ndarray,
    frame: np.ndarray | None,
    bbox: tuple[int, int, int, int] | None,
    *,
    buckets: list[tuple[int, int]],
    step: int,
    margin: float,
    max_enlarge: float,
    min_side: int,
    background: str,
    color: tuple[int, int, int],
    alpha_threshold: float,
    max_aspect: float = 2.0,
    fill_holes: float = 0.05,
) -> Rendered | None:
    """The dataset image of one instance, or None when it would be smaller than ``min_side``."""
    import cv2

    used = background
    if frame is not None:
        canvas = frame
        mask = mask_in_canvas(cutout, (frame.shape[1], frame.shape[0]), bbox)
        size: tuple[int, int] | None = (frame.shape[1], frame.shape[0])
    else:
        canvas = np.empty(cutout.shape[:2] + (3,), np.uint8)
        canvas[:] = color
        a = cutout[..., 3:4].astype(np.float32) / 255
        canvas = (cutout[..., :3] * a + canvas * (1 - a)).astype(np.uint8)
        mask = cutout[..., 3].copy()
        size = None
        if background in ("context", "blur"):
            used = "flat"  # no frame to take the surroundings from
    box = mask_box(mask, alpha_threshold)
    if box is None:
        return None
    plan = plan_crop(box, size, buckets=buckets, step=step, margin=margin, max_enlarge=max_enlarge,
                     min_side=min_side, max_aspect=max_aspect)
    if plan is None:
        return None
    out_w, out_h = plan.size
    rgb = _crop(canvas, plan.crop, np.array(color, np.uint8))
    m = solid_mask(_crop(mask, plan.crop, 0), alpha_threshold, fill_holes, rgb if frame is not None else None)
    interp = cv2.INTER_AREA if out_w < rgb.shape[1] else cv2.INTER_CUBIC
    rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
    m = cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    a = (m.astype(np.float32) / 255)[..., None]
    if used == "alpha":
        image = np.dstack([rgb, m])
    elif used == "flat":
        image = (rgb * a + np.array(color, np.float32) * (1 - a)).round().astype(np.uint8)
    elif used == "blur":
        sigma = max(out_w, out_h) / 40
        blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
        image = (rgb * a + blurred * (1 - a)).round().astype(np.uint8)
    else:
        image = rgb
    cx, cy, cw, ch = plan.crop
    return Rendered(image, {
        "bucket": list(plan.bucket), "size": [out_w, out_h], "crop": [round(cx, 1), round(cy, 1), round(cw, 1),
                                                                       round(ch, 1)],
        "scale": round(plan.scale, 4), "background": used, "upscale_limited": plan.limited, "padded": plan.padded,
    })


# -- another object's piece cut from the alpha (curation/gate.py, foreign_pieces) --------------------------
def pack_piece(mask: np.ndarray) -> str:
    """A boolean mask as ``"<h>x<w>:<base64 of its packed bits>"`` (a work item's payload is JSON)."""
    import base64

    h, w = mask.shape
    return f"{h}x{w}:" + base64.b64encode(np.packbits(mask.astype(bool), axis=None).tobytes()).decode("ascii")


def unpack_piece(text: str) -> np.ndarray:
    """The mask :func:`pack_piece` packed."""
    import base64

    shape, _, bits = text.partition(":")
    h, w = (int(v) for v in shape.split("x"))
    return np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8), count=h * w).reshape(h, w).astype(bool)


CUT_SMOOTH_LEVEL = 0.35  # the enlarged piece, blurred by half a piece pixel, is cut where it reaches this: a lone
#                        piece pixel peaks at 0.47 and a straight edge moves out by a fifth of a pixel (at 0.5
#                        the lone pixels and one-pixel lines of a piece shrank or went: seed 6's tree on the fox)
CUT_THIN_REACH = 2  # thin remains within this many piece pixels of a cut go with it (its rim: the matte's soft
#                    outline of a cut wing, left as a line around the hole, film f5087) ...
CUT_THIN_WIDTH = 1.0  # ... thin: narrower than this many piece pixels (finer than the piece was judged at)


def cut_piece(rgba: np.ndarray, piece: np.ndarray, piece_box: Box, image_box: Box | None = None,
              alpha_threshold: float = 0.15) -> np.ndarray:
    """``rgba`` with the alpha made 0 on ``piece`` (a mask judged on the cut-out at a smaller size),
    grown by one of its pixels so the piece's soft rim goes with it, and on what that leaves apart
    from the body at this size (the specks and far remains of the object; :func:`gate.parts_apart`
    with the pixels' own colours, on the alpha above ``alpha_threshold``). ``piece_box``: the region
    of the frame the piece's mask covers (the cut-out's box); ``image_box``: the region ``rgba`` covers
    (the same when None: the cut-out itself; an enhanced crop's region otherwise).

    The piece is enlarged smoothly (bilinear, then blurred by half a piece pixel), so its outline is
    a curve, not a staircase of piece-sized steps; and what the cut leaves thinner than
    ``CUT_THIN_WIDTH`` piece pixels within ``CUT_THIN_REACH`` piece pixels of it goes with it (the
    rest of the object's soft outline, which the piece, judged at its size, could not hold)."""
    import cv2

    from animlora.curation.gate import parts_apart

    h, w = rgba.shape[:2]
    ph, pw = piece.shape
    px, py, pbw, pbh = piece_box
    ix, iy, ibw, ibh = image_box or piece_box
    sx, sy = (pbw / pw) * (w / ibw), (pbh / ph) * (h / ibh)  # image pixels per piece pixel
    affine = np.array([[sx, 0, (px - ix) * w / ibw], [0, sy, (py - iy) * h / ibh]], np.float32)
    # piece pixel i's centre lies at image coordinate sx * i + (sx - 1) / 2 (pixels are areas)
    affine[:, 2] += (affine[:, :2].sum(axis=1) - 1) / 2
    scale = max(sx, sy)
    field = cv2.warpAffine(piece.astype(np.float32), affine, (w, h), flags=cv2.INTER_LINEAR)
    level = 0.5
    if scale > 1.5:
        field, level = cv2.GaussianBlur(field, (0, 0), scale / 2), CUT_SMOOTH_LEVEL
    cut = cv2.dilate((field >= level).astype(np.uint8), _disc(max(1, round(scale)))) > 0
    alpha = rgba[..., 3]
    left = (alpha > 0) & ~cut
    thick = cv2.morphologyEx(left.astype(np.uint8), cv2.MORPH_OPEN, _disc(round(CUT_THIN_WIDTH * scale / 2))) > 0
    cut |= left & ~thick & (cv2.dilate(cut.astype(np.uint8), _disc(round(CUT_THIN_REACH * scale))) > 0)
    solid = alpha > int(alpha_threshold * 255)
    lab = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
    apart = parts_apart(solid & ~cut, cut & solid, int(solid.sum()), (lab[..., 1], lab[..., 2]))
    if apart.any():
        cut |= _with_rim(apart, solid)
    out = rgba.copy()
    out[..., 3][cut] = 0
    return out


def _disc(radius: int) -> np.ndarray:
    """OpenCV's elliptic structuring element of ``radius`` (0: a single pixel)."""
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def cut_strays(rgba: np.ndarray, alpha_threshold: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """``rgba`` with the alpha made 0 on the parts that stand apart from the body in another colour
    (:func:`gate.stray_parts`, on the alpha above ``alpha_threshold``), each with its soft rim, and
    those parts (all False, and ``rgba`` itself, when there are none)."""
    from animlora.curation.gate import stray_parts

    solid = rgba[..., 3] > int(alpha_threshold * 255)
    strays = stray_parts(solid, rgba[..., :3])
    if not strays.any():
        return rgba, strays
    out = rgba.copy()
    out[..., 3][_with_rim(strays, solid)] = 0
    return out, strays


def _with_rim(parts: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """``parts`` with their soft rim: the pixels under the alpha threshold (not ``solid``) next to them."""
    import cv2

    return parts | ((cv2.dilate(parts.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~solid)
