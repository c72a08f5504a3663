"""The review's records: ``review_decisions`` (the append-only log of what a person decided,
keyed by stable instance ids) and ``character_members`` (instance -> character, the reviewed
state that the caption and dataset stages read). Made by migration ``0200_identity``
(``catalog.MIGRATIONS``); kept by ``animlora repair`` (``catalog.USER_TABLES``).

What a decision means and how the log is replayed is :mod:`animlora.identity.decisions`;
this module only stores it. ``undone``: 0 active, 1 undone (redo-able), 2 undone and
superseded by a later decision. Rows are never deleted.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog


# -- the log ----------------------------------------------------------------------------------
def append(catalog: Catalog, action: str, payload: dict[str, Any]) -> int:
    """Append a decision, superseding what was undone; return its seq."""
    from animlora.catalog import now

    with catalog.transaction():
        catalog.execute("UPDATE review_decisions SET undone = 2 WHERE undone = 1")
        cur = catalog.execute("INSERT INTO review_decisions (ts, action, payload, undone) VALUES (?, ?, ?, 0)",
                              (now(), action, json.dumps(payload)))
        return int(cur.lastrowid)


def active(catalog: Catalog) -> list[tuple[str, dict[str, Any]]]:
    """(action, payload) of every active decision, oldest first (the replay order)."""
    rows = catalog.rows("SELECT action, payload FROM review_decisions WHERE undone = 0 ORDER BY seq")
    return [(row["action"], json.loads(row["payload"])) for row in rows]


def count_active(catalog: Catalog) -> int:
    row = catalog.one("SELECT COUNT(*) FROM review_decisions WHERE undone = 0")
    return int(row[0]) if row else 0


def undo_last(catalog: Catalog) -> int | None:
    """Flag the last active decision undone; its seq, or None when there is none."""
    row = catalog.one("SELECT seq FROM review_decisions WHERE undone = 0 ORDER BY seq DESC LIMIT 1")
    if row is None:
        return None
    catalog.execute("UPDATE review_decisions SET undone = 1 WHERE seq = ?", (row[0],))
    return int(row[0])


def redo_next(catalog: Catalog) -> int | None:
    """Make the first undone (not superseded) decision active again; its seq, or None."""
    row = catalog.one("SELECT seq FROM review_decisions WHERE undone = 1 ORDER BY seq ASC LIMIT 1")
    if row is None:
        return None
    catalog.execute("UPDATE review_decisions SET undone = 0 WHERE seq = ?", (row[0],))
    return int(row[0])


def can_undo_redo(catalog: Catalog) -> tuple[bool, bool]:
    undo_ok = catalog.one("SELECT 1 FROM review_decisions WHERE undone = 0 LIMIT 1") is not None
    redo_ok = catalog.one("SELECT 1 FROM review_decisions WHERE undone = 1 LIMIT 1") is not None
    return undo_ok, redo_ok


# -- the reviewed state -----------------------------------------------------------------------
def members(catalog: Catalog) -> dict[str, str]:
    """instance id -> character, as reviewed."""
    return {row[0]: row[1] for row in catalog.rows("SELECT instance_id, character FROM character_members")}


def count_members(catalog: Catalog) -> int:
    row = catalog.one("SELECT COUNT(*) FROM character_members")
    return int(row[0]) if row else 0


def clear_members(catalog: Catalog) -> None:
    """Drop the reviewed state (the cluster stage redoes it by replaying the log)."""
    catalog.execute("DELETE FROM character_members")


def replace_members(catalog: Catalog, wanted: dict[str, str]) -> int:
    """Make ``character_members`` equal ``wanted`` (instance -> character), touching only the
    rows that differ; return how many changed."""
    current = members(catalog)
    gone = [(i,) for i in current if i not in wanted]
    changed = [(i, c) for i, c in wanted.items() if current.get(i) != c]
    with catalog.transaction():
        catalog.conn.executemany("DELETE FROM character_members WHERE instance_id = ?", gone)
        catalog.conn.executemany("INSERT OR REPLACE INTO character_members VALUES (?, ?)", changed)
    return len(gone) + len(changed)
