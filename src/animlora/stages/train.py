"""The train stage: one LoRA per character dataset in ``training_data/``, into ``runs/<name>/``.

The engine is ``train.engine`` (:mod:`animlora.training.engine`: the built-in trainer or kohya
sd-scripts). Runs only when a base model is configured (``train.base_model``); otherwise it
plans nothing and logs the exact ``animlora train`` command for each dataset, so
``animlora run`` ends with the datasets and tells the user how to go on. Standalone
(``animlora train --dataset D --output O``) it trains ``D`` into ``O`` itself.
"""

from __future__ import annotations

import shutil
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
from animlora.records.folders import stage_folder


def dataset_dirs(job: StageJob) -> list[Path]:
    """The dataset folders to train: the standalone input, or every ``training_data/<name>/``."""
    if job.standalone and job.input_path is not None:
        return [job.input_path]
    root = job.workspace_root / stage_folder("dataset")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "images").is_dir())


def run_dir(job: StageJob, key: str) -> Path:
    """Where one dataset's run goes: ``runs/<name>/`` in a project, the output folder standalone."""
    return job.output_dir if job.standalone else job.output_dir / key


def _dataset_fingerprint(folder: Path) -> str:
    files = sorted((folder / "images").glob("*")) + sorted((folder / "captions").glob("*.txt"))
    return digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()])


def shown_path(folder: Path) -> str:
    """How a printed command names ``folder`` so it works as printed from where the user is:
    relative to the current directory when under it, else absolute."""
    folder = folder.resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current directory was removed
        return str(folder)
    return str(folder.relative_to(cwd)) if folder.is_relative_to(cwd) and folder != cwd else str(folder)


class TrainStage(Stage):
    name = "train"
    folder = stage_folder("train")
    upstream = ("dataset",)
    remake_lost_outputs = False  # checkpoints pruned by hand do not start hours of training again

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone and job.input_path is not None:
            from animlora.training.engine import check

            check(job.settings, job.input_path)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        folders = dataset_dirs(ctx.job)
        s = ctx.settings.train
        if not s.base_model:
            from animlora.training.engine import train_command

            ctx.extra["commands"] = [train_command(shown_path(f), "", s.preset) for f in folders]
            for command in ctx.extra["commands"]:
                ctx.log.warning("train: no base model configured (train.base_model), skipped; to train run: %s", command)
            if not folders:
                ctx.log.info("train: no datasets in %s/", stage_folder("dataset"))
            return []
        return [WorkItem(key=f.name, fingerprint=_dataset_fingerprint(f), payload=str(f), label=f.name) for f in folders]

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        from animlora.training.engine import train

        out = run_dir(job, item.key)
        result = train(job.settings, Path(item.payload), out, fresh=job.force,
                       on_step=lambda step, total, _m: progress(step, total))
        # the run's own files; never the standalone workspace's state (catalog, manifests, logs)
        files = [str(p.relative_to(job.output_dir)) for p in result.files
                 if p.is_relative_to(job.output_dir) and ".animlora" not in p.relative_to(job.output_dir).parts]
        return ItemOutput(files=tuple(files), data=result.summary)

    def forget(self, ctx: StageContext, item_key: str) -> None:
        # The run is redone under other settings or data: its resume state is stale too.
        shutil.rmtree(run_dir(ctx.job, item_key) / "state", ignore_errors=True)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        ctx.extra.setdefault("results", {})[item.key] = output.data

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        if ctx.extra.get("commands") is not None:
            return {"skipped": "no base model configured (train.base_model)", "train_commands": ctx.extra["commands"]}
        return {"engine": ctx.settings.train.engine, "runs": summary.items_done,
                "results": ctx.extra.get("results", {})}
