from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_model_store(tmp_path_factory, monkeypatch):
    """No test may see the developer's model store, HF cache or the network."""
    store = tmp_path_factory.mktemp("model-store")
    monkeypatch.setenv("ANIMLORA_MODELS", str(store))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    yield
