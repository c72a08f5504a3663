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

from animlora.errors import WorkspaceError

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
]


def now() -> float:
    return time.time()


class Catalog:
    """A connection to one project's catalog file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise WorkspaceError(f"{self.path}: cannot open the catalog ({exc})") from exc
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

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
