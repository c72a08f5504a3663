"""A project with the segment/prefilter stages' rows already in its catalog (the docs/contract.md
tables, created here as the segment helper's migration would), for the identity tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from animlora.cli.project import create_project
from animlora.config import load_settings
from animlora.io.images import write_image
from animlora.pipeline.runner import Runner
from animlora.stages import get_stage
from animlora.workspace import Workspace

UPSTREAM_SQL = """
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, frame_id TEXT, video_id TEXT, shot_id TEXT,
    track_id TEXT, path TEXT, mask_path TEXT, bbox TEXT, area_fraction REAL, truncated INTEGER,
    sharpness REAL, score REAL, backend TEXT);
CREATE TABLE IF NOT EXISTS tracks (id TEXT PRIMARY KEY, video_id TEXT, shot_id TEXT, n_instances INTEGER);
CREATE TABLE IF NOT EXISTS prefilter_results (instance_id TEXT PRIMARY KEY, kept INTEGER, reason TEXT, path TEXT);
CREATE TABLE IF NOT EXISTS segment_frames (frame_id TEXT PRIMARY KEY, shot_id TEXT, source TEXT NOT NULL,
    status TEXT NOT NULL, problem TEXT, converted_from TEXT, width INTEGER, height INTEGER,
    n_instances INTEGER NOT NULL, background_path TEXT, backend TEXT, note TEXT)
"""


def make_project(root: Path) -> Workspace:
    create_project(root, "t", [], "3d")
    ws = Workspace(root)
    with ws.open_catalog() as catalog:
        for statement in UPSTREAM_SQL.split(";"):
            if statement.strip():
                catalog.execute(statement)
    return ws


def add_instances(
    ws: Workspace,
    images: Sequence[np.ndarray],
    ids: Sequence[str],
    frames: Sequence[str | None] | None = None,
    tracks: Sequence[str | None] | None = None,
    kept: Sequence[bool] | None = None,
    boxes: Sequence[Sequence[int]] | None = None,
) -> None:
    """Write cut-outs under filtered/character/ and the instances + prefilter_results rows.
    Without ``boxes``, the instances of one frame stand side by side, apart (not touching)."""
    frames = frames or [None] * len(ids)
    if boxes is None:
        seen: dict[str, int] = {}
        boxes = []
        for image, frame in zip(images, frames, strict=True):
            key = frame or "-"
            k = seen[key] = seen.get(key, -1) + 1
            h, w = image.shape[:2]
            boxes.append([k * (w + 40), 0, w, h])
    tracks = tracks or [None] * len(ids)
    kept = kept or [True] * len(ids)
    with ws.open_catalog() as catalog:
        for image, iid, frame, track, keep, box in zip(images, ids, frames, tracks, kept, boxes, strict=True):
            rel = f"character/{iid}.png"
            write_image(ws.root / "filtered" / rel, image)
            shot = f"s_{frame.split('_')[0]}" if frame else None
            catalog.upsert("instances", [{
                # the segment stage's schema: every instance has a frame; a unique one here
                # stands for "no other instance shares it"
                "id": iid, "frame_id": frame or f"solo_{iid}", "video_id": "v1", "shot_id": shot,
                "track_id": track, "path": rel, "mask_path": f"masks/{iid}.png", "bbox": list(box),
                "area_fraction": 0.1, "truncated": 0, "sharpness": 100.0, "score": 1.0, "backend": "test",
            }])
            catalog.execute("INSERT OR REPLACE INTO prefilter_results VALUES (?, ?, ?, ?)",
                            (iid, int(keep), None if keep else "blurry", rel))


def run_identity(ws: Workspace, sets: dict[str, Any] | None = None, stages=("embed", "cluster"), force=False):
    loaded = load_settings(ws.root, overrides=sets or {})
    return Runner(ws, loaded, force=force).run([get_stage(s) for s in stages])


def add_plates(ws: Workspace, plates: dict[str, np.ndarray]) -> None:
    """Background plates (RGB or RGBA) per frame id: segmentation/background/<frame>.png and
    the segment_frames rows (shot id as add_instances derives it)."""
    with ws.open_catalog() as catalog:
        for frame, image in plates.items():
            rel = f"background/{frame}.png"
            write_image(ws.root / "segmentation" / rel, image)
            catalog.execute(
                "INSERT OR REPLACE INTO segment_frames (frame_id, shot_id, source, status, width, height, n_instances, "
                "background_path) VALUES (?, ?, ?, 'ok', ?, ?, 0, ?)",
                (frame, f"s_{frame.split('_')[0]}", str(ws.root / "segmentation" / rel), image.shape[1],
                 image.shape[0], rel))
