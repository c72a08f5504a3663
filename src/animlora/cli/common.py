"""What every command shares: consoles, common options, settings loading, output."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
console_err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")]
ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: the one containing the current folder)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: section.key=value (repeatable)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo work that is up to date / write into a used folder.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Settings profile: 3d (default) or 2d.")]
ConfigOpt = Annotated[
    list[Path] | None, typer.Option("--config", help="Extra YAML settings file (repeatable, standalone commands).")
]


def emit(data: dict[str, Any], as_json: bool) -> None:
    """The command's summary: JSON on stdout with --json, else nothing (the command prints)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


#: stage -> the backend family its ``backend`` setting names
_GPU_FAMILIES = {"segment": "segmentation", "embed": "embedding", "caption": "captioning",
                 "inpaint": "inpainting", "deocclude": "inpainting"}


def stage_wants_gpu(stage: Any, settings: Any, cluster_gpus: float) -> bool:
    """For the Ray executor: whether a stage's configured backend runs on a GPU: a model backend
    (``models``/``yolo`` extra) on ``device: cuda``, or on ``auto`` where the cluster has GPUs."""
    from animlora.backends.registry import BACKENDS

    section = getattr(settings, stage.name, None)
    backend = getattr(section, "backend", None)
    entry = BACKENDS.get(_GPU_FAMILIES.get(stage.name, ""), {}).get(backend) if isinstance(backend, str) else None
    if entry is None or entry.extra not in ("models", "yolo"):
        return False
    device = str(getattr(section, "device", "auto"))
    return device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)


def overrides_tree(sets: list[str] | None, flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """--set options plus a command's own flags (only those given) as one override tree."""
    from animlora.config import parse_set_options

    tree = parse_set_options(sets or [])
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


class _ConsoleHandler(logging.Handler):
    """Warnings on the terminal through rich's console, so a warning printed while the
    progress panel is live goes above it instead of breaking its line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console_err.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(log_dir: Path | None) -> Path | None:
    """Log everything to a file in the workspace; the terminal gets progress and summaries."""
    logger = logging.getLogger("animlora")
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler_err = _ConsoleHandler()
    handler_err.setLevel(logging.WARNING)
    handler_err.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler_err)
    if log_dir is None:
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return path


@contextmanager
def progress_bar(enabled: bool = True):
    """A rich progress display on stderr (silent when not a terminal and not wanted)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console_err,
        transient=False,
    ) as progress:
        yield progress


def summaries_json(summaries: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "stage": s.stage,
            "items_total": s.items_total,
            "items_done": s.items_done,
            "items_skipped": s.items_skipped,
            "failed": [{"item": k, "error": e} for k, e in s.failures],
            "seconds": round(s.seconds, 3),
            "up_to_date": s.up_to_date,
            "note": s.note,
        }
        for s in summaries
    ]


def print_summaries(summaries: list[Any]) -> None:
    for s in summaries:
        if s.items_total == 0 and not s.failures:
            why = s.note or "nothing to do (no input items)"
            console_err.print(f"[dim]-[/] {s.stage}: skipped, {why}", highlight=False, soft_wrap=True)
            continue
        if s.up_to_date:
            console_err.print(f"[green]✓[/] {s.stage}: up to date ({s.items_total} items)")
        else:
            mark = "[green]✓[/]" if not s.failures else "[yellow]![/]"
            console_err.print(
                f"{mark} {s.stage}: {s.items_done}/{s.items_total} items done "
                f"({s.items_skipped} already), {len(s.failures)} failed, {s.seconds:.1f}s"
            )
        for label, error in s.failures:
            console_err.print(f"    [red]✗[/] {label}: {error}", highlight=False, soft_wrap=True)
        if s.note:
            console_err.print(f"    [yellow]![/] {s.note}", highlight=False, soft_wrap=True)
