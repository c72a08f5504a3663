"""The ``animlora`` command: one sub-command per stage, plus run, init, status, doctor, models.

Heavy libraries are imported inside commands, so ``animlora --help`` stays instant.
"""

from __future__ import annotations

import os
import sys

import typer

from animlora.cli import evaluate, project, review, stages, system, train
from animlora.cli.common import console_err
from animlora.errors import AnimloraError

app = typer.Typer(
    name="animlora",
    help="3D-animated film footage in, one LoRA per character out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
project.register(app)
stages.register(app)
system.register(app)
train.register(app)
evaluate.register(app)
review.register(app)


def main() -> None:
    """Entry point: project errors print one line and exit 1 (ANIMLORA_DEBUG=1: traceback)."""
    try:
        # standalone_mode=False makes click *return* typer.Exit's code instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AnimloraError as exc:
        if os.environ.get("ANIMLORA_DEBUG"):
            raise
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console_err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
