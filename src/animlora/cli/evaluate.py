"""``animlora evaluate`` (every checkpoint of a run) and ``animlora compare`` (any LoRA files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from animlora.cli.common import ConfigOpt, ForceOpt, JsonOpt, ProfileOpt, SetOpt, console_err, emit


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)


BaseOpt = Annotated[str | None, typer.Option("--base-model", "-m", help="Base model the LoRAs were trained on.")]
PromptsOpt = Annotated[Path | None, typer.Option("--prompts", help="Prompt JSON (default: the package's 3D test prompts).")]
SeedsOpt = Annotated[list[int] | None, typer.Option("--seed", help="Seed (repeatable).")]
BaseConfigOpt = Annotated[str | None, typer.Option(
    "--base-model-config", help="Single-file base model: a diffusers folder or hub id with its configs "
    "(Flux: its text encoders and VAE too); sets train.base_model_config.")]
StrengthOpt = Annotated[list[float] | None, typer.Option("--strength", help="LoRA strength to sweep (repeatable).")]


def _loaded(profile: str | None, config: list[Path] | None, sets: list[str] | None, flags: dict[str, Any]):
    from animlora.cli.train import load_train_settings

    return load_train_settings(None, profile, config, sets, flags)


def _settings(profile: str | None, config: list[Path] | None, sets: list[str] | None, flags: dict[str, Any]):
    return _loaded(profile, config, sets, flags).settings


def _finish(report: dict[str, Any], out: Path, as_json: bool) -> None:
    best = report["best"]
    console_err.print(f"[green]✓[/] best: {best['label']} (score {best['score']:.3f}) — {out / 'report.html'}",
                      highlight=False)
    emit({"output": str(out), "best": best, "checkpoints": report["checkpoints"]}, as_json)


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (runs/<name>/) with the kohya checkpoints.")],
    base_model: BaseOpt = None,
    base_model_config: BaseConfigOpt = None,
    prompts: PromptsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: evaluation/<run name>.")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", help="Character dataset for identity (default: the run's).")] = None,
    seeds: SeedsOpt = None,
    strengths: StrengthOpt = None,
    steps: Annotated[int | None, typer.Option(help="Sampling steps.")] = None,
    cfg: Annotated[float | None, typer.Option(help="Guidance scale.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="dpm++ | euler | euler_a | ddim | pndm")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Images per checkpoint for test prompts, CLIP/identity/diversity metrics, grid, best pick."""
    import json

    from animlora.cli.train import run_stage_into
    from animlora.training.evaluation import require_evaluate_packages

    require_evaluate_packages()  # before the output folder is made
    flags = {"evaluate.seeds": seeds, "evaluate.strengths": strengths, "evaluate.steps": steps, "evaluate.cfg": cfg,
             "evaluate.scheduler": scheduler, "evaluate.base_model": base_model,
             "train.base_model_config": base_model_config,
             "evaluate.prompts": str(prompts.resolve()) if prompts else None,
             "evaluate.dataset": str(dataset.resolve()) if dataset else None}
    loaded = _loaded(profile, config, sets, flags)
    out = (output or Path("evaluation") / run.resolve().name).resolve()
    run_stage_into("evaluate", run, out, loaded, force=force, as_json=as_json)
    _finish(json.loads((out / "quality_evaluation.json").read_text(encoding="utf-8")), out, as_json)


def compare(
    loras: Annotated[list[Path], typer.Argument(help="LoRA files (.safetensors) to compare.")],
    base_model: BaseOpt = None,
    base_model_config: BaseConfigOpt = None,
    prompts: PromptsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: evaluation/compare.")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", help="Character dataset for identity similarity.")] = None,
    seeds: SeedsOpt = None,
    strengths: StrengthOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The evaluation across LoRA files: same prompts, seeds and metrics; the best one."""
    from animlora.errors import ConfigError
    from animlora.training.evaluation import evaluate_checkpoints, file_checkpoints

    s = _settings(profile, config, sets, {"evaluate.seeds": seeds, "evaluate.strengths": strengths,
                                          "train.base_model_config": base_model_config})
    base = base_model or s.evaluate.base_model or s.train.base_model
    if not base:
        raise ConfigError("no base model: pass --base-model PATH|ID")
    out = (output or Path("evaluation") / "compare").resolve()
    report = evaluate_checkpoints(file_checkpoints(loras), out, s.evaluate, s.models, base_model=base,
                                  base_model_config=s.train.base_model_config, dataset=dataset, prompts=str(prompts) if prompts else None)
    _finish(report, out, as_json)
