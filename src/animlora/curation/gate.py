"""What a character must have before its dataset is written: enough images (``min_size``,
adapted to the footage by ``auto``), being a character at all (a cluster of scenery or title
cards is left out with reason ``not_character:<why>``), and no prop tracks among its instances (a
track still in most of its frames, filled flat like a prop and at the rim of its cluster is left out
with reason ``not_character:prop``).

Both are decided in the stage's ``plan()`` with the whole project at hand and travel in the work
item's payload, so a change to them redoes the item. Thresholds and the measurements behind them:
docs/dataset.md ("How many images", "Not a character").
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# -- min_size: auto ------------------------------------------------------------------------------
AUTO = "auto"
AUTO_FLOOR = 4  # a short film (cgi-bench: 14 shots) still gets a dataset for a character seen in 3-4 shots
AUTO_CAP = 8  # 43 shots and more: the minimum a feature film always had
SHOTS_PER_IMAGE = 6  # one image of minimum per this many shots in the project


def resolve_min_size(setting: int | str, shots: int | None) -> tuple[int, str]:
    """(the minimum of images a dataset needs, how it was chosen). An explicit number is used as
    it is; ``auto`` is ceil(shots / 6) kept between 4 and 8, or 8 when the footage's shots are
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
# characters acting in a medium shot change only where they act (cgi-bench seed 6: the green boy
# waving, looking and turning at 0.95-0.97 in three shots); still scenery measures 0.995-1.0 (130
# of the 145 scenery instances >= 0.9 on seeds 2, 3, 4 and 6).
STILL_STATIC = 0.97
# A cluster is scenery when more than this share of its shots is still (a shot is still when more
# than half its instances with a known ``static`` are: one majority rule at both levels): counted
# per shot, as one idle shot is one piece of evidence however many frames it was sampled in (seed
# 4: the robot idle through a close shot, 10 of its 18 instances, moving in two others). Measured
# on seeds 2, 3, 4, 6 and the whole film: scenery clusters 0.57 (seed 6's trees swaying in three
# of their seven shots), 0.67 and 0.78 of their shots; character clusters <= 0.5 (seed 6's bunny
# idle in two of four shots; the others <= 0.25, the film 0). Until session 51 the share was "at
# least 0.6", and seed 6's trees were written as a folder.
SCENERY_SHARE = 0.5
MIN_KNOWN = 3  # fewer instances with a known static: no evidence, the cluster stays a character
# Still in this many shots at least: within one shot an idle character is as still as a prop (the
# demo clip's one static-camera shot: Buck waking slowly, 7 of 10 instances still, beside a rock
# cluster 3 of 4); the seeds' scenery clusters are still in 7 and 2 shots.
MIN_STILL_SHOTS = 2
TEXT_SCORE = 0.5  # segment's text score of title-card text (prefilter.max_text)
AUTO_NAME = re.compile(r"character_\d+")  # the cluster stage's name for an unnamed cluster


def trusted(character: str) -> bool:
    """A cluster someone named (in review, or by ``characters/<name>.yaml`` references) is a
    character whatever its motion: an idle hero who never moves keeps their dataset."""
    return AUTO_NAME.fullmatch(character) is None


class Stillness(NamedTuple):
    """A cluster's motion evidence (:func:`stillness`)."""

    still_shots: int  # shots where more than half the instances with a known ``static`` are still
    shots: int  # shots with an instance with a known ``static`` (instances, when the shots are unknown)
    still: int  # instances with ``static`` >= ``STILL_STATIC``
    instances: int  # instances with a known ``static`` (colour-split pieces left out)


def stillness(measures: Sequence[dict[str, Any] | None], shots: Sequence[str | None] | None = None) -> Stillness:
    """The scenery check's evidence from a cluster's instances' segment measures (``shots``: each
    instance's shot, in the same order; unknown: every instance a shot of its own). A piece of a
    colour split (segment's ``colour_split``: cut out of a mask it shared with a moving
    character) is no evidence either way: its pixels were overlapped by that character, whose
    motion over them in the neighbouring frames reads as the piece's own (seed 2: two pieces of a
    tree cut off the walking blue boy at 0.39 and 0.65 took the trees' cluster from 5 of 7 still
    to 5 of 9, under ``SCENERY_SHARE``)."""
    shot_of = list(shots) if shots is not None else [None] * len(measures)
    by_shot: dict[str, list[bool]] = {}
    for k, (m, shot) in enumerate(zip(measures, shot_of, strict=True)):
        if m and m.get("static") is not None and not m.get("colour_split"):
            by_shot.setdefault(shot if shot is not None else f"#{k}", []).append(float(m["static"]) >= STILL_STATIC)
    return Stillness(sum(2 * sum(votes) > len(votes) for votes in by_shot.values()), len(by_shot),
                     sum(map(sum, by_shot.values())), sum(map(len, by_shot.values())))


def not_character(measures: Iterable[dict[str, Any] | None], text_score: float = TEXT_SCORE,
                  shots: Iterable[str | None] | None = None) -> str:
    """Why a cluster (its instances' segment measures; ``shots``: each instance's shot, in the
    same order) is not a character, as ``not_character:<why> (evidence)``; "" when it is one or
    nothing tells. Stillness (:func:`stillness`) is judged per shot: more than ``SCENERY_SHARE``
    of the shots with a known ``static`` still, ``MIN_STILL_SHOTS`` of them at least (with the shots
    unknown, every instance is a shot of its own and one suffices)."""
    measures = list(measures)
    known = [m for m in measures if m]
    texts = [float(m["text"]) for m in known if m.get("text") is not None]
    if texts and sorted(texts)[len(texts) // 2] >= text_score:
        many = sum(t >= text_score for t in texts)
        return f"not_character:text ({many} of {len(texts)} instances read as text)"
    shot_of = list(shots) if shots is not None else None
    seen = stillness(measures, shot_of)
    if seen.instances < MIN_KNOWN or (shot_of is not None and seen.still_shots < MIN_STILL_SHOTS):
        return ""
    if seen.still_shots > SCENERY_SHARE * seen.shots:
        unit = "shots" if shot_of is not None else "instances"
        return (f"not_character:still (still in {seen.still_shots} of {seen.shots} {unit}, {seen.still} of "
                f"{seen.instances} instances unchanged relative to the set, share > {SCENERY_SHARE}: scenery "
                f"does not move or deform; a character does somewhere)")
    return ""


# -- a prop track inside a character's cluster ------------------------------------------------------
# A cluster can be a character and still hold a track of scenery (the whole film: three stakes and a
# rock in Gimera's cluster, tracks s70_t0 and s74_t0). Stillness alone does not tell it from a
# character standing idle, so three things must agree (docs/dataset.md, "A prop inside a cluster"):
# 1. still in most of its frames: this share of the track's instances with a known ``static`` (every
#    instance of the track the segment stage found, prefilter rejects included: a rock's duplicates
#    are evidence too) is still at ``prefilter.max_static``. "Every frame" (the cluster stage's
#    still-track rule, identity/still.py) misses a prop seen once while the camera starts to move
#    (a stake at 0.54) or once with a rodent on it (the rock at 0.69);
PROP_STILL_SHARE = 0.75  # film props 0.75 (rock), 0.80 (stakes)
MIN_TRACK_KNOWN = 2  # fewer known instances: no evidence
# 2. filled flat like a prop: the median ``flat`` of its instances (segment: share of the eroded mask
#    within 12 levels of its median colour). Film props 0.50 and 0.53, seed 3's grey rock 0.43; every
#    other track of a film cluster still in most frames 0.12-0.37 (Buck, Frank, Gimera idle), of a
#    seed's character cluster 0.03-0.25. Off where flat fills are how characters are drawn (the 2D
#    profile, ``prefilter.max_flat`` > 1);
PROP_FLAT = 0.40
# 3. at the rim of its cluster: its pooled embedding is farther from the cluster's other tracks than
#    they typically are from each other (RIM x their median nearest-track distance; 3 tracks at
#    least). Film props 1.92x and 1.72x; idle character tracks 0.24-1.60x, so this alone does not
#    separate: it guards test 2 against a flat-painted character idle in a shot (seed 2's robot, in
#    no cluster: 2 of 2 still, flat 0.49), which sits among its own other views.
PROP_RIM = 1.25
MIN_TRACKS = 3
# A track the segment stage could not measure at all (no instance with a known ``static``: a whip pan
# whose sampled frames do not register) has no motion evidence either way. It is a prop when 2. holds
# and it sits farther out still: this many times the typical distance. Seed 3's grey rock (one
# instance, first frame of the whip shot, in the bunny's cluster): flat 0.43, 2.23x; every such track
# of a dataset on the film 0.09-0.36 flat and 0.20-1.89x, on the seeds 0.02-0.33 and 0.56-1.14x; the
# seeds' moving flat character tracks (the bunny's close-up 0.52, the robot 0.49) reach 1.88x.
UNMEASURED_RIM = 2.0
# A track never seen to move (every known instance still at ``STILL_STATIC``, this many at least) is a prop
# whatever its fill when it sits as far out as that: leaves and grass are not filled flat (cgi-bench seed 6: a
# tree crown still in all 8 frames of a pan, flat 0.13, 2.79x out in the green boy's cluster). Characters'
# tracks still in every frame sit 0.63-1.34x out on seeds 3 and 6 (the film's still in most frames 0.24-1.60x).
STILL_TRACK_FRAMES = 3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _pooled(members: Sequence[tuple[str, str]], vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """key -> the unit mean of its members' unit vectors (members without a vector left out)."""
    pooled: dict[str, list[np.ndarray]] = {}
    for iid, key in members:
        if iid in vectors:
            pooled.setdefault(key, []).append(_unit(np.asarray(vectors[iid], np.float64)))
    return {key: _unit(np.mean(v, 0)) for key, v in pooled.items()}


def track_rim(members: Sequence[tuple[str, str]], vectors: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """track -> (its distance to the nearest other track of the cluster, the median of that distance
    over the cluster's other tracks); tracks pooled from their members' unit vectors."""
    pooled = _pooled(members, vectors)
    names = sorted(pooled)
    if len(names) < MIN_TRACKS:
        return {}
    x = np.stack([pooled[t] for t in names])
    d = 1.0 - x @ x.T
    np.fill_diagonal(d, np.inf)
    nearest = d.min(1)
    return {t: (float(nearest[k]), float(np.median(np.delete(nearest, k)))) for k, t in enumerate(names)}


def rows_by_track(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Instance rows grouped by track id, in their order (rows without a track left out)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("track_id"):
            out.setdefault(row["track_id"], []).append(row)
    return out


def track_parts(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Instance id -> the unit :func:`prop_tracks` judges it in: its track, or ``<track>#<k>``, the
    k-th part of a track whose boxes jump between two sampled frames (``identity.tracks.jump_cuts``:
    overlapping under 0.3 with twice the area or more: the tracker carried it from one thing onto
    another). cgi-bench seed 6: a rock in f419 and the blue boy in front of it in f430 are one
    track of a whip pan; pooled with him the rock sits 1.86x the blue boy's cluster's typical
    distance from its other tracks, on its own 3.29x. ``rows``: instance rows (id, track_id,
    frame_id, bbox); an instance without a track is left out."""
    from animlora.identity.geometry import parse_box
    from animlora.identity.tracks import jump_cuts

    out: dict[str, str] = {}
    for track, members in rows_by_track(rows).items():
        parts = jump_cuts(range(len(members)), [m.get("frame_id") for m in members],
                          [parse_box(m.get("bbox")) for m in members])
        for k, part in enumerate(parts):
            out.update({members[i]["id"]: track if len(parts) == 1 else f"{track}#{k}" for i in part})
    return out


def prop_tracks(members: Sequence[tuple[str, str | None]], track_measures: Mapping[str, Sequence[dict[str, Any] | None]],
                vectors: Mapping[str, np.ndarray] | None, max_static: float, flat_check: bool = True,
                parts: Mapping[str, str] | None = None) -> dict[str, str]:
    """The members of one cluster that belong to a prop track, as instance id ->
    ``not_character:prop (evidence)``. ``members``: (instance id, track id) of the cluster;
    ``track_measures``: track id -> the segment measures of *every* instance of that track (and
    part id -> those of the part, for ``parts``); ``vectors``: instance id -> embedding (the
    cluster's members); ``parts``: instance id -> its part of a track the tracker carried from
    one thing onto another (:func:`track_parts`): each such part is judged too, as a track of its
    own, against the cluster's other tracks (the typical distance still that of whole tracks).
    A track with no known ``static`` at all is judged on tests 2 and 3 alone, 3 at
    ``UNMEASURED_RIM``; one still at ``STILL_STATIC`` in every known instance (``STILL_TRACK_FRAMES`` at
    least) on test 3 alone, at ``UNMEASURED_RIM``. Nothing is flagged without embeddings, with fewer
    than 3 tracks, or with ``flat_check`` off (2D)."""
    if not flat_check or not vectors:
        return {}
    tracked = [(iid, track) for iid, track in members if track]
    rim = track_rim(tracked, vectors)
    if not rim:
        return {}
    split = [(iid, parts[iid]) for iid, track in tracked if parts and parts.get(iid, track) != track]
    track_of = dict(tracked)
    part_track = {part: track_of[iid] for iid, part in split}
    members_of: dict[str, list[str]] = {}  # unit (track or part) -> its instances
    for iid, unit in tracked + split:
        members_of.setdefault(unit, []).append(iid)
    units: dict[str, tuple[float, float]] = dict(rim)  # unit (track or part) -> (nearest, typical)
    if split:
        whole = _pooled(tracked, vectors)
        for part, x in _pooled(split, vectors).items():
            track = part_track[part]
            others = [v for t, v in whole.items() if t != track]
            units[part] = (float(min(1.0 - others_x @ x for others_x in others)), rim[track][1])
    out: dict[str, str] = {}
    for unit, (nearest, typical) in sorted(units.items()):
        measured = [m for m in track_measures.get(unit, ()) if m]
        known = [m for m in measured if m.get("static") is not None]
        ratio = nearest / max(typical, 1e-12)
        if known:
            if len(known) < MIN_TRACK_KNOWN:
                continue
            if len(known) >= STILL_TRACK_FRAMES and ratio >= UNMEASURED_RIM and all(
                    float(m["static"]) >= STILL_STATIC for m in known):  # never seen to move: whatever its fill
                evidence = f"all {len(known)} instances unchanged relative to the set"
            else:
                still = sum(float(m["static"]) >= max_static for m in known)
                flat = float(np.median([float(m.get("flat") or 0.0) for m in known]))
                if still < PROP_STILL_SHARE * len(known) or flat < PROP_FLAT or nearest <= PROP_RIM * typical:
                    continue
                evidence = (f"{still} of {len(known)} instances unchanged relative to the set, "
                            f"flat fill {flat:.2f} >= {PROP_FLAT}")
        else:  # never measured: no motion evidence, so the appearance must say more
            if not measured:
                continue
            flat = float(np.median([float(m.get("flat") or 0.0) for m in measured]))
            if flat < PROP_FLAT or ratio < UNMEASURED_RIM:
                continue
            evidence = f"motion never measured in its {len(measured)} instance(s), flat fill {flat:.2f} >= {PROP_FLAT}"
        why = (f"not_character:prop (track {unit}: {evidence}, {ratio:.2f}x the cluster's typical distance from "
               "its other tracks: a prop, not this character)")
        out.update({iid: why for iid in members_of[unit] if iid not in out})
    return out


# -- a lone frame of a track whose other frames are another character -------------------------------------
# Identity is over tracks: one track is one character. The cluster stage still parts a track whose
# members look like two things (``identity.tracks.split_tracks``), which is right where the tracker
# slipped, and wrong where one frame of a character only looks different: a head alone at the
# frame's edge, a piece of a face (cgi-bench seed 4: the green boy's head in f74 and the fox's face
# in f299 land in the bunny's cluster, while the 3 and 2 other frames of their tracks are in the
# green boy's and the fox's). A member that is the only frame of its track in its cluster, while
# TRACK_OTHERS or more other frames of that track are in one other character's cluster, is not surely
# its cluster's character; it is left out (``not_one_character:track``). Two frames or more together
# are a part of the track in their own right (a slip the tracker made for a while): they stay. Units
# are :func:`track_parts`' (a track whose boxes jump is two things already). A frame of the track
# the clustering left in its noise witnesses the character of the cluster nearest it (the cluster
# stage's own measure): seed 6's green boy, his head alone at the frame's edge in f273 (his shirt
# joined another character's mask) in the fox's cluster, his head and shirt in f277 and f281 in the
# noise, nearest another cluster than the fox's. A noise frame nearest the lone frame's own cluster
# (a blurred view of the same character) keeps it.
TRACK_OTHERS = 2
TRACK_REASON = "not_one_character:track"


def track_strays(units: Mapping[str, str], characters: Mapping[str, str],
                 wanted: Iterable[str] | None = None, nearest: Mapping[str, str] | None = None) -> dict[str, str]:
    """Members that are a lone frame of a track whose other frames are another character, as
    instance id -> ``not_one_character:track (evidence)``. ``units``: instance id -> its track or
    track part (:func:`track_parts`); ``characters``: instance id -> its character (cluster) for every
    clustered instance (scenery clusters left out: they witness nothing); ``wanted``: only these are
    judged (all when None); ``nearest``: instance id -> the character nearest it, for the noise
    (those of scenery clusters left out)."""
    judged = None if wanted is None else set(wanted)
    by_unit: dict[str, Counter[str]] = {}
    loose: dict[str, Counter[str]] = {}  # the noise frames among them
    for iid, unit in units.items():
        if iid in characters:
            by_unit.setdefault(unit, Counter())[characters[iid]] += 1
        elif nearest and iid in nearest:
            by_unit.setdefault(unit, Counter())[nearest[iid]] += 1
            loose.setdefault(unit, Counter())[nearest[iid]] += 1
    out: dict[str, str] = {}
    for iid, unit in sorted(units.items()):
        character = characters.get(iid)
        if character is None or (judged is not None and iid not in judged):
            continue
        seen = by_unit[unit]
        if seen[character] != 1:
            continue
        other, count = max(((c, n) for c, n in seen.items() if c != character), key=lambda cn: (cn[1], cn[0]),
                           default=(None, 0))
        if other is not None and count >= TRACK_OTHERS:
            noise = loose.get(unit, Counter())[other]
            whose = f"are {other}'s" + (f" ({noise} in no character, nearest {other})" if noise else "")
            out[iid] = (f"{TRACK_REASON} (the only frame of track {unit} in {character}; {count} of its other frames "
                        f"{whose}: one track is one character, so this is not surely {character})")
    return out


# -- the set cut off a character ----------------------------------------------------------------------
# Where segment's refine pass cut a mask along what the shot's other frames show as the set, the piece
# it cut off stays an instance of its own (measures ``cut_from_prop: false``; the side kept as the
# character says ``true``): by the segment stage's own evidence that piece is the set, not a
# character. It still reaches a character's cluster when it touches the character (no cannot-link)
# and looks like it: the whole film, a rock Buck leans on (3 images in a Buck folder, track s5_t1,
# still in 7 of 7 frames, flat 0.29, 1.11x out: no prop-track test tells it from an idle character)
# and two slivers of Buck's ear and shoulder. Of the 23 such pieces on the film and 11 on cgi-bench
# seed 2, none is a whole character: seed 2's are 9 set pieces, a fragment of the green boy and the
# fox's head cut from its body.
PIECE_REASON = ("not_character:prop (segment cut this piece off a character as the set seen in the shot's "
                "other frames)")


def prop_pieces(rows: Iterable[Mapping[str, Any]], wanted: Iterable[str] | None = None) -> dict[str, str]:
    """The set pieces segment cut off characters, as instance id -> reason; ``rows`` as for
    :func:`group_members` (``measures`` parsed or JSON), ``wanted``: only these ids (all when None)."""
    judged = None if wanted is None else set(wanted)
    out: dict[str, str] = {}
    for row in rows:
        if judged is not None and row["id"] not in judged:
            continue
        measures = row_measures(row)
        if measures.get("cut_from_prop") is False:
            out[row["id"]] = PIECE_REASON
    return out


def parse_measures(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def row_measures(row: Mapping[str, Any]) -> dict[str, Any]:
    """An instance row's segment measures, whether the row carries them parsed or as JSON ({} when none)."""
    measures = row.get("measures")
    if isinstance(measures, str) or measures is None:
        measures = parse_measures(measures)
    return measures or {}


# -- two or more characters in one mask ------------------------------------------------------------
# The matte joins characters that touch into one mask (the whole film: Frank and Rinky on a branch,
# three rodents in a huddle), and when their colours are close the segment stage's colour split
# (refine.py, step 4b) cannot cut them apart. The shot still tells: in some frame the track is seen
# on its own beside a partner (two moving instances, close), and in this frame the partner's track
# is gone while this track's mask has grown over the place where the partner stood. Such a member
# is left out with reason ``not_one_character:group`` (docs/segmentation.md, "Two characters in one
# mask"); a mask the segment stage marked ``mixed`` (two colour models it could not cut) too.
GROUP_GROW = 1.55  # the mask this many times the area of its track seen alone (film groups 1.6-4.2x; seed 2's
#                    clean green boy 1.49 and seed 3's clean bunny 1.43 were flagged at 1.25: docs/segmentation.md)
GROUP_PARTNER = 0.25  # the partner at least this share of the track's area (not a speck, a leaf)
GROUP_NEAR = 0.15  # partner's box within this x sqrt(the track's box area) of the track's box
GROUP_SUM = 0.5  # the mask at least the track's area plus this share of the partner's
GROUP_COVER = 0.5  # the mask's box covers this share of the partner's box in the reference frame
# When the partner is known to be another character (a member of another cluster than this mask's),
# the evidence is stronger and two rules relax: the mask need only be this many times the track's
# area alone (the film's shot 35: Frank and Rinky in one mask at 1.34-1.53x the track's lone area,
# beside Rinky clustered as Rinky), and the track seen alone may be idle (segment's ``prop``: Frank
# idle beside Rinky in shot 29). Without that knowledge a still piece of the same character passes
# for a partner (film shot 23: Buck's body beside his head, both in Buck's cluster; seed 3's bunny).
GROUP_GROW_KNOWN = 1.3
# ... and the partner, a member of another cluster, is no speck or leaf: a smaller one counts (the film's
# shot 23: Frank, 0.21-0.24 of the area of whole Buck beside him, sits on his head later in the shot; the
# rule saw it only while the segment stage had bitten Buck's body, which made Frank 0.25 of what was left)
GROUP_PARTNER_KNOWN = 0.15
# ... and it may stand a little farther off in the frame that shows the two apart (cgi-bench seed 5,
# shot 3: the blue boy, clustered as himself, 22 px from the bunny where GROUP_NEAR allows 21.6; in
# the frames before, the two and a house behind them are one mask in the bunny's folder; seed 2's
# f205, the robot and the fox in one mask, likewise). On seeds 2-6, the film and the trailer, 0.35
# takes these two and no other member.
GROUP_NEAR_KNOWN = 0.25
# The other way round: the mask is clustered as the partner's character, while its track's object seen
# alone is not (in no cluster or another) and is no speck beside the partner (GROUP_PARTNER of its
# area). The character walked into the other object and the tracker kept the object's track for the
# mask of both (cgi-bench seed 5, shot 17: the fox walks up to the idle bunny; the two far apart in the
# frames where they are seen apart, so neither nearness nor cover applies, and the idle track counts).
GROUP_REASON = "not_one_character:group"
_FRAME_NUMBER = re.compile(r"(\d+)$")
# A shot that shows the group in every sampled frame is judged against nearby shots framed the same
# way (the film cuts back and forth between Frank, Rinky and Gimera on a branch, shots 27-35): a frame
# of a shot at most SETUP_SHOTS shots away counts as a frame of this shot when another character of
# this frame (the same cluster, or either in none) stands there in the same place, boxes overlapping by
# SETUP_IOU (Gimera: 0.65 and 0.88 there; at 0.3 a clean Frank close-up, f4528, matched at 0.34);
# characters (clusters) then stand in for tracks, and the partner's character must be absent from the
# frame judged. A camera that zooms or pans between the shots moves the neighbour: no evidence.
SETUP_SHOTS = 8
SETUP_IOU = 0.5
_SHOT_NUMBER = re.compile(r"_s(\d+)$")


def _box_gap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dx = max(0.0, max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3]))
    return math.hypot(dx, dy)


def _same_or_unknown(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _setup_group(x: dict[str, Any], frame_items: list[dict[str, Any]], nearby: Mapping[str, list[dict[str, Any]]],
                 who: Mapping[str, str]) -> str:
    """``x`` (a member of character ``c``) judged against frames of nearby shots (``nearby``: frame ->
    its instances) that share its framing: another clustered character of ``x``'s frame stands there in
    the same place (``SETUP_IOU``). Such a frame showing ``c`` alone, inside ``x``'s box, beside a
    moving member of another character ``c2`` that is nowhere in ``x``'s frame, while ``x`` is
    ``GROUP_GROW_KNOWN`` x that lone area (and that plus ``GROUP_SUM`` of the partner's) and covers
    where the partner stood, makes ``x`` a group. The evidence text, or ""."""
    from animlora.boxes import box_inside, box_iou

    mine = who.get(x["id"])
    if mine is None:
        return ""
    anchors = [o for o in frame_items if o is not x]
    present = {who[o["id"]] for o in anchors if o["id"] in who}
    best = None
    for frame, others in nearby.items():
        for alone in others:
            if who.get(alone["id"]) != mine or box_inside(alone["box"], x["box"]) < GROUP_COVER:
                continue
            for u in others:
                theirs = who.get(u["id"])
                if u is alone or u["prop"] or theirs in (None, mine) or theirs in present:
                    continue
                if u["area"] < GROUP_PARTNER_KNOWN * alone["area"]:
                    continue
                if _box_gap(alone["box"], u["box"]) > GROUP_NEAR * math.sqrt(alone["box"][2] * alone["box"][3]):
                    continue
                if x["area"] < max(GROUP_GROW_KNOWN * alone["area"], alone["area"] + GROUP_SUM * u["area"]):
                    continue
                if box_inside(u["box"], x["box"]) < GROUP_COVER:
                    continue
                same = [box_iou(a["box"], o["box"]) for a in anchors for o in others if o is not alone and o is not u
                        and _same_or_unknown(who.get(a["id"]), who.get(o["id"]))]
                if not same or max(same) < SETUP_IOU:
                    continue
                distance = abs(u["order"] - x["order"])
                if best is None or distance < best[0]:
                    best = (distance, frame, theirs, x["area"] / max(alone["area"], 1e-9), max(same))
    if best is None:
        return ""
    _, frame, theirs, grow, iou = best
    return (f"{GROUP_REASON} (frame {frame}, framed alike (a neighbour in the same place, IoU {iou:.2f}), shows "
            f"this character beside {theirs}, which is "
            f"nowhere here while this mask is {grow:.2f}x that size and covers where it stood: two characters "
            f"in one mask)")


def group_members(rows: Iterable[Mapping[str, Any]], wanted: Iterable[str] | None = None,
                  characters: Mapping[str, str] | None = None) -> dict[str, str]:
    """Instances whose mask is two or more characters, as instance id -> ``not_one_character:group
    (evidence)``. ``rows``: every instance the segment stage found (``records.segment.instance_rows``:
    id, shot_id, frame_id, track_id, bbox, area_fraction, measures), prefilter rejects included;
    ``wanted``: only these ids are judged (all when None); ``characters``: instance id -> the
    character (cluster) it is a member of, where known.

    A member ``x`` (track ``t``, frame ``g``) is a group when another frame ``f`` of its shot shows
    ``t`` moving (segment's ``prop`` false) beside a moving partner of another track ``u``
    (partner >= ``GROUP_PARTNER`` of ``t``'s area, boxes within ``GROUP_NEAR``), ``u`` is not in
    frame ``g``, ``x``'s area is >= ``GROUP_GROW`` x ``t``'s area in ``f`` and >= that plus
    ``GROUP_SUM`` of ``u``'s, and ``x``'s box covers >= ``GROUP_COVER`` of ``u``'s box in ``f``.
    When ``u``'s instance in ``f`` is a member of another character than ``x`` (``characters``),
    ``GROUP_GROW_KNOWN`` replaces ``GROUP_GROW``, ``GROUP_PARTNER_KNOWN`` ``GROUP_PARTNER``,
    ``GROUP_NEAR_KNOWN`` ``GROUP_NEAR``, and ``t`` or ``u`` may be idle in ``f`` (a character
    sitting still beside another: Frank beside Buck in the film's shot 23). When ``x`` is
    a member of ``u``'s character and ``t`` seen alone is not (and is >= ``GROUP_PARTNER`` of ``u``'s
    area), ``x`` is ``u`` on ``t``'s object: the growth bounds alone decide (idle tracks, distance and
    cover aside). A member marked ``mixed`` by the segment stage is a group too. A row whose box
    cannot be read is not judged."""
    from animlora.boxes import box_inside
    from animlora.identity.geometry import parse_box

    judged = None if wanted is None else set(wanted)
    who = dict(characters or {})
    by_shot: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        box = parse_box(row["bbox"])
        if box is None:
            continue
        measures = row_measures(row)
        match = _FRAME_NUMBER.search(str(row["frame_id"]))
        item = {"id": row["id"], "track": row.get("track_id"), "frame": row["frame_id"],
                "order": int(match.group(1)) if match else 0, "area": float(row["area_fraction"]),
                "box": box, "prop": bool(measures.get("prop")), "mixed": bool(measures.get("mixed"))}
        by_shot.setdefault(str(row.get("shot_id") or ""), []).append(item)
    out: dict[str, str] = {}
    for shot, items in sorted(by_shot.items()):
        frames: dict[str, list[dict[str, Any]]] = {}
        for it in items:
            if it["track"]:
                frames.setdefault(it["frame"], []).append(it)
        for x in items:
            if judged is not None and x["id"] not in judged:
                continue
            if x["mixed"]:
                out[x["id"]] = f"{GROUP_REASON} (the segment stage saw two characters' colours in one mask)"
                continue
            if not shot or not x["track"]:
                continue
            here = {o["track"] for o in frames.get(x["frame"], [])}
            mine = who.get(x["id"])
            best = None
            for frame, others in frames.items():
                if frame == x["frame"]:
                    continue
                alone = next((o for o in others if o["track"] == x["track"]), None)
                if alone is None:
                    continue
                for u in others:
                    if u is alone or u["track"] in here:
                        continue
                    theirs = who.get(u["id"])  # the partner clustered as another character than this track's
                    known = theirs is not None and mine is not None and theirs not in (mine, who.get(alone["id"]))
                    if u["area"] < (GROUP_PARTNER_KNOWN if known else GROUP_PARTNER) * alone["area"]:
                        continue
                    claimed = (mine is not None and theirs == mine and who.get(alone["id"]) != mine
                               and alone["area"] >= GROUP_PARTNER * u["area"])
                    if (alone["prop"] or u["prop"]) and not (known or claimed):
                        continue
                    if not claimed and _box_gap(alone["box"], u["box"]) > (
                            GROUP_NEAR_KNOWN if known else GROUP_NEAR) * math.sqrt(alone["box"][2] * alone["box"][3]):
                        continue
                    grow = GROUP_GROW_KNOWN if known else GROUP_GROW
                    if x["area"] < max(grow * alone["area"], alone["area"] + GROUP_SUM * u["area"]):
                        continue
                    if not claimed and box_inside(u["box"], x["box"]) < GROUP_COVER:
                        continue
                    distance = abs(u["order"] - x["order"])
                    if best is None or distance < best[0]:
                        best = (distance, frame, u["track"], x["area"] / max(alone["area"], 1e-9),
                                who.get(u["id"]) if known else None, claimed)
            if best is not None:
                _, frame, partner, grow, whom, claimed = best
                seen = f" (clustered as {whom})" if whom else ""
                where = (f"this mask, clustered as that track's character, is {grow:.2f}x the size of its own "
                         "track's object" if claimed else
                         f"this mask is {grow:.2f}x that size and covers where it stood")
                out[x["id"]] = (f"{GROUP_REASON} (frame {frame} shows its track beside track {partner}{seen}, "
                                f"which is gone here while {where}: two characters in one mask)")
    if not who:
        return out
    numbered: dict[tuple[str, int], str] = {}
    for shot in by_shot:
        match = _SHOT_NUMBER.search(shot)
        if match:
            numbered[(shot[:match.start()], int(match.group(1)))] = shot
    for (video, number), shot in sorted(numbered.items()):
        nearby: dict[str, list[dict[str, Any]]] = {}
        for step in range(-SETUP_SHOTS, SETUP_SHOTS + 1):
            other = numbered.get((video, number + step))
            if step and other:
                for it in by_shot[other]:
                    nearby.setdefault(it["frame"], []).append(it)
        if not nearby:
            continue
        frame_items: dict[str, list[dict[str, Any]]] = {}
        for it in by_shot[shot]:
            frame_items.setdefault(it["frame"], []).append(it)
        for x in by_shot[shot]:
            if x["id"] in out or (judged is not None and x["id"] not in judged):
                continue
            why = _setup_group(x, frame_items[x["frame"]], nearby, who)
            if why:
                out[x["id"]] = why
    return out


# -- another character's colours in a mask -----------------------------------------------------------
# The group rule above needs a frame where the two are apart. Where none is sampled, colour still tells
# when the two characters differ in colour: a piece of the mask in colours that the cluster's other
# images lack and that another cluster's images share is another character (the film: the butterfly on
# Buck's head or beside Frank, Frank on Buck's head, Rinky at green-lit Buck's feet), or the whole
# member is not this character (cgi-bench seed 2: the blue boy in the bunny's cluster, the green boy's
# head close-ups in the fox's); a piece in a scenery cluster's colours is the set fused into the mask
# (seed 3: the robot with a bush behind it). Measured on the film and seeds 2 and 3 (docs/dataset.md, "Another
# character's colours"). Colours are compared after the shot's light is divided out (identity/light.py:
# the seeds' sunset and night shots turned a character's own colours into another's).
COLOUR_SIDE = 160  # cut-outs are judged at about this long side (the share of a piece is scale-free)
COLOUR_BINS = (4, 16, 16)  # L*, a*, b* bins of OpenCV's 8-bit Lab
COLOUR_PRESENT = 3e-3  # a colour is in an image when this share of its mask has it
COLOUR_OWN = 0.15  # foreign to the cluster: in fewer than this share of its other members
COLOUR_THEIRS = 0.5  # another character's: in at least this share of that cluster's members
COLOUR_PIECE = 0.04  # the largest connected piece of such pixels, as a share of the mask (film's groups
#                      0.04-0.28 and seeds' 0.04-0.35 with no clean member flagged; 0.03 flags clean
#                      seed 3 foxes at night at 0.030-0.038)
COLOUR_MEMBERS = 5  # a cluster with fewer readable members has no colour model: neither judged nor judge
# a member with this share of its mask in colours its (named) character's other images lack is in another
# light, judged by its own light's cluster too (the film's purple-lit Buck 0.61-0.88 of the mask; a bush or
# a boy fused to seed 6's fox, in a cluster of such masks, 0.10-0.30)
COLOUR_LIGHT = 0.5
COLOUR_RARE = 0.05  # a colour in fewer than this share of the cluster's other members: one they (nearly) never show
COLOUR_STRANGER = 0.15  # a member with this share of its mask in such colours, in any number of pieces and
#                         whoever else has them, is not that character (the film: a bush, 0.24, in green-lit
#                         Buck's folder and a rock, 0.17, in Gimera's; every other image of its datasets 0.125 or
#                         less). A costume seen in 1 of 20 of a character's images or more is its own colour
COLOUR_STRANGERS = 0.1  # ... where such members are few (at most this share of the cluster, or one): a cluster with
#                         more has no palette of its own to judge by (a character in a new outfit in every shot)
COLOUR_REASON = "not_one_character:colours"
# A piece in colours the cluster's other images lack may be the character's own body in a light they do not
# show (cgi-bench seed 3's bunny at sunset: the top of his head lit by the sky, his shaded flank; the film's Buck
# from behind, his back lit yellow): the shading runs on over the body, with no edge where the piece meets the
# rest and a colour near the rest's. Another object meets the body along its own outline, or differs clearly in
# colour (the butterfly, Frank on Buck's head, Gimera at his feet, a bush behind the robot). Such a piece is no
# evidence of another character when both hold (docs/dataset.md, "Another character's colours"):
COLOUR_SHADE_APART = 28.0  # its mean a*b* this close to the rest of the mask's (OpenCV's 8-bit Lab; own light
#                            15.8-26.3, another object 18.4-59.1, those under 28 with an edge of 2.77 or more)
COLOUR_SHADE_EDGE = 2.6  # the colour gradient along its border inside the mask under this many times the mask's
#                          median (own light 1.0-2.45; another object 0.58-9.1, those under 2.6 all 30.2 apart or more)


def colour_bins(rgba: np.ndarray, gain: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, the Lab bin of every pixel) of an RGBA cut-out, fitted within ``COLOUR_SIDE`` and its
    RGB first multiplied by the shot's light ``gain`` (identity/light.py)."""
    return _binned(*_judged_lab(rgba, gain))


def colour_bins_and_edges(rgba: np.ndarray, gain: Sequence[float] | None = None
                          ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """(:func:`colour_bins`, the colour gradient: Sobel magnitude over L*, a*, b*) of an RGBA cut-out, from
    one fitting and one Lab conversion: the gradient is where :func:`foreign_colours` looks for the edge
    between a piece and the body."""
    import cv2

    alpha, lab8 = _judged_lab(rgba, gain)
    lab = lab8.astype(np.float32)
    squares = [cv2.Sobel(lab[..., c], cv2.CV_32F, dx, dy) ** 2 for c in range(3) for dx, dy in ((1, 0), (0, 1))]
    return _binned(alpha, lab8), np.sqrt(np.sum(squares, axis=0))


def _binned(alpha: np.ndarray, lab8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, colour bin of every pixel) from :func:`_judged_lab`'s alpha and Lab."""
    lab = lab8.astype(np.int32)
    nl, na, nb = COLOUR_BINS
    bins = (lab[..., 0] * nl // 256) * na * nb + (lab[..., 1] * na // 256) * nb + lab[..., 2] * nb // 256
    return alpha >= 128, bins.astype(np.uint16)  # (a film's members are all held at once)


def _judged_lab(rgba: np.ndarray, gain: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, OpenCV's 8-bit Lab) of an RGBA cut-out as colours are judged: fitted within ``COLOUR_SIDE``,
    its RGB multiplied by the shot's light ``gain``."""
    import cv2

    from animlora.identity.light import apply_gain

    rgba = apply_gain(_judging_size(rgba), gain)
    return rgba[..., 3], cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2LAB)


def _judging_size(image: np.ndarray) -> np.ndarray:
    """``image`` fitted within ``COLOUR_SIDE`` (area-averaged; never enlarged): the size colours are judged at."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, COLOUR_SIDE / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return image


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's outline: its pixels next to a pixel outside it (the image's edge is no outline)."""
    import cv2

    return cv2.dilate(1 - np.pad(mask.astype(np.uint8), 1, mode="edge"), np.ones((3, 3), np.uint8))[1:-1, 1:-1] > 0


def _outside_cut(mask: np.ndarray, cut: Mapping[str, np.ndarray] | None, instance_id: str) -> np.ndarray:
    """``mask`` less the piece the dataset cuts from that member's alpha (``cut``), if any."""
    return mask & ~cut[instance_id] if cut and instance_id in cut else mask


def _own_support(items: Sequence[tuple[Any, ...]], groups: Mapping[str, str] | None) -> list[np.ndarray]:
    """Per member of one cluster (``items``: (instance id, mask, bins, ..., ``present``: which colour
    bins its mask shows), in order), the share of the cluster's other members that show each colour
    bin. A character named or merged from several clusters (one light set-up each: Buck under the
    purple dusk sky) has images whose colours the rest lack *throughout*, not in a piece; so for a
    member with ``COLOUR_LIGHT`` of its mask in colours under ``COLOUR_OWN`` of the others, where its
    own cluster of the base clustering (``groups``: instance id -> cluster id) holds ``COLOUR_MEMBERS``
    members of this one or more, the larger of that share and the share among those members counts.
    A piece of something else on a member in the character's usual colours (a bush, a butterfly)
    is judged against the whole character, whatever else its cluster holds."""
    presents = [item[-1] for item in items]
    n = len(presents)
    total = np.sum(presents, axis=0, dtype=np.float64)
    out = [(total - present) / (n - 1) for present in presents]
    by_group: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        if groups and (group := groups.get(item[0])) is not None:
            by_group.setdefault(group, []).append(k)
    if len(by_group) < 2:
        return out
    for rows in by_group.values():
        if len(rows) < COLOUR_MEMBERS:
            continue
        group_total = np.sum([presents[k] for k in rows], axis=0, dtype=np.float64)
        for k in rows:
            mask, bins = items[k][1], items[k][2]
            if float(np.mean(out[k][bins[mask]] < COLOUR_OWN)) >= COLOUR_LIGHT:
                out[k] = np.maximum(out[k], (group_total - presents[k]) / (len(rows) - 1))
    return out


def _own_shade(piece: np.ndarray, mask: np.ndarray, bins: np.ndarray, edges: np.ndarray) -> bool:
    """Whether ``piece`` of ``mask`` is the body itself in a light the cluster's other images do not show: its
    mean a*b* under ``COLOUR_SHADE_APART`` from the rest of the mask's, and no edge between them (the colour
    gradient ``edges`` along its border inside the mask under ``COLOUR_SHADE_EDGE`` times the median of the
    rest's inside; the mask's own outline, where the cut-out meets the background, is left out of both)."""
    import cv2

    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    border = (cv2.dilate(piece.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~piece & inner
    rest = inner & ~(cv2.dilate(piece.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    if not border.any() or not rest.any():
        return False
    (pa, pb), (ra, rb) = _mean_ab(bins[piece]), _mean_ab(bins[mask & ~piece])
    apart = math.hypot(pa - ra, pb - rb)
    edge = float(edges[border].mean()) / max(float(np.median(edges[rest])), 1e-3)
    return apart < COLOUR_SHADE_APART and edge < COLOUR_SHADE_EDGE


def _unless_many(strangers: dict[str, str], n: int, share: float = COLOUR_STRANGERS) -> dict[str, str]:
    """``strangers`` when they are at most ``share`` of the ``n`` judged together (or one), else none:
    a cluster or track whose members differ throughout has no colours of its own."""
    return strangers if len(strangers) <= max(1, share * n) else {}


def foreign_colours(members: Iterable[tuple[str, str, tuple[np.ndarray, np.ndarray]]],
                    scenery: Iterable[str] = (), cut: Mapping[str, np.ndarray] | None = None,
                    groups: Mapping[str, str] | None = None,
                    edges: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """Members with a piece in another cluster's colours, as instance id -> ``not_one_character:
    colours (evidence)``. ``members``: (instance id, cluster, :func:`colour_bins` of its cut-out);
    ``scenery``: clusters taken for scenery (``not_character:*``), whose colours count as another
    cluster's (a piece of the set fused into a character's mask) but whose members are not judged.

    Per cluster with ``COLOUR_MEMBERS`` members or more, each colour bin's *support* is the share of
    its members in which it covers ``COLOUR_PRESENT`` of the mask. A member's pixel is foreign when
    its bin's support among its cluster's *other* members is under ``COLOUR_OWN``, and it is another
    cluster's when that cluster's support is ``COLOUR_THEIRS`` or more. The member is left out when
    the largest 8-connected piece of foreign pixels of one other cluster is ``COLOUR_PIECE`` of its
    mask or more: a scattered speckle of odd shading is no piece, and a colour no other cluster has
    throughout (an apple, a flower) is nobody's. Evidence: the piece's share, both clusters and the
    other's mean support of the piece's colours. A member not left out so is left out when
    ``COLOUR_STRANGER`` of its mask has colours whose support among the cluster's other members is under
    ``COLOUR_RARE``, whoever else has them: it is not its cluster's character (a bush, a rock the colour
    descriptor put with a character), provided such members are at most ``COLOUR_STRANGERS`` of the
    cluster or one. ``cut``: instance id -> the pieces :func:`foreign_pieces` cuts from its alpha (at
    :func:`colour_bins`' size), not counted there. ``groups``: the clusters of the base clustering that
    a named or merged cluster joins (:func:`_own_support`). ``edges``: instance id -> the gradient of
    :func:`colour_bins_and_edges`;
    a piece of a member mostly in its cluster's colours (foreign under ``COLOUR_LIGHT`` of the mask) that is
    its own body in another light by them (:func:`_own_shade`) is no piece."""
    import cv2

    size = int(np.prod(COLOUR_BINS))
    by_char: dict[str, list[tuple[str, np.ndarray, np.ndarray, int, np.ndarray]]] = {}
    for instance_id, character, (mask, bins) in members:
        area = int(mask.sum())
        if area == 0:
            continue
        present = np.bincount(bins[mask], minlength=size) >= COLOUR_PRESENT * area
        by_char.setdefault(character, []).append((instance_id, mask, bins, area, present))
    counts = {c: np.sum([p for *_, p in items], axis=0, dtype=np.float64)
              for c, items in by_char.items() if len(items) >= COLOUR_MEMBERS}
    support = {c: total / len(by_char[c]) for c, total in counts.items()}
    out: dict[str, str] = {}
    set_like = set(scenery)
    for character in sorted(counts):
        if character in set_like:
            continue
        n = len(by_char[character])
        strangers: dict[str, str] = {}
        for (instance_id, mask, bins, area, _), own in zip(by_char[character],
                                                         _own_support(by_char[character], groups), strict=True):
            others = own[bins]
            foreign = (others < COLOUR_OWN) & mask
            if not foreign.any():
                continue
            # the rest of the mask shows the body in its usual colours, for a piece to be its shading
            shade = edges.get(instance_id) if edges and float(foreign.sum()) < COLOUR_LIGHT * area else None
            best = (0.0, "", 0.0)
            for other, share in support.items():
                if other == character:
                    continue
                theirs = share[bins]
                piece = foreign & (theirs >= COLOUR_THEIRS)
                count, labels, stats, _ = cv2.connectedComponentsWithStats(piece.astype(np.uint8), connectivity=8)
                for label in 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable"):  # the largest first
                    largest = float(stats[label, cv2.CC_STAT_AREA]) / area
                    if largest <= best[0]:
                        break
                    if largest >= COLOUR_PIECE and shade is not None and _own_shade(labels == label, mask, bins, shade):
                        continue  # the body itself in another light: the next piece may be another object
                    best = (largest, other, float(theirs[piece].mean()))
                    break
            largest, other, seen = best
            if largest >= COLOUR_PIECE:
                what = "the set (a cluster taken for scenery)" if other in set_like else "another character"
                out[instance_id] = (
                    f"{COLOUR_REASON} ({largest:.0%} of the mask, in one piece, has colours that {character}'s "
                    f"other images lack and {other}'s have (in {seen:.0%} of them): {what} in this mask, or "
                    f"not {character})")
                continue
            kept = _outside_cut(mask, cut, instance_id)
            stranger = float(((others < COLOUR_RARE) & kept).sum()) / max(1, int(kept.sum()))
            if stranger >= COLOUR_STRANGER:
                strangers[instance_id] = (f"{COLOUR_REASON} ({stranger:.0%} of the mask has colours that {character}'s "
                                          f"other images (nearly) never show: not {character})")
        out.update(_unless_many(strangers, n))
    return out


# A track's frames show one object in one shot's light, so its colours agree from frame to frame. A
# member with a good share of its mask in colours that no other frame of its own track shows is
# another object than the track (the tracker passed the track from a trap on to Buck, film shot 90), or
# holds one (Rinky fused into Frank's mask, f7338). Measured on the film and cgi-bench seeds 2 and 6
# (docs/dataset.md, "Another character's colours").
TRACK_STRANGER = 0.15  # this share of the mask (the film: the trap 0.24, Rinky in Frank's mask 0.19, the
#                        rock 0.17; every other dataset image of the film 0.084 or less, seeds 2 and 6 0.098)
TRACK_MATES = 4  # other frames of the track with a cut-out (clustered or in the noise) needed to judge (the film:
#                 the trap 7, f7338 4; a character turning round in a 3-frame track shows new colours)
TRACK_STRANGERS = 0.3  # ... where such frames are at most this share of the track (or one): most of its frames
#                        agree on its colours (the film's trap track: the trap in 2 of its 8 frames, Buck in 6;
#                        the only track of the film and seeds 2 and 6 with more than one such frame)


def off_track_colours(members: Iterable[tuple[str, str | None, tuple[np.ndarray, np.ndarray]]],
                      witnesses: Iterable[tuple[str, str | None, tuple[np.ndarray, np.ndarray]]] = (),
                      cut: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """Members whose colours the other frames of their track do not show, as instance id ->
    ``not_one_character:colours (evidence)``. ``members``: (instance id, track id, :func:`colour_bins`)
    of the judged members; ``witnesses``: the same of other instances (the noise), which only show
    their track's colours; ``cut``: as in :func:`foreign_colours`. A member with ``TRACK_MATES`` other
    instances on its track is left out when ``TRACK_STRANGER`` of its mask (the cut piece aside) is in
    colour bins that none of them shows (``COLOUR_PRESENT`` of its mask), provided such frames are at
    most ``TRACK_STRANGERS`` of the track's or one: a track whose frames differ throughout (a flashing
    light, a character the tracker swapped back and forth) has no colours of its own to judge by."""
    size = int(np.prod(COLOUR_BINS))
    judged = {i for i, _, _ in members}
    tracks: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    for instance_id, track, (mask, bins) in [*members, *witnesses]:
        area = int(mask.sum())
        if track and area:
            present = np.bincount(bins[mask], minlength=size) >= COLOUR_PRESENT * area
            tracks.setdefault(track, []).append((instance_id, mask, bins, present))
    out: dict[str, str] = {}
    for items in tracks.values():
        if len(items) <= TRACK_MATES:
            continue
        seen = np.sum([p for *_, p in items], axis=0)
        strangers: dict[str, str] = {}
        for instance_id, mask, bins, present in items:
            kept = _outside_cut(mask, cut, instance_id)
            alien = float((((seen - present)[bins] == 0) & kept).sum()) / max(1, int(kept.sum()))
            if alien >= TRACK_STRANGER:
                strangers[instance_id] = (f"{COLOUR_REASON} ({alien:.0%} of the mask has colours that no other "
                                          f"frame of its track shows ({len(items) - 1} frames): another object "
                                          "than the track's, or one more in the mask)")
        out.update((k, v) for k, v in _unless_many(strangers, len(items), TRACK_STRANGERS).items() if k in judged)
    return out


# -- another object's piece in a mask, cut out --------------------------------------------------------
# The rule above leaves a member out, and needs the other object to be a cluster whose colours are
# rare in this one. A prop or small creature a character holds in several shots is neither: the film's
# butterfly forms no cluster and is fused into Rinky's mask in 12 of her 35 images (a third: no colour
# is rare enough), beside Frank's face and on Buck's head. What tells it is there: a piece of the mask
# in a colour the character's other images mostly lack, clearly apart in hue from the rest of the mask,
# on its outline (held, not painted on), and seen on its own elsewhere in the film (instances, clustered
# or not, whose masks are mostly its colours). Such a piece is cut from the image's alpha, so the image
# keeps the character alone instead of being lost. Measured on the film and cgi-bench seeds 2 and 6
# (docs/dataset.md, "Another object's piece cut out").
CUT_OWN = 0.4  # a colour in fewer than this share of the cluster's other members is the piece's
CUT_SHARE = 0.03  # a piece: this share of the mask or more, 8-connected
CUT_MAX = 0.35  # and less than this (the film's butterfly pieces up to 0.29; half the mask is no held
#                 object: which half is the character is not known)
CUT_CHROMA = 20.0  # its mean colour this far from grey (a*b*, OpenCV's 8-bit Lab): white, grey and black
#                      are every object's (the seeds' fox's white chest and tail tip: 4-12)
CUT_APART = 25.0  # and this far in a*b* from the rest of the mask (the film's butterfly pieces 25-51)
CUT_OUTLINE = 0.15  # this share of its rim on the mask's outline (an eye or a lit patch inside: 0)
CUT_SEEN = 0.5  # an instance whose mask is this much the piece's main colours is the object seen alone
CUT_WITNESSES = 2  # seen alone in this many instances of other clusters or the noise
CUT_LEFT_APART = 0.05  # a part of the mask the cut leaves apart from the body, touching the cut and under
#                        this share of the mask, goes with it: the object's pale rim, veins and far wing tip
#                        (film: Frank's f4652 and f4660 kept white streaks of the butterfly's wings)
CUT_BODY_COLOUR = 6.0  # ... unless its mean colour is this near the body's in a*b*: the body itself, beyond
#                        the object (film f2580: Buck's ears past the butterfly on his head, 0 apart; the
#                        wing streaks and rims of 1% of the mask or more 9-31 apart)
CUT_LEFT_LARGE = 0.35  # with that colour test, a part under this share goes too: another character's remains
#                        beside the one judged (film f3649: Rinky's head and arm beside Gimera, 22%, 19 apart),
#                        the far half of a butterfly beside Frank (f4652, 7%, 17 apart), a tree crown's rest
#                        beside the robot (seed 2 f210, 5%, 31 apart); the body's own parts stay (ears 0 apart)
STRAY_GAP = 0.02  # a part of a mask this far from its body or farther (share of the body's box diagonal), in
#                   another colour and small (STRAY_SHARE), is another object's even where no cut shows it
#                   (stray_parts): Rinky's ear tips beside Gimera (film f4032, f4431: 0.11-0.16), a bit of the fox
#                   beside seed 2's robot (f270: 0.03); the robot's antenna ball, parted from its head where
#                   the matte lost the stick, lies 0.014 away (seed 2 f63), Buck's ears past a butterfly are his colour
STRAY_GAP_PX = 3  # ... and at least this many pixels: nearer, it is the matte's own break-up (seed 4's robot,
#                   78 px tall, kept its antenna's tip 2 px off the stick)
STRAY_SHARE = 0.05  # ... and under this share of the mask: no cut shows it is another object's, and a larger
#                     part in another colour may be the character's own behind something thin in front (a
#                     head above a shirt); the film's are 0.6-3.9 %, seed 2's fox bit beside the robot 9 % stays
CUT_SMALL = 0.008  # a smaller piece, down to this share, is cut when it is another character's: in colours its own
#                   cluster's other images lack (under COLOUR_OWN) and a cluster seen beside it in some frame has
#                   (COLOUR_THEIRS), chroma, apart and outline as above (film: the butterfly on Buck's hand f2774, 1%;
#                   seeds: tree crowns behind the fox's ears and the boy's cap, 1-3%). "Seen beside it" keeps out
#                   the same character's other light (a Buck folder's flank in another Buck folder's colours, f1328)
CUT_UNSURE = 0.5  # a piece this much where the matte is unsure (alpha between the dataset's threshold and 0.5:
#                   not in the mask judged above, opaque in the dataset's image) is judged on the mask with those
#                   pixels: the film's torn butterfly wings Rinky holds are half-transparent in the matte
CUT_UNSURE_OWN = 0.6  # ... with its colours in fewer than this share of the cluster's other members (the wings in
#                       0.3-0.55 of Rinky's: she holds them in a third of her images), seen alone as above
CUT_CORE = 0.35  # ... and a blob, not the matte's fringe: this share of it left by a 3x3 erosion (the film's
#                  wings 0.7-0.86, wing bits and leaves 0.38-0.49; the soft rim along Frank's tail 0-0.12)
CUT_TRACK = 0.5  # a colour whose pixels over a track's frames are this much in the pieces cut there is that
#                  object's in the shot's light: a piece of such colours (CUT_SMALL to CUT_MAX, held, a blob) is cut
#                  from the track's other frames (film: the solid wing Rinky holds in f5046 and f5108, the rest of it
#                  cut in their tracks' other frames)
CUT_REASON = "another object's piece cut out"


def _bin_centres() -> tuple[np.ndarray, np.ndarray]:
    """(a*, b*) of every colour bin's centre, signed (OpenCV's 8-bit Lab minus 128)."""
    _, na, nb = COLOUR_BINS
    idx = np.arange(int(np.prod(COLOUR_BINS)))
    return ((idx // nb) % na + 0.5) * 256 / na - 128, (idx % nb + 0.5) * 256 / nb - 128


def _mean_ab(bins: np.ndarray) -> tuple[float, float]:
    """The mean (a*, b*) of pixels given by their colour bins (bin centres; (0, 0) for none)."""
    ca, cb = _bin_centres()
    hist = np.bincount(bins, minlength=int(np.prod(COLOUR_BINS))).astype(np.float64)
    total = max(float(hist.sum()), 1.0)
    return float(hist @ ca) / total, float(hist @ cb) / total


def _main_bins(hist: np.ndarray, share: float = 0.9) -> np.ndarray:
    """The bins that hold ``share`` of a histogram's pixels, most frequent first, as a mask."""
    order = np.argsort(-hist, kind="stable")
    cum = np.cumsum(hist[order]) / max(float(hist.sum()), 1.0)
    keep = np.zeros(hist.size, bool)
    keep[order[: int(np.searchsorted(cum, share)) + 1]] = True
    return keep


class _Judged(NamedTuple):
    """A member as :func:`foreign_pieces` judged it; ``cut`` and ``notes`` grow in place."""
    mask: np.ndarray  # at colour_bins' size
    bins: np.ndarray
    area: int
    whole: np.ndarray  # the mask with its unsure pixels
    rim: np.ndarray  # that one's outline
    cut: np.ndarray
    notes: list[str]


def unsure_matte(rgba: np.ndarray, alpha_threshold: float) -> np.ndarray:
    """The pixels of an RGBA cut-out, at :func:`colour_bins`' size, that the dataset's image keeps
    (alpha above ``alpha_threshold``) and :func:`colour_bins`' mask leaves out (alpha under 0.5)."""
    alpha = _judging_size(np.ascontiguousarray(rgba[..., 3]))
    return (alpha > int(alpha_threshold * 255)) & (alpha < 128)


def foreign_pieces(members: Iterable[tuple[str, str, tuple[np.ndarray, np.ndarray]]],
                   others: Iterable[tuple[str, tuple[np.ndarray, np.ndarray]]] = (),
                   scenery: Iterable[str] = (), together: Collection[frozenset[str]] = (),
                   unsure: Mapping[str, np.ndarray] | None = None,
                   tracks: Mapping[str, str | None] | None = None,
                   groups: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Pieces of members' masks that are another object, as instance id -> {"mask": bool array at
    :func:`colour_bins`' size (every piece of the member), "share": of the mask, "why": evidence}.

    ``members``: (instance id, cluster, :func:`colour_bins`) of clustered members; ``others``: (instance id,
    :func:`colour_bins`) of instances in no cluster (the noise), which only witness. Clusters with
    fewer than ``COLOUR_MEMBERS`` members and those in ``scenery`` are not judged but witness. A piece
    is a connected set of pixels whose colour bin is in fewer than ``CUT_OWN`` of the cluster's other
    members, covering ``CUT_SHARE`` to ``CUT_MAX`` of the mask, ``CUT_CHROMA`` from grey and ``CUT_APART`` from
    the rest in a*b*, ``CUT_OUTLINE`` of its rim on the mask's outline, and seen alone (its main
    colours ``CUT_SEEN`` of a mask) in ``CUT_WITNESSES`` instances outside the cluster. A smaller piece,
    down to ``CUT_SMALL``, is cut when its pixels are in colours under ``COLOUR_OWN`` of the cluster's other
    members and in ``COLOUR_THEIRS`` of the members of a cluster seen beside it in some frame
    (``together``: pairs of clusters with members in one frame), with the same chroma, apart and
    outline tests; or, given ``tracks``, when it is a blob (``CUT_CORE``) whose colours are seen alone on
    ``CUT_WITNESSES`` tracks (``tracks``: instance id -> track id; none: each its own): an object seen
    alone on two occasions, not one shot's frames of a part (seed 6's blue boy's shirt, the robot's red
    in one shot). ``unsure``: instance id -> its cut-out's :func:`unsure_matte`; a piece ``CUT_UNSURE``
    of it in those pixels is judged on the mask with them, its colours under ``CUT_UNSURE_OWN`` of the
    cluster's other members, the large piece's tests otherwise, a blob, and its witnesses on
    ``CUT_WITNESSES`` tracks. With ``tracks``, a piece in the colours that the cuts of its track's other
    frames took is cut too (:func:`_track_pieces`). The parts the cut leaves apart from the body go
    with it (:func:`left_apart`). ``groups``: as in :func:`foreign_colours` (a colour one of a named
    character's light clusters shows throughout is its own)."""
    size = int(np.prod(COLOUR_BINS))
    seen: list[tuple[str, str, np.ndarray]] = []  # (instance id, cluster or "", share of each bin in the mask)
    by_char: dict[str, list[tuple[str, np.ndarray, np.ndarray, int, np.ndarray]]] = {}
    for instance_id, character, (mask, bins) in members:
        area = int(mask.sum())
        if area == 0:
            continue
        hist = np.bincount(bins[mask], minlength=size)
        by_char.setdefault(character, []).append((instance_id, mask, bins, area, hist >= COLOUR_PRESENT * area))
        seen.append((instance_id, character, hist / area))
    for instance_id, (mask, bins) in others:
        area = int(mask.sum())
        if area:
            seen.append((instance_id, "", np.bincount(bins[mask], minlength=size) / area))
    if not seen:
        return {}
    owners = np.array([c for _, c, _ in seen], dtype=object)
    shares = np.stack([h for *_, h in seen])
    occasions = np.array([(tracks or {}).get(i) or i for i, *_ in seen], dtype=object)  # each witness's track
    set_like = set(scenery)
    support = {c: np.mean([p for *_, p in items], axis=0) for c, items in by_char.items() if len(items) >= COLOUR_MEMBERS}
    out: dict[str, dict[str, Any]] = {}
    judged: dict[str, _Judged] = {}
    for character, items in sorted(by_char.items()):
        if character in set_like or len(items) < COLOUR_MEMBERS:
            continue
        outside_cluster = owners != character
        beside = [c for c in sorted(support) if c != character and frozenset((character, c)) in together]
        for (instance_id, mask, bins, area, _), support_own in zip(items, _own_support(items, groups), strict=True):
            own = support_own[bins]
            outside = _outline(mask)
            cut, notes = np.zeros_like(mask), []
            for piece, share, apart in _held_pieces((own < CUT_OWN) & mask, (CUT_SHARE, CUT_MAX), mask, bins, outside):
                if (witnesses := int(_seen_alone(piece, bins, outside_cluster, shares).sum())) < CUT_WITNESSES:
                    continue
                cut |= piece
                notes.append(f"{share:.0%} of the mask, {apart:.0f} apart in colour from the rest, on its outline, "
                             f"its colours seen alone in {witnesses} other instances")
            for other in beside:  # smaller pieces: another cluster's, seen beside this one in a frame
                theirs = support[other][bins]
                for piece, share, apart in _held_pieces((own < COLOUR_OWN) & (theirs >= COLOUR_THEIRS) & mask & ~cut,
                                                        (CUT_SMALL, CUT_SHARE), mask, bins, outside):
                    cut |= piece
                    notes.append(f"{share:.1%} of the mask, {apart:.0f} apart in colour from the rest, on its outline, "
                                 f"in colours {other}'s images have (in {float(theirs[piece].mean()):.0%} of them), "
                                 "seen beside it in a frame")
            if tracks:  # smaller pieces: an object seen alone on two tracks, beside this cluster in no frame
                for piece, share, apart in _held_pieces((own < COLOUR_OWN) & mask & ~cut, (CUT_SMALL, CUT_SHARE),
                                                        mask, bins, outside):
                    if not _blob(piece):
                        continue
                    witnesses = _tracks_seen_alone(piece, bins, outside_cluster, shares, occasions)
                    if witnesses >= CUT_WITNESSES:
                        cut |= piece
                        notes.append(f"{share:.1%} of the mask, {apart:.0f} apart in colour from the rest, on its "
                                     f"outline, in colours its cluster's images lack, seen alone on {witnesses} "
                                     "other tracks")
            soft = unsure.get(instance_id) if unsure else None
            soft = soft if soft is not None and soft.shape == mask.shape else np.zeros_like(mask)
            whole = mask | soft  # the mask with the pixels the matte is unsure of
            rim = _outline(whole) if soft.any() else outside
            if soft.sum() >= CUT_SMALL * area:
                for piece, share, apart in _held_pieces((own < CUT_UNSURE_OWN) & whole & ~cut, (CUT_SMALL, CUT_MAX),
                                                        whole, bins, rim):
                    if (piece & soft).sum() < CUT_UNSURE * piece.sum() or not _blob(piece):
                        continue
                    witnesses = _tracks_seen_alone(piece, bins, outside_cluster, shares, occasions)
                    if witnesses < CUT_WITNESSES:
                        continue
                    cut |= piece
                    notes.append(f"{share:.0%} of the mask, mostly where the matte is unsure, {apart:.0f} apart in "
                                 f"colour from the rest, on its outline, its colours seen alone on {witnesses} other "
                                 "tracks")
            judged[instance_id] = _Judged(mask, bins, area, whole, rim, cut, notes)
    if tracks:
        _track_pieces(judged, {i: (c, t) for c, items in by_char.items() for i, *_ in items
                               if i in judged and (t := tracks.get(i))})
    for instance_id, (mask, bins, area, _, _, cut, notes) in judged.items():
        if notes and (cut & mask).sum() < CUT_MAX * area:
            loose = left_apart(mask, cut, bins)
            if loose.any():
                loose_share = float(loose.sum()) / area
                notes.append(f"{f'{loose_share:.1%}' if loose_share >= 1e-3 else 'under 0.1%'} of the mask left "
                             "apart from the body by the cut")
                cut |= loose
            out[instance_id] = {"mask": cut, "share": round(float(cut.sum()) / int((mask | cut).sum()), 4),
                                "why": f"{CUT_REASON}: " + "; ".join(notes)}
    return out


def _seen_alone(piece: np.ndarray, bins: np.ndarray, candidates: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Which instances (rows of ``shares``: each colour bin's share of their mask; ``candidates``: those
    outside the piece's cluster) are the piece's main colours over ``CUT_SEEN`` of their mask: the
    object seen alone."""
    ph = np.bincount(bins[piece], minlength=int(np.prod(COLOUR_BINS))).astype(np.float64)
    return candidates & (shares[:, _main_bins(ph)].sum(axis=1) >= CUT_SEEN)


def _tracks_seen_alone(piece: np.ndarray, bins: np.ndarray, candidates: np.ndarray, shares: np.ndarray,
                       occasions: np.ndarray) -> int:
    """How many tracks (``occasions``: each instance's track, or itself) see the piece's object alone
    (:func:`_seen_alone`): one shot's frames count once."""
    return len(set(occasions[_seen_alone(piece, bins, candidates, shares)]))


def _blob(piece: np.ndarray) -> bool:
    """A piece with ``CUT_CORE`` of it left by a 3x3 erosion: a blob, not a fringe."""
    import cv2

    return float((cv2.erode(piece.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0).sum()) >= CUT_CORE * piece.sum()


def _track_pieces(judged: dict[str, _Judged], tracks: Mapping[str, tuple[str, str]]) -> None:
    """Cut, in place, the pieces of ``judged`` members (see :func:`foreign_pieces`) in the colours that the
    cuts of their track's frames took: a colour bin whose pixels over the track (its members' masks with
    their unsure pixels) are ``CUT_TRACK`` or more in pieces cut is the object's in that shot's light, and a
    piece of those bins (``CUT_SMALL`` to ``CUT_MAX``, held, a blob) is cut from the track's other frames."""
    size = int(np.prod(COLOUR_BINS))
    members: dict[tuple[str, str], list[str]] = {}  # (cluster, track) -> its judged members
    for instance_id, track in tracks.items():
        members.setdefault(track, []).append(instance_id)
    for _, ids in sorted(members.items()):
        if len(ids) < 2 or not any(judged[i].cut.any() for i in ids):
            continue
        cut_px, kept_px = np.zeros(size), np.zeros(size)
        for j in (judged[i] for i in ids):
            cut_px += np.bincount(j.bins[j.cut], minlength=size)
            kept_px += np.bincount(j.bins[j.whole & ~j.cut], minlength=size)
        theirs = (cut_px > 0) & (cut_px >= CUT_TRACK * (cut_px + kept_px))
        for j in (judged[i] for i in ids):
            for piece, share, apart in _held_pieces(theirs[j.bins] & j.whole & ~j.cut, (CUT_SMALL, CUT_MAX), j.whole,
                                                    j.bins, j.rim):
                if _blob(piece):
                    j.cut[piece] = True
                    j.notes.append(f"{share:.1%} of the mask, {apart:.0f} apart in colour from the rest, on its outline, "
                                 "in colours cut from the other frames of its track")


def _held_pieces(candidates: np.ndarray, shares: tuple[float, float], mask: np.ndarray, bins: np.ndarray,
                 outside: np.ndarray) -> Iterator[tuple[np.ndarray, float, float]]:
    """(piece, its share of ``mask``, how far apart in colour) of each 8-connected piece of ``candidates``
    whose share lies in ``shares`` (from, up to) and that looks held (:func:`_held_apart`)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates.astype(np.uint8), connectivity=8)
    area = int(mask.sum())
    for k in range(1, count):
        share = float(stats[k, cv2.CC_STAT_AREA]) / area
        if shares[0] <= share < shares[1]:
            piece = labels == k
            if (apart := _held_apart(piece, mask, bins, outside)) is not None:
                yield piece, share, apart


def _held_apart(piece: np.ndarray, mask: np.ndarray, bins: np.ndarray, outside: np.ndarray) -> float | None:
    """How far apart in a*b* ``piece`` of ``mask`` is from the rest, when it looks like a thing held:
    its colour ``CUT_CHROMA`` from grey and ``CUT_APART`` from the rest, ``CUT_OUTLINE`` of its rim on
    the mask's outline (``outside``: the outline's pixels); None otherwise."""
    import cv2

    (pa, pb), (ra, rb) = _mean_ab(bins[piece]), _mean_ab(bins[mask & ~piece])
    apart = math.hypot(pa - ra, pb - rb)
    if math.hypot(pa, pb) < CUT_CHROMA or apart < CUT_APART:
        return None
    rim = piece & (cv2.erode(np.pad(piece.astype(np.uint8), 1), np.ones((3, 3), np.uint8))[1:-1, 1:-1] == 0)
    return apart if float((rim & outside).sum()) / max(int(rim.sum()), 1) >= CUT_OUTLINE else None


def left_apart(mask: np.ndarray, cut: np.ndarray, bins: np.ndarray | None = None) -> np.ndarray:
    """The parts of ``mask`` that ``cut`` leaves apart from the body (the largest part left), each
    touching the cut and under ``CUT_LEFT_APART`` of the mask: what was only joined to the body
    through the piece (8-connected). With ``bins`` (:func:`colour_bins`' of the mask's pixels), a
    part whose mean a*b* is within ``CUT_BODY_COLOUR`` of the body's is the body's own and stays
    (ears beyond the butterfly that lies across a head), and one of another colour goes up to
    ``CUT_LEFT_LARGE`` of the mask (what is left of another character or object the piece was part of)."""
    if bins is None:
        return parts_apart(mask & ~cut, cut, int(mask.sum()))
    ca, cb = _bin_centres()
    return parts_apart(mask & ~cut, cut, int(mask.sum()), (ca[bins], cb[bins]))


def parts_apart(rest: np.ndarray, cut: np.ndarray, area: int,
                colour: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`left_apart`'s rule on ``rest`` (what is left of a mask of ``area`` pixels once ``cut`` is
    taken from it), ``colour``: each pixel's (a*, b*) (OpenCV's 8-bit Lab, minus 128 or not: only
    differences count), at the size judged or at the image's own (curation/images.py, ``cut_piece``)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
    if count <= 2:
        return np.zeros_like(rest)
    areas = stats[:, cv2.CC_STAT_AREA]
    near = cv2.dilate(cut.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    take = np.zeros(count, bool)
    take[np.unique(labels[near & rest])] = True
    take &= areas < (CUT_LEFT_APART if colour is None else CUT_LEFT_LARGE) * area
    body = 1 + int(np.argmax(areas[1:]))
    take[0] = take[body] = False
    if colour is not None and take.any():
        take &= _other_colour(labels, count, body, colour)
    return take[labels]


def stray_parts(mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` (8-connected) that stand apart from its body (the largest part): at least
    ``STRAY_GAP`` of the body's box diagonal and ``STRAY_GAP_PX`` away from it (``mask`` at the frame's
    scale: the cut-out), under ``STRAY_SHARE`` of the mask, and more than ``CUT_BODY_COLOUR`` from the
    body's mean a*b* (``rgb``: the pixels, uint8). No cut needs to show them as another object's: they
    lie apart, in another colour."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return np.zeros(mask.shape, bool)
    areas = stats[:, cv2.CC_STAT_AREA]
    body = 1 + int(np.argmax(areas[1:]))
    take = areas < STRAY_SHARE * areas[1:].sum()
    take[0] = take[body] = False
    if take.any():
        lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float32)
        take &= _other_colour(labels, count, body, (lab[..., 1], lab[..., 2]))
    if take.any():
        gap = cv2.distanceTransform((labels != body).astype(np.uint8), cv2.DIST_L2, 3)
        reach = max(STRAY_GAP * math.hypot(stats[body, cv2.CC_STAT_WIDTH], stats[body, cv2.CC_STAT_HEIGHT]),
                    STRAY_GAP_PX)
        for k in np.flatnonzero(take):
            x, y, w, h = stats[k, :4]
            take[k] = gap[y : y + h, x : x + w][labels[y : y + h, x : x + w] == k].min() >= reach
    return take[labels]


def _other_colour(labels: np.ndarray, count: int, body: int, colour: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per part of ``labels``: its mean a*b* more than ``CUT_BODY_COLOUR`` from the ``body`` part's."""
    a, b = colour
    n = np.maximum(np.bincount(labels.ravel(), minlength=count), 1)
    mean_a = np.bincount(labels.ravel(), a.ravel(), minlength=count) / n
    mean_b = np.bincount(labels.ravel(), b.ravel(), minlength=count) / n
    return np.hypot(mean_a - mean_a[body], mean_b - mean_b[body]) > CUT_BODY_COLOUR
