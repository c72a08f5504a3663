"""What a character must have before its dataset is written: enough images (``min_size``,
adapted to the footage by ``auto``) and being a character at all (a cluster of scenery or title
cards is left out with reason ``not_character:<why>``).

Both are decided in the stage's ``plan()`` with the whole project at hand and travel in the work
item's payload, so a change to them redoes the item. Thresholds and the measurements behind them:
docs/dataset.md ("How many images", "Not a character").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

# -- min_size: auto ------------------------------------------------------------------------------
AUTO = "auto"
AUTO_FLOOR = 4  # a short film (cgi-bench: 14 shots) still gets a dataset for a character seen in 3-4 shots
AUTO_CAP = 8  # 32 shots and more: the minimum a feature film always had
SHOTS_PER_IMAGE = 4  # one image of minimum per this many shots in the project


def resolve_min_size(setting: int | str, shots: int | None) -> tuple[int, str]:
    """(the minimum of images a dataset needs, how it was chosen). An explicit number is used as
    it is; ``auto`` is ceil(shots / 4) kept between 4 and 8, or 8 when the footage's shots are
    unknown (a folder of cut-outs)."""
    if setting != AUTO:
        return int(setting), f"dataset.min_size {int(setting)} (set)"
    if not shots:
        return AUTO_CAP, f"dataset.min_size auto = {AUTO_CAP} (no shots known: the full-film value)"
    value = min(AUTO_CAP, max(AUTO_FLOOR, math.ceil(shots / SHOTS_PER_IMAGE)))
    return value, (f"dataset.min_size auto = {value} ({shots} shots in the project: one image per "
                   f"{SHOTS_PER_IMAGE} shots, kept between {AUTO_FLOOR} and {AUTO_CAP})")


# -- is this a character? --------------------------------------------------------------------------
# An instance is still when this share of its pixels is unchanged relative to the set in the
# registered neighbouring frames (segment's ``static``). Stricter than prefilter.max_static (0.7):
# moving characters measure 0.6-0.85 in many frames (seed 2's robot: 5 of 7 at >= 0.7).
STILL_STATIC = 0.9
# A cluster is scenery when at least this share of its instances (with a known ``static``) is
# still. Measured: scenery clusters 0.67-0.87 (seeds 2, 3); character clusters <= 0.44 (seeds 2, 3)
# and <= 0.23 (the whole film's seven clusters).
SCENERY_SHARE = 0.6
MIN_KNOWN = 3  # fewer instances with a known static: no evidence, the cluster stays a character
# Still in this many shots at least: within one shot an idle character is as still as a prop (the
# demo clip's one static-camera shot: Buck waking slowly, 7 of 10 instances still, beside a rock
# cluster 3 of 4); the seeds' scenery clusters are still in 8, 2 and 2 shots.
MIN_STILL_SHOTS = 2
TEXT_SCORE = 0.5  # segment's text score of title-card text (prefilter.max_text)
AUTO_NAME = re.compile(r"character_\d+")  # the cluster stage's name for an unnamed cluster


def trusted(character: str) -> bool:
    """A cluster someone named (in review, or by ``characters/<name>.yaml`` references) is a
    character whatever its motion: an idle hero who never moves keeps their dataset."""
    return AUTO_NAME.fullmatch(character) is None


def not_character(measures: Iterable[dict[str, Any] | None], text_score: float = TEXT_SCORE,
                  shots: Iterable[str | None] | None = None) -> str:
    """Why a cluster (its instances' segment measures; ``shots``: each instance's shot, in the
    same order) is not a character, as ``not_character:<why> (evidence)``; "" when it is one or
    nothing tells. Stillness counts only when seen in ``MIN_STILL_SHOTS`` shots or more (when
    the shots are known)."""
    measures = list(measures)
    shot_of = list(shots) if shots is not None else [None] * len(measures)
    known = [m for m in measures if m]
    texts = [float(m["text"]) for m in known if m.get("text") is not None]
    if texts and sorted(texts)[len(texts) // 2] >= text_score:
        many = sum(t >= text_score for t in texts)
        return f"not_character:text ({many} of {len(texts)} instances read as text)"
    statics = [float(m["static"]) for m in known if m.get("static") is not None]
    if len(statics) < MIN_KNOWN:
        return ""
    still = sum(s >= STILL_STATIC for s in statics)
    still_shots = {shot for m, shot in zip(measures, shot_of, strict=True)
                   if m and m.get("static") is not None and float(m["static"]) >= STILL_STATIC and shot is not None}
    if shots is not None and len(still_shots) < MIN_STILL_SHOTS:
        return ""
    if still >= SCENERY_SHARE * len(statics):
        return (f"not_character:still ({still} of {len(statics)} instances unchanged relative to the set, "
                f"share >= {SCENERY_SHARE}: scenery does not move or deform; a character does somewhere)")
    return ""


def parse_measures(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
