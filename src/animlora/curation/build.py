"""Building one character's dataset folder (the dataset stage's ``process``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from animlora.curation.parts import JOINED, bite_members, joined_member, joined_parts
from animlora.curation.sources import Member
from animlora.errors import BadInputError
from animlora.io.files import atomic_write_json, atomic_write_text, link_or_copy, safe_name
from animlora.pipeline.stage import ItemOutput, Progress, StageJob

METADATA = "metadata.json"


def _sharpness(rgba: np.ndarray, mask: np.ndarray) -> float:
    import cv2

    gray = cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return float(lap[inner].var()) if inner.any() else 0.0


def with_filled_box(frame: np.ndarray, member: Member) -> tuple[np.ndarray, bool]:
    """The frame with the deocclude stage's filled box (other characters and props painted
    out) put back in, so the image's surroundings show no other character; the frame as it
    is (and False) when there is none or it does not fit."""
    from animlora.io.images import read_image

    if not member.filled_path or not member.filled_box:
        return frame, False
    x, y, w, h = member.filled_box
    try:
        filled = read_image(member.filled_path, "RGB")
    except BadInputError:
        return frame, False
    if filled.shape[:2] != (h, w) or x < 0 or y < 0 or y + h > frame.shape[0] or x + w > frame.shape[1]:
        return frame, False
    out = frame.copy()
    out[y : y + h, x : x + w] = filled
    return out, True


def _template_fields(member: Member, rgba: np.ndarray, settings: Any, clothed: bool | None) -> dict[str, Any]:
    from animlora.backends.captioning.base import CaptionInput
    from animlora.backends.captioning.template import TemplateCaptioner
    from animlora.io.images import read_image

    frame = None
    if member.frame_path:
        try:
            frame = read_image(member.frame_path, "RGB")
        except BadInputError:
            frame = None
    result = TemplateCaptioner(settings.caption).caption_one(
        CaptionInput(member.instance_id, rgba, "", member.character, frame, member.bbox, clothed))
    return result.fields


# Why an instance is left out: one short code per reason, counted in the run's ending table
# and the report; the full sentence stays beside it.
MISSING = "missing file"
UNREADABLE = "unreadable"
EMPTY_CAPTION = "empty caption"
TRANSPARENT = "transparent"
TOO_SMALL = "too small"
LOOSE_OUTLINE = "not_whole:outline"
DUPLICATE = "near-duplicate"
NOT_PICKED = "not picked"


def _left(skipped: list[dict[str, str]], instance: str, code: str, reason: str) -> None:
    skipped.append({"instance": instance, "code": code, "reason": reason})


def more_images(left_out: dict[str, int]) -> str:
    """What lets a character with too few images have more, for the reasons its members were left out."""
    ways = ["add footage", "lower dataset.min_size"]
    if left_out.get(TOO_SMALL):
        ways.append("enlarge small crops with the enhance stage (an SR model: enhance.backend spandrel)")
    if left_out.get(LOOSE_OUTLINE):
        ways.append("keep those left out as not whole (dataset.max_loose_outline: 1)")
    return f"{', '.join(ways[:-1])}, or {ways[-1]}"


def _floor(s: Any) -> int:
    """The smallest output side kept: ``min_bucket``, or ``min_image_side`` below it (images kept at
    their own size, as sd-scripts' ``bucket_no_upscale`` trains them)."""
    return min(s.min_bucket, s.min_image_side or s.min_bucket)


def _loose_outline(m: Member, rgba: np.ndarray) -> float | None:
    """:func:`curation.images.loose_outline` of the member's mask (as the image will have it: pieces
    cut, parts joined) in its source frame; None without a readable frame it can be placed in."""
    from animlora.curation.images import loose_outline, mask_in_canvas
    from animlora.io.images import read_image

    if not (m.frame_path and m.frame_size):
        return None
    try:
        frame = read_image(m.frame_path, "RGB")
        mask = mask_in_canvas(rgba, m.frame_size, m.bbox)
    except (BadInputError, ValueError):
        return None
    if mask.shape != frame.shape[:2]:
        return None
    return loose_outline(frame, mask > 127)


def _too_small(m: Member, rgba: np.ndarray, s: Any, alpha_threshold: float,
               buckets: list[tuple[int, int]]) -> str:
    """Why this instance cannot make a dataset image ("" when it can), from its mask box alone."""
    from animlora.curation.images import mask_box, mask_in_canvas, plan_crop

    canvas = m.frame_size if (m.frame_path and m.frame_size) else None
    try:
        mask = mask_in_canvas(rgba, canvas, m.bbox)
    except ValueError:
        canvas, mask = None, rgba[..., 3]
    box = mask_box(mask, alpha_threshold)
    if box is None:
        return "no pixels of the character inside the frame"
    if s.use_enhanced and m.enhanced_path:
        return ""  # the enhanced crop is larger; rendering decides
    plan = plan_crop(box, canvas, buckets=buckets, step=s.bucket_step, margin=s.context_margin,
                     max_enlarge=s.max_enlarge, min_side=_floor(s), max_aspect=s.max_aspect)
    if plan is None:
        return (f"too small: {int(box[2])}x{int(box[3])} px cannot reach {_floor(s)} px (dataset.min_image_side / "
                f"min_bucket) without enlarging more than dataset.max_enlarge {s.max_enlarge}x, and no enhanced crop")
    return ""


Piece = tuple[np.ndarray, tuple[float, float, float, float]]  # a mask and the frame region it covers


def _without_others(m: Member, rgba: np.ndarray, pieces: dict[str, Any], alpha_threshold: float,
                    strays: bool) -> tuple[np.ndarray, list[Piece], float]:
    """The cut-out with another object's piece (curation/gate.py, foreign_pieces) cut from its alpha
    and, with ``strays``, the parts apart from its body in another colour (curation/images.py,
    cut_strays); what was cut (each a mask and the region of the frame the cut-out covers:
    :func:`cutout_box`), to cut from the enhanced crop too; and the strays' share of the alpha."""
    from animlora.backends.segmentation.cutouts import cutout_box
    from animlora.curation.images import cut_piece, cut_strays, unpack_piece

    x, y, w, h = cutout_box(m.bbox, rgba.shape, m.frame_size) or (0, 0, rgba.shape[1], rgba.shape[0])
    box = (float(x), float(y), float(w), float(h))
    cut: list[Piece] = []
    if m.instance_id in pieces:
        cut.append((unpack_piece(pieces[m.instance_id]["bits"]), box))
        rgba = cut_piece(rgba, *cut[-1], alpha_threshold=alpha_threshold)
    share = 0.0
    if strays:  # judged here, on the frame's pixels, and cut from the enhanced crop as they are
        solid = int((rgba[..., 3] > int(alpha_threshold * 255)).sum())
        rgba, apart = cut_strays(rgba, alpha_threshold)
        if apart.any():
            cut.append((apart, box))
            share = float(apart.sum() / solid)
    return rgba, cut, share


def _cut_record(piece: dict[str, Any] | None, stray_share: float) -> dict[str, Any]:
    """metadata.json's ``piece_cut`` (none when nothing was cut): another object's piece (its share of the
    mask and why) and the parts that stood apart from the body in another colour (``stray_share`` of it)."""
    if piece is None and not stray_share:
        return {}
    why = [piece["why"]] if piece is not None else []
    if stray_share:
        why.append(f"{stray_share:.1%} of the mask apart from the body in another colour")
    return {"piece_cut": {"share": round((piece["share"] if piece is not None else 0.0) + stray_share, 4),
                          "why": "; ".join(why)}}


def _render_member(m: Member, rgba: np.ndarray, frame: np.ndarray | None, s: Any, alpha_threshold: float,
                   buckets: list[tuple[int, int]], enhanced_image: np.ndarray | None = None,
                   cut: Sequence[Piece] = ()) -> Any:
    """The dataset image of one instance: from the frame by plain resampling (at most
    ``max_enlarge``), or from the enhance stage's enlarged crop (``enhanced_image`` when given,
    else read from ``m.enhanced_path``) where plain resampling is limited and the enhanced one
    gives the larger image; None when neither reaches the floor. ``cut``: what was already cut from
    ``rgba`` (another object's piece, parts apart: each a mask and the frame region it covers), cut
    from the enhanced crop too."""
    from animlora.curation.images import render

    kw: dict[str, Any] = {"buckets": buckets, "step": s.bucket_step, "margin": s.context_margin,
                          "max_enlarge": s.max_enlarge, "min_side": _floor(s), "background": s.background,
                          "color": tuple(s.background_color), "alpha_threshold": alpha_threshold,
                          "max_aspect": s.max_aspect, "fill_holes": s.fill_holes}
    best = render(rgba, frame, m.bbox, **kw)
    if best is not None:
        best.info.update(resample_scale=best.info["scale"], enhanced=None)
    if s.use_enhanced and m.enhanced_path and m.enhanced_region and (best is None or best.info["upscale_limited"]):
        enhanced = _render_enhanced(m, kw, enhanced_image, cut)
        if enhanced is not None and (best is None or _area(enhanced) > _area(best)):
            best = enhanced
    if best is not None:
        best.info["below_min_bucket"] = min(best.info["size"]) < s.min_bucket
    return best


def _area(r: Any) -> int:
    return int(r.info["size"][0] * r.info["size"][1])


def _render_enhanced(m: Member, kw: dict[str, Any], enhanced: np.ndarray | None = None,
                     cut: Sequence[Piece] = ()) -> Any:
    """Render from the enhanced crop (an RGBA image of the frame region, alpha aligned; read from
    ``m.enhanced_path`` unless given; each of ``cut`` cut from its alpha) as from a frame; scale and
    crop are given back in source-frame pixels."""
    from animlora.curation.images import cut_piece, render
    from animlora.io.images import read_image

    if enhanced is None:
        try:
            enhanced = read_image(m.enhanced_path or "", "RGBA")
        except BadInputError:
            return None
    assert m.enhanced_region is not None
    for mask, box in cut:
        enhanced = cut_piece(enhanced, mask, box, tuple(float(v) for v in m.enhanced_region), kw["alpha_threshold"])
    rx, ry, rw, rh = m.enhanced_region
    kx, ky = enhanced.shape[1] / rw, enhanced.shape[0] / rh
    out = render(enhanced, np.ascontiguousarray(enhanced[..., :3]), None, **kw)
    if out is None:
        return None
    cx, cy, cw, ch = out.info["crop"]
    out.info.update(
        resample_scale=out.info["scale"], scale=round(out.info["scale"] * kx, 4),
        crop=[round(rx + cx / kx, 1), round(ry + cy / ky, 1), round(cw / kx, 1), round(ch / ky, 1)],
        enhanced={"method": m.enhanced_method, "factor": m.enhanced_scale, "ssim": m.enhanced_ssim,
                  "file": m.enhanced_path},
    )
    return out


def build_character(job: StageJob, payload: dict[str, Any], sub: str, progress: Progress) -> ItemOutput:
    from animlora.backends.segmentation.cutouts import cutout_signature, signature_vector
    from animlora.curation.images import bucket_sizes
    from animlora.curation.selection import farthest_point, near_duplicates, quality_scores, simple_features
    from animlora.io.images import read_image, write_image
    from animlora.text.captions import (
        ANY,
        bare_character,
        caption_from_fields,
        compose,
        intrinsic_traits,
        lint_text,
        load_token_counter,
    )

    s = job.settings.dataset
    cs = job.settings.caption
    character, trigger = payload["character"], payload["trigger"]
    members = [Member.from_json(m) for m in payload["members"]]
    captions: dict[str, Any] = payload["captions"]
    out = job.output_dir / sub if sub else job.output_dir
    rel = (lambda p: f"{sub}/{p}" if sub else p)  # noqa: E731 - file paths relative to the stage folder
    skipped: list[dict[str, str]] = []
    buckets = bucket_sizes(s.resolution, s.bucket_step, s.min_bucket, s.max_bucket)
    min_size = int(payload.get("min_size") or s.min_size)
    if payload.get("not_character"):  # scenery or a title card (dataset/gate.py): no dataset, said why
        code = payload["not_character"].split(" (")[0]
        for m in members:
            _left(skipped, m.instance_id, code, payload["not_character"])
        return _skip(job, character, f"{payload['not_character']} — left out; name the cluster in review "
                                     "(or dataset.scenery_check: false) if it is a character",
                     0, 0, skipped, status="not character", folder=out if sub else None)

    # 1. usable instances: readable, captioned, big enough for a dataset image without enlarging
    #    past max_enlarge (checked here, so min_size and the selection count what will be written)
    usable: list[Member] = []
    feats, pictures, sharp, size, trunc = [], [], [], [], []
    embeds = payload.get("embeddings")
    props: dict[str, str] = payload.get("props") or {}  # prop tracks inside this cluster (curation/gate.py)
    pieces: dict[str, Any] = payload.get("pieces") or {}  # another object's piece in a mask, cut out (same)
    # parts of one character in one frame make one image (curation/parts.py)
    joined = joined_parts(members, set(props)) if s.join_parts else {}
    part_of = {o: p for p, others in joined.items() for o in others}
    by_id = {m.instance_id: m for m in members}
    bitten: dict[str, list[dict[str, Any]]] = payload.get("bites") or {}  # bites the segment stage took (parts.py)
    cutouts: dict[str, np.ndarray] = {}  # the joined cut-outs, by their primary's id
    enhanced_of: dict[str, np.ndarray] = {}  # ... and their enhanced crops with the union's alpha
    for i, m in enumerate(members):
        progress(i, len(members) * 2)
        if m.instance_id in props:
            _left(skipped, m.instance_id, props[m.instance_id].split(" (")[0], props[m.instance_id])
            continue
        if m.problem:
            _left(skipped, m.instance_id, MISSING, m.problem)
            continue
        if m.instance_id in part_of:
            _left(skipped, m.instance_id, JOINED, f"joined into the image of {part_of[m.instance_id]}: the same "
                                                  "character in the same frame, the matte parted it")
            continue
        cap = captions.get(m.instance_id)
        if cap is not None and not str(cap.get("text", "")).strip():
            _left(skipped, m.instance_id, EMPTY_CAPTION, "empty caption")
            continue
        try:
            if m.instance_id in joined or m.instance_id in bitten:
                others = [by_id[o] for o in joined.get(m.instance_id, [])] + bite_members(m, bitten.get(m.instance_id, []))
                m, rgba, enhanced = joined_member(m, others, cs.alpha_threshold)
                cutouts[m.instance_id] = rgba
                if enhanced is not None:
                    enhanced_of[m.instance_id] = enhanced
                if cap is not None and not cap.get("edited") and str(cap.get("source", "")).startswith("template"):
                    captions[m.instance_id] = None  # framing and view are the whole character's: made again below
            else:
                rgba, _, _ = _without_others(m, read_image(m.image_path, "RGBA"), pieces, cs.alpha_threshold,
                                             s.cut_foreign)
        except BadInputError as exc:
            _left(skipped, m.instance_id, UNREADABLE, exc.problem)
            continue
        mask = rgba[..., 3] > int(cs.alpha_threshold * 255)
        if not mask.any():
            _left(skipped, m.instance_id, TRANSPARENT, "fully transparent cut-out")
            continue
        ys, xs = np.nonzero(mask)
        w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        if m.bbox is not None:
            w, h = m.bbox[2], m.bbox[3]
        # min_side counts the character's pixels in the image the dataset crops from: the enhance
        # stage's enlargement when there is one (docs/dataset.md, "Small films")
        gain = m.enhanced_scale if (s.use_enhanced and m.enhanced_path and m.enhanced_scale) else 1.0
        if max(w, h) * gain < s.min_side:
            how = f" x{gain:g} enhanced" if gain != 1.0 else ""
            _left(skipped, m.instance_id, TOO_SMALL, f"too small ({w}x{h} px{how}, dataset.min_side {s.min_side})")
            continue
        why = _too_small(m, rgba, s, cs.alpha_threshold, buckets)
        if why:
            _left(skipped, m.instance_id, TOO_SMALL, why)
            continue
        loose = _loose_outline(m, rgba) if s.max_loose_outline < 1.0 else None
        if loose is not None and loose >= s.max_loose_outline:
            _left(skipped, m.instance_id, LOOSE_OUTLINE,
                  f"{loose:.0%} of its mask's outline runs through one colour on both sides (dataset.max_loose_outline "
                  f"{s.max_loose_outline:g}): the matte stopped inside the character, or ran on into the set")
            continue
        usable.append(m)
        sharp.append(m.sharpness if m.sharpness is not None else _sharpness(rgba, mask))
        size.append(m.area_fraction if m.area_fraction is not None else float(w * h))
        trunc.append(m.truncated)
        feats.append(simple_features(rgba, cs.alpha_threshold))
        pictures.append(signature_vector(cutout_signature(rgba, cs.alpha_threshold)))

    # 2. features, quality, duplicates, selection order
    feature_source = "simple colour+silhouette features"
    if embeds and all(m.instance_id in embeds["vectors"] for m in usable) and usable:
        feats = [np.frombuffer(embeds["vectors"][m.instance_id], dtype="<f4") for m in usable]
        feature_source = f"embeddings ({embeds['model']})"
    X = np.stack(feats) if feats else np.zeros((0, 1), np.float32)
    quality = quality_scores(sharp, size, trunc, s.truncated_penalty)
    dup = near_duplicates(X, np.stack(pictures) if pictures else np.zeros((0, 1)), quality,
                          s.duplicate_similarity, s.duplicate_distance)
    for i, twin in dup.items():
        _left(skipped, usable[i].instance_id, DUPLICATE,
              f"near-duplicate of {usable[twin].instance_id} (same character, same picture; that one is sharper "
              "or larger)")
    keep = [i for i in range(len(usable)) if i not in dup]
    candidates = len(keep)
    k = min(s.target_size, s.max_size, candidates)
    groups = [(("shot", usable[i].shot_id), ("track", usable[i].track_id), ("video", usable[i].video_id))
              for i in keep]
    groups = [[g if g[1] is not None else None for g in gs] for gs in groups]
    # a few spare picks stand in for any image that still cannot be rendered (frame unreadable)
    picks = farthest_point(X[keep], min(candidates, k + max(4, k // 10)), quality[keep], groups,
                           quality_weight=s.quality_weight, spread_penalty=s.spread_penalty)
    score_of = {usable[keep[p.index]].instance_id: p.score for p in picks}
    quality_of = {usable[i].instance_id: float(quality[i]) for i in keep}

    # 3. images, written as they are made (memory stays one image); captions once all are known
    ext = "png" if s.background == "alpha" else s.image_format
    used_stems: set[str] = set()
    rendered: list[tuple[Member, str, dict[str, Any], dict[str, Any]]] = []
    image_files: list[str] = []
    picked = [usable[keep[p.index]] for p in picks]
    for j, m in enumerate(picked):
        progress(len(members) + j, len(members) + k)
        if len(rendered) >= k:
            _left(skipped, m.instance_id, NOT_PICKED, f"not picked (dataset.target_size {s.target_size})")
            continue
        rgba = cutouts[m.instance_id] if m.instance_id in cutouts else read_image(m.image_path, "RGBA")
        cut: list[Piece] = []
        stray_share = 0.0
        if m.instance_id not in cutouts:  # (a joined image keeps its union: its parts lie apart by design)
            rgba, cut, stray_share = _without_others(m, rgba, pieces, cs.alpha_threshold, s.cut_foreign)
        frame = None
        if m.frame_path:
            try:
                frame = read_image(m.frame_path, "RGB")
            except BadInputError as exc:
                _left(skipped, m.instance_id, UNREADABLE, f"source frame unreadable ({exc.problem})")
                continue
        filled = False
        if frame is not None and s.use_deoccluded:
            frame, filled = with_filled_box(frame, m)
        cap = captions.get(m.instance_id)
        if cap is None:
            cap = {"text": "", "source": "template (dataset)", "fields": _template_fields(m, rgba, job.settings,
                                                                                      payload.get("clothed")),
                   "edited": False, "confidence": None}
        try:
            img = _render_member(m, rgba, frame, s, cs.alpha_threshold, buckets, enhanced_of.get(m.instance_id), cut)
        except ValueError as exc:
            _left(skipped, m.instance_id, UNREADABLE, str(exc))
            continue
        if img is None:
            _left(skipped, m.instance_id, TOO_SMALL, f"smaller than {_floor(s)} px (dataset.min_image_side / "
                                                     f"min_bucket) without enlarging more than {s.max_enlarge}x")
            continue
        stem = safe_name(m.stem)
        if stem in used_stems:
            stem = f"{stem}_{m.instance_id[:8]}"
        used_stems.add(stem)
        image_rel = f"images/{stem}.{ext}"
        # PNG: zlib level 1 with the "up" filter, 2.5x faster than level 3 on 1024 px RGBA,
        # ~11% larger files, the same pixels (io.images.encode_image)
        write_image(out / image_rel, img.image, png_fast=True)
        image_files.append(image_rel)
        record = _cut_record(pieces.get(m.instance_id) if m.instance_id not in cutouts else None, stray_share)
        bite = {"bite_joined": [p["id"] for p in bitten[m.instance_id]]} if m.instance_id in bitten else {}
        rendered.append((m, stem, cap, {"deoccluded": filled, "joined": joined.get(m.instance_id, []), **img.info,
                                        **record, **bite}))
    seen = {sk["instance"] for sk in skipped} | {m.instance_id for m, *_ in rendered}
    for i in keep:  # beyond the spare picks
        if usable[i].instance_id not in seen:
            _left(skipped, usable[i].instance_id, NOT_PICKED, f"not picked (dataset.target_size {s.target_size})")

    # 4. enough images? (min_size counts what is written; under small_size it is built, marked small)
    written = len(rendered)
    left_out = dict(Counter(sk["code"] for sk in skipped))
    if written < min_size:
        for f in image_files:
            (out / f).unlink(missing_ok=True)
        why = payload.get("min_size_why") or f"dataset.min_size {min_size}"
        reason = (f"only {written} images could be written ({why}); "
                  f"{len(skipped)} left out ({_counts_text(left_out)}) — {more_images(left_out)}")
        return _skip(job, character, reason, written, candidates, skipped, folder=out if sub else None)
    status = "ok" if written >= s.small_size else "small"

    # 5. captions (fields of template/VLM captions pruned of identity-intrinsic traits)
    count, how = load_token_counter(cs.tokenizer, job.settings.models)
    measured = [c["fields"] for _, _, c, _ in rendered if not c.get("edited") and c.get("fields")]
    drop = intrinsic_traits(measured, s.intrinsic_share) if s.prune_intrinsic else set()
    if bare_character(measured):  # "wearing ..." on a few of a bare animal's images: its fur in the light
        drop.add(("outfit", ANY))
    files: list[str] = []
    records: list[dict[str, Any]] = []
    for m, stem, cap, info in rendered:
        if cap.get("edited") or not cap.get("fields"):
            parts = [lint_text(cap["text"], ban_words=cs.ban_words, style_words=cs.style_words)]
            composed = compose(trigger, s.caption_prefix, parts, max_tokens=cs.max_tokens, ban_words=cs.ban_words,
                               style_words=cs.style_words, count=count)
        else:
            composed = caption_from_fields(trigger, cap["fields"], cs, prefix=s.caption_prefix, count=count, drop=drop)
        image_rel, txt_rel, cap_rel = f"images/{stem}.{ext}", f"images/{stem}.txt", f"captions/{stem}.txt"
        atomic_write_text(out / txt_rel, composed.text + "\n")
        atomic_write_text(out / cap_rel, composed.text + "\n")
        files += [rel(image_rel), rel(txt_rel), rel(cap_rel)]
        fields = cap.get("fields") or {}
        records.append({
            "file": rel(image_rel), "caption_file": rel(cap_rel), "instance_id": m.instance_id,
            "caption": composed.text, "caption_tokens": composed.tokens,
            "caption_source": cap["source"],
            "caption_edited": bool(cap.get("edited")), "caption_confidence": cap.get("confidence"),
            "framing": (fields.get("framing") or {}).get("value"), "view": (fields.get("view") or {}).get("value"),
            "video": m.video_id, "video_name": m.video_name, "timestamp": m.timestamp, "frame_index": m.frame_index,
            "frame": m.frame_id, "shot": m.shot_id, "track": m.track_id,
            "box": list(m.bbox) if m.bbox else None, "cutout": m.image_path, "mask": m.mask_path,
            "source_frame": m.frame_path,
            "score": round(score_of[m.instance_id], 5), "quality": round(quality_of[m.instance_id], 4),
            **info,
        })

    # regularisation frames: the prefix alone as caption (no trigger word)
    reg_files = _write_reg(payload.get("reg") or [], out, rel, buckets, s, count, cs)
    files += reg_files

    # 6. trainer formats + metadata
    files += _write_formats(out, rel, character, trigger, records, bool(reg_files), job)
    scales = sorted(r["scale"] for r in records)
    coverage = {
        "shots": len({r["shot"] for r in records if r["shot"]}),
        "tracks": len({r["track"] for r in records if r["track"]}),
        "videos": len({r["video"] for r in records if r["video"]}),
        "candidate_shots": len({usable[i].shot_id for i in keep if usable[i].shot_id}),
    }
    meta = {
        "character": character, "trigger": trigger, "count": len(records), "candidates": candidates,
        "status": status, "members": len(members),
        "folder": sub or ".", "selection": {"features": feature_source, "target_size": s.target_size},
        "captions": {"prefix": s.caption_prefix, "token_count": how,
                     "pruned_traits": sorted(f"{a}:{b}" for a, b in drop)},
        "images_settings": {"resolution": s.resolution, "background": s.background, "max_enlarge": s.max_enlarge,
                            "min_bucket": s.min_bucket, "min_image_side": s.min_image_side,
                            "flip_aug": s.flip_aug, "color_aug": s.color_aug},
        "enlargement": {"max": scales[-1], "median": scales[len(scales) // 2],
                        "resample_max": max(r["resample_scale"] for r in records),
                        "enhanced": sum(1 for r in records if r["enhanced"]),
                        "below_min_bucket": sum(1 for r in records if r["below_min_bucket"]),
                        "limited": sum(1 for r in records if r["upscale_limited"]),
                        "padded": sum(1 for r in records if r["padded"])},
        "pieces_cut": sum(1 for r in records if r.get("piece_cut")),  # another object's piece (curation/gate.py)
        "coverage": coverage, "images": records, "left_out_counts": left_out, "skipped": skipped,
        "distribution": {
            "framing": dict(Counter(r["framing"] or "unknown" for r in records)),
            "view": dict(Counter(r["view"] or "unknown" for r in records)),
        },
    }
    atomic_write_json(out / METADATA, meta)
    files.append(rel(METADATA))
    progress(1, 1)
    return ItemOutput(files=tuple(files), data={"images": records, "skipped": skipped, "status": status})


def _skip(job: StageJob, character: str, reason: str, written: int, candidates: int,
          skipped: list[dict[str, str]], status: str = "no dataset", folder: Path | None = None) -> ItemOutput:
    """A character without a dataset: its marker (reason, what was left out) for the ending; its
    folder goes when nothing is left in it (an earlier run's dataset, now without files)."""
    if folder is not None and folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    marker = f".skipped/{safe_name(character)}.json"
    atomic_write_json(job.output_dir / marker, {
        "character": character, "status": status, "reason": reason, "images": written, "candidates": candidates,
        "left_out_counts": dict(Counter(sk["code"] for sk in skipped)), "left_out": skipped})
    return ItemOutput(files=(marker,), data={"skipped_character": reason})


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {code}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def _write_reg(frames: list[str], out: Path, rel: Any, buckets: list[tuple[int, int]], s: Any, count: Any,
               cs: Any) -> list[str]:
    """Whole frames in a bucket (the largest centred crop of the bucket's shape), enlarged no more
    than ``max_enlarge`` either."""
    import cv2

    from animlora.curation.images import plan_crop
    from animlora.io.images import read_image, write_image
    from animlora.text.captions import compose

    files = []
    text = compose("", s.caption_prefix, [], max_tokens=cs.max_tokens, style_words=cs.style_words, count=count).text
    for path in frames:
        try:
            frame = read_image(path, "RGB")
        except BadInputError:
            continue
        h, w = frame.shape[:2]
        plan = plan_crop((0.0, 0.0, float(w), float(h)), (w, h), buckets=buckets, step=s.bucket_step, margin=0.0,
                         max_enlarge=s.max_enlarge, min_side=s.min_bucket, max_aspect=s.max_aspect)
        if plan is None:
            continue
        x0, y0, cw, ch = (int(round(v)) for v in plan.crop)
        crop = frame[max(0, y0) : y0 + ch, max(0, x0) : x0 + cw]
        interp = cv2.INTER_AREA if plan.scale < 1 else cv2.INTER_CUBIC
        stem = safe_name(Path(path).stem)
        write_image(out / f"reg/{stem}.png", cv2.resize(crop, plan.size, interpolation=interp), png_fast=True)
        atomic_write_text(out / f"reg/{stem}.txt", text + "\n")
        files += [rel(f"reg/{stem}.png"), rel(f"reg/{stem}.txt")]
    return files


def _general(s: Any) -> dict[str, Any]:
    return {"caption_extension": ".txt", "shuffle_caption": s.shuffle_caption, "keep_tokens": s.keep_tokens,
            "flip_aug": s.flip_aug, "color_aug": s.color_aug}


def _dataset_level(s: Any, seed: int) -> dict[str, Any]:
    d: dict[str, Any] = {"resolution": s.resolution, "batch_size": 1, "enable_bucket": True, "bucket_no_upscale": True,
                         "min_bucket_reso": s.min_bucket, "max_bucket_reso": s.max_bucket,
                         "bucket_reso_steps": s.bucket_step}
    if s.validation_split > 0:
        d["validation_split"] = float(s.validation_split)
        d["validation_seed"] = int(seed)
    return d


def _write_formats(out: Path, rel: Any, character: str, trigger: str, records: list[dict[str, Any]], has_reg: bool,
                   job: StageJob) -> list[str]:
    from animlora.curation import formats

    s = job.settings.dataset
    files = []
    root = out.resolve()
    alpha = s.background == "alpha"
    subset: dict[str, Any] = {"image_dir": str(root / "images"), "num_repeats": s.base_repeats}
    if alpha:
        subset["alpha_mask"] = True
    subsets = [subset]
    if has_reg:
        subsets.append({"image_dir": str(root / "reg"), "num_repeats": 1, "is_reg": True})
    comment = (f"sd-scripts dataset config for {character} (trigger word: {trigger}), written by animlora.\n"
               f"train_network.py --dataset_config {root / 'dataset.toml'} ...")
    atomic_write_text(out / "dataset.toml", formats.sd_scripts_toml(
        _general(s), [{**_dataset_level(s, job.settings.project.seed), "subsets": subsets}], comment))
    ft_subset: dict[str, Any] = {"metadata_file": str(root / "metadata.jsonl"), "image_dir": str(root / "images"),
                                 "num_repeats": s.base_repeats}
    if alpha:
        ft_subset["alpha_mask"] = True
    general_ft = {k: v for k, v in _general(s).items() if k != "caption_extension"}
    atomic_write_text(out / "dataset_finetune.toml", formats.sd_scripts_toml(
        general_ft, [{**_dataset_level(s, job.settings.project.seed), "subsets": [ft_subset]}],
        f"sd-scripts fine-tuning style config for {character}: captions from metadata.jsonl"))
    atomic_write_text(out / "metadata.jsonl", formats.jsonl([
        {"image_path": Path(r["file"]).name, "caption": r["caption"], "image_size": r["size"]} for r in records]))
    files += [rel("dataset.toml"), rel("dataset_finetune.toml"), rel("metadata.jsonl")]
    if s.kohya_layout:
        folder = f"kohya/{formats.kohya_folder(s.base_repeats, trigger)}"
        for r in records:
            image = out / "images" / Path(r["file"]).name
            for src in (image, image.with_suffix(".txt")):
                link_or_copy(src, out / folder / src.name)
                files.append(rel(f"{folder}/{src.name}"))
    return files


def read_character_reports(output_dir: Path, standalone: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metadata.json of every built character, and the characters skipped."""
    built: dict[str, Any] = {}
    paths = [output_dir / METADATA] if standalone else sorted(output_dir.glob(f"*/{METADATA}"))
    for path in paths:
        if path.is_file():
            meta = json.loads(path.read_text(encoding="utf-8"))
            meta["path"] = str(path.parent)
            built[meta["character"]] = meta
    skipped = []
    for path in sorted((output_dir / ".skipped").glob("*.json")):
        info = json.loads(path.read_text(encoding="utf-8"))
        if info["character"] not in built:
            skipped.append({"character": info["character"], "reason": info["reason"],
                            "status": info.get("status", "no dataset"),
                            "images": info.get("images", 0), "candidates": info.get("candidates", 0),
                            "left_out_counts": info.get("left_out_counts", {}), "left_out": info.get("left_out", [])})
    return built, skipped


def combined_config(output_dir: Path, built: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Project-level files for training several characters together: one sd-scripts dataset with a
    subset per character, repeats balanced; optionally the ``{repeats}_{name}`` folders."""
    from animlora.curation import formats

    s = settings.dataset
    counts = {name: meta["count"] for name, meta in built.items()}
    repeats = formats.balanced_repeats(counts, s.base_repeats)
    subsets = []
    for name, meta in sorted(built.items()):
        sub: dict[str, Any] = {"image_dir": str(Path(meta["path"]).resolve() / "images"), "num_repeats": repeats[name]}
        if meta["images_settings"]["background"] == "alpha":
            sub["alpha_mask"] = True
        subsets.append(sub)
    atomic_write_text(output_dir / "dataset_all.toml", formats.sd_scripts_toml(
        _general(s), [{**_dataset_level(s, settings.project.seed), "subsets": subsets}],
        "every character in one dataset; num_repeats balance the characters"))
    if s.kohya_layout:
        # rebuilt whole: finish writes it unrecorded, so a character gone or renumbered (or a
        # repeats change) would leave its old links there, trained under an old trigger word
        import shutil

        shutil.rmtree(output_dir / "kohya_all", ignore_errors=True)
        for name, meta in built.items():
            folder = output_dir / "kohya_all" / formats.kohya_folder(repeats[name], meta["trigger"])
            for r in meta["images"]:
                image = output_dir / r["file"]
                for src in (image, image.with_suffix(".txt")):
                    if src.is_file():
                        link_or_copy(src, folder / src.name)
    return {"file": "dataset_all.toml", "repeats": repeats}
