"""``animlora train``: a LoRA from a dataset folder, with the built-in trainer or kohya sd-scripts.

A thin command: it loads the settings (inside a project, that project's), then runs the
train stage on the dataset through the runner, as ``animlora run`` does — so the run folder
gets a manifest, ``animlora status``-style state and item-level resume. The engines live in
:mod:`animlora.training.engine`.
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
    console_err,
    emit,
    overrides_tree,
    print_summaries,
    progress_bar,
    setup_logging,
    summaries_json,
)


def _preset_names() -> list[str]:
    """The shipped presets (``config.preset_names``, read here without importing the settings
    code, which the CLI loads only when a command runs)."""
    from importlib import resources

    folder = resources.files("animlora").joinpath("config", "presets")
    return sorted(e.name.removesuffix(".yaml") for e in folder.iterdir() if e.name.endswith(".yaml"))


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def load_train_settings(preset: str | None, profile: str | None, config: list[Path] | None,
                        sets: list[str] | None, flags: dict[str, Any], project: Path | None = None):
    """Settings with the preset as a layer under the user's files (project.yaml when inside a project)."""
    from animlora.config import load_settings
    from animlora.errors import WorkspaceError
    from animlora.workspace import Workspace

    project_dir = None
    try:
        project_dir = Workspace.find(project).root
    except WorkspaceError:
        if project is not None:
            raise
    return load_settings(project_dir, profile=profile, preset=preset, config_files=list(config or []),
                         overrides=overrides_tree(sets, flags))


def run_stage_into(stage_name: str, input_path: Path, output: Path, loaded: Any, *, force: bool,
                   as_json: bool) -> dict[str, Any]:
    """Run one stage on ``input_path`` into the standalone workspace ``output``; return its report.

    A run or evaluation folder already holding another animlora run's files is its own
    (the engine refuses, naming --force, to mix runs of other settings)."""
    from animlora.errors import BadInputError
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    if not input_path.exists():
        raise BadInputError(input_path, "no such file or folder")
    if output.is_file():
        raise BadInputError(output, "the output must be a folder, this is a file")
    workspace = Workspace.for_output(output)
    runner = Runner(workspace, loaded, force=force, input_path=input_path.resolve())
    setup_logging(workspace.logs_dir)
    with progress_bar(not as_json) as progress:
        runner.progress = progress
        try:
            summaries = runner.run([get_stage(stage_name)])
        finally:
            setup_logging(None)
    print_summaries(summaries)
    manifest = workspace.manifest_path(stage_name)
    import json

    report = json.loads(manifest.read_text(encoding="utf-8")).get("report", {}) if manifest.is_file() else {}
    if any(s.failures for s in summaries):
        emit({"output": str(output), "stages": summaries_json(summaries)}, as_json)
        raise typer.Exit(1)
    return {"output": str(output), "stages": summaries_json(summaries), "report": report}


def train(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder: images/ + captions/ + metadata.json.")],
    base_model: Annotated[str | None, typer.Option("--base-model", "-m",
                          help="Diffusers folder, single .safetensors file, registry name (sd15, sdxl-base) or hub id.")] = None,
    base_model_config: Annotated[str | None, typer.Option(
        "--base-model-config", help="Single-file base model: a diffusers folder or hub id with its configs "
        "(Flux: its text encoders and VAE too).")] = None,
    preset: Annotated[str | None, typer.Option(help=f"Settings preset: {' | '.join(_preset_names())}.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder (default: runs/<dataset name>).")] = None,
    engine: Annotated[str | None, typer.Option(help="builtin (diffusers+peft) | kohya (sd-scripts).")] = None,
    sd_scripts: Annotated[Path | None, typer.Option("--sd-scripts", help="kohya engine: the sd-scripts checkout.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    network_dim: Annotated[int | None, typer.Option("--dim", help="LoRA rank.")] = None,
    network_alpha: Annotated[float | None, typer.Option("--alpha", help="LoRA alpha.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Trigger word (default: from metadata.json).")] = None,
    allow_cpu: Annotated[bool | None, typer.Option("--allow-cpu", help="Train a full-size model without a GPU.")] = None,
    num_processes: Annotated[int | None, typer.Option("--num-processes", min=1,
                             help="Data-parallel processes (one per GPU) under accelerate launch.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, print the plan, train nothing.")] = False,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project whose settings to use.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA: checks the data and model first, resumes a cut-short run, writes kohya files."""
    from animlora.training.engine import check

    flags = {
        "train.base_model": base_model,
        "train.base_model_config": base_model_config,
        "train.engine": engine,
        "train.sd_scripts": str(sd_scripts) if sd_scripts else None,
        "train.epochs": epochs,
        "train.network_dim": network_dim,
        "train.network_alpha": network_alpha,
        "train.trigger": trigger,
        "train.allow_cpu": allow_cpu,
        "train.num_processes": num_processes,
    }
    loaded = load_train_settings(preset, profile, config, sets, flags, project)
    out = (output or Path("runs") / dataset.resolve().name).resolve()
    # 1. check inputs and show the plan (the stage checks again; this is the one the user reads)
    plan = check(loaded.settings, dataset)
    if plan.get("describe"):
        console_err.print(f"[bold]plan:[/] {plan['describe']}", highlight=False)
    for warning in plan.get("warnings", []):
        console_err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if dry_run:
        if loaded.settings.train.engine == "kohya":  # the files sd-scripts would read, and its command
            from animlora.training.engine import prepare_kohya

            job = prepare_kohya(loaded.settings, dataset, out)
            console_err.print(f"[bold]sd-scripts:[/] {' '.join(job.command)}", highlight=False)
            plan |= {"command": list(job.command), "dataset_config": str(job.dataset_toml),
                     "training_config": str(job.config_toml)}
        emit({"plan": plan, "output": str(out)}, as_json)
        return
    # 2. train through the runner (manifest, resume, the same code as `animlora run`)
    summary = run_stage_into("train", dataset, out, loaded, force=force, as_json=as_json)
    result = next(iter(summary["report"].get("results", {}).values()), {})
    if result.get("final"):
        console_err.print(f"[green]✓[/] LoRA: {result['final']}", highlight=False)
    emit({**result, "output": str(out), "stages": summary["stages"]}, as_json)
