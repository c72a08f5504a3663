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
CREATE TABLE IF NOT EXISTS prefilter_results (instance_id TEXT PRIMARY KEY, kept INTEGER, reason TEXT, path TEXT)
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
) -> None:
    """Write cut-outs under filtered/character/ and the instances + prefilter_results rows."""
    frames = frames or [None] * len(ids)
    tracks = tracks or [None] * len(ids)
    kept = kept or [True] * len(ids)
    with ws.open_catalog() as catalog:
        for image, iid, frame, track, keep in zip(images, ids, frames, tracks, kept, strict=True):
            rel = f"character/{iid}.png"
            write_image(ws.root / "filtered" / rel, image)
            shot = f"s_{frame.split('_')[0]}" if frame else None
            h, w = image.shape[:2]
            catalog.upsert("instances", [{
                # the segment stage's schema: every instance has a frame; a unique one here
                # stands for "no other instance shares it"
                "id": iid, "frame_id": frame or f"solo_{iid}", "video_id": "v1", "shot_id": shot,
                "track_id": track, "path": rel, "mask_path": f"masks/{iid}.png", "bbox": [0, 0, w, h],
                "area_fraction": 0.1, "truncated": 0, "sharpness": 100.0, "score": 1.0, "backend": "test",
            }])
            catalog.execute("INSERT OR REPLACE INTO prefilter_results VALUES (?, ?, ?, ?)",
                            (iid, int(keep), None if keep else "blurry", rel))


def run_identity(ws: Workspace, sets: dict[str, Any] | None = None, stages=("embed", "cluster"), force=False):
    loaded = load_settings(ws.root, overrides=sets or {})
    return Runner(ws, loaded, force=force).run([get_stage(s) for s in stages])
