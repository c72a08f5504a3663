"""The prefilter stage's records: ``prefilter_results``, one verdict per instance of the
segment stage (kept, with the cut-out it copied under its folder, or rejected with the
reason). Made by migration ``0100_segment`` (``catalog.MIGRATIONS``).

Written by :class:`animlora.stages.prefilter.PrefilterStage` (one instance = one work item)
through :func:`write_verdict`; read here by its report, the identity inputs, the dataset
sources and the run's ending (:mod:`animlora.curation.summary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animlora.catalog import Catalog


@dataclass(frozen=True)
class Verdict:
    instance_id: str
    kept: bool
    reason: str | None  # None when kept; else tiny | truncated | blurred | not_character | ...
    path: str | None  # the kept cut-out, relative to the prefilter folder


# -- writers (the prefilter stage) ------------------------------------------------------------
def write_verdict(catalog: Catalog, instance_id: str, kept: bool, reason: str | None, path: str | None) -> None:
    """One instance's verdict, replacing what it had."""
    catalog.upsert("prefilter_results", [{"instance_id": instance_id, "kept": int(kept), "reason": reason,
                                          "path": path}])


def delete_verdict(catalog: Catalog, instance_id: str) -> None:
    catalog.execute("DELETE FROM prefilter_results WHERE instance_id = ?", (instance_id,))


# -- readers ----------------------------------------------------------------------------------
def verdicts(catalog: Catalog) -> dict[str, Verdict]:
    """instance id -> the prefilter's verdict, in id order."""
    rows = catalog.rows("SELECT instance_id, kept, reason, path FROM prefilter_results ORDER BY instance_id")
    return {r["instance_id"]: Verdict(r["instance_id"], bool(r["kept"]), r["reason"], r["path"]) for r in rows}


def rejected(catalog: Catalog) -> list[tuple[str, str]]:
    """(instance id, reason) of every rejected instance, by id (a reason never recorded reads 'rejected')."""
    return [(v.instance_id, v.reason or "rejected") for v in verdicts(catalog).values() if not v.kept]


def rejected_counts(catalog: Catalog) -> dict[str, int]:
    """reason -> number of instances rejected for it, by reason."""
    counts: dict[str, int] = {}
    for _, reason in rejected(catalog):
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))
