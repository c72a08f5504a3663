"""Score a finished animlora project against rendered ground truth (the cgi-bench format).

    PYTHONPATH=src python benchmarks/quality.py PROJECT TRUTH [--json OUT.json] [--video NAME]
        [--min-area 0.003] [--mask-threshold 128] [--cut-tolerance 2] [--quiet]

PROJECT is a project folder after ``animlora run`` (as far as it got: every section scores
what exists); TRUTH is a folder rendered by ../shared/cgi-bench (``film.mp4``, ``masks/``,
``truth.json``). Printed: a table; ``--json`` also writes every number (``--json -`` prints
the JSON instead of the table).

What is measured (the definitions; docs/quality.md has the reasons):

1. **cuts** -- the project's shot starts (``shots.start_frame`` of every shot but the first)
   against truth ``cuts`` (hard cuts) and the ``dissolve`` span. A boundary within
   ``--cut-tolerance`` frames of a hard cut matches it (each cut once). The dissolve counts as
   ONE transition: the first boundary inside [first - tol, last + tol] finds it, every further
   one there is a false positive. A boundary on the lightning flash (``flash_frames`` +- tol)
   is a false positive, counted again as ``flash_cuts``. F1 = 2TP / (2TP + FP + FN).
2. **masks**, on every frame the segment stage processed: a character is *visible* in a
   frame when its truth mask (cropped like the frames, if extract removed bars) covers
   ``--min-area`` of the frame. An instance mask is binarised at ``--mask-threshold`` (of 255).
   Instances are matched one-to-one to visible characters by IoU (greedy, best first);
   ``mask_iou`` is the mean over visible character-frames of the matched instance's IoU
   (0 when none); ``union_iou`` the IoU of the union of the instances that belong to it.
   Each visible character-frame gets one status:
   ``one`` (exactly one instance, clean), ``missed`` (no instance), ``split`` (two or more
   instances each mostly inside it or covering >= 20% of it: head and body apart),
   ``merged_character`` (its one instance also covers >= 20% of another visible character,
   or >= 20% of the instance is another character), ``merged_prop`` (>= 20% of the instance
   lies outside every character, the truth grown by 2 px), ``partial`` (IoU < 0.5).
   ``one_instance`` = share of ``one``.
3. **identity**: every instance gets a truth label: the character holding > 50% of its mask,
   else 0 ("not a character": props, scenery, slivers). Over the instances the cluster stage
   assigned, noise excluded: ARI against the truth labels for instances of characters
   (``ari``) and for all (``ari_all``, label 0 a class of its own); per cluster its majority
   label and purity; the confusable pair is *co-clustered* when one cluster holds at least
   max(2, 10% of the cluster) of each.
4. **datasets**: every folder the dataset stage wrote (its ``metadata.json``): each image is
   traced to its instance (``instance_id``), and so to its frame and mask. The folder's
   character is the majority truth label of its images; ``precision`` = share of images of
   that character; ``clean`` = share that are also that character's one clean instance in
   that frame (status ``one``: not a head, not merged), or an image the dataset joined from
   parts (``joined``, dataset.join_parts) that are all the parts of a ``split`` character there
   and together its one clean instance. Also: which characters got no folder at >= 0.98
   precision.
5. **captions** (when the truth has each shot's ``mood``): every dataset image's caption
   against its shot's mood — the light and time-of-day words that *agree* with it (day:
   "daytime"; sunset: "at sunset", "warm lighting"; night: "at night", "dark, low-key
   lighting", "cool lighting") and those that *contradict* it (day: night, sunset, dark or cool
   words; sunset: "daytime", "at night", "cool lighting"; night: "daytime", "at sunset",
   "bright, soft lighting", "warm lighting"); and how many images come from the truth's flash
   frames (a light that is not the scene's).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LABEL_SHARE = 0.5  # an instance is character k's when > this share of its pixels are k's
PART_COVER = 0.2  # ... or when it covers >= this share of k's visible pixels (a split part)
PART_MIN = 0.05  # a part mostly inside k but covering < this share of k is a speck, not a part
MERGE_SHARE = 0.2  # another character / non-character pixels >= this -> merged
GOOD_IOU = 0.5  # under this, the one instance is only part of the character
EDGE_GROW = 2  # px the truth is grown by before counting "outside every character" pixels


class QualityError(Exception):
    """A project or truth folder this script cannot score (printed as one line)."""


# ---------------------------------------------------------------------------------------------
# 1. cuts
def score_cuts(predicted: Iterable[int], cuts: Iterable[int], dissolve: Sequence[int] | None = None,
               flash_frames: Iterable[int] = (), tolerance: int = 2) -> dict[str, Any]:
    """Precision/recall/F1 of shot boundaries; the dissolve is one transition found once, the
    flash must not be a cut. See the module docstring."""
    preds = sorted(set(int(p) for p in predicted))
    truth = sorted(set(int(c) for c in cuts))
    flash = sorted(set(int(f) for f in flash_frames))
    d0, d1 = (int(dissolve[0]), int(dissolve[1])) if dissolve else (None, None)

    def in_dissolve(p: int, tol: int) -> bool:
        return d0 is not None and d0 - tol <= p <= d1 + tol

    in_span = [p for p in preds if in_dissolve(p, 0)]
    rest = [p for p in preds if not in_dissolve(p, 0)]
    # greedy one-to-one matching of the rest to hard cuts, nearest pairs first
    pairs = sorted((abs(p - c), p, c) for p in rest for c in truth if abs(p - c) <= tolerance)
    used_p: set[int] = set()
    used_c: set[int] = set()
    for _, p, c in pairs:
        if p not in used_p and c not in used_c:
            used_p.add(p)
            used_c.add(c)
    unmatched = [p for p in rest if p not in used_p]
    in_span += [p for p in unmatched if in_dissolve(p, tolerance)]
    false = [p for p in unmatched if not in_dissolve(p, tolerance)]
    dissolve_found = len(in_span)
    tp = len(used_c) + (1 if dissolve_found else 0)
    fp = len(false) + max(0, dissolve_found - 1)
    fn = len(truth) - len(used_c) + (1 if d0 is not None and not dissolve_found else 0)
    flash_cuts = [p for p in false if flash and flash[0] - tolerance <= p <= flash[-1] + tolerance]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {
        "f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
        "tp": tp, "fp": fp, "fn": fn, "predicted": len(preds), "truth": len(truth) + (1 if d0 is not None else 0),
        "dissolve_found": dissolve_found, "flash_cuts": len(flash_cuts),
        "missed_cuts": [c for c in truth if c not in used_c], "false_cuts": false,
    }


# ---------------------------------------------------------------------------------------------
# 2. one frame: instances against the truth mask
@dataclass
class FrameScore:
    """Per visible character: matched IoU, union IoU, status; per instance: its truth label."""

    characters: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: list[int] = field(default_factory=list)  # truth label of each instance, in order


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(px):
        g = out.copy()
        g[1:, :] |= out[:-1, :]
        g[:-1, :] |= out[1:, :]
        g[:, 1:] |= out[:, :-1]
        g[:, :-1] |= out[:, 1:]
        out = g
    return out


def _foreign(counts: np.ndarray, n: int, mask: np.ndarray, k: int, visible: Sequence[int], area: dict[int, int],
             grown: np.ndarray) -> tuple[float, float, float]:
    """What of a mask (``n`` pixels, ``counts`` per truth id) is not character ``k``: the share that is
    other characters, the largest share of another visible character it covers, the share outside
    every character (grown)."""
    other_share = (counts[1:].sum() - counts[k]) / n if n else 0.0
    other_cover = max((counts[o] / area[o] for o in visible if o != k), default=0.0)
    outside = float((mask & ~grown).sum()) / n if n else 0.0
    return other_share, other_cover, outside


def score_frame(truth: np.ndarray, instances: Sequence[np.ndarray], min_area: float = 0.003) -> FrameScore:
    """``truth``: HxW ints (0 = none, k = character k); ``instances``: HxW bool masks.

    Returns the truth label of each instance and, for each visible character (truth area >=
    ``min_area`` of the frame), its IoU and status (see the module docstring)."""
    truth = np.asarray(truth).astype(np.int64)
    n_px = truth.size
    ids, areas = np.unique(truth, return_counts=True)
    area = {int(i): int(a) for i, a in zip(ids, areas, strict=True) if i > 0}
    visible = sorted(k for k, a in area.items() if a >= min_area * n_px)
    grown = _grow(truth > 0, EDGE_GROW)
    size = max(int(truth.max()), 0) + 1
    overlaps: list[np.ndarray] = []  # per instance: pixel count per truth id
    sizes: list[int] = []
    labels: list[int] = []
    for m in instances:
        m = np.asarray(m, bool)
        counts = np.bincount(truth[m], minlength=size)
        overlaps.append(counts)
        n = int(m.sum())
        sizes.append(n)
        best = int(np.argmax(counts[1:])) + 1 if size > 1 else 0
        labels.append(best if n and best and counts[best] > LABEL_SHARE * n else 0)
    ious = np.zeros((len(instances), len(visible)))
    for i, counts in enumerate(overlaps):
        for j, k in enumerate(visible):
            inter = counts[k]
            ious[i, j] = inter / (sizes[i] + area[k] - inter) if sizes[i] + area[k] - inter else 0.0
    matched: dict[int, int] = {}
    order = sorted(((ious[i, j], i, j) for i in range(len(instances)) for j in range(len(visible))), reverse=True)
    taken: set[int] = set()
    for iou, i, j in order:
        if iou <= 0 or i in taken or visible[j] in matched:
            continue
        taken.add(i)
        matched[visible[j]] = i
    out = FrameScore(labels=labels)
    for j, k in enumerate(visible):
        parts = [i for i, counts in enumerate(overlaps)
                 if (labels[i] == k and counts[k] >= PART_MIN * area[k]) or counts[k] >= PART_COVER * area[k]]
        union_inter = union_size = 0
        union_clean = False  # the parts together are the character's one clean instance (a joined image)
        if parts:
            u = np.zeros(truth.shape, bool)
            for i in parts:
                u |= np.asarray(instances[i], bool)
            union_inter = int((u & (truth == k)).sum())
            union_size = int(u.sum())
            if union_size:
                foreign = _foreign(np.bincount(truth[u], minlength=size), union_size, u, k, visible, area, grown)
                union_clean = bool(max(foreign) < MERGE_SHARE)
        union_iou = union_inter / (union_size + area[k] - union_inter) if parts else 0.0
        union_clean = union_clean and union_iou >= GOOD_IOU
        iou = float(ious[matched[k], j]) if k in matched else 0.0
        if not parts:
            status = "missed"
        elif len(parts) > 1:
            status = "split"
        else:
            i = parts[0]
            other_share, other_cover, outside = _foreign(overlaps[i], sizes[i], np.asarray(instances[i], bool), k,
                                                         visible, area, grown)
            own_iou = float(ious[i, j])
            if other_cover >= MERGE_SHARE or other_share >= MERGE_SHARE:
                status = "merged_character"
            elif outside >= MERGE_SHARE:
                status = "merged_prop"
            elif own_iou < GOOD_IOU:
                status = "partial"
            else:
                status = "one"
        out.characters[k] = {"iou": round(iou, 4), "union_iou": round(float(union_iou), 4), "status": status,
                             "instances": [int(i) for i in parts], "area": area[k], "union_clean": union_clean}
    return out


# ---------------------------------------------------------------------------------------------
# 3. identity
def adjusted_rand(truth: Sequence[Any], predicted: Sequence[Any]) -> float:
    """Adjusted Rand index (Hubert & Arabie), 1.0 for fewer than two items."""
    if len(truth) < 2:
        return 1.0
    t_ids = {v: i for i, v in enumerate(sorted(set(truth), key=str))}
    p_ids = {v: i for i, v in enumerate(sorted(set(predicted), key=str))}
    table = np.zeros((len(t_ids), len(p_ids)), np.int64)
    for a, b in zip(truth, predicted, strict=True):
        table[t_ids[a], p_ids[b]] += 1

    def comb2(x: np.ndarray | int) -> Any:
        return x * (x - 1) / 2

    n = len(truth)
    index = comb2(table).sum()
    rows, cols = comb2(table.sum(1)).sum(), comb2(table.sum(0)).sum()
    expected = rows * cols / comb2(n)
    top = (rows + cols) / 2
    if top == expected:
        return 1.0
    return float((index - expected) / (top - expected))


def score_identity(truth_of: dict[str, int], cluster_of: dict[str, str], noise: set[str],
                   names: dict[int, str] | None = None, cluster_names: dict[str, str] | None = None,
                   confusable: Iterable[Sequence[int]] = ()) -> dict[str, Any]:
    """``truth_of`` instance -> truth label (0 = not a character); ``cluster_of`` instance ->
    cluster id; ``noise`` the noise cluster ids."""
    names = names or {}
    cluster_names = cluster_names or {}
    ids = [i for i in cluster_of if i in truth_of]
    clustered = [i for i in ids if cluster_of[i] not in noise]
    chars = [i for i in clustered if truth_of[i] > 0]
    ari = adjusted_rand([truth_of[i] for i in chars], [cluster_of[i] for i in chars]) if chars else None
    ari_all = adjusted_rand([truth_of[i] for i in clustered], [cluster_of[i] for i in clustered]) if clustered else None
    members: dict[str, Counter[int]] = defaultdict(Counter)
    for i in clustered:
        members[cluster_of[i]][truth_of[i]] += 1
    clusters = []
    for cid, comp in sorted(members.items(), key=lambda kv: -sum(kv[1].values())):
        size = sum(comp.values())
        label, top = comp.most_common(1)[0]
        clusters.append({
            "cluster": cluster_names.get(cid, cid), "size": size, "majority": names.get(label, str(label)),
            "majority_id": label, "purity": round(top / size, 4),
            "composition": {names.get(k, str(k)): v for k, v in comp.most_common()},
        })
    pairs = []
    for a, b in confusable:
        both = [cluster_names.get(cid, cid) for cid, comp in members.items()
                if min(comp[a], comp[b]) >= max(2, 0.1 * sum(comp.values()))]
        pairs.append({"pair": [names.get(a, str(a)), names.get(b, str(b))], "co_clustered": bool(both),
                      "clusters": both})
    char_clusters = [c for c in clusters if c["majority_id"] > 0]
    return {
        "instances": len(ids), "clustered": len(clustered), "noise": len(ids) - len(clustered),
        "noise_fraction": round((len(ids) - len(clustered)) / len(ids), 4) if ids else None,
        "non_character_clustered": sum(1 for i in clustered if truth_of[i] == 0),
        "ari": None if ari is None else round(ari, 4), "ari_all": None if ari_all is None else round(ari_all, 4),
        "min_purity": min((c["purity"] for c in char_clusters), default=None),
        "clusters": clusters, "confusable": pairs,
    }


# ---------------------------------------------------------------------------------------------
# 4. datasets
def score_dataset(images: Sequence[str], truth_of: dict[str, int], clean: set[str],
                  names: dict[int, str] | None = None) -> dict[str, Any]:
    """One dataset folder: ``images`` are its instance ids in order; ``clean`` the instance
    ids that are one whole clean instance of their character."""
    names = names or {}
    labels = [truth_of.get(i) for i in images]
    known = [v for v in labels if v is not None]
    comp = Counter(known)
    chars = Counter(v for v in known if v > 0)
    char = chars.most_common(1)[0][0] if chars else 0
    n = len(images)
    good = [i for i, v in zip(images, labels, strict=True) if v == char and char > 0]
    return {
        "images": n, "traced": len(known), "character": names.get(char, str(char)), "character_id": char,
        "precision": round(len(good) / n, 4) if n else None,
        "clean": round(sum(1 for i in good if i in clean) / n, 4) if n else None,
        "composition": {names.get(k, str(k)): v for k, v in comp.most_common()},
    }


# ---------------------------------------------------------------------------------------------
# 6. captions against the shot's mood
AGREES = {"day": ("daytime",), "sunset": ("at sunset", "warm lighting"),
          "night": ("at night", "dark, low-key lighting", "cool lighting")}
CONTRADICTS = {"day": ("at night", "at sunset", "dark, low-key lighting", "cool lighting"),
               "sunset": ("daytime", "at night", "cool lighting"),
               "night": ("daytime", "at sunset", "bright, soft lighting", "warm lighting")}


def score_captions(items: Sequence[tuple[int, str]], mood_of: dict[int, str], flash: set[int]) -> dict[str, Any]:
    """``items``: (frame index, caption) of every dataset image. Per mood: images, those with a
    word agreeing with it, those with a word contradicting it (and which words)."""
    per: dict[str, dict[str, Any]] = {}
    for frame, caption in items:
        mood = mood_of.get(frame)
        if mood not in AGREES:
            continue
        words = [w.strip() for w in caption.split(",")]
        # "dark, low-key lighting" is one phrase split by the caption's commas
        said = {w for w in (*AGREES[mood], *CONTRADICTS[mood]) if w in caption and
                (", " in w or w in words)}
        row = per.setdefault(mood, {"images": 0, "agree": 0, "contradict": 0, "contradicting": Counter()})
        row["images"] += 1
        row["agree"] += bool(said & set(AGREES[mood]))
        wrong = sorted(said & set(CONTRADICTS[mood]))
        row["contradict"] += bool(wrong)
        row["contradicting"].update(wrong)
    for row in per.values():
        row["contradicting"] = dict(row["contradicting"])
    per = {mood: per[mood] for mood in AGREES if mood in per}  # day, sunset, night
    return {"per_mood": per, "images": sum(r["images"] for r in per.values()),
            "contradict": sum(r["contradict"] for r in per.values()),
            "flash_images": sum(1 for frame, _ in items if frame in flash)}


# ---------------------------------------------------------------------------------------------
# 5. coverage: character-shots
def score_coverage(truth_frames: Sequence[dict[str, Any]], min_px: float, stages: dict[str, set[tuple[int, int]]],
                   names: dict[int, str] | None = None) -> dict[str, Any]:
    """Per character: the shots it is visible in (truth area >= ``min_px`` in some frame), and
    how many of them each stage reached. ``stages``: name -> {(character, frame index)}."""
    names = names or {}
    shot_of = {int(f["frame"]): int(f["shot"]) for f in truth_frames}
    visible: dict[int, set[int]] = defaultdict(set)
    for f in truth_frames:
        for c in f.get("characters", []):
            if c.get("area_px", 0) >= min_px:
                visible[int(c["id"])].add(int(f["shot"]))
    out: dict[str, Any] = {}
    totals: Counter[str] = Counter()
    for k in sorted(visible):
        row = {"shots": len(visible[k])}
        for stage, pairs in stages.items():
            got = {shot_of[fr] for kk, fr in pairs if kk == k and fr in shot_of} & visible[k]
            row[stage] = len(got)
            totals[stage] += len(got)
        totals["shots"] += len(visible[k])
        out[names.get(k, str(k))] = row
    share = {stage: round(totals[stage] / totals["shots"], 4) if totals["shots"] else None for stage in stages}
    return {"character_shots": totals["shots"], "share": share, "per_character": out}


# ---------------------------------------------------------------------------------------------
# reading the project and the truth
def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)


@dataclass
class Truth:
    root: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> Truth:
        path = root / "truth.json"
        if not path.is_file():
            raise QualityError(f"{root}: no truth.json (render one with ../shared/cgi-bench/render.sh SEED DIR)")
        data = json.loads(path.read_text())
        for key in ("cuts", "characters", "n_frames"):
            if key not in data:
                raise QualityError(f"{path}: no '{key}' (not the cgi-bench format?)")
        if not (root / "masks").is_dir():
            raise QualityError(f"{root}: no masks/ folder")
        return cls(root, data)

    @property
    def names(self) -> dict[int, str]:
        return {int(k): v for k, v in self.data["characters"].items()} | {0: "not_character"}

    def mask(self, index: int, crop: Sequence[int] | None, shape: tuple[int, int]) -> np.ndarray:
        path = self.root / "masks" / f"frame_{index:05d}.png"
        if not path.is_file():
            raise QualityError(f"{path}: missing (the project's frame {index} has no truth mask)")
        m = _read_png(path)
        if crop:
            x, y, w, h = (int(v) for v in crop)
            m = m[y : y + h, x : x + w]
        if m.shape[:2] != shape:
            from PIL import Image

            m = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((shape[1], shape[0]), Image.NEAREST))
        return m


class Project:
    """Read-only view of a project's catalog and dataset folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        db = root / "catalog.sqlite"
        if not db.is_file():
            raise QualityError(f"{root}: no catalog.sqlite (not an animlora project, or nothing ran yet)")
        try:
            self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise QualityError(f"{db}: cannot open ({exc})") from exc
        self.conn.row_factory = sqlite3.Row

    def has(self, table: str, *cols: str) -> bool:
        have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        return bool(have) and set(cols) <= have

    def need(self, table: str, *cols: str) -> None:
        have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            raise QualityError(f"{self.root}: the catalog has no '{table}' table (stage not run, or schema changed)")
        missing = set(cols) - have
        if missing:
            raise QualityError(f"{self.root}: catalog table '{table}' lacks {sorted(missing)} "
                               f"(schema changed: update benchmarks/quality.py)")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(self.conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise QualityError(f"{self.root}: catalog query failed ({exc}): {sql[:80]}") from exc

    def folder(self, stage: str, default: str) -> Path:
        try:
            from animlora.stages import STAGES

            entry = STAGES.get(stage)
            if entry:
                return self.root / entry[0]
        except Exception:  # an older/newer registry: fall back to the documented folder
            pass
        return self.root / default

    def video(self, truth: Truth, name: str | None) -> sqlite3.Row:
        self.need("videos", "id", "name", "frame_count", "crop")
        videos = self.rows("SELECT * FROM videos")
        if name:
            videos = [v for v in videos if v["name"] == name or Path(v["path"]).name == name]
        elif len(videos) > 1:
            videos = [v for v in videos if v["frame_count"] == truth.data["n_frames"]] or videos
        if len(videos) != 1:
            raise QualityError(f"{self.root}: {len(videos)} videos match; pass --video NAME")
        return videos[0]


def frame_offset(truth: Truth, samples: Sequence[tuple[int, np.ndarray]], crop: Sequence[int] | None,
                 span: int = 2) -> int | None:
    """The frame offset (-span..span) at which the instances' union matches the truth's
    characters best, when that is not 0 and better by > 0.05 mean IoU; else None."""
    if not samples:
        return None
    scores: dict[int, list[float]] = defaultdict(list)
    for index, union in samples:
        for d in range(-span, span + 1):
            if not 0 <= index + d < truth.data["n_frames"]:
                continue
            t = truth.mask(index + d, crop, union.shape[:2]) > 0
            inter, both = (t & union).sum(), (t | union).sum()
            scores[d].append(float(inter / both) if both else 1.0)
    mean = {d: float(np.mean(v)) for d, v in scores.items() if v}
    best = max(mean, key=lambda d: mean[d])
    return best if best != 0 and mean[best] > mean.get(0, 0.0) + 0.05 else None


def evaluate(project_dir: Path, truth_dir: Path, video_name: str | None = None, min_area: float = 0.003,
             mask_threshold: int = 128, tolerance: int = 2) -> dict[str, Any]:
    truth = Truth.load(truth_dir)
    proj = Project(project_dir)
    names = truth.names
    video = proj.video(truth, video_name)
    vid = video["id"]
    crop = json.loads(video["crop"]) if video["crop"] else None
    result: dict[str, Any] = {"project": str(project_dir), "truth": str(truth_dir), "video": video["name"],
                              "frames_in_video": video["frame_count"], "truth_frames": truth.data["n_frames"],
                              "crop": crop, "settings": {"min_area": min_area, "mask_threshold": mask_threshold,
                                                         "cut_tolerance": tolerance}}
    if video["frame_count"] and video["frame_count"] != truth.data["n_frames"]:
        result["warning"] = (f"the video has {video['frame_count']} frames, the truth {truth.data['n_frames']}: "
                             "not the same film?")

    # 1. cuts
    if proj.has("shots", "video_id", "start_frame"):
        starts = [r["start_frame"] for r in proj.rows("SELECT start_frame FROM shots WHERE video_id = ?", (vid,))]
        starts = sorted(starts)[1:]
        result["cuts"] = score_cuts(starts, truth.data["cuts"], truth.data.get("dissolve"),
                                    truth.data.get("flash_frames") or ([truth.data["flash_frame"]]
                                                                       if truth.data.get("flash_frame") is not None
                                                                       else []), tolerance)
    # 2. masks
    truth_of: dict[str, int] = {}
    clean: set[str] = set()
    whole_parts: set[frozenset[str]] = set()  # the parts of a split character that together are it, clean
    present: set[int] = set()  # characters visible in some segmented frame
    inst_frame: dict[str, int] = {}
    reached: dict[str, set[tuple[int, int]]] = {"segmented": set(), "clean": set(), "dataset": set()}
    if proj.has("instances", "id", "frame_id", "mask_path") and proj.has("frames", "id", "frame_index"):
        seg_dir = proj.folder("segment", "segmentation")
        frames = proj.rows("SELECT f.id, f.frame_index FROM frames f WHERE f.video_id = ? AND f.id IN "
                           "(SELECT frame_id FROM segment_frames WHERE status = 'ok') ORDER BY f.frame_index",
                           (vid,)) if proj.has("segment_frames", "frame_id", "status") else \
            proj.rows("SELECT f.id, f.frame_index FROM frames f WHERE f.video_id = ? AND f.id IN "
                      "(SELECT frame_id FROM instances)", (vid,))
        by_frame: dict[str, list[sqlite3.Row]] = defaultdict(list)
        for r in proj.rows("SELECT id, frame_id, mask_path FROM instances WHERE video_id = ? ORDER BY id", (vid,)):
            by_frame[r["frame_id"]].append(r)
        per_char: list[dict[str, Any]] = []
        statuses: Counter[str] = Counter()
        samples: list[tuple[int, np.ndarray]] = []  # (frame index, union of its instances) for the offset check
        for f in frames:
            insts = by_frame.get(f["id"], [])
            masks = []
            for r in insts:
                p = Path(r["mask_path"])
                p = p if p.is_absolute() else seg_dir / p
                if not p.is_file():
                    raise QualityError(f"{p}: instance mask missing (catalog and files disagree)")
                masks.append(_read_png(p) >= mask_threshold)
            if masks:
                shape = masks[0].shape[:2]
            else:
                w, h = (crop[2], crop[3]) if crop else (truth.data["width"], truth.data["height"])
                shape = (int(h), int(w))
            t = truth.mask(int(f["frame_index"]), crop, shape)
            if masks and len(samples) < 400:
                samples.append((int(f["frame_index"]), np.logical_or.reduce(masks)))
            fs = score_frame(t, masks, min_area)
            for r, lab in zip(insts, fs.labels, strict=True):
                truth_of[r["id"]] = lab
                inst_frame[r["id"]] = int(f["frame_index"])
            for k, c in fs.characters.items():
                statuses[c["status"]] += 1
                present.add(k)
                per_char.append({"frame": int(f["frame_index"]), "character": k, **c})
                reached["segmented"].add((k, int(f["frame_index"])))
                if c["status"] == "one":
                    clean.add(insts[c["instances"][0]]["id"])
                    reached["clean"].add((k, int(f["frame_index"])))
                elif c["status"] == "split" and c["union_clean"]:
                    whole_parts.add(frozenset(insts[i]["id"] for i in c["instances"]))
        offset = frame_offset(truth, samples[:: max(1, len(samples) // 24)], crop)
        if offset is not None:
            result["warning"] = (result.get("warning", "") + f" the project's frames match the truth best "
                                 f"{offset:+d} frames off: frame indices disagree (decode order?)").strip()
        n = len(per_char)
        by_name: dict[str, Any] = {}
        for k in sorted({c["character"] for c in per_char}):
            cs = [c for c in per_char if c["character"] == k]
            by_name[names.get(k, str(k))] = {
                "character_frames": len(cs), "mask_iou": round(float(np.mean([c["iou"] for c in cs])), 4),
                "one_instance": round(sum(c["status"] == "one" for c in cs) / len(cs), 4),
                "status": dict(Counter(c["status"] for c in cs))}
        result["masks"] = {
            "frames": len(frames), "instances": sum(len(v) for v in by_frame.values()),
            "character_frames": n,
            "mask_iou": round(float(np.mean([c["iou"] for c in per_char])), 4) if n else None,
            "union_iou": round(float(np.mean([c["union_iou"] for c in per_char])), 4) if n else None,
            "one_instance": round(statuses["one"] / n, 4) if n else None,
            "status": dict(statuses.most_common()),
            "instance_labels": dict(Counter(names.get(v, str(v)) for v in truth_of.values()).most_common()),
            "per_character": by_name,
        }
        # each instance's truth by id (a character's name, or not_character): for walking one
        # character through the stages (prefilter verdicts, clusters, dataset folders)
        result["instance_truth"] = {i: names.get(v, str(v)) for i, v in sorted(truth_of.items())}
    # 3. identity
    if proj.has("cluster_assignments", "instance_id", "cluster_id") and proj.has("clusters", "id", "is_noise"):
        crow = proj.rows("SELECT * FROM clusters")
        noise = {r["id"] for r in crow if r["is_noise"]}
        cnames = {r["id"]: r["name"] for r in crow}
        cluster_of = {r["instance_id"]: r["cluster_id"]
                      for r in proj.rows("SELECT instance_id, cluster_id FROM cluster_assignments")}
        untraced = sum(1 for i in cluster_of if i not in truth_of)
        result["identity"] = score_identity(truth_of, cluster_of, noise, names, cnames,
                                            truth.data.get("confusable_pairs") or [])
        result["identity"]["untraced"] = untraced
    # 4. datasets
    ds_dir = proj.folder("dataset", "training_data")
    metas = sorted(ds_dir.glob("*/metadata.json")) + ([ds_dir / "metadata.json"]
                                                     if (ds_dir / "metadata.json").is_file() else [])
    folders = []
    captioned: list[tuple[int, str]] = []  # (frame index, caption) of every dataset image
    for path in metas:
        try:
            meta = json.loads(path.read_text())
            images = [r["instance_id"] for r in meta["images"]]
            captioned += [(int(r["frame_index"]), str(r["caption"])) for r in meta["images"]
                          if r.get("frame_index") is not None and r.get("caption") is not None]
            # an image joined from a split character's parts (dataset.join_parts) is clean when those
            # parts are all of it and together its one clean instance
            joined = {r["instance_id"] for r in meta["images"] if r.get("joined")
                      and frozenset([r["instance_id"], *r["joined"]]) in whole_parts}
        except (ValueError, KeyError, TypeError) as exc:
            raise QualityError(f"{path}: no images[].instance_id ({exc}); dataset metadata schema changed") from exc
        d = score_dataset(images, truth_of, clean | joined, names)
        d["joined"] = sum(1 for r in meta["images"] if r.get("joined"))
        folders.append({"folder": path.parent.name, "name": meta.get("character", path.parent.name), **d})
        reached["dataset"] |= {(truth_of[i], inst_frame[i]) for i in images if truth_of.get(i) and i in inst_frame}
    good = {d["character_id"] for d in folders if d["precision"] is not None and d["precision"] >= 0.98}
    result["datasets"] = {
        "folders": folders, "images": sum(d["images"] for d in folders),
        "characters_without_dataset": sorted(names[k] for k in present - good),
    }
    if isinstance(truth.data.get("frames"), list):
        w, h = (crop[2], crop[3]) if crop else (truth.data["width"], truth.data["height"])
        result["coverage"] = score_coverage(truth.data["frames"], min_area * w * h, reached, names)
        moods = {s["index"]: s.get("mood") for s in truth.data.get("shots") or [] if "index" in s}
        if any(moods.values()):
            mood_of = {f["frame"]: moods.get(f.get("shot")) for f in truth.data["frames"]}
            result["captions"] = score_captions(captioned, mood_of, set(truth.data.get("flash_frames") or []))
    return result


# ---------------------------------------------------------------------------------------------
# printing
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table(r: dict[str, Any]) -> str:
    lines = [f"project {r['project']}  vs  truth {r['truth']}  (video {r['video']})"]
    if r.get("warning"):
        lines.append(f"WARNING: {r['warning']}")
    c = r.get("cuts")
    if c:
        lines.append(f"cuts      F1 {_fmt(c['f1'])}  P {_fmt(c['precision'])}  R {_fmt(c['recall'])}  "
                     f"(tp {c['tp']} fp {c['fp']} fn {c['fn']}; dissolve found {c['dissolve_found']}x, "
                     f"flash cuts {c['flash_cuts']}; missed {c['missed_cuts']} false {c['false_cuts']})")
    else:
        lines.append("cuts      - (no shots)")
    m = r.get("masks")
    if m:
        lines.append(f"masks     IoU {_fmt(m['mask_iou'])} (union {_fmt(m['union_iou'])})  one instance "
                     f"{_fmt(m['one_instance'])}  over {m['character_frames']} character-frames in {m['frames']} "
                     f"frames, {m['instances']} instances")
        lines.append(f"          status {m['status']}")
        lines.append(f"          instances by truth: {m['instance_labels']}")
        for name, p in m["per_character"].items():
            lines.append(f"          {name:<14} frames {p['character_frames']:>4}  IoU {_fmt(p['mask_iou'])}  "
                         f"one {_fmt(p['one_instance'])}  {p['status']}")
    else:
        lines.append("masks     - (no instances)")
    i = r.get("identity")
    if i:
        lines.append(f"identity  ARI {_fmt(i['ari'])} (with non-characters {_fmt(i['ari_all'])})  min purity "
                     f"{_fmt(i['min_purity'])}  clustered {i['clustered']}/{i['instances']} (noise "
                     f"{_fmt(i['noise_fraction'])}), non-characters clustered {i['non_character_clustered']}")
        for p in i["confusable"]:
            lines.append(f"          confusable {p['pair']}: {'CO-CLUSTERED in ' + str(p['clusters']) if p['co_clustered'] else 'apart'}")
        for cl in i["clusters"]:
            lines.append(f"          {cl['cluster']:<22} {cl['size']:>4}  {cl['majority']:<14} purity "
                         f"{_fmt(cl['purity'])}  {cl['composition']}")
    else:
        lines.append("identity  - (no clusters)")
    cov = r.get("coverage")
    if cov:
        lines.append(f"coverage  {cov['character_shots']} character-shots; share reached by "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in cov["share"].items()))
        for name, row in cov["per_character"].items():
            lines.append(f"          {name:<14} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    d = r["datasets"]
    lines.append(f"datasets  {len(d['folders'])} folders, {d['images']} images; characters without a >=0.98 "
                 f"dataset: {d['characters_without_dataset']}")
    for f in d["folders"]:
        lines.append(f"          {f['folder']:<22} {f['images']:>4} images  {f['character']:<14} precision "
                     f"{_fmt(f['precision'])}  clean {_fmt(f['clean'])}  joined {f.get('joined', 0)}  {f['composition']}")
    cap = r.get("captions")
    if cap:
        lines.append(f"captions  {cap['contradict']} of {cap['images']} images with a word contradicting their shot's "
                     f"mood; {cap['flash_images']} from a flash frame")
        for mood, row in cap["per_mood"].items():
            lines.append(f"          {mood:<8} {row['images']:>4} images  agree {row['agree']:>3}  contradict "
                         f"{row['contradict']:>3}  {row['contradicting'] or ''}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--video", help="the video's name in the project when it has several")
    ap.add_argument("--min-area", type=float, default=0.003, help="visible: truth area >= this share of the frame")
    ap.add_argument("--mask-threshold", type=int, default=128, help="instance mask >= this (0-255) is inside")
    ap.add_argument("--cut-tolerance", type=int, default=2, help="frames a boundary may be off a hard cut")
    ap.add_argument("--json", metavar="PATH", help="write all numbers as JSON ('-' = print JSON, no table)")
    args = ap.parse_args(argv)
    try:
        r = evaluate(args.project.resolve(), args.truth.resolve(), args.video, args.min_area, args.mask_threshold,
                     args.cut_tolerance)
    except QualityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(json.dumps(r, indent=1))
        return 0
    print(table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
