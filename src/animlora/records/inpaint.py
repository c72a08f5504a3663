"""The inpaint stage's records: ``plates``, one background plate per frame (or per static
shot), made by migration ``0100_segment`` (``catalog.MIGRATIONS``); in ``meta``, the flow
statistics of each shot's plates (``inpaint.temporal:<shot>``, JSON) and the run's fallback
note (``inpaint.fallback``).

Written by :class:`animlora.stages.inpaint.InpaintStage` (one shot = one work item); read by
its report and by the background dataset (``curation/background.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

TEMPORAL_META = "inpaint.temporal:"
FALLBACK_META = "inpaint.fallback"


# -- writers (the inpaint stage) --------------------------------------------------------------
def replace_shot(catalog: Catalog, shot_id: str, plates: list[dict[str, Any]],
                 temporal: dict[str, Any] | None) -> None:
    """The plates of one shot (rows of column -> value) and their flow statistics (plate id ->
    statistics; None or empty: none), replacing what the shot had."""
    delete_shot(catalog, shot_id)
    catalog.upsert("plates", plates)
    if temporal:
        catalog.set_meta(TEMPORAL_META + shot_id, json.dumps(temporal, sort_keys=True))


def delete_shot(catalog: Catalog, shot_id: str) -> None:
    catalog.execute("DELETE FROM plates WHERE shot_id = ?", (shot_id,))
    catalog.execute("DELETE FROM meta WHERE key = ?", (TEMPORAL_META + shot_id,))


def set_fallback(catalog: Catalog, note: str) -> None:
    """The run's fallback note (weights missing -> opencv), for the report."""
    catalog.set_meta(FALLBACK_META, note)


# -- readers ----------------------------------------------------------------------------------
def plate_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Every plate row, by shot then id."""
    return [dict(r) for r in catalog.rows("SELECT * FROM plates ORDER BY shot_id, id")]


def temporal_stats(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """plate id -> the flow statistics of its plate (shots inpainted with ``inpaint.temporal: flow``)."""
    out: dict[str, dict[str, Any]] = {}
    for r in catalog.rows("SELECT key, value FROM meta WHERE key LIKE ?", (TEMPORAL_META + "%",)):
        out.update(json.loads(r["value"]))
    return out


def fallback(catalog: Catalog) -> str | None:
    return catalog.get_meta(FALLBACK_META)


def backends_used(catalog: Catalog) -> list[str]:
    """The backends that inpainted the recorded plates (several when a run fell back)."""
    return catalog.distinct("plates", "backend")
