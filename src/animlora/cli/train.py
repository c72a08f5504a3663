"""``animlora train``: a LoRA from a dataset folder, with the built-in trainer or kohya sd-scripts."""

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
)


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def load_train_settings(preset: str | None, profile: str | None, config: list[Path] | None,
                        sets: list[str] | None, flags: dict[str, Any], project: Path | None = None):
    """Settings with the preset as a layer under the user's files (project.yaml when inside a project)."""
    from animlora.config import load_settings
    from animlora.errors import WorkspaceError
    from animlora.training.presets import preset_file
    from animlora.workspace import Workspace

    files = [preset_file(preset)] if preset else []
    project_dir = None
    try:
        project_dir = Workspace.find(project).root
    except WorkspaceError:
        if project is not None:
            raise
    return load_settings(project_dir, profile=profile, config_files=files + list(config or []),
                         overrides=overrides_tree(sets, flags))


def train_command(dataset: str, base_model: str, preset: str | None) -> str:
    """The exact command line that trains ``dataset`` (printed by ``animlora run``)."""
    import shlex

    parts = ["animlora", "train", "--dataset", dataset, "--base-model", base_model or "BASE_MODEL"]
    if preset:
        parts += ["--preset", preset]
    return " ".join(shlex.quote(p) if p != "BASE_MODEL" else p for p in parts)


def train(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder: images/ + captions/ + metadata.json.")],
    base_model: Annotated[str | None, typer.Option("--base-model", "-m",
                          help="Diffusers folder, single .safetensors file, registry name (sd15, sdxl-base) or hub id.")] = None,
    preset: Annotated[str | None, typer.Option(help="Settings preset: 3d-character-sd15 | 3d-character-sdxl.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder (default: runs/<dataset name>).")] = None,
    engine: Annotated[str | None, typer.Option(help="builtin (diffusers+peft) | kohya (sd-scripts).")] = None,
    sd_scripts: Annotated[Path | None, typer.Option("--sd-scripts", help="kohya engine: the sd-scripts checkout.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    network_dim: Annotated[int | None, typer.Option("--dim", help="LoRA rank.")] = None,
    network_alpha: Annotated[float | None, typer.Option("--alpha", help="LoRA alpha.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Trigger word (default: from metadata.json).")] = None,
    allow_cpu: Annotated[bool | None, typer.Option("--allow-cpu", help="Train a full-size model without a GPU.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, print the plan, train nothing.")] = False,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project whose settings to use.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA: checks the data and model first, resumes a cut-short run, writes kohya files."""
    flags = {
        "train.base_model": base_model,
        "train.engine": engine,
        "train.sd_scripts": str(sd_scripts) if sd_scripts else None,
        "train.epochs": epochs,
        "train.network_dim": network_dim,
        "train.network_alpha": network_alpha,
        "train.trigger": trigger,
        "train.allow_cpu": allow_cpu,
    }
    loaded = load_train_settings(preset, profile, config, sets, flags, project)
    settings = loaded.settings
    s = settings.train
    out = (output or Path("runs") / dataset.resolve().name).resolve()
    if s.engine == "kohya":
        summary = _train_kohya(settings, dataset, out, dry_run=dry_run)
        emit(summary, as_json)
        if summary.get("returncode", 0):
            raise typer.Exit(summary["returncode"])
        return
    from animlora.training.trainer import LoraTrainer

    trainer = LoraTrainer(s, settings.models, seed=settings.project.seed)
    data, ref, plan = trainer.check_inputs(dataset, s.base_model)
    console_err.print(f"[bold]plan:[/] {plan.describe()}", highlight=False)
    for warning in plan.warnings:
        console_err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if dry_run:
        from dataclasses import asdict

        emit({"plan": asdict(plan), "output": str(out)}, as_json)
        return
    result = _run_with_progress(trainer, dataset, out, s.base_model, fresh=force, quiet=as_json)
    console_err.print(f"[green]✓[/] {result.steps} steps; LoRA: {result.final}", highlight=False)
    emit({
        "output": str(out), "final": str(result.final) if result.final else None,
        "checkpoints": [str(p) for p in result.checkpoints], "steps": result.steps,
        "resumed_from_step": result.resumed_from, "epoch_loss": result.epoch_losses,
        "seconds": round(result.seconds, 2),
    }, as_json)


def _run_with_progress(trainer: Any, dataset: Path, out: Path, base_model: str, *, fresh: bool, quiet: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from animlora.cli.common import setup_logging

    setup_logging(out / "logs")
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console_err, disable=quiet) as progress:
        task = progress.add_task("train", total=None, info="loading models")

        def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
            progress.update(task, completed=step, total=total,
                            info=f"epoch {int(metrics['epoch'])} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e}")

        trainer.on_step = on_step
        return trainer.train(dataset, out, base_model, fresh=fresh)


def _train_kohya(settings: Any, dataset: Path, out: Path, *, dry_run: bool) -> dict[str, Any]:
    from animlora.errors import AnimloraError
    from animlora.training.base_model import check_family, locate_base_model
    from animlora.training.dataset import load_dataset
    from animlora.training.sampling import load_prompts
    from animlora.training.sd_scripts import check_checkout, launch, prepare_kohya

    s = settings.train
    data = load_dataset(dataset, s.trigger)
    family = s.family
    if not s.base_model:
        raise AnimloraError("no base model: pass --base-model PATH|ID or set train.base_model")
    try:
        ref = locate_base_model(s.base_model, settings.models)
        check_family(ref, s.family)
        family, base = ref.family, str(ref.path or ref.given)
    except AnimloraError:
        if family == "auto":
            raise
        base = s.base_model  # a hub id sd-scripts downloads itself
    check_checkout(s.sd_scripts, family)
    prompts = [p.prompt for p in load_prompts(s.sample_prompts or None, data.trigger).prompts]
    job = prepare_kohya(s, data, out, base_model=base, family=family, seed=settings.project.seed,
                        output_name=s.output_name or data.name, sample_prompts=prompts)
    summary: dict[str, Any] = {"engine": "kohya", "output": str(out), "command": list(job.command),
                               "dataset_config": str(job.dataset_toml), "training_config": str(job.config_toml)}
    console_err.print(f"[bold]sd-scripts:[/] {' '.join(job.command)}", highlight=False)
    if not dry_run:
        summary["returncode"] = launch(job)
    return summary
