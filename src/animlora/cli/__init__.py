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
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from animlora import __version__

        sys.stdout.write(f"animlora {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version,
                                 is_eager=True),
) -> None:
    """3D-animated film footage in, one LoRA per character out."""


project.register(app)
stages.register(app)
system.register(app)
train.register(app)
evaluate.register(app)
review.register(app)


def _click_kind(exc: BaseException) -> str | None:
    """'usage', 'abort' or 'exit' for click's exceptions *and* the copies some Typer
    versions raise (same names, other classes), else None."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ClickException" in names:
        return "usage"
    if "Abort" in names:
        return "abort"
    if "Exit" in names and hasattr(exc, "exit_code"):
        return "exit"
    return None


def _fail(message: str, code: int = 1) -> None:
    console_err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)


def main() -> None:
    """Entry point: every error prints one line and exits non-zero (ANIMLORA_DEBUG=1: the
    traceback). Project errors exit 1, command-line mistakes 2, an unexpected error 3."""
    from rich.markup import escape

    debug = bool(os.environ.get("ANIMLORA_DEBUG"))
    try:
        # standalone_mode=False makes click *return* typer.Exit's code instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console_err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except AnimloraError as exc:
        if debug:
            raise
        _fail(escape(str(exc)))
    except Exception as exc:
        kind = _click_kind(exc)
        if kind == "usage":
            exc.show()  # type: ignore[attr-defined]  # "Usage: ... Error: No such option: --bogus"
            sys.exit(int(getattr(exc, "exit_code", 2)))
        if kind == "abort":
            sys.exit(1)
        if kind == "exit":
            sys.exit(int(getattr(exc, "exit_code", 0) or 0))
        if debug:
            raise
        import sqlite3

        if isinstance(exc, sqlite3.DatabaseError):
            from animlora.catalog import damaged

            _fail(escape(str(damaged(None, exc))))
        if isinstance(exc, OSError):
            from animlora.errors import disk_full, disk_full_error

            if disk_full(exc):
                _fail(escape(str(disk_full_error(exc.filename, exc))))
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(escape(f"{where}{exc.strerror or exc}"))
        _fail(escape(f"unexpected {type(exc).__name__}: {exc} (a bug; ANIMLORA_DEBUG=1 shows where, please report)"),
              3)
