"""Where the caption and dataset stages find a character's instances.

In a project: ``character_members`` (identity's reviewed membership) joined with ``instances``
(segment), ``prefilter_results`` (kept cut-outs), ``frames``/``shots``/``videos`` — each upstream
table read with a LEFT JOIN and tolerated when absent. Standalone: a folder of RGBA cut-outs is
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
    from animlora.catalog import Catalog

def stage_dir(root: Path, stage: str) -> Path:
    """A project's folder of an upstream stage (named once, in the stage registry; docs/contract.md)."""
    from animlora.records.folders import stage_folder

    return root / stage_folder(stage, root)


def columns(catalog: Catalog, table: str) -> set[str]:
    return {row[1] for row in catalog.rows(f"PRAGMA table_info({table})")}


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


def project_members(catalog: Catalog, root: Path, characters: list[str] | None = None) -> list[Member]:
    """Reviewed members of every (or the given) character, with lineage."""
    # every catalog has these tables (its migrations make them on open): no "absent" branch
    have_instances = have_prefilter = True
    inst_cols = columns(catalog, "instances")
    select = ["cm.instance_id AS instance_id", "cm.character AS character"]
    joins = []
    if have_instances:
        wanted = ["path", "mask_path", "bbox", "frame_id", "video_id", "shot_id", "track_id", "sharpness", "truncated",
                  "area_fraction"]
        select += [f"i.{c} AS i_{c}" if c in inst_cols else f"NULL AS i_{c}" for c in wanted]
        joins.append("LEFT JOIN instances i ON i.id = cm.instance_id")
        joins.append("LEFT JOIN frames f ON f.id = i.frame_id")
        joins.append("LEFT JOIN videos v ON v.id = i.video_id")
        select += ["f.path AS f_path", "f.width AS f_width", "f.height AS f_height", "f.timestamp AS f_timestamp",
                   "f.frame_index AS f_index", "v.name AS v_name"]
    if have_prefilter:
        joins.append("LEFT JOIN prefilter_results p ON p.instance_id = cm.instance_id")
        select += ["p.kept AS p_kept", "p.path AS p_path"]
    sql = f"SELECT {', '.join(select)} FROM character_members cm {' '.join(joins)}"
    params: list[Any] = []
    if characters:
        sql += f" WHERE cm.character IN ({', '.join('?' * len(characters))})"
        params = list(characters)
    sql += " ORDER BY cm.character, cm.instance_id"
    seg_dir, filt_dir, frames_dir = (stage_dir(root, s) for s in ("segment", "prefilter", "extract"))
    filled = deoccluded(catalog, root)
    enhanced = enhanced_crops(catalog, root)
    members = []
    for row in catalog.rows(sql, params):
        r = dict(row)
        filled_path, filled_box = filled.get(r["instance_id"], (None, None))
        if r.get("p_kept") == 0:
            continue  # the prefilter rejected it: downstream reads only kept=1
        image = None
        if r.get("p_path"):
            image = filt_dir / r["p_path"]
        elif r.get("i_path"):
            image = seg_dir / r["i_path"]
        problem = ""
        if image is None:
            problem = "no cut-out recorded for this instance"
        elif not image.is_file():
            problem = f"cut-out missing: {image}"
        frame = frames_dir / r["f_path"] if r.get("f_path") else None
        if not problem and r.get("i_frame_id") and (frame is None or not frame.is_file()):
            problem = f"source frame gone: {frame or r['i_frame_id']}"
        bbox = r.get("i_bbox")
        if isinstance(bbox, str):
            try:
                bbox = tuple(int(round(v)) for v in json.loads(bbox))
            except (ValueError, TypeError):
                bbox = None
        size = (int(r["f_width"]), int(r["f_height"])) if r.get("f_width") and r.get("f_height") else None
        members.append(Member(
            instance_id=r["instance_id"], character=r["character"],
            image_path=str(image) if image else "", stem=safe_name(r["instance_id"]),
            frame_path=str(frame) if frame else None, bbox=bbox if bbox and len(bbox) == 4 else None,
            frame_size=size, frame_id=r.get("i_frame_id"), video_id=r.get("i_video_id"),
            video_name=r.get("v_name"), shot_id=r.get("i_shot_id"), track_id=r.get("i_track_id"),
            timestamp=r.get("f_timestamp"), frame_index=r.get("f_index"), sharpness=r.get("i_sharpness"),
            truncated=None if r.get("i_truncated") is None else bool(r["i_truncated"]),
            area_fraction=r.get("i_area_fraction"),
            mask_path=str(seg_dir / r["i_mask_path"]) if r.get("i_mask_path") else None,
            filled_path=filled_path, filled_box=filled_box, problem=problem,
            **enhanced.get(r["instance_id"], {}),
        ))
    return members


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
