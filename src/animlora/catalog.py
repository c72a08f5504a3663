"""The SQLite catalog: the single source of truth of a project.

Videos, shots, frames, instances, tracks, clusters, review decisions, captions and dataset
membership live here, keyed by stable content ids. WAL mode, so the review server can read
while a stage writes. Schema changes are named migrations, applied once each, in order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from animlora.errors import WorkspaceError, disk_full, disk_full_error
from animlora.records import cluster as cluster_records
from animlora.records import deocclude as deocclude_records
from animlora.records import enhance as enhance_records

# (name, SQL). Append only: a migration that has shipped is never edited or reordered.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_core",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE stage_runs (
            stage TEXT PRIMARY KEY,
            stage_key TEXT NOT NULL,          -- stage version + settings (+ upstream) hash
            settings_hash TEXT NOT NULL,
            inputs_hash TEXT NOT NULL,        -- hash of (item key, fingerprint) of every input item
            code_version TEXT NOT NULL,
            status TEXT NOT NULL,             -- running | done
            started_at REAL NOT NULL,
            finished_at REAL,
            items_total INTEGER NOT NULL DEFAULT 0,
            items_done INTEGER NOT NULL DEFAULT 0,
            items_failed INTEGER NOT NULL DEFAULT 0,
            seconds REAL
        );
        CREATE TABLE stage_items (
            stage TEXT NOT NULL,
            item_key TEXT NOT NULL,
            stage_key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,             -- done | failed
            error TEXT,
            outputs TEXT NOT NULL DEFAULT '[]',  -- JSON list of files, relative to the stage folder
            finished_at REAL NOT NULL,
            PRIMARY KEY (stage, item_key)
        );
        CREATE TABLE videos (
            id TEXT PRIMARY KEY,              -- content id (size + sampled bytes)
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            duration REAL,
            fps REAL,
            width INTEGER,
            height INTEGER,
            frame_count INTEGER,
            crop TEXT,                        -- JSON [x, y, w, h] after bar removal, or NULL
            status TEXT NOT NULL,             -- ok | error
            error TEXT
        );
        CREATE TABLE shots (
            id TEXT PRIMARY KEY,              -- <video id>_s<index>
            video_id TEXT NOT NULL REFERENCES videos(id),
            idx INTEGER NOT NULL,
            start_frame INTEGER NOT NULL,
            end_frame INTEGER NOT NULL,       -- exclusive
            start_time REAL NOT NULL,
            end_time REAL NOT NULL,
            frame_count INTEGER NOT NULL,
            transition TEXT                   -- NULL for a hard cut, 'dissolve' for a transition span
        );
        CREATE INDEX shots_video ON shots(video_id);
        CREATE TABLE frames (
            id TEXT PRIMARY KEY,              -- <video id>_f<frame index>
            video_id TEXT NOT NULL REFERENCES videos(id),
            shot_id TEXT REFERENCES shots(id),
            frame_index INTEGER NOT NULL,
            timestamp REAL NOT NULL,
            path TEXT,                        -- relative to the extract folder; NULL when rejected
            width INTEGER,
            height INTEGER,
            sharpness REAL,
            phash TEXT,
            kept INTEGER NOT NULL,
            reject_reason TEXT
        );
        CREATE INDEX frames_video ON frames(video_id);
        CREATE INDEX frames_shot ON frames(shot_id);
        """,
    ),
    (
        "0100_segment",
        """
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,              -- <frame id>_i<index in frame>
            frame_id TEXT NOT NULL,
            video_id TEXT,                    -- NULL standalone
            shot_id TEXT,
            track_id TEXT,                    -- <shot id>_t<n>
            path TEXT NOT NULL,               -- RGBA cut-out, relative to the segmentation folder
            mask_path TEXT NOT NULL,          -- full-frame 8-bit soft mask, same folder
            bbox TEXT NOT NULL,               -- JSON [x, y, w, h] in frame pixels (unpadded)
            area_fraction REAL NOT NULL,      -- mask area (alpha >= threshold) / frame area
            truncated INTEGER NOT NULL,       -- number of frame edges the mask touches (0 = whole)
            sharpness REAL NOT NULL,          -- variance of the Laplacian inside the mask
            score REAL NOT NULL,              -- backend's character confidence 0..1
            backend TEXT NOT NULL
        );
        CREATE INDEX instances_frame ON instances(frame_id);
        CREATE INDEX instances_shot ON instances(shot_id);
        CREATE TABLE tracks (
            id TEXT PRIMARY KEY,
            video_id TEXT,
            shot_id TEXT,
            n_instances INTEGER NOT NULL
        );
        CREATE TABLE segment_frames (
            frame_id TEXT PRIMARY KEY,        -- catalog frame id, or content hash standalone
            shot_id TEXT,
            source TEXT NOT NULL,             -- the frame image read
            status TEXT NOT NULL,             -- ok | skipped
            problem TEXT,                     -- why skipped
            converted_from TEXT,              -- e.g. CMYK, I;16, L: converted to RGB
            width INTEGER,
            height INTEGER,
            n_instances INTEGER NOT NULL,
            background_path TEXT,             -- RGBA frame with characters transparent
            backend TEXT,
            note TEXT                         -- e.g. the fallback that happened
        );
        CREATE INDEX segment_frames_shot ON segment_frames(shot_id);
        CREATE TABLE prefilter_results (
            instance_id TEXT PRIMARY KEY,
            kept INTEGER NOT NULL,
            reason TEXT,                      -- NULL when kept; else tiny | truncated | blurred | not_character
            path TEXT                         -- kept cut-out, relative to the prefilter folder
        );
        CREATE TABLE plates (
            id TEXT PRIMARY KEY,              -- frame id, or shot id for a static shot's one plate
            shot_id TEXT,
            frame_ids TEXT NOT NULL,          -- JSON list of the frames it covers
            path TEXT NOT NULL,               -- relative to the plates folder
            static INTEGER NOT NULL,
            backend TEXT NOT NULL,
            hole_fraction REAL NOT NULL,
            psnr REAL,                        -- of the unmasked region, raw model output vs frame
            ssim REAL
        );
        """,
    ),
    (
        "0200_identity",
        """
        CREATE TABLE embeddings (
            instance_id TEXT NOT NULL,
            model TEXT NOT NULL,              -- embedder key, e.g. color-v1, clip:clip-vit-large-patch14
            content_hash TEXT NOT NULL,       -- sha256 of the cut-out file: the cache key
            vector BLOB NOT NULL,             -- float32 little-endian, L2-normalised
            dim INTEGER NOT NULL,
            PRIMARY KEY (content_hash, model)
        );
        CREATE INDEX embeddings_instance ON embeddings(instance_id);
        CREATE TABLE identity_instances (
            instance_id TEXT PRIMARY KEY,     -- the segment stage's id; standalone: the content hash
            content_hash TEXT NOT NULL,
            path TEXT NOT NULL,               -- the cut-out: relative to the workspace, or absolute
            frame_id TEXT,
            track_id TEXT,
            shot_id TEXT,
            video_id TEXT
        );
        CREATE TABLE clusters (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            medoid_instance_id TEXT,
            cohesion REAL,
            is_noise INTEGER NOT NULL
        );
        CREATE TABLE cluster_assignments (
            instance_id TEXT PRIMARY KEY,
            cluster_id TEXT NOT NULL,
            distance REAL                     -- cosine distance to the cluster centroid
        );
        CREATE INDEX cluster_assignments_cluster ON cluster_assignments(cluster_id);
        CREATE TABLE review_decisions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,            -- JSON, keyed by stable instance ids
            undone INTEGER NOT NULL DEFAULT 0 -- 0 active, 1 undone (redo-able), 2 undone and superseded
        );
        CREATE TABLE character_members (
            instance_id TEXT PRIMARY KEY,
            character TEXT NOT NULL
        );
        CREATE INDEX character_members_character ON character_members(character);
        """,
    ),
    (
        "0300_dataset",
        """
        CREATE TABLE captions (
            instance_id TEXT NOT NULL,
            character TEXT NOT NULL,
            text TEXT NOT NULL,               -- the caption (the person's edit when edited = 1)
            source TEXT NOT NULL,             -- backend that wrote it: template | blip | florence2 | qwen2_5_vl | ...
            fields TEXT NOT NULL DEFAULT '{}',  -- JSON: field -> {value, confidence}
            edited INTEGER NOT NULL DEFAULT 0,  -- 1: text written by a person, kept across re-runs
            accepted INTEGER NOT NULL DEFAULT 0,  -- 1: a person accepted the caption as it is
            auto_text TEXT,                   -- what the backend wrote (kept when a person edits)
            confidence REAL,                  -- mean confidence of the fields in the text
            note TEXT,                        -- how the caption was made when not plainly (fallback, repaired JSON, ...)
            updated_at REAL,
            PRIMARY KEY (instance_id, character)
        );
        CREATE INDEX captions_character ON captions(character);
        CREATE TABLE dataset_items (
            character TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            image_path TEXT NOT NULL,         -- relative to the dataset stage folder
            caption_path TEXT NOT NULL,
            score REAL,                       -- selection score (quality x diversity)
            PRIMARY KEY (character, instance_id)
        );
        """,
    ),
    # A stage's own tables are made by its records module (animlora.records.<stage>).
    deocclude_records.MIGRATION,
    (
        "0110_instance_measures",
        """
        -- JSON: the segment stage's shot pass (static fraction, prop, text score, parts merged)
        -- and the appearance signature used for per-track duplicate removal
        ALTER TABLE instances ADD COLUMN measures TEXT;
        """,
    ),
    cluster_records.MIGRATION,  # identity_distances, which the cluster stage made before
    enhance_records.MIGRATION,
    (
        "0120_file_stamps",
        """
        -- each recorded output's size, modification time and content digest when it was last
        -- seen as written (pipeline/stamps.py: a project copied without its times gets them back)
        CREATE TABLE file_stamps (
            path TEXT PRIMARY KEY,            -- relative to the project folder
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            digest TEXT NOT NULL
        );
        """,
    ),
]


def now() -> float:
    return time.time()


def damaged(path: Path | None, exc: BaseException) -> WorkspaceError:
    """The one message for a catalog SQLite cannot read (a full disk is not damage: said as such)."""
    if disk_full(exc):
        return disk_full_error(path, exc)
    where = f"{path}: " if path else ""
    return WorkspaceError(f"{where}the catalog is damaged ({exc}); restore it from a backup or run `animlora repair`")


def read_only_error(path: Path) -> WorkspaceError | None:
    """The error for a project whose catalog cannot be written here, or None when it can."""
    import os

    folder = path.parent
    why = None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            why = "it is on a read-only file system"
    except OSError:
        return None
    for place in (folder, path):
        if why is None and place.exists() and not os.access(place, os.W_OK):
            why = f"{place} is not yours to write ({_owner(place)}'s)"
    if why is None:
        return None
    return WorkspaceError(f"{path}: the project cannot be written here: {why}; run animlora as the user who owns "
                          "it, or on a copy you can write (`cp -a`); `animlora status` still reads it")


def _owner(path: Path) -> str:
    import pwd

    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# What a user did by hand, kept by `animlora repair`; everything else is recomputed.
USER_TABLES = {"review_decisions": "1", "captions": "edited = 1 OR accepted = 1"}


def check_integrity(path: Path) -> str:
    """'ok', or SQLite's first complaint about the file."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return str(row[0]) if row else "empty answer"


def salvage(path: Path) -> tuple[Path, dict[str, int]]:
    """Move a damaged catalog aside (``<name>.damaged-<time>``, with its -wal/-shm), make a
    fresh one, and copy the rows of :data:`USER_TABLES` that can still be read. Every stage
    then runs again. Returns the damaged copy's path and the rows kept per table."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    path.replace(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.replace(aside.with_name(aside.name + suffix))
    kept: dict[str, int] = {}
    fresh = Catalog(path)
    try:
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.DatabaseError:
            return aside, kept
        try:
            for table, where in USER_TABLES.items():
                columns = [r[1] for r in fresh.conn.execute(f"PRAGMA table_info({table})")]
                rows: list[tuple[Any, ...]] = []
                try:
                    for row in old.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}"):
                        rows.append(tuple(row))
                except sqlite3.DatabaseError:
                    pass  # keep what was read before the damage
                with fresh.transaction():
                    fresh.conn.executemany(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        rows,
                    )
                kept[table] = len(rows)
        finally:
            old.close()
    finally:
        fresh.close()
    return aside, kept


class Catalog:
    """A connection to one project's catalog file."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """``read_only``: for reading a project on storage nobody writes to while it is read
        (SQLite's ``immutable``: a WAL catalog cannot be opened read-only otherwise)."""
        self.path = Path(path)
        try:
            if read_only:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True,
                                            isolation_level=None)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            problem = None if read_only else read_only_error(self.path)
            raise problem or WorkspaceError(f"{self.path}: cannot open the catalog ({exc})") from exc
        self.conn.row_factory = sqlite3.Row
        if read_only:
            return
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise WorkspaceError(f"{self.path}: the catalog is busy ({exc}); try again") from exc
            # a catalog that cannot be written here is not damaged: `animlora repair` would not help
            raise read_only_error(self.path) or damaged(self.path, exc) from exc

    # -- schema ---------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the migrations this file has not seen; return their names."""
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in self.conn.execute("SELECT name FROM schema_migrations")}
        known = {name for name, _ in MIGRATIONS}
        unknown = done - known
        if unknown:
            raise WorkspaceError(
                f"{self.path}: made by a newer animlora (migrations {', '.join(sorted(unknown))}); upgrade animlora"
            )
        applied = []
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self.transaction():
                for statement in _statements(sql):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now()))
            applied.append(name)
        self.conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
        return applied

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    # -- access ---------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception."""
        if self.conn.in_transaction:  # nested: join the outer transaction
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, params))

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def distinct(self, table: str, column: str) -> list[Any]:
        """The column's distinct non-NULL values in the table, sorted (a stage's ``backends_used``)."""
        return [row[0] for row in self.conn.execute(
            f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}")]

    def upsert(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """INSERT OR REPLACE each row (dict of column -> value; lists/dicts stored as JSON)."""
        count = 0
        for row in rows:
            cols = list(row)
            values = [json.dumps(v) if isinstance(v, list | dict | tuple) else v for v in row.values()]
            sql = f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            self.conn.execute(sql, values)
            count += 1
        return count

    def get_meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (comments dropped first: keep `--` out of literals)."""
    text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [part.strip() for part in text.split(";") if part.strip()]
