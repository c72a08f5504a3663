"""Temporally consistent hole filling over a shot: inpaint a keyframe, carry its fill along
optical flow to the other frames, re-inpaint only where the carried fill fails.

Per shot (frames of one size, each with a hole to fill):

1. **keyframe**: the frame with the smallest hole (the most context for the model) is
   inpainted as it is;
2. **propagate**: walking away from the keyframe in both directions, each frame's hole is
   filled by warping its neighbour's finished plate (which holds that neighbour's visible
   pixels and its fill) along the flow between the two frames. The flow inside the hole
   follows the character, not what is behind it, so it is replaced there by the flow of the
   surrounding background (OpenCV inpainting of each flow channel, at 1/4 size);
3. **check**: a hole region fails when the warped plate disagrees with the frame's own
   visible pixels in a ring around it (mean absolute difference above ``flow_error``, 0-255),
   and a pixel fails when its flow leaves the neighbour's image (newly revealed content);
4. **re-inpaint** the failed pixels only, with everything else already filled as context;
   when more than ``reinpaint_fraction`` of a hole fails the frame becomes a new keyframe.

Visible pixels always come from the frame itself; only hole pixels are carried. A pixel that
was visible in any earlier frame on the walk keeps that real content instead of a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from animlora.backends.inpainting.flow import FlowEstimator

RING = 6  # px around a hole region where the carried plate is compared with the frame
MARGIN = 4  # px: the flow this close to a hole is also replaced (DIS smears across edges)
FLOW_SCALE = 4  # the hole's flow is filled in at 1/FLOW_SCALE size (smooth; fast)

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image, hole) -> raw model output


@dataclass(frozen=True)
class FrameResult:
    plate: np.ndarray  # HxWx3 uint8: the frame with its hole filled
    keyframe: bool  # inpainted whole (first frame of the walk, or propagation failed)
    propagated: float  # fraction of the hole filled from the neighbour
    reinpainted: float  # fraction of the hole the model filled
    flow_error: float | None  # mean ring error of the carried plate (None: keyframe without flow)


def composite(image: np.ndarray, hole: np.ndarray, raw: np.ndarray) -> np.ndarray:
    return np.where(hole[..., None], raw, image)


def background_flow(flow: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``flow`` with its values in (and near) ``hole`` replaced by those of the surroundings:
    normalized convolution at 1/FLOW_SCALE size, the narrowest Gaussian that reaches known
    flow winning (a constant flow stays exactly constant; a smooth one stays smooth)."""
    import cv2

    if not hole.any():
        return flow
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MARGIN + 1, 2 * MARGIN + 1))
    bad = cv2.dilate(hole.astype(np.uint8), kernel) > 0
    if bad.all():  # nothing to take the background's motion from: assume none
        return np.zeros_like(flow)
    height, width = hole.shape
    sw, sh = max(1, width // FLOW_SCALE), max(1, height // FLOW_SCALE)
    known = cv2.resize((~bad).astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    known = (known > 0.999).astype(np.float32)  # low-res cells wholly outside the bad area
    if not known.any():
        return np.where(bad[..., None], flow[~bad].mean(axis=0), flow).astype(np.float32)
    small = cv2.resize(flow, (sw, sh), interpolation=cv2.INTER_AREA) * known[..., None]
    filled = np.zeros_like(small)
    todo = np.ones((sh, sw), bool)
    sigma = 1.0
    while todo.any():
        weight = cv2.GaussianBlur(known, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        sums = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        reach = todo & (weight > 1e-3)
        filled[reach] = sums[reach] / weight[reach][:, None]
        todo &= ~reach
        sigma *= 2.0
        if sigma > 4 * max(sw, sh):  # cannot happen with any known cell; guards the loop
            filled[todo] = small[known > 0].mean(axis=0)
            break
    full = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(bad[..., None], full, flow).astype(np.float32)


def warp(plate: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``plate`` sampled at grid + flow, and where that lands inside the image."""
    import cv2

    height, width = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    inside = (mx >= 0) & (mx <= width - 1) & (my >= 0) & (my <= height - 1)
    warped = cv2.remap(plate, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, inside


def failed_regions(warped: np.ndarray, image: np.ndarray, hole: np.ndarray, bound: float,
                   any_hole: np.ndarray) -> tuple[np.ndarray, float]:
    """Hole pixels whose region's ring disagrees with the frame (> ``bound``), and the mean ring error."""
    import cv2

    count, labels = cv2.connectedComponents(hole.astype(np.uint8), connectivity=8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING + 1, 2 * RING + 1))
    diff = np.abs(warped.astype(np.int16) - image.astype(np.int16)).mean(axis=2)
    failed = np.zeros_like(hole)
    errors, weights = [], []
    for label in range(1, count):
        region = labels == label
        ring = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & ~any_hole
        if not ring.any():  # nothing visible around it to check against: keep the carried fill
            continue
        err = float(diff[ring].mean())
        errors.append(err)
        weights.append(int(ring.sum()))
        if err > bound:
            failed |= region
    mean = float(np.average(errors, weights=weights)) if errors else 0.0
    return failed, mean


def fill_shot(images: Sequence[np.ndarray], holes: Sequence[np.ndarray], fill: Fill, flow: FlowEstimator, *,
              flow_error: float, reinpaint_fraction: float,
              progress: Callable[[int, int], None] | None = None) -> list[FrameResult]:
    """Every frame's plate (see the module docstring); ``fill`` is the inpainting backend."""
    n = len(images)
    results: list[FrameResult | None] = [None] * n
    if n == 0:
        return []
    sizes = [float(h.mean()) for h in holes]
    key = int(np.argmin(sizes))
    done = 0

    def keyframe(i: int, error: float | None = None) -> FrameResult:
        image, hole = images[i], holes[i]
        plate = composite(image, hole, fill(image, hole)) if hole.any() else image.copy()
        return FrameResult(plate, True, 0.0, 1.0 if hole.any() else 0.0, error)

    results[key] = keyframe(key)
    order = [(i, i - 1) for i in range(key + 1, n)] + [(i, i + 1) for i in range(key - 1, -1, -1)]
    for i, src in order:
        done += 1
        if progress is not None:
            progress(done, n)
        image, hole = images[i], holes[i]
        previous = results[src]
        assert previous is not None
        if not hole.any():
            results[i] = FrameResult(image.copy(), False, 0.0, 0.0, None)
            continue
        if image.shape != images[src].shape:
            results[i] = keyframe(i)
            continue
        # 2. carry the neighbour's plate along the background's flow
        motion = background_flow(flow.flow(image, images[src]), hole | holes[src])
        warped, inside = warp(previous.plate, motion)
        # 3. check it against the frame's own pixels around each hole region
        failed, error = failed_regions(warped, image, hole, flow_error, hole | holes[src])
        failed |= hole & ~inside
        area = int(hole.sum())
        if failed.sum() > reinpaint_fraction * area:
            results[i] = keyframe(i, error)
            continue
        # 4. re-inpaint only what failed, with the carried fill as context
        plate = composite(image, hole, warped)
        if failed.any():
            plate = composite(plate, failed, fill(plate, failed))
        results[i] = FrameResult(plate, False, float((hole & ~failed).sum()) / area,
                                 float(failed.sum()) / area, error)
    return [r for r in results if r is not None]


def per_frame(images: Sequence[np.ndarray], holes: Sequence[np.ndarray], fill: Fill) -> list[FrameResult]:
    """The baseline: every frame inpainted on its own."""
    out = []
    for image, hole in zip(images, holes, strict=True):
        plate = composite(image, hole, fill(image, hole)) if hole.any() else image.copy()
        out.append(FrameResult(plate, True, 0.0, 1.0 if hole.any() else 0.0, None))
    return out
