"""The inpaint stage's records: ``plates``, one background plate per frame (or per static shot).

Written by :class:`animlora.stages.inpaint.InpaintStage` (its SQL moves here at that module's
next edit); read here by the background dataset (``dataset/background.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog


def plate_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Every plate row, by shot then id."""
    return [dict(r) for r in catalog.rows("SELECT * FROM plates ORDER BY shot_id, id")]
