"""Where the caption and dataset stages find a character's instances.

In a project: ``character_members`` (identity's reviewed membership), each member with its
instance and lineage from the one reader of a project's instances
(:func:`animlora.records.segment.project_instances`, which the identity inputs read too) and
the prefilter's verdict (a rejected instance is left out). Standalone: a folder of RGBA cut-outs is
one character; an instance id is the file's content hash and it has no lineage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animlora.io.files import file_sha256, safe_name
from animlora.io.images import list_images

if TYPE_CHECKING:
    from collections.abc import Iterable

    from animlora.catalog import Catalog

def stage_dir(root: Path, stage: str) -> Path:
    """A project's folder of an upstream stage (named once, in the stage registry; docs/contract.md)."""
    from animlora.records.folders import stage_folder

    return root / stage_folder(stage, root)


def file_id(path: Path) -> str:
    """Content id of a standalone cut-out (sha256 of its bytes, 16 hex digits)."""
    return file_sha256(path)[:16]


@dataclass(frozen=True)
class Member:
    """One instance of one character, with what is known of where it came from."""

    instance_id: str
    character: str
    image_path: str  # absolute path of the RGBA cut-out
    stem: str  # file stem for outputs
    frame_path: str | None = None  # absolute path of the source frame
    bbox: tuple[int, int, int, int] | None = None
    frame_size: tuple[int, int] | None = None
    frame_id: str | None = None
    video_id: str | None = None
    video_name: str | None = None
    shot_id: str | None = None
    track_id: str | None = None
    timestamp: float | None = None
    frame_index: int | None = None
    sharpness: float | None = None
    truncated: bool | None = None
    area_fraction: float | None = None
    mask_path: str | None = None  # the segmentation mask (lineage)
    # the instance's box with other characters/props filled in (deocclude stage), and where it
    # sits in the frame (x, y, w, h)
    filled_path: str | None = None
    filled_box: tuple[int, int, int, int] | None = None
    # the enhance stage's enlargement of the region the dataset crops (RGBA PNG), the region in
    # the frame (x, y, w, h), its scale and what made it
    enhanced_path: str | None = None
    enhanced_region: tuple[int, int, int, int] | None = None
    enhanced_scale: float | None = None
    enhanced_method: str | None = None
    enhanced_ssim: float | None = None
    problem: str = ""  # why it cannot be used (missing files), "" when fine

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        data = dict(data)
        for key in ("bbox", "frame_size", "filled_box", "enhanced_region"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def folder_members(folder: Path, character: str) -> list[Member]:
    """A folder of cut-outs as one character (no lineage)."""
    members = []
    seen: set[str] = set()
    for path in list_images(folder):
        try:
            iid = file_id(path)
        except OSError as exc:
            members.append(Member(path.stem, character, str(path), path.stem, problem=f"unreadable ({exc})"))
            continue
        if iid in seen:  # the same file twice (a copy) is one instance
            continue
        seen.add(iid)
        members.append(Member(iid, character, str(path), path.stem))
    return members


def project_members(catalog: Catalog, root: Path, characters: list[str] | None = None,
                    assigned: dict[str, str] | None = None) -> list[Member]:
    """Reviewed members of every (or the given) character, with lineage; of ``assigned`` (instance
    id -> character) instead of the reviewed members when given."""
    from animlora.records import decisions, prefilter, segment

    instances = segment.project_instances(catalog)
    verdicts = prefilter.verdicts(catalog)
    wanted = set(characters) if characters else None
    assigned = decisions.members(catalog) if assigned is None else assigned
    members_of = sorted((c, i) for i, c in assigned.items() if wanted is None or c in wanted)
    seg_dir, filt_dir, frames_dir = (stage_dir(root, s) for s in ("segment", "prefilter", "extract"))
    filled = deoccluded(catalog, root)
    enhanced = enhanced_crops(catalog, root)
    members = []
    for character, instance_id in members_of:
        inst = instances.get(instance_id)  # None: the segment stage has no such instance (no lineage)
        verdict = verdicts.get(instance_id)
        filled_path, filled_box = filled.get(instance_id, (None, None))
        if verdict is not None and not verdict.kept:
            continue  # the prefilter rejected it: downstream reads only kept=1
        image = None
        if verdict is not None and verdict.path:
            image = filt_dir / verdict.path
        elif inst is not None and inst.path:
            image = seg_dir / inst.path
        problem = ""
        if image is None:
            problem = "no cut-out recorded for this instance"
        elif not image.is_file():
            problem = f"cut-out missing: {image}"
        frame = frames_dir / inst.frame_path if inst is not None and inst.frame_path else None
        if not problem and inst is not None and inst.frame_id and (frame is None or not frame.is_file()):
            problem = f"source frame gone: {frame or inst.frame_id}"
        bbox: Any = inst.bbox if inst is not None else None
        if isinstance(bbox, str):
            try:
                bbox = tuple(int(round(v)) for v in json.loads(bbox))
            except (ValueError, TypeError):
                bbox = None
        size = (int(inst.frame_width), int(inst.frame_height)) if inst and inst.frame_width and inst.frame_height \
            else None
        members.append(Member(
            instance_id=instance_id, character=character,
            image_path=str(image) if image else "", stem=safe_name(instance_id),
            frame_path=str(frame) if frame else None, bbox=bbox if bbox and len(bbox) == 4 else None,
            frame_size=size, frame_id=inst.frame_id if inst else None, video_id=inst.video_id if inst else None,
            video_name=inst.video_name if inst else None, shot_id=inst.shot_id if inst else None,
            track_id=inst.track_id if inst else None, timestamp=inst.timestamp if inst else None,
            frame_index=inst.frame_index if inst else None, sharpness=inst.sharpness if inst else None,
            truncated=None if inst is None or inst.truncated is None else bool(inst.truncated),
            area_fraction=inst.area_fraction if inst else None,
            mask_path=str(seg_dir / inst.mask_path) if inst and inst.mask_path else None,
            filled_path=filled_path, filled_box=filled_box, problem=problem,
            **enhanced.get(instance_id, {}),
        ))
    return members


def noise_members(catalog: Catalog, root: Path) -> list[Member]:
    """The instances the clustering left in its noise and review put in no character, as members of
    ``noise`` (what a dataset check may compare with; never a dataset's)."""
    from animlora.identity.decisions import NOISE_ID
    from animlora.records import cluster, decisions

    reviewed = decisions.members(catalog)
    return project_members(catalog, root, assigned={
        i: NOISE_ID for i, c in cluster.assignments(catalog).items() if c == NOISE_ID and i not in reviewed})


def noise_nearest(catalog: Catalog, members: Iterable[Member]) -> dict[str, str]:
    """Instance id -> the character of the cluster nearest it, for the instances the clustering
    left in its noise and review put in no character (the cluster stage's nearest cluster; a
    cluster's character is that of most of its ``members``, after review's names and merges)."""
    from collections import Counter

    from animlora.identity.decisions import NOISE_ID
    from animlora.records import cluster, decisions

    base = cluster.assignments(catalog)
    votes: dict[str, Counter[str]] = {}
    for m in members:
        if m.instance_id in base:
            votes.setdefault(base[m.instance_id], Counter())[m.character] += 1
    reviewed = decisions.members(catalog)
    return {iid: votes[cid].most_common(1)[0][0] for iid, cid in cluster.nearest_others(catalog, NOISE_ID).items()
            if cid in votes and iid not in reviewed}


def deoccluded(catalog: Catalog, root: Path) -> dict[str, tuple[str, tuple[int, int, int, int]]]:
    """instance id -> (filled box image, its (x, y, w, h) in the frame), from the deocclude
    stage's catalog records (instances another character or prop overlapped)."""
    from animlora.records.deocclude import fills_by_instance

    folder = stage_dir(root, "deocclude")
    return {key: (str(folder / fill.path), fill.box)  # records of stage version 1 have no box
            for key, fill in fills_by_instance(catalog).items() if fill.box is not None}


def enhanced_crops(catalog: Catalog, root: Path) -> dict[str, dict[str, Any]]:
    """instance id -> the Member fields of its accepted enhanced crop (enhance stage records)."""
    from animlora.records.enhance import accepted_by_item

    folder = stage_dir(root, "enhance")
    return {key: {"enhanced_path": str(folder / r.path), "enhanced_region": r.region, "enhanced_scale": r.scale,
                  "enhanced_method": r.method, "enhanced_ssim": r.ssim}
            for key, r in accepted_by_item(catalog).items() if r.path}


def trigger_for(root: Path | None, character: str) -> str:
    """The character's trigger word: ``characters/<name>.yaml`` ``trigger``, else the name."""
    if root is not None:
        from animlora.config.loader import find_character

        spec = find_character(root / "characters", character)
        if spec is not None:
            return spec.trigger_word
    return character


def stat_key(path: str | None) -> tuple[Any, ...]:
    """Cheap change detector of a file for fingerprints (size, mtime)."""
    if not path:
        return ()
    try:
        st = Path(path).stat()
    except OSError:
        return ("missing",)
    return (st.st_size, st.st_mtime_ns)
