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
    stage_wants_gpu,
    summaries_json,
)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
    app.command("segment")(segment)
    app.command("prefilter")(prefilter)
    # a command is named as its stage; the names of earlier releases stay as hidden aliases
    app.command("inpaint")(inpaint_background)
    app.command("deocclude")(remove_occluders)
    app.command("inpaint-background", hidden=True)(inpaint_background)
    app.command("remove-occluders", hidden=True)(remove_occluders)
    app.command("enhance")(enhance)
    app.command("embed")(embed)
    app.command("cluster")(cluster)
    app.command("caption")(caption)
    app.command("dataset")(dataset)


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
    before: tuple[str, ...] = (),
) -> None:
    """Run one stage from ``input_path`` into ``output_dir`` (a standalone workspace),
    after the stages in ``before`` (which it needs, e.g. cluster after embed)."""
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
    stages = [get_stage(name) for name in (*before, stage_name)]
    runner = Runner(workspace, loaded, force=force, input_path=input_path.resolve(), gpu_check=stage_wants_gpu)
    with progress_bar(not as_json) as progress:
        runner.progress = progress
        try:
            summaries = runner.run(stages)
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
    max_per_shot: Annotated[int | None, typer.Option(help="Scene mode: most candidate frames from one shot.")] = None,
    interval: Annotated[float | None, typer.Option(help="Interval mode: seconds between frames.")] = None,
    quality: Annotated[str | None, typer.Option(help="high (PNG) | medium (JPEG q95)")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Shots and candidate frames from video: sampling by shot length and picture change, bar cropping."""
    flags = {
        "extract.mode": mode,
        "extract.detector": detector,
        "extract.scene_threshold": scene_threshold,
        "extract.max_per_shot": max_per_shot,
        "extract.interval_seconds": interval,
        "extract.quality": quality,
    }
    run_standalone(
        "extract", input_path, output, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def caption(
    input_dir: Annotated[Path, typer.Option("--input-dir", "-i", help="Folder of RGBA cut-outs of one character.")],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Folder for the .txt captions (default: captions/<name>).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="template | blip | florence2 | qwen2_5_vl")] = None,
    character: Annotated[str | None, typer.Option(help="Character name (default: the input folder's name).")] = None,
    trigger: Annotated[str | None, typer.Option(help="Trigger word, first in every caption (default: the name).")] = None,
    prefix: Annotated[str | None, typer.Option("--caption-prefix", help="Words after the trigger word.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Captions for a folder of character cut-outs: trigger word first, fields, 77-token budget."""
    flags = {
        "caption.backend": model,
        "caption.character": character,
        "caption.trigger": trigger,
        "caption.prefix": prefix,
        "caption.device": device,
    }
    out = output_dir or Path("captions") / (character or input_dir.resolve().name)
    run_standalone(
        "caption", input_dir, out, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def dataset(
    character: Annotated[str | None, typer.Option(help="Character to build (project: default all).")] = None,
    input_dir: Annotated[
        Path | None,
        typer.Option("--input-dir", "-i", help="A folder of cut-outs (one character) or a project (default: this one)."),
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Dataset folder (default: training_data/<character>).")
    ] = None,
    target_size: Annotated[int | None, typer.Option(help="Images per character.")] = None,
    caption_prefix: Annotated[str | None, typer.Option(help="Words after the trigger word.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Folder input: trigger word (default: the character).")] = None,
    captions_dir: Annotated[Path | None, typer.Option(help="Folder input: .txt captions by image stem.")] = None,
    background: Annotated[str | None, typer.Option(help="alpha | context | flat | blur")] = None,
    resolution: Annotated[int | None, typer.Option(help="Base model resolution (512, 768, 1024).")] = None,
    kohya_layout: Annotated[bool | None, typer.Option(help="Also write {repeats}_{name} folders.")] = None,
    kind: Annotated[str | None, typer.Option(help="character | background (the inpaint plates) | all")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A training set per character: diverse selection, buckets, captions, sd-scripts TOML/JSONL."""
    from animlora.errors import StageError
    from animlora.workspace import Workspace

    source = input_dir
    if source is None:
        from animlora.errors import WorkspaceError

        try:
            source = Workspace.find().root
        except WorkspaceError as exc:
            raise WorkspaceError(
                f"{exc.args[0].split(':')[0]}: not inside an animlora project; run this in a project or give "
                "--input-dir (a folder of one character's cut-outs, or a project folder)"
            ) from exc
    if output_dir is None and kind == "background":
        output_dir = Path("training_data") / "background"
    if output_dir is None:
        if not character:
            raise StageError("give --character (or --output-dir) to name the dataset folder")
        output_dir = Path("training_data") / character
    flags = {
        "dataset.character": character,
        "dataset.target_size": target_size,
        "dataset.caption_prefix": caption_prefix,
        "caption.trigger": trigger,
        "dataset.captions_dir": str(captions_dir.resolve()) if captions_dir else None,
        "dataset.background": background,
        "dataset.resolution": resolution,
        "dataset.kohya_layout": kohya_layout,
        "dataset.kind": kind,
    }
    run_standalone(
        "dataset", source, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


InputDirOpt = Annotated[Path, typer.Option("--input-dir", "-i", help="Folder of RGBA PNG cut-outs (e.g. filtered/).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Embedder: color | clip | siglip | dinov2 | auto, or two joined by '+'.")
]


def embed(
    input_dir: InputDirOpt,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Where vectors go (default: embeddings/ beside the input).")
    ] = None,
    model: ModelOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """One vector per cut-out (cached by content: a re-run embeds only new images)."""
    flags = {"embed.backend": model, "embed.batch_size": batch_size, "embed.device": device}
    out = output_dir or input_dir.resolve().parent / "embeddings"
    run_standalone(
        "embed", input_dir, out, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def cluster(
    input_dir: InputDirOpt,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for character_<n>/, noise/, report.")],
    min_cluster_size: Annotated[int | None, typer.Option(help="HDBSCAN min_cluster_size (3D 12, 2D 20).")] = None,
    min_samples: Annotated[int | None, typer.Option(help="HDBSCAN min_samples (3D 2, 2D 3).")] = None,
    model: ModelOpt = None,
    pca_dim: Annotated[int | None, typer.Option(help="PCA before HDBSCAN (0 = full dimension).")] = None,
    merge_similarity: Annotated[float | None, typer.Option(help="Merge clusters more similar than this.")] = None,
    characters_dir: Annotated[
        Path | None, typer.Option(help="Folder of <name>.yaml specs whose references name clusters.")
    ] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Cut-outs -> one folder per character (embeds first; vectors are cached in the output)."""
    flags = {
        "embed.backend": model,
        "cluster.min_cluster_size": min_cluster_size,
        "cluster.min_samples": min_samples,
        "cluster.pca_dim": pca_dim,
        "cluster.merge_similarity": merge_similarity,
        "cluster.characters_dir": str(characters_dir.resolve()) if characters_dir else None,
    }
    run_standalone(
        "cluster", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json, before=("embed",),
    )


def segment(
    input_dir: Annotated[
        Path, typer.Option("--input-dir", "-i", help="Images: each subfolder is one shot, each loose image its own.")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Folder for character/, background/, masks/, variants/.")
    ],
    model: Annotated[str | None, typer.Option(help="isnet | classic (no weights) | sam2 | yolo")] = None,
    alpha_threshold: Annotated[float | None, typer.Option(help="Matte value that counts as character.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Frames per model call (halves on GPU OOM).")] = None,
    fallback: Annotated[
        bool | None, typer.Option("--fallback/--no-fallback", help="Use 'classic' when the model is missing.")
    ] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Character instances (RGBA cut-outs, masks, tracks) from frames."""
    flags = {
        "segment.backend": model,
        "segment.alpha_threshold": alpha_threshold,
        "segment.batch_size": batch_size,
        "segment.fallback": fallback,
    }
    run_standalone(
        "segment", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def prefilter(
    input_dir: Annotated[
        Path, typer.Option("--input-dir", "-i", help="RGBA cut-outs (a segment output's character/ folder).")
    ],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the kept cut-outs.")],
    mode: Annotated[str | None, typer.Option(help="strict | balanced | lenient")] = None,
    blur_threshold: Annotated[float | None, typer.Option(help="Variance of the Laplacian inside the mask.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reject tiny, truncated, blurred and non-character instances (no face needed)."""
    flags = {"prefilter.mode": mode, "prefilter.blur_threshold": blur_threshold}
    run_standalone(
        "prefilter", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def inpaint_background(
    input_dir: Annotated[Path, typer.Option("--input-dir", "-i", help="A segment output folder (with background/).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the background plates.")],
    model: Annotated[str | None, typer.Option(help="lama | opencv")] = None,
    dilation: Annotated[int | None, typer.Option(help="Mask dilation in px.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Background plates: characters removed from frames (LaMa or OpenCV)."""
    flags = {"inpaint.backend": model, "inpaint.dilation": dilation}
    run_standalone(
        "inpaint", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def remove_occluders(
    input_dir: Annotated[Path, typer.Option("--input-dir", "-i", help="A segment output folder.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the filled context images.")],
    model: Annotated[str | None, typer.Option(
        help="lama | opencv | sd (text-guided, diffusers) | inherit (= inpaint.backend)")] = None,
    dilation: Annotated[int | None, typer.Option(help="Occluder mask dilation in px.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fill other characters out of each instance's context image (original kept beside it)."""
    flags = {"deocclude.backend": model, "inpaint.dilation": dilation}
    run_standalone(
        "deocclude", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )


def enhance(
    input_dir: Annotated[Path | None, typer.Option(
        "--input-dir", "-i", help="A folder of images (RGBA alpha kept aligned); default: this project's crops.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Folder for the enlarged images.")] = None,
    model: Annotated[str | None, typer.Option(help="auto | spandrel | opencv (no weights) | none")] = None,
    sr_model: Annotated[str | None, typer.Option(help="Registry name of the super-resolution weights.")] = None,
    scale: Annotated[float | None, typer.Option(help="Folder input: enlargement of every image.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Enlarge small character crops (super-resolution through spandrel, or OpenCV without weights), gated by SSIM."""
    flags = {"enhance.backend": model, "enhance.sr_model": sr_model, "enhance.scale": scale, "enhance.device": device}
    if input_dir is None:  # inside a project: its enhance stage, as `animlora run --from enhance --to enhance`
        from animlora.cli.project import run_project
        from animlora.workspace import Workspace

        given = [f"{key}={value}" for key, value in flags.items() if value is not None]
        summaries = run_project(Workspace.find(), [*given, *(sets or [])], "enhance", "enhance", force, not as_json)
        print_summaries(summaries)
        emit({"stages": summaries_json(summaries)}, as_json)
        if any(s.failures for s in summaries):
            raise typer.Exit(1)
        return
    if output_dir is None:
        from animlora.errors import StageError

        raise StageError("give --output-dir for the enlarged images of --input-dir")
    run_standalone(
        "enhance", input_dir, output_dir, flags,
        sets=sets, config_files=config, profile=profile, force=force, as_json=as_json,
    )
