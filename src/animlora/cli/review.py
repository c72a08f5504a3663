"""Review commands: ``review`` (the browser page) and ``export-clusters``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from animlora.cli.common import ForceOpt, JsonOpt, ProjectOpt, SetOpt, console_err, emit, overrides_tree


def register(app: typer.Typer) -> None:
    app.command("review")(review)
    app.command("export-clusters")(export_clusters)


def _service(project: Path | None, sets: list[str] | None):
    from animlora.config import load_settings
    from animlora.review.service import ReviewService, open_workspace

    workspace = open_workspace(project.resolve() if project else None)
    loaded = load_settings(None if workspace.standalone else workspace.root, overrides=overrides_tree(sets))
    return ReviewService(workspace), loaded.settings.review


def review(
    project: ProjectOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: a random free one).")] = None,
    token: Annotated[str | None, typer.Option(
        help="Access token, needed on every host (default: generated, and part of the printed URL); "
             "16 characters or more for a non-local host.")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Review the clusters in the browser: rename, merge, split, move images, undo/redo."""
    from animlora.review.app import serve

    service, settings = _service(project, sets)
    chosen_host = host or settings.host

    def announce(url: str) -> None:
        console_err.print(f"review page: [bold]{url}[/]  (Ctrl+C to stop)")
        emit({"url": url, "project": str(service.workspace.root)}, as_json)

    serve(service, chosen_host, port if port is not None else settings.port, token or settings.token,
          settings.page_size, settings.thumb_size, not no_browser, announce)


def export_clusters(
    project: ProjectOpt = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Where to write (default: clustered_refined/ in the project).")
    ] = None,
    force: ForceOpt = False,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the reviewed clusters: <output>/<character>/ and noise/.

    An earlier export there is replaced file by file; ``--force`` writes into another
    non-empty folder beside its files, and never deletes or overwrites one of them."""
    service, _ = _service(project, sets)
    out = output_dir or service.workspace.root / "clustered_refined"
    result = service.export(out, force=force)
    chars = result["characters"]
    console_err.print(
        f"exported {sum(chars.values())} images of {len(chars)} characters (+{result['noise']} noise) to {result['output']}"
    )
    emit(result, as_json)
