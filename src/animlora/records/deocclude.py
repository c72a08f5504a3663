"""The deocclude stage's records: one row per instance whose box another character or prop
overlapped, with the filled box image and where the box sits in the frame.

Written by :class:`animlora.stages.deocclude.DeoccludeStage` (one frame = one work item);
read by its report and by the dataset stage, which pastes the filled box back into the frame
before cropping. In ``meta``: the run's fallback note (``deocclude.fallback``) and, per frame,
the share of each hole borrowed from neighbouring frames (``deocclude.borrowed:<frame>``). Catalogs made before this table kept the same records as JSON in ``meta``
(``deocclude:<frame id>``); migration ``0310_deocclude_fills`` moves them here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

TABLE = "deocclude_fills"
_COLUMNS = ("instance_id", "frame_id", "path", "original", "box", "occluded_fraction", "backend",
            "character", "prompt")

# A named catalog migration (listed in catalog.MIGRATIONS): the table, then the records that
# older catalogs kept in `meta` moved into it. Malformed JSON in `meta` is left where it is.
MIGRATION = (
    "0310_deocclude_fills",
    """
    CREATE TABLE deocclude_fills (
        instance_id TEXT PRIMARY KEY,     -- the segment stage's instance id
        frame_id TEXT NOT NULL,           -- the work item: the frame the instance is in
        path TEXT,                        -- filled box image, relative to the deocclude folder
        original TEXT,                    -- the box as it was, same folder
        box TEXT,                         -- JSON [x, y, w, h] in frame pixels (NULL: stage version 1)
        occluded_fraction REAL,           -- filled pixels / box pixels
        backend TEXT,                     -- inpainting backend that filled it
        character TEXT,                   -- the character named in the prompt (sd), else NULL
        prompt TEXT                       -- the text-guided backend's prompt, else NULL
    );
    CREATE INDEX deocclude_fills_frame ON deocclude_fills(frame_id);
    INSERT OR REPLACE INTO deocclude_fills
        SELECT json_extract(e.value, '$.instance_id'), substr(m.key, 11), json_extract(e.value, '$.path'),
               json_extract(e.value, '$.original'), json_extract(e.value, '$.box'),
               json_extract(e.value, '$.occluded_fraction'), json_extract(e.value, '$.backend'),
               json_extract(e.value, '$.character'), json_extract(e.value, '$.prompt')
        FROM meta m, json_each(m.value) e
        WHERE m.key LIKE 'deocclude:%' AND json_valid(m.value) AND json_type(m.value) = 'array'
          AND json_extract(e.value, '$.instance_id') IS NOT NULL;
    DELETE FROM meta WHERE key LIKE 'deocclude:%' AND json_valid(value) AND json_type(value) = 'array'
    """,
)


@dataclass(frozen=True)
class Fill:
    """One occluded instance's filled box."""

    instance_id: str
    frame_id: str
    path: str  # relative to the deocclude folder
    original: str
    box: tuple[int, int, int, int] | None  # (x, y, w, h) in the frame; None in version-1 records
    occluded_fraction: float
    backend: str
    character: str | None = None
    prompt: str | None = None

    def as_report_entry(self) -> dict[str, Any]:
        """The entry of ``deocclude_report.json``'s ``changed`` list."""
        entry: dict[str, Any] = {"instance_id": self.instance_id, "occluded_fraction": self.occluded_fraction,
                                 "path": self.path, "original": self.original,
                                 "box": list(self.box) if self.box is not None else None,
                                 "backend": self.backend, "character": self.character}
        if self.prompt is not None:
            entry["prompt"] = self.prompt
        return entry


def fill_from_entry(frame_id: str, entry: dict[str, Any]) -> Fill:
    """A row from the stage's per-instance entry (what ``process`` returns)."""
    box = entry.get("box")
    return Fill(instance_id=entry["instance_id"], frame_id=frame_id, path=entry["path"], original=entry["original"],
                box=tuple(int(v) for v in box) if box and len(box) == 4 else None,  # type: ignore[arg-type]
                occluded_fraction=float(entry["occluded_fraction"]), backend=entry["backend"],
                character=entry.get("character"), prompt=entry.get("prompt"))


def replace_frame(catalog: Catalog, frame_id: str, fills: Iterable[Fill]) -> None:
    """The records of one frame (one work item), replacing what it had."""
    delete_frame(catalog, frame_id)
    for f in fills:
        values = (f.instance_id, f.frame_id, f.path, f.original, json.dumps(list(f.box)) if f.box else None,
                  f.occluded_fraction, f.backend, f.character, f.prompt)
        catalog.execute(f"INSERT OR REPLACE INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES "
                        f"({', '.join('?' * len(_COLUMNS))})", values)


def delete_frame(catalog: Catalog, frame_id: str) -> None:
    catalog.execute(f"DELETE FROM {TABLE} WHERE frame_id = ?", (frame_id,))
    catalog.execute("DELETE FROM meta WHERE key = ?", (BORROWED_META + frame_id,))


FALLBACK_META = "deocclude.fallback"


def set_fallback(catalog: Catalog, note: str) -> None:
    """The run's fallback note (sd unavailable -> lama or opencv), for the report."""
    catalog.set_meta(FALLBACK_META, note)


def fallback(catalog: Catalog) -> str | None:
    return catalog.get_meta(FALLBACK_META)


# inpaint.temporal flow: per frame, the fraction of each instance's hole taken from the shot's
# neighbouring frames (a statistic for the report; kept in meta so the table's shape is unchanged)
BORROWED_META = "deocclude.borrowed:"


def set_borrowed(catalog: Catalog, frame_id: str, fractions: dict[str, float]) -> None:
    if fractions:
        catalog.set_meta(BORROWED_META + frame_id, json.dumps(fractions, sort_keys=True))
    else:
        catalog.execute("DELETE FROM meta WHERE key = ?", (BORROWED_META + frame_id,))


def all_borrowed(catalog: Catalog) -> dict[str, float]:
    """instance id -> fraction of its hole borrowed from neighbouring frames."""
    out: dict[str, float] = {}
    for row in catalog.rows("SELECT value FROM meta WHERE key LIKE ?", (BORROWED_META + "%",)):
        out.update(json.loads(row["value"]))
    return out


def all_fills(catalog: Catalog) -> list[Fill]:
    """Every record, by frame then instance (the report's order)."""
    rows = catalog.rows(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} ORDER BY frame_id, instance_id")
    return [_fill(row) for row in rows]


def fills_by_instance(catalog: Catalog) -> dict[str, Fill]:
    """instance id -> its record (the dataset stage's lookup)."""
    return {f.instance_id: f for f in all_fills(catalog)}


def _fill(row: Any) -> Fill:
    box = json.loads(row["box"]) if row["box"] else None
    return Fill(instance_id=row["instance_id"], frame_id=row["frame_id"], path=row["path"], original=row["original"],
                box=tuple(int(v) for v in box) if box and len(box) == 4 else None,  # type: ignore[arg-type]
                occluded_fraction=row["occluded_fraction"], backend=row["backend"], character=row["character"],
                prompt=row["prompt"])


def backends_used(catalog: Catalog) -> list[str]:
    """The backends that filled the recorded instances (several when a run fell back)."""
    return catalog.distinct(TABLE, "backend")
