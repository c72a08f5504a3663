"""One name per stage: each standalone stage command is named as its stage; the command
names of earlier releases stay, hidden, and run the same code."""

from __future__ import annotations

import typer

from animlora.cli import app
from animlora.stages import STAGES


def test_every_stage_has_a_command_of_its_name_and_old_names_still_work():
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert set(STAGES) <= set(commands)
    for old, new in {"inpaint-background": "inpaint", "remove-occluders": "deocclude"}.items():
        assert commands[old].hidden and not commands[new].hidden
        assert commands[old].callback.__wrapped__ is commands[new].callback.__wrapped__
