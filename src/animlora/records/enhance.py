"""The enhance stage's records: one row per enlarged crop (accepted or rejected by the gate).

Written by :class:`animlora.stages.enhance.EnhanceStage` (one instance = one work item; a
standalone folder's image is keyed by its file name); read by its report and by the dataset
stage, which crops from the enhanced image where plain resampling would be limited.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog

TABLE = "enhanced_crops"
_COLUMNS = ("item", "path", "region", "size", "scale", "method", "ssim", "status", "reason")

MIGRATION = (
    "0320_enhanced_crops",
    """
    CREATE TABLE enhanced_crops (
        item TEXT PRIMARY KEY,            -- the instance id (standalone: the image's file name)
        path TEXT,                        -- RGBA PNG relative to the enhance folder; NULL when rejected
        region TEXT NOT NULL,             -- JSON [x, y, w, h]: the source pixels enlarged (frame px)
        size TEXT NOT NULL,               -- JSON [w, h] of the enlarged image
        scale REAL NOT NULL,              -- output px per source px
        method TEXT NOT NULL,             -- backend (and model) that made it
        ssim REAL,                        -- the gate: result shrunk back vs the source
        status TEXT NOT NULL,             -- accepted | rejected
        reason TEXT                       -- why rejected
    )
    """,
)


@dataclass(frozen=True)
class Enhanced:
    item: str
    path: str | None
    region: tuple[int, int, int, int]
    size: tuple[int, int]
    scale: float
    method: str
    ssim: float | None
    status: str
    reason: str | None = None

    def as_report_entry(self) -> dict[str, Any]:
        entry = asdict(self)
        entry["region"], entry["size"] = list(self.region), list(self.size)
        return entry


def from_entry(entry: dict[str, Any]) -> Enhanced:
    return Enhanced(item=entry["item"], path=entry.get("path"), region=tuple(entry["region"]),  # type: ignore[arg-type]
                    size=tuple(entry["size"]), scale=float(entry["scale"]),  # type: ignore[arg-type]
                    method=entry["method"], ssim=entry.get("ssim"), status=entry["status"],
                    reason=entry.get("reason"))


def replace(catalog: Catalog, record: Enhanced) -> None:
    values = (record.item, record.path, json.dumps(list(record.region)), json.dumps(list(record.size)), record.scale,
              record.method, record.ssim, record.status, record.reason)
    catalog.execute(f"INSERT OR REPLACE INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(_COLUMNS))})", values)


def delete(catalog: Catalog, item: str) -> None:
    catalog.execute(f"DELETE FROM {TABLE} WHERE item = ?", (item,))


def all_records(catalog: Catalog) -> list[Enhanced]:
    return [_record(r) for r in catalog.rows(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} ORDER BY item")]


def accepted_by_item(catalog: Catalog) -> dict[str, Enhanced]:
    """item -> its accepted record (the dataset stage's lookup)."""
    return {r.item: r for r in all_records(catalog) if r.status == "accepted" and r.path}


def _record(row: Any) -> Enhanced:
    return Enhanced(item=row["item"], path=row["path"], region=tuple(json.loads(row["region"])),
                    size=tuple(json.loads(row["size"])), scale=row["scale"], method=row["method"], ssim=row["ssim"],
                    status=row["status"], reason=row["reason"])


FALLBACK_META = "enhance.fallback"


def set_fallback(catalog: Catalog, note: str) -> None:
    """The run's fallback note (weights missing -> the OpenCV path), for the report."""
    catalog.set_meta(FALLBACK_META, note)


def fallback(catalog: Catalog) -> str | None:
    return catalog.get_meta(FALLBACK_META)


def backends_used(catalog: Catalog) -> list[str]:
    """The backends that made the recorded crops (``spandrel:<model> (...)`` counts as spandrel)."""
    rows = catalog.rows(f"SELECT DISTINCT method FROM {TABLE}")
    return sorted({str(r["method"]).split(":")[0].split(" ")[0] for r in rows})
