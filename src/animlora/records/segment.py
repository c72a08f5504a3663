"""The segment stage's records: ``instances`` (one row per character cut-out, with its box,
mask and the shot pass's ``measures``), ``tracks`` and ``segment_frames`` (one row per frame
read: its source, its background with the characters transparent). Made by migrations
``0100_segment`` and ``0110_instance_measures`` (``catalog.MIGRATIONS``).

Written by :class:`animlora.stages.segment.SegmentStage` (one shot = one work item) through
:func:`replace_shot`; read here by everyone else. :func:`project_instances` is the one reader
of a project's instances with their lineage (frame, shot, track, video): the prefilter, the
identity stages (:mod:`animlora.identity.inputs`) and the caption/dataset stages
(:mod:`animlora.curation.sources`) all build on it, with the prefilter's verdict from
:mod:`animlora.records.prefilter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animlora.io.files import portable

if TYPE_CHECKING:
    from animlora.catalog import Catalog


_TABLES = ("instances", "tracks", "segment_frames")  # each with its shot_id


# -- writers (the segment stage) --------------------------------------------------------------
def replace_shot(catalog: Catalog, shot_id: str, frames: list[dict[str, Any]], instances: list[dict[str, Any]],
                 tracks: list[dict[str, Any]], root: Path) -> None:
    """The rows of one segmented shot (dicts of column -> value: the frames read, the
    instances found, their tracks), replacing what the shot had. A frame's ``source`` inside
    the project folder ``root`` is stored relative to it (read back by :func:`frame_source`)."""
    delete_shot(catalog, shot_id)
    catalog.upsert("segment_frames", [f | {"source": portable(f["source"], root)} for f in frames])
    catalog.upsert("instances", instances)
    catalog.upsert("tracks", tracks)


def delete_shot(catalog: Catalog, shot_id: str) -> None:
    for table in _TABLES:
        catalog.execute(f"DELETE FROM {table} WHERE shot_id = ?", (shot_id,))


@dataclass(frozen=True)
class ProjectInstance:
    """An instance of the segment stage with where it came from (``frames``, ``videos``)."""

    id: str
    frame_id: str
    video_id: str | None
    shot_id: str | None
    track_id: str | None
    path: str  # RGBA cut-out, relative to the segment folder
    mask_path: str  # full-frame soft mask, same folder
    bbox: str  # JSON [x, y, w, h] in frame pixels, as stored
    area_fraction: float
    truncated: int  # frame edges the mask touches
    sharpness: float
    score: float | None = None  # the backend's character confidence 0..1
    measures: str | None = None  # the shot pass's measures, JSON text as stored
    frame_path: str | None = None  # the source frame, relative to the extract folder
    frame_width: int | None = None
    frame_height: int | None = None
    timestamp: float | None = None
    frame_index: int | None = None
    video_name: str | None = None


@dataclass(frozen=True)
class SegmentFrame:
    """A frame the segment stage read."""

    frame_id: str
    shot_id: str | None
    source: str  # the frame image read, where it is now (:func:`frame_source`)
    status: str  # ok | skipped
    background_path: str | None  # the frame with characters transparent, relative to the segment folder


def project_instances(catalog: Catalog) -> dict[str, ProjectInstance]:
    """instance id -> the instance with its lineage, in id order."""
    rows = catalog.rows(
        "SELECT i.id, i.frame_id, i.video_id, i.shot_id, i.track_id, i.path, i.mask_path, i.bbox, i.area_fraction, "
        "i.truncated, i.sharpness, i.score, i.measures, f.path AS frame_path, f.width AS frame_width, f.height AS frame_height, "
        "f.timestamp, f.frame_index, v.name AS video_name FROM instances i "
        "LEFT JOIN frames f ON f.id = i.frame_id LEFT JOIN videos v ON v.id = i.video_id ORDER BY i.id"
    )
    return {row["id"]: ProjectInstance(**dict(row)) for row in rows}


def instance_rows(catalog: Catalog, *, by_shot: bool = False) -> list[dict[str, Any]]:
    """Every instance row as column -> value (the shape of ``segmentation_results.json``'s
    ``instances``, which a standalone run reads instead), by id (``by_shot``: by shot, frame
    and id, the report's order)."""
    order = "shot_id, frame_id, id" if by_shot else "id"
    return [dict(row) for row in catalog.rows(f"SELECT * FROM instances ORDER BY {order}")]


def frame_source(stored: str, root: Path, frame_path: str | None, extract_dir: Path) -> str:
    """Where the frame a ``segment_frames`` row read is now. A project's frame (``frame_path``:
    its ``frames`` row's path) is in the project's extract folder ``extract_dir``, wherever the
    project is now (earlier releases stored its absolute path, of the folder the project was in
    then); any other is ``stored``, relative to the project folder ``root`` or absolute (a
    standalone input outside it)."""
    if frame_path is not None:
        return str(extract_dir / frame_path)
    path = Path(stored)
    return stored if path.is_absolute() else str(root / path)


def _frames(catalog: Catalog, root: Path, columns: str, order: str) -> list[dict[str, Any]]:
    from animlora.records.folders import stage_folder

    extract_dir = root / stage_folder("extract", root)
    rows = catalog.rows(f"SELECT {columns}, f.path AS frame_path FROM segment_frames s "
                        f"LEFT JOIN frames f ON f.id = s.frame_id ORDER BY {order}")
    out = []
    for row in rows:
        r = dict(row)
        r["source"] = frame_source(r["source"], root, r.pop("frame_path"), extract_dir)
        out.append(r)
    return out


def frame_rows(catalog: Catalog, root: Path) -> list[dict[str, Any]]:
    """Every ``segment_frames`` row as column -> value, by shot then source (the report's
    order), ``source`` where the frame is now (:func:`frame_source`)."""
    return _frames(catalog, root, "s.*", "s.shot_id, s.source")


def instance_measures(catalog: Catalog) -> dict[str, str | None]:
    """instance id -> its ``measures`` (JSON text as stored; None when the stage wrote none)."""
    return {row["id"]: row["measures"] for row in catalog.rows("SELECT id, measures FROM instances")}


def segment_frames(catalog: Catalog, root: Path) -> list[SegmentFrame]:
    """Every frame the stage read, by frame id, ``source`` where it is now (:func:`frame_source`)."""
    rows = _frames(catalog, root, "s.frame_id, s.shot_id, s.source, s.status, s.background_path", "s.frame_id")
    return [SegmentFrame(**row) for row in rows]


def count_instances(catalog: Catalog) -> int:
    row = catalog.one("SELECT COUNT(*) FROM instances")
    return int(row[0]) if row else 0


def count_tracks(catalog: Catalog) -> int:
    row = catalog.one("SELECT COUNT(*) FROM tracks")
    return int(row[0]) if row else 0


def backends_used(catalog: Catalog) -> list[str]:
    """The backends that segmented the recorded frames (several when a run fell back)."""
    return catalog.distinct("segment_frames", "backend")
