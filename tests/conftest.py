from __future__ import annotations

import os
from pathlib import Path

import pytest

# The developer's model store, before the autouse fixture hides it (see real_model_store).
REAL_MODEL_STORE = Path(os.environ.get("ANIMLORA_MODELS") or Path.home() / ".cache" / "animlora" / "models")


@pytest.fixture(autouse=True)
def _isolated_model_store(tmp_path_factory, monkeypatch):
    """No test may see the developer's model store, HF cache or the network."""
    store = tmp_path_factory.mktemp("model-store")
    monkeypatch.setenv("ANIMLORA_MODELS", str(store))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    yield


@pytest.fixture
def real_model_store(monkeypatch) -> Path:
    """For the few tests that use real weights a registry package ships (ISNet from npm,
    fetched by `animlora models pull isnet`): animlora's own store, never the hub."""
    monkeypatch.setenv("ANIMLORA_MODELS", str(REAL_MODEL_STORE))
    return REAL_MODEL_STORE


# -- tiny training models, built once per session (tests/train_support.py) -------------------
@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory) -> Path:
    """A tiny SD 1.x pipeline folder (tests/tiny_sd.py)."""
    import tiny_sd

    return tiny_sd.build_sd15(tmp_path_factory.mktemp("tiny-sd15") / "sd15")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory) -> Path:
    """A tiny Flux.1 [dev] pipeline folder (tests/tiny_flux.py)."""
    import tiny_flux

    return tiny_flux.build_flux(tmp_path_factory.mktemp("tiny-flux") / "flux-dev")


@pytest.fixture(scope="session")
def tiny_luca(tmp_path_factory) -> Path:
    """A 4-image dataset folder ``luca`` (32×32 RGBA, trigger ``lucaxyz``)."""
    import tiny_sd

    return tiny_sd.write_dataset(tmp_path_factory.mktemp("tiny-data") / "luca", n=4)
