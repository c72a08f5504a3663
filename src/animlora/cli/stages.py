"""Standalone stage commands: each runs one stage on plain folders, as the original scripts
did, with the same settings, resume and reports as inside a project.

Every flag defaults to None and is applied only when given, so the YAML defaults are the
only defaults (``animlora config show`` lists them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from animlora.cli.common import (
    ConfigOpt,
    ForceOpt,
    JsonOpt,
    ProfileOpt,
    SetOpt,
    emit,
    overrides_tree,
    print_summaries,
    progress_bar,
    setup_logging,
    summaries_json,
)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)


def run_standalone(
    stage_name: str,
    input_path: Path,
    output_dir: Path,
    flags: dict[str, Any],
    *,
    sets: list[str] | None,
    config_files: list[Path] | None,
    profile: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Run one stage from ``input_path`` into ``output_dir`` (a standalone workspace)."""
    from animlora.config import load_settings
    from animlora.errors import BadInputError, WorkspaceError
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import STATE_DIR, Workspace

    if not input_path.exists():
        raise BadInputError(input_path, "no such file or folder")
    loaded = load_settings(profile=profile, config_files=list(config_files or []), overrides=overrides_tree(sets, flags))
    out = output_dir.resolve()
    if out.is_file():
        raise BadInputError(out, "the output must be a folder, this is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_DIR).is_dir() and not force:
        raise WorkspaceError(
            f"{out}: the output folder is not empty and was not made by animlora; "
            "choose an empty folder or pass --force to write into it"
        )
    workspace = Workspace.for_output(out)
    stage = get_stage(stage_name)
    runner = Runner(workspace, loaded, force=force, input_path=input_path.resolve())
    with progress_bar(not as_json) as progress:
        runner.progress = progress
        try:
            summaries = runner.run([stage])
        finally:
            setup_logging(None)
    print_summaries(summaries)
    emit({"output": str(out), "stages": summaries_json(summaries)}, as_json)
    if any(s.failures for s in summaries):
        raise typer.Exit(1)


def extract(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="A video file, or a folder of videos.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for frames and extraction_results.json.")],
    mode: Annotated[str | None, typer.Option(help="scene | interval | all")] = None,
    detector: Annotated[str | None, typer.Option(help="adaptive | content | hash")] = None,
    scene_threshold: Annotated[float | None, typer.Option(help="Shot detector threshold (default: the detector's entry in extract.detector_thresholds).")] = None,
    frames_per_shot: Annotated[int | None, typer.Option(help="Scene mode: frames kept per shot.")] = None,
    interval: Annotated[float | None, typer.Option(help="Interval mode: seconds between frames.")] = None,
    quality: Annotated[str | None, typer.Option(help="high (PNG) | medium (JPEG q95)")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Shots and frames from video: shot-aware sampling, sharpness, dedupe, bar cropping."""
    flags = {
        "extract.mode": mode,
        "extract.detector": detector,
        "extract.scene_threshold": scene_threshold,
        "extract.frames_per_shot": frames_per_shot,
        "extract.interval_seconds": interval,
        "extract.quality": quality,
    }
    run_standalone(
        "extract", input_path, output, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )
