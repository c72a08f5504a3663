"""The caption stage's records: ``captions``, one row per (instance, character), made by
migration ``0300_dataset`` (``catalog.MIGRATIONS``).

Written by :class:`animlora.stages.caption.CaptionStage` (:func:`write_stage_caption`) and by
a person in the review page (:func:`store_edit`, :func:`accept_caption`, :func:`revert_edit`);
a person's edit (``edited = 1``) is never overwritten by a re-run and survives
``animlora repair`` (``catalog.USER_TABLES``). The dataset stage reads the table too
(:func:`list_captions`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog


@dataclass(frozen=True)
class Caption:
    instance_id: str
    character: str
    text: str  # the person's edit when edited
    source: str  # backend that wrote it (template, blip, ...), or 'edit'
    fields: dict[str, Any] = field(default_factory=dict)  # field -> {value, confidence}
    edited: bool = False  # text written by a person, kept across re-runs
    accepted: bool = False  # a person accepted the caption as it is
    auto_text: str | None = None  # what the backend wrote (kept when a person edits)
    confidence: float | None = None
    note: str | None = None  # how the caption was made when not plainly
    updated_at: float | None = None


# -- readers ----------------------------------------------------------------------------------
def get_caption(catalog: Catalog, instance_id: str, character: str) -> Caption | None:
    row = catalog.one("SELECT * FROM captions WHERE instance_id = ? AND character = ?", (instance_id, character))
    return None if row is None else _caption(row)


def list_captions(catalog: Catalog, character: str | None = None) -> list[Caption]:
    """Every caption (of one character), by character then instance."""
    sql = "SELECT * FROM captions"
    params: tuple[Any, ...] = ()
    if character is not None:
        sql += " WHERE character = ?"
        params = (character,)
    return [_caption(row) for row in catalog.rows(sql + " ORDER BY character, instance_id", params)]


def edited_texts(catalog: Catalog) -> defaultdict[str, dict[str, str]]:
    """instance id -> character -> the text a person wrote, for every edited caption ({} for others)."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for row in catalog.rows("SELECT instance_id, character, text FROM captions WHERE edited = 1"):
        out[row["instance_id"]][row["character"]] = row["text"]
    return out


# -- the caption stage ------------------------------------------------------------------------
def write_stage_caption(catalog: Catalog, *, instance_id: str, character: str, text: str, source: str,
                        fields: dict[str, Any], auto_text: str | None, confidence: float | None,
                        note: str | None, carried_from: str | None = None) -> None:
    """The stage's caption of an instance. A person's edit and acceptance stay marked (the
    stage keeps the edited text); ``carried_from``: the character an edit was made under
    before review renamed or moved the instance — the edit now lives under ``character``."""
    from animlora.catalog import now

    query = "SELECT edited, accepted FROM captions WHERE instance_id = ? AND character = ?"
    row = catalog.one(query, (instance_id, character))
    old = catalog.one(query, (instance_id, carried_from)) if carried_from else None
    edited = bool(row and row["edited"]) or old is not None
    catalog.upsert("captions", [{
        "instance_id": instance_id, "character": character,
        "text": text, "source": "edit" if edited else source, "fields": fields,
        "edited": int(edited), "accepted": int(bool(row and row["accepted"]) or bool(old and old["accepted"])),
        "auto_text": auto_text, "confidence": confidence, "note": note, "updated_at": now(),
    }])
    if old is not None:
        catalog.execute("DELETE FROM captions WHERE instance_id = ? AND character = ?", (instance_id, carried_from))


def forget_caption(catalog: Catalog, instance_id: str, character: str) -> None:
    """Drop the stage's caption of an instance; a person's edit outlives any re-run."""
    catalog.execute("DELETE FROM captions WHERE instance_id = ? AND character = ? AND edited = 0",
                    (instance_id, character))


# -- the review page --------------------------------------------------------------------------
def store_edit(catalog: Catalog, instance_id: str, character: str, text: str) -> None:
    """A person's caption: kept verbatim (whitespace tidied) and never overwritten by a re-run."""
    from animlora.catalog import now
    from animlora.errors import BadInputError

    clean = " ".join(text.split())
    if not clean:
        raise BadInputError(f"caption {instance_id}", "an empty caption; delete the image from the set instead")
    with catalog.transaction():
        row = catalog.one("SELECT text, auto_text FROM captions WHERE instance_id = ? AND character = ?",
                          (instance_id, character))
        if row is None:
            catalog.upsert("captions", [{
                "instance_id": instance_id, "character": character, "text": clean, "source": "edit",
                "fields": {}, "edited": 1, "accepted": 1, "auto_text": None, "confidence": 1.0,
                "note": None, "updated_at": now(),
            }])
        else:
            catalog.execute(
                "UPDATE captions SET text = ?, edited = 1, accepted = 1, auto_text = COALESCE(auto_text, ?), "
                "updated_at = ? WHERE instance_id = ? AND character = ?",
                (clean, row["text"], now(), instance_id, character),
            )


def accept_caption(catalog: Catalog, instance_id: str, character: str) -> None:
    """A person accepted the caption as written."""
    from animlora.catalog import now
    from animlora.errors import BadInputError

    with catalog.transaction():
        cur = catalog.execute(
            "UPDATE captions SET accepted = 1, updated_at = ? WHERE instance_id = ? AND character = ?",
            (now(), instance_id, character),
        )
    if cur.rowcount == 0:
        raise BadInputError(f"caption {instance_id}", f"no caption for character {character!r}")


def revert_edit(catalog: Catalog, instance_id: str, character: str) -> None:
    """Back to the backend's caption (the edit is dropped)."""
    with catalog.transaction():
        catalog.execute(
            "UPDATE captions SET text = COALESCE(auto_text, text), edited = 0, accepted = 0 "
            "WHERE instance_id = ? AND character = ?",
            (instance_id, character),
        )


def _caption(row: Any) -> Caption:
    return Caption(instance_id=row["instance_id"], character=row["character"], text=row["text"],
                   source=row["source"], fields=json.loads(row["fields"] or "{}"), edited=bool(row["edited"]),
                   accepted=bool(row["accepted"]), auto_text=row["auto_text"], confidence=row["confidence"],
                   note=row["note"], updated_at=row["updated_at"])


def backends_used(catalog: Catalog) -> list[str]:
    """The backends that wrote the stage's captions (a person's edits aside): ``qwen2_5_vl+template``
    counts as qwen2_5_vl; several when a run fell back."""
    rows = catalog.rows("SELECT DISTINCT source FROM captions WHERE edited = 0")
    return sorted({str(r["source"]).split("+")[0] for r in rows} - {"edit"})
