from __future__ import annotations

import sqlite3

import pytest

from animlora import catalog as catalog_module
from animlora.catalog import MIGRATIONS, Catalog
from animlora.errors import WorkspaceError


def test_new_catalog_has_schema_and_wal(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        assert cat.schema_version == len(MIGRATIONS)
        assert cat.one("PRAGMA journal_mode")[0] == "wal"
        tables = {r[0] for r in cat.rows("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"videos", "shots", "frames", "stage_runs", "stage_items", "schema_migrations"} <= tables


def test_migrations_apply_once_and_new_ones_later(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    extra = ("9999_test", "CREATE TABLE extra_things (id TEXT PRIMARY KEY)")
    monkeypatch.setattr(catalog_module, "MIGRATIONS", [*MIGRATIONS, extra])
    with Catalog(path) as cat:
        assert cat.schema_version == len(MIGRATIONS) + 1
        names = [r[0] for r in cat.rows("SELECT name FROM schema_migrations ORDER BY name")]
        assert names.count("9999_test") == 1
        assert cat.migrate() == []  # nothing left to apply


def test_catalog_from_newer_version_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('9999_future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(WorkspaceError, match="newer animlora"):
        Catalog(path)


def test_transaction_rolls_back_on_error(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        with pytest.raises(RuntimeError), cat.transaction():
            cat.set_meta("a", "1")
            raise RuntimeError("boom")
        assert cat.get_meta("a") is None
        with cat.transaction():
            cat.set_meta("a", "2")
        assert cat.get_meta("a") == "2"


def test_upsert_stores_lists_as_json(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat, cat.transaction():
        cat.upsert("videos", [{"id": "v1", "path": "a.mp4", "name": "a", "size": 3, "crop": [0, 1, 2, 3], "status": "ok"}])
        assert cat.one("SELECT crop FROM videos")[0] == "[0, 1, 2, 3]"
