"""The train stage: one LoRA per character dataset in ``training_data/``, into ``runs/<name>/``.

Runs only when a base model is configured (``train.base_model``); otherwise it plans nothing
and logs the exact ``animlora train`` command for each dataset, so ``animlora run`` ends with
the datasets and tells the user how to go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animlora.pipeline.stage import (
    ItemOutput,
    Progress,
    RunSummary,
    Stage,
    StageContext,
    StageJob,
    WorkItem,
    digest,
)

DATASET_FOLDER = "training_data"


def dataset_dirs(job: StageJob) -> list[Path]:
    """The dataset folders to train: the standalone input, or every ``training_data/<name>/``."""
    if job.standalone and job.input_path is not None:
        return [job.input_path]
    root = job.workspace_root / DATASET_FOLDER
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "images").is_dir())


def _dataset_fingerprint(folder: Path) -> str:
    files = sorted((folder / "images").glob("*")) + sorted((folder / "captions").glob("*.txt"))
    return digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()])


class TrainStage(Stage):
    name = "train"
    folder = "runs"
    upstream = ("dataset",)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        folders = dataset_dirs(ctx.job)
        base = ctx.settings.train.base_model
        if not base:
            from animlora.cli.train import train_command

            ctx.extra["commands"] = [
                train_command(str(f.relative_to(ctx.job.workspace_root)) if f.is_relative_to(ctx.job.workspace_root)
                              else str(f), "", "3d-character-sd15") for f in folders
            ]
            for command in ctx.extra["commands"]:
                ctx.log.warning("train: no base model configured (train.base_model), skipped; to train run: %s", command)
            if not folders:
                ctx.log.info("train: no datasets in %s/", DATASET_FOLDER)
            return []
        return [WorkItem(key=f.name, fingerprint=_dataset_fingerprint(f), payload=str(f), label=f.name) for f in folders]

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        from animlora.training.trainer import LoraTrainer

        s = job.settings
        trainer = LoraTrainer(s.train, s.models, seed=s.project.seed,
                              on_step=lambda step, total, _m: progress(step, total))
        out = job.output_dir / item.key
        result = trainer.train(Path(item.payload), out, s.train.base_model)
        files = [p.relative_to(job.output_dir) for p in [*result.checkpoints, result.final] if p is not None]
        return ItemOutput(files=tuple(str(f) for f in files),
                          data={"final": str(result.final), "steps": result.steps})

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        if ctx.extra.get("commands") is not None:
            return {"skipped": "no base model configured (train.base_model)", "train_commands": ctx.extra["commands"]}
        return {"runs": summary.items_done}
