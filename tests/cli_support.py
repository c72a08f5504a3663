"""Helpers for tests that run the `animlora` command in a subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def cli_env() -> dict[str, str]:
    """Environment for `python -m animlora` subprocesses running this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("ANIMLORA_DEBUG", None)
    return env


def animlora_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "animlora", *args]
