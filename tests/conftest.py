from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolated_model_store(tmp_path_factory, monkeypatch):
    """No test may see the developer's model store, HF cache or the network."""
    store = tmp_path_factory.mktemp("model-store")
    monkeypatch.setenv("ANIMLORA_MODELS", str(store))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    yield


def cli_env() -> dict[str, str]:
    """Environment for `python -m animlora` subprocesses running this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("ANIMLORA_DEBUG", None)
    return env


def animlora_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "animlora", *args]
