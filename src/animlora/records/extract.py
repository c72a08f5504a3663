"""The extract stage's records: ``videos`` (one row per source video), ``shots`` and
``frames`` (the candidates, kept or rejected), and the per-video sampling statistics in
``meta`` (``extract.stats.<video id>``, JSON). The tables are made by migration
``0001_core`` (``catalog.MIGRATIONS``).

Written by :class:`animlora.stages.extract.ExtractStage` (one video = one work item); read
here by the progress labels (:func:`place_labels`) and the dataset's regularisation frames
(:func:`frames_without`) and the segment stage's plan (:func:`kept_frames`); an instance's
lineage joins them in :func:`animlora.records.segment.project_instances`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

_STATS = "extract.stats."


@dataclass(frozen=True)
class Video:
    """A source video as extracted (``status`` ok) or as it failed (``status`` error)."""

    id: str
    path: str
    name: str
    size: int
    status: str  # ok | error
    error: str | None = None
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    frame_count: int | None = None
    crop: tuple[int, int, int, int] | None = None  # (x, y, w, h) after bar removal


@dataclass(frozen=True)
class Shot:
    id: str
    video_id: str
    idx: int
    start_frame: int
    end_frame: int  # exclusive
    start_time: float
    end_time: float
    frame_count: int
    transition: str | None  # None for a hard cut, 'dissolve' for a transition span


@dataclass(frozen=True)
class Candidate:
    """A frame the whole-project dedupe looks at: kept, or rejected as a duplicate earlier."""

    id: str
    sharpness: float | None
    phash: str
    kept: bool
    reject_reason: str | None
    timestamp: float
    path: str | None
    video_name: str
    shot_idx: int


@dataclass(frozen=True)
class KeptFrame:
    """A kept frame with the video and shot it belongs to (what the segment stage plans from)."""

    id: str
    video_id: str
    shot_id: str | None
    path: str  # relative to the extract folder
    timestamp: float | None
    video_name: str | None
    shot_idx: int | None
    shot_start: float | None


# -- writers (the extract stage) -------------------------------------------------------------
def write_video(catalog: Catalog, video: dict[str, Any], shots: list[dict[str, Any]],
                frames: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    """One extracted video's rows (dicts of column -> value), replacing what it had."""
    delete_video(catalog, video["id"])
    catalog.upsert("videos", [video])
    catalog.upsert("shots", shots)
    catalog.upsert("frames", frames)
    catalog.set_meta(_STATS + video["id"], json.dumps(stats))


def write_failed_video(catalog: Catalog, video_id: str, path: str, name: str, size: int, error: str) -> None:
    """A video that could not be extracted: its row says why; it has no shots or frames."""
    delete_video(catalog, video_id)
    catalog.upsert("videos", [{"id": video_id, "path": path, "name": name, "size": size,
                               "status": "error", "error": error}])


def delete_video(catalog: Catalog, video_id: str) -> None:
    catalog.execute("DELETE FROM frames WHERE video_id = ?", (video_id,))
    catalog.execute("DELETE FROM shots WHERE video_id = ?", (video_id,))
    catalog.execute("DELETE FROM videos WHERE id = ?", (video_id,))
    catalog.execute("DELETE FROM meta WHERE key = ?", (_STATS + video_id,))


def mark_duplicate(catalog: Catalog, frame_id: str) -> None:
    catalog.execute("UPDATE frames SET kept = 0, reject_reason = 'duplicate', path = NULL WHERE id = ?", (frame_id,))


def mark_kept(catalog: Catalog, frame_id: str, path: str) -> None:
    catalog.execute("UPDATE frames SET kept = 1, reject_reason = NULL, path = ? WHERE id = ?", (path, frame_id))


# -- readers ----------------------------------------------------------------------------------
def videos_of_item(catalog: Catalog, item_key: str) -> list[Video]:
    """The videos the extract stage's item ``item_key`` recorded: the video's id (its key
    since keys name content), or the file's path (earlier releases' key)."""
    return [_video(row) for row in catalog.rows("SELECT * FROM videos WHERE id = ? OR path = ?", (item_key, item_key))]


def all_videos(catalog: Catalog) -> list[Video]:
    """Every video, by name then id (the report's order)."""
    return [_video(row) for row in catalog.rows("SELECT * FROM videos ORDER BY name, id")]


def video_stats(catalog: Catalog, video_id: str) -> dict[str, Any]:
    """The sampling statistics of an extracted video ({} when none were recorded)."""
    return json.loads(catalog.get_meta(_STATS + video_id) or "{}")


def shots_of(catalog: Catalog, video_id: str) -> list[Shot]:
    rows = catalog.rows("SELECT id, video_id, idx, start_frame, end_frame, start_time, end_time, frame_count, "
                        "transition FROM shots WHERE video_id = ? ORDER BY idx", (video_id,))
    return [Shot(**dict(row)) for row in rows]


def frame_outcomes(catalog: Catalog, shot_id: str) -> dict[str | None, int]:
    """reject reason (None: kept) -> number of the shot's frames."""
    rows = catalog.rows("SELECT reject_reason AS reason, COUNT(*) AS n FROM frames WHERE shot_id = ? "
                        "GROUP BY reject_reason", (shot_id,))
    return {row["reason"]: row["n"] for row in rows}


def dedupe_candidates(catalog: Catalog) -> list[Candidate]:
    """The frames of every extracted video that are kept or were rejected as duplicates."""
    rows = catalog.rows(
        "SELECT f.id, f.sharpness, f.phash, f.kept, f.reject_reason, f.timestamp, f.path, v.name, "
        "sh.idx AS shot_idx FROM frames f JOIN videos v ON v.id = f.video_id "
        "JOIN shots sh ON sh.id = f.shot_id "
        "WHERE v.status = 'ok' AND (f.kept = 1 OR f.reject_reason = 'duplicate')"
    )
    return [Candidate(id=r["id"], sharpness=r["sharpness"], phash=r["phash"], kept=bool(r["kept"]),
                      reject_reason=r["reject_reason"], timestamp=r["timestamp"], path=r["path"],
                      video_name=r["name"], shot_idx=r["shot_idx"]) for r in rows]


def kept_frames(catalog: Catalog) -> list[KeptFrame]:
    """Every kept frame that has its image, by video then frame index."""
    rows = catalog.rows(
        "SELECT f.id, f.video_id, f.shot_id, f.path, f.timestamp, v.name AS video_name, "
        "s.idx AS shot_idx, s.start_time AS shot_start "
        "FROM frames f LEFT JOIN videos v ON v.id = f.video_id LEFT JOIN shots s ON s.id = f.shot_id "
        "WHERE f.kept = 1 AND f.path IS NOT NULL ORDER BY f.video_id, f.frame_index"
    )
    return [KeptFrame(**dict(row)) for row in rows]


def frames_without(catalog: Catalog, character: str) -> list[str]:
    """Paths (relative to the extract folder) of the kept frames in which no instance of
    ``character`` (``character_members``) appears, by video then time: the regularisation
    frames of the dataset stage."""
    rows = catalog.rows(
        "SELECT f.path FROM frames f WHERE f.kept = 1 AND f.path IS NOT NULL AND f.id NOT IN "
        "(SELECT i.frame_id FROM instances i JOIN character_members cm ON cm.instance_id = i.id "
        "WHERE cm.character = ? AND i.frame_id IS NOT NULL) ORDER BY f.video_id, f.timestamp", (character,))
    return [row["path"] for row in rows]


def _video(row: Any) -> Video:
    crop = json.loads(row["crop"]) if row["crop"] else None
    return Video(id=row["id"], path=row["path"], name=row["name"], size=row["size"], status=row["status"],
                 error=row["error"], duration=row["duration"], fps=row["fps"], width=row["width"],
                 height=row["height"], frame_count=row["frame_count"],
                 crop=tuple(crop) if crop else None)  # type: ignore[arg-type]


# -- what a progress panel shows for an item (its key stays the content id) --------------------
def clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def shot_label(row: Any, fallback: str) -> str:
    """What the progress panel shows for a shot: ``bbb_film shot 54 (03:12)`` (a frame with no
    shot: ``bbb_film frame at 03:13``), not its content id. ``row`` has ``video_name``,
    ``video_id``, ``shot_idx``, ``shot_start`` and ``timestamp``."""
    video = row["video_name"] or row["video_id"]
    if row["shot_idx"] is not None:
        return f"{video} shot {row['shot_idx']} ({clock(row['shot_start'] or 0.0)})"
    if row["timestamp"] is not None:
        return f"{video} frame at {clock(row['timestamp'])}"
    return fallback


def place_labels(catalog: Catalog) -> dict[str, str]:
    """Shot id and frame id -> ``bbb_film shot 54 (03:12)`` / ``bbb_film shot 54 at 03:14``:
    the names a person recognises, for the progress panel of stages whose items are shots or
    frames (the item keys stay the ids, so nothing is redone)."""
    labels: dict[str, str] = {}
    for r in catalog.rows(
        "SELECT f.id, f.shot_id, f.timestamp, f.video_id, v.name AS video_name, s.idx AS shot_idx, "
        "s.start_time AS shot_start FROM frames f LEFT JOIN videos v ON v.id = f.video_id "
        "LEFT JOIN shots s ON s.id = f.shot_id"
    ):
        video = r["video_name"] or r["video_id"]
        if r["shot_idx"] is None:
            labels[r["id"]] = shot_label(r, f"{video} frame")
            continue
        labels.setdefault(r["shot_id"], shot_label(r, r["shot_id"]))
        at = f" at {clock(r['timestamp'])}" if r["timestamp"] is not None else ""
        labels[r["id"]] = f"{video} shot {r['shot_idx']}{at}"
    return labels
