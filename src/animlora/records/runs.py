"""The runner's records: ``stage_runs`` (one row per stage: key, status, counts) and
``stage_items`` (one row per finished or failed work item), ``file_stamps`` (each output's size,
time and digest: pipeline/stamps.py). The runner writes them
(:mod:`animlora.pipeline.runner`); ``animlora status`` and stages that reuse finished work
read them here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animlora.catalog import Catalog


@dataclass(frozen=True)
class StageRunRecord:
    stage: str
    status: str  # running | done
    settings_hash: str
    items_total: int
    items_done: int
    items_failed: int
    finished_at: float | None
    seconds: float | None


def stage_run(catalog: Catalog, stage: str) -> StageRunRecord | None:
    """The last run of ``stage``, or None when it never ran here."""
    row = catalog.one("SELECT stage, status, settings_hash, items_total, items_done, items_failed, finished_at, seconds "
                      "FROM stage_runs WHERE stage = ?", (stage,))
    return None if row is None else StageRunRecord(**dict(row))


def done_items(catalog: Catalog, stage: str, stage_key: str | None = None) -> dict[str, str]:
    """item key -> fingerprint of every item of ``stage`` finished (under any stage key, or
    only under ``stage_key``)."""
    sql = "SELECT item_key, fingerprint FROM stage_items WHERE stage = ? AND status = 'done'"
    args: tuple[str, ...] = (stage,)
    if stage_key is not None:
        sql, args = sql + " AND stage_key = ?", (stage, stage_key)
    return {row["item_key"]: row["fingerprint"] for row in catalog.rows(sql, args)}


def count_done(catalog: Catalog, stage: str) -> int:
    row = catalog.one("SELECT COUNT(*) FROM stage_items WHERE stage = ? AND status = 'done'", (stage,))
    return int(row[0]) if row else 0


def failed_items(catalog: Catalog, stage: str) -> list[tuple[str, str]]:
    """(item key, one-line error) of every failed item of ``stage``, by key."""
    rows = catalog.rows("SELECT item_key, error FROM stage_items WHERE stage = ? AND status = 'failed' "
                        "ORDER BY item_key", (stage,))
    return [(row["item_key"], row["error"] or "") for row in rows]


def run_marks(catalog: Catalog, stages: tuple[str, ...]) -> list[tuple[str, str, float, str]]:
    """(stage, stage key, started at, status) of the last run of each of ``stages`` that ran,
    by stage: changes whenever one of them runs again."""
    marks = ", ".join("?" * len(stages))
    rows = catalog.rows(f"SELECT stage, stage_key, started_at, status FROM stage_runs WHERE stage IN ({marks}) "
                        "ORDER BY stage", stages)
    return [tuple(row) for row in rows]  # type: ignore[misc]


def done_outputs(catalog: Catalog, stages: tuple[str, ...] | None = None) -> list[tuple[str, list[str]]]:
    """(stage, files relative to its folder) of every finished item of ``stages`` (every stage: None)."""
    sql, args = "SELECT stage, outputs FROM stage_items WHERE status = 'done'", ()
    if stages is not None:
        sql, args = sql + f" AND stage IN ({', '.join('?' * len(stages))})", tuple(stages)
    return [(row["stage"], json.loads(row["outputs"] or "[]")) for row in catalog.rows(sql, args)]


def file_stamps(catalog: Catalog) -> dict[str, tuple[int, int, str]]:
    """path in the project -> (size, modification time in ns, content digest) of each stamped output
    (pipeline/stamps.py)."""
    return {row["path"]: (row["size"], row["mtime_ns"], row["digest"])
            for row in catalog.rows("SELECT path, size, mtime_ns, digest FROM file_stamps")}


def set_file_stamps(catalog: Catalog, stamps: dict[str, tuple[int, int, str]], gone: Iterable[str] = ()) -> None:
    """Record ``stamps`` (see :func:`file_stamps`) and drop those of ``gone``."""
    with catalog.transaction():
        catalog.upsert("file_stamps", ({"path": p, "size": s, "mtime_ns": m, "digest": d}
                                       for p, (s, m, d) in stamps.items()))
        catalog.conn.executemany("DELETE FROM file_stamps WHERE path = ?", [(p,) for p in gone])


WEIGHTS_META = "weights:"  # meta key prefix: stage name -> {weights name: fingerprint} (stages/fallback.py)


def weights_used(catalog: Catalog, stage: str) -> dict[str, str | None] | None:
    """The fingerprints of the weights the stage's last run used, as recorded (None: none)."""
    value = catalog.get_meta(WEIGHTS_META + stage)
    return json.loads(value) if value else None


def set_weights_used(catalog: Catalog, stage: str, prints: dict[str, str | None] | None) -> None:
    """Record them after a run (None: forget them: the run used another backend)."""
    if prints is None:
        catalog.execute("DELETE FROM meta WHERE key = ?", (WEIGHTS_META + stage,))
    else:
        catalog.set_meta(WEIGHTS_META + stage, json.dumps(prints, sort_keys=True))
