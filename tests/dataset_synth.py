"""Synthetic characters and frames for the caption and dataset tests (drawn with OpenCV)."""

from __future__ import annotations

import json

import numpy as np

SKY = (110, 170, 235)
GRASS = (60, 150, 60)
SHIRT = (200, 35, 35)
PANTS = (40, 80, 200)
SKIN = (235, 190, 160)


def outdoor_frame(w: int = 640, h: int = 360) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[: h // 2] = SKY
    frame[h // 2 :] = GRASS
    rng = np.random.default_rng(0)
    noise = rng.integers(-6, 7, frame.shape)
    return (frame.astype(int) + noise).clip(0, 255).astype(np.uint8)


def draw_person(canvas: np.ndarray, x: int, y: int, height: int, *, facing: str = "front",
                shirt=SHIRT, pants=PANTS) -> None:
    """A person whose top-left of the head box is (x, y); draws into an RGBA canvas. ``facing``:
    front, side, back, or front_dots (a face whose eyes are dark spots without their white)."""
    import cv2

    u = height / 8.0  # head unit
    cx = int(x + 1.5 * u)
    head_c = (cx, int(y + u / 2))
    if facing == "side":
        cv2.ellipse(canvas, head_c, (int(u * 0.45), int(u / 2)), 0, 0, 360, (*SKIN, 255), -1)
        cv2.circle(canvas, (head_c[0] + int(u * 0.45), head_c[1]), max(2, int(u * 0.18)), (*SKIN, 255), -1)  # nose
        cv2.rectangle(canvas, (cx - int(u * 0.35), int(y + u)), (cx + int(u * 0.25), int(y + 4 * u)), (*shirt, 255), -1)
        cv2.rectangle(canvas, (cx - int(u * 0.3), int(y + 4 * u)), (cx + int(u * 0.2), int(y + 8 * u) - 1), (*pants, 255), -1)
        cv2.rectangle(canvas, (cx + int(u * 0.2), int(y + 1.3 * u)), (cx + int(u * 1.1), int(y + 1.7 * u)), (*SKIN, 255), -1)
        return
    cv2.circle(canvas, head_c, int(u / 2), (*SKIN, 255), -1)
    if facing in ("front", "front_dots"):
        for dx in (-0.18, 0.18):
            eye = (int(cx + dx * u), int(y + 0.42 * u))
            if facing == "front":  # a cartoon eye: a dark pupil in its white
                cv2.circle(canvas, eye, max(2, int(u * 0.14)), (250, 250, 250, 255), -1)
            cv2.circle(canvas, eye, max(1, int(u * 0.08)), (20, 20, 20, 255), -1)
        cv2.line(canvas, (int(cx - 0.15 * u), int(y + 0.72 * u)), (int(cx + 0.15 * u), int(y + 0.72 * u)),
                 (120, 40, 40, 255), max(1, int(u * 0.05)))
    else:  # back: hair covers the head
        cv2.circle(canvas, head_c, int(u / 2), (90, 60, 30, 255), -1)
    cv2.rectangle(canvas, (int(cx - 0.75 * u), int(y + u)), (int(cx + 0.75 * u), int(y + 4 * u)), (*shirt, 255), -1)
    cv2.rectangle(canvas, (int(cx - 0.6 * u), int(y + 4 * u)), (int(cx + 0.6 * u), int(y + 8 * u) - 1), (*pants, 255), -1)


def person_cutout(height: int = 240, facing: str = "front", **kw) -> np.ndarray:
    """A tight RGBA cut-out of a full-body person."""
    u = height / 8.0
    canvas = np.zeros((height, int(3 * u) + 2, 4), np.uint8)
    draw_person(canvas, 0, 0, height, facing=facing, **kw)
    return canvas



def place(frame: np.ndarray, x: int, y: int, height: int, facing: str = "front", **kw):
    """Draw a person into a copy of ``frame``: (frame with person, tight RGBA cut-out, bbox)."""
    h, w = frame.shape[:2]
    layer = np.zeros((h, w, 4), np.uint8)
    draw_person(layer, x, y, height, facing=facing, **kw)
    alpha = layer[..., 3:4].astype(np.float32) / 255
    out = (frame * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)
    ys, xs = np.nonzero(layer[..., 3])
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    cut = layer[y0:y1, x0:x1].copy()
    return out, cut, (int(x0), int(y0), int(x1 - x0), int(y1 - y0))


def blob(colour, size=120, shade=0, seed=0) -> np.ndarray:
    """An RGBA ellipse (a body) in ``colour``, shaded darker towards its bottom by ``shade``."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 4), np.uint8)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 2 - 4), 0, 0, 360, (*colour, 255), -1)
    ramp = np.linspace(0, shade, size)[:, None, None]
    img[..., :3] = np.clip(img[..., :3] - ramp + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)
    img[img[..., 3] == 0, :3] = 0
    return img


def with_piece(body: np.ndarray, colour, radius: int) -> np.ndarray:
    """``body`` with a disc of ``colour`` at its top edge (a butterfly on a head), inside the mask."""
    import cv2

    out = body.copy()
    cv2.circle(out, (body.shape[1] // 2, 12 + radius), radius, (*colour, 255), -1)
    return out


def paint(root, rows: dict, colour_of) -> None:
    """Redraw every cut-out of a synthetic project as a body in ``colour_of(row)`` (a pair of colours
    for a body with a piece of the second), and its frame with that body where the cut-out sits."""
    import cv2

    from animlora.io.images import read_image, write_image

    for row in rows.values():
        colour = colour_of(row)
        body = blob(colour[0], 140, seed=int(row["id"][-3:])) if isinstance(colour[0], tuple) else \
            blob(colour, 140, seed=int(row["id"][-3:]))
        if isinstance(colour[0], tuple):
            body = with_piece(body, colour[1], 16)
        write_image(root / "segmentation" / row["path"], body)
        frame_path = root / "frames" / f"{row['frame_id']}.png"
        frame = read_image(frame_path, "RGB").copy()
        x, y, w, h = json.loads(row["bbox"])
        placed = cv2.resize(body, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        alpha = placed[..., 3:] / 255
        region = frame[y : y + h, x : x + w].astype(np.float32)
        frame[y : y + h, x : x + w] = (region * (1 - alpha) + placed[..., :3] * alpha).astype(np.uint8)
        write_image(frame_path, frame)


UPSTREAM_SQL = """
CREATE TABLE IF NOT EXISTS instances(id TEXT PRIMARY KEY, frame_id TEXT, video_id TEXT, shot_id TEXT, track_id TEXT,
  path TEXT, mask_path TEXT, bbox TEXT, area_fraction REAL, truncated INTEGER, sharpness REAL, score REAL, backend TEXT);
CREATE TABLE IF NOT EXISTS tracks(id TEXT PRIMARY KEY, video_id TEXT, shot_id TEXT, n_instances INTEGER);
CREATE TABLE IF NOT EXISTS prefilter_results(instance_id TEXT PRIMARY KEY, kept INTEGER, reason TEXT, path TEXT);
CREATE TABLE IF NOT EXISTS embeddings(instance_id TEXT, model TEXT, content_hash TEXT, vector BLOB, dim INTEGER,
  PRIMARY KEY(content_hash, model));
CREATE TABLE IF NOT EXISTS character_members(instance_id TEXT PRIMARY KEY, character TEXT NOT NULL);
"""

COLORS = [(200, 35, 35), (50, 160, 60), (240, 215, 50), (120, 55, 160), (240, 130, 30), (20, 130, 130)]


def make_project(root, characters: dict[str, int], *, shots: int = 6, seed: int = 0, embeddings: bool = True,
                 duplicates: tuple[int, ...] = ()):
    """A project whose catalog holds the upstream rows (docs/contract.md) of ``characters``
    (name -> instances), one instance per frame, spread over ``shots`` shots of one video.
    Returns {instance id: row dict}."""
    from animlora.catalog import Catalog
    from animlora.io.images import write_image

    root.mkdir(parents=True, exist_ok=True)
    (root / "project.yaml").write_text("project:\n  name: test\n  seed: 7\n")
    cat = Catalog(root / "catalog.sqlite")
    for stmt in UPSTREAM_SQL.strip().split(";"):
        if stmt.strip():
            cat.execute(stmt)
    cat.execute("INSERT INTO videos (id, path, name, size, duration, fps, width, height, frame_count, status) "
                "VALUES ('v1', 'film.mp4', 'film', 1, 100.0, 24.0, 640, 360, 2400, 'ok')")
    for s in range(shots):
        cat.execute("INSERT INTO shots VALUES (?, 'v1', ?, ?, ?, ?, ?, ?, NULL)",
                    (f"v1_s{s}", s, s * 400, s * 400 + 400, s * 16.7, s * 16.7 + 16.7, 400))
    rng = np.random.default_rng(seed)
    rows = {}
    n = 0
    prev = None
    drawn: tuple = ()
    for ci, (name, count) in enumerate(characters.items()):
        for k in range(count):
            shot = k % shots
            fid = f"v1_f{n:05d}"
            base = outdoor_frame()
            height = int(rng.integers(150, 330))
            x = int(rng.integers(20, 640 - height // 2 - 20))
            y = int(rng.integers(5, max(6, 360 - height)))
            facing = ["front", "side", "back"][int(rng.integers(0, 3))]
            shirt = COLORS[(ci * 2 + k) % len(COLORS)]
            if n in duplicates:  # the same picture as the previous instance (and its embedding, below)
                height, facing, shirt = drawn
            drawn = (height, facing, shirt)
            frame, cut, bbox = place(base, x, y, height, facing=facing, shirt=shirt)
            write_image(root / "frames" / f"{fid}.png", frame)
            write_image(root / "segmentation" / "character" / f"{fid}_0.png", cut)
            cat.execute("INSERT INTO frames (id, video_id, shot_id, frame_index, timestamp, path, width, height, "
                        "sharpness, phash, kept) VALUES (?, 'v1', ?, ?, ?, ?, 640, 360, 100, '0', 1)",
                        (fid, f"v1_s{shot}", n, n / 24.0, f"{fid}.png"))
            iid = f"inst_{n:05d}"
            row = {"id": iid, "frame_id": fid, "video_id": "v1", "shot_id": f"v1_s{shot}", "track_id": f"t{shot}_{ci}",
                   "path": f"character/{fid}_0.png", "mask_path": f"masks/{fid}_0.png", "bbox": json.dumps(list(bbox)),
                   "area_fraction": bbox[2] * bbox[3] / (640 * 360), "truncated": int(y + height >= 360),
                   "sharpness": float(rng.uniform(50, 300)), "score": 0.9, "backend": "test"}
            cat.upsert("instances", [row])
            cat.upsert("character_members", [{"instance_id": iid, "character": name}])
            cat.upsert("prefilter_results", [{"instance_id": iid, "kept": 1, "reason": None, "path": None}])
            if embeddings:
                vec = rng.normal(size=32).astype("<f4")
                if n in duplicates:  # the same embedding as the previous instance: a near-duplicate
                    vec = prev
                prev = vec
                cat.upsert("embeddings", [{"instance_id": iid, "model": "test-embed", "content_hash": f"h{n}",
                                           "vector": vec.tobytes(), "dim": 32}])
            rows[iid] = row
            n += 1
    cat.close()
    return rows


def run_stages(root, names, overrides=None, force=False):
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    loaded = load_settings(root, overrides=overrides or {})
    return Runner(Workspace(root), loaded, force=force).run([get_stage(n) for n in names])
