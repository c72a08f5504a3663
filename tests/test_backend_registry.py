"""The one backend table: every family has the same entry shape, availability from what
imports, one factory whose errors name the choices or the pip extra, declared fallbacks,
and one held model per process."""

from __future__ import annotations

import importlib.util

import pytest

from animlora.backends import registry
from animlora.backends.registry import BackendEntry
from animlora.errors import ConfigError, MissingDependencyError


def test_every_family_is_one_table_of_one_entry_type():
    assert set(registry.BACKENDS) == set(registry.FAMILIES)
    for family, table in registry.BACKENDS.items():
        assert table and all(isinstance(e, BackendEntry) for e in table.values())
        for name, entry in table.items():
            assert all(f in table for f in entry.fallbacks), (family, name)
        assert set(registry.available(family)) == set(table)
    assert registry.available("segmentation")["classic"] is True
    assert registry.available("segmentation")["yolo"] is (importlib.util.find_spec("ultralytics") is not None)


def test_unknown_and_uninstalled_backends_name_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match="unknown captioning backend 'gpt'; choices: template, blip, florence2"):
        registry.get_backend("captioning", "gpt")
    with pytest.raises(ConfigError, match="unknown backend family 'audio'"):
        registry.available("audio")
    monkeypatch.setitem(registry.BACKENDS["embedding"], "fancy",
                        BackendEntry("nowhere:Fancy", ("no_such_package_xyz",), "models", "needs a package"))
    assert registry.available("embedding")["fancy"] is False
    with pytest.raises(MissingDependencyError, match=r"pip install 'animlora\[models\]'"):
        registry.get_backend("embedding", "fancy")


def test_old_family_names_read_the_same_table():
    from animlora.backends.captioning import BACKENDS as captioning
    from animlora.backends.embedding import BACKENDS as embedding
    from animlora.backends.inpainting.base import BACKENDS as inpainting
    from animlora.backends.segmentation.base import BACKENDS as segmentation

    assert segmentation is registry.BACKENDS["segmentation"] and inpainting is registry.BACKENDS["inpainting"]
    assert embedding is registry.BACKENDS["embedding"] and captioning is registry.BACKENDS["captioning"]


def test_fallback_chain_reads_every_spelling_of_the_setting():
    chain = registry.fallback_chain
    assert chain("segmentation", "sam2", True) == ["sam2", "isnet", "classic"]
    assert chain("segmentation", "isnet", False) == ["isnet"]
    assert chain("inpainting", "sd", "none") == ["sd"]
    assert chain("inpainting", "sd", "opencv") == ["sd", "opencv"]
    assert chain("embedding", "clip", "color") == ["clip", "color"]
    assert chain("captioning", "blip", ["template"]) == ["blip", "template"]
    with pytest.raises(ConfigError, match="unknown inpainting backend 'magic'"):
        chain("inpainting", "sd", "magic")


def test_held_builds_once_per_key_and_closes_what_it_replaces():
    built, closed = [], []

    class Model:
        def __init__(self, key):
            self.key = key
            built.append(key)

        def close(self):
            closed.append(self.key)

    a = registry.held("test-slot", "a", lambda: Model("a"))
    assert registry.held("test-slot", "a", lambda: Model("a")) is a and built == ["a"]
    pair = registry.held("test-slot", "b", lambda: (Model("b"), "note"))
    assert closed == ["a"] and pair[1] == "note"
    registry.release("test-slot")
    assert closed == ["a", "b"]
