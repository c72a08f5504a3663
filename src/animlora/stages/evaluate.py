"""The evaluate stage: every run in ``runs/`` → ``evaluation/<name>/`` (images per checkpoint,
metrics, grid, plot, HTML report, the best checkpoint). Skipped without a base model."""

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


class EvaluateStage(Stage):
    name = "evaluate"
    folder = "evaluation"
    upstream = ("train",)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        s = ctx.settings
        if not (s.evaluate.base_model or s.train.base_model):
            ctx.log.info("evaluate: no base model configured (train.base_model), skipped")
            return []
        if ctx.job.standalone and ctx.job.input_path is not None:
            runs = [ctx.job.input_path]
        else:
            root = ctx.job.workspace_root / "runs"
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
        out = job.output_dir / item.key
        dataset = job.workspace_root / "training_data" / item.key
        report = evaluate_run(Path(item.payload), out, s.evaluate, s.models,
                              base_model=s.evaluate.base_model or s.train.base_model,
                              dataset=dataset if dataset.is_dir() else None, progress=progress)
        files = [str(p.relative_to(job.output_dir)) for p in out.rglob("*") if p.is_file()]
        return ItemOutput(files=tuple(sorted(files)), data={"best": report.get("best")})

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        return {"evaluated": summary.items_done}
