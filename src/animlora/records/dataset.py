"""The dataset stage's records: ``dataset_items``, one row per image a character's dataset
holds (with its caption file and selection score), made by migration ``0300_dataset``
(``catalog.MIGRATIONS``).

Written by :class:`animlora.stages.dataset.DatasetStage` (one character = one work item).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animlora.catalog import Catalog


WRITTEN_IN_META = "dataset:written_in"  # the project folder the dataset's files name


def written_in(catalog: Catalog) -> str | None:
    """The project folder the dataset stage last wrote its files for (they name it)."""
    return catalog.get_meta(WRITTEN_IN_META)


def set_written_in(catalog: Catalog, folder: str) -> None:
    catalog.set_meta(WRITTEN_IN_META, folder)


@dataclass(frozen=True)
class DatasetItem:
    character: str
    instance_id: str
    image_path: str  # relative to the dataset folder
    caption_path: str
    score: float | None  # selection score (quality x diversity)


def replace_character(catalog: Catalog, character: str, items: Iterable[DatasetItem]) -> None:
    """The images of one character's dataset, replacing what it had."""
    delete_character(catalog, character)
    catalog.upsert("dataset_items", [
        {"character": i.character, "instance_id": i.instance_id, "image_path": i.image_path,
         "caption_path": i.caption_path, "score": i.score} for i in items
    ])


def delete_character(catalog: Catalog, character: str) -> None:
    catalog.execute("DELETE FROM dataset_items WHERE character = ?", (character,))


def items_of(catalog: Catalog, character: str) -> list[DatasetItem]:
    """The images of one character's dataset, by instance id."""
    rows = catalog.rows("SELECT character, instance_id, image_path, caption_path, score FROM dataset_items "
                        "WHERE character = ? ORDER BY instance_id", (character,))
    return [DatasetItem(**dict(row)) for row in rows]


def count_shots(catalog: Catalog) -> int:
    """Shots in the project (every video): what ``dataset.min_size: auto`` scales with."""
    row = catalog.one("SELECT COUNT(*) FROM shots")
    return int(row[0]) if row else 0
