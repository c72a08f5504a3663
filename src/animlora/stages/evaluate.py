"""The evaluate stage: every run in ``runs/`` → ``evaluation/<name>/`` (images per checkpoint,
metrics, grid, plot, HTML report, the best checkpoint). Skipped without a base model.
Standalone (``animlora evaluate RUN --output O``) it evaluates ``RUN`` into ``O`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animlora.errors import ConfigError
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


def _base_model(job: StageJob) -> str:
    s = job.settings
    return s.evaluate.base_model or s.train.base_model


class EvaluateStage(Stage):
    name = "evaluate"
    folder = stage_folder("evaluate")
    upstream = ("train",)
    remake_lost_outputs = False  # sample images deleted by hand are not rendered again on the GPU

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone and job.input_path is not None:
            if not _base_model(job):
                raise ConfigError("no base model: pass --base-model PATH|ID (the one the LoRA was trained on)")
            from animlora.training.evaluation import run_checkpoints

            run_checkpoints(job.input_path)  # a run folder without checkpoints fails here, named

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        if not _base_model(ctx.job):
            ctx.log.info("evaluate: no base model configured (train.base_model), skipped")
            return []
        if ctx.job.standalone and ctx.job.input_path is not None:
            runs = [ctx.job.input_path]
        else:
            root = ctx.job.workspace_root / stage_folder("train")
            runs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        items = []
        for run in runs:
            checkpoints = sorted(run.glob("*.safetensors"))
            if checkpoints:
                fingerprint = digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in checkpoints])
                items.append(WorkItem(key=run.name, fingerprint=fingerprint, payload=str(run), label=run.name))
        return items

    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        from animlora.training.evaluation import evaluate_run

        s = job.settings
        out = job.output_dir if job.standalone else job.output_dir / item.key
        if s.evaluate.dataset:
            dataset: Path | None = Path(s.evaluate.dataset)
        elif job.standalone:
            dataset = None  # the dataset the run names in its training_results.json
        else:
            dataset = job.workspace_root / stage_folder("dataset") / item.key
            dataset = dataset if dataset.is_dir() else None
        report = evaluate_run(Path(item.payload), out, s.evaluate, s.models, base_model=_base_model(job),
                              base_model_config=s.train.base_model_config, dataset=dataset, progress=progress)
        files = [str(p.relative_to(job.output_dir)) for p in out.rglob("*")
                 if p.is_file() and ".animlora" not in p.relative_to(job.output_dir).parts]
        return ItemOutput(files=tuple(sorted(files)),
                          data={"best": report.get("best"), "checkpoints": report.get("checkpoints")})

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        ctx.extra.setdefault("results", {})[item.key] = output.data

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        return {"evaluated": summary.items_done, "results": ctx.extra.get("results", {})}
